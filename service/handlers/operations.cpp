// Health, readiness, metrics and the contract.
#include "service/http_api.hpp"
#include "service/openapi_text.hpp"

namespace gatherd::service {

http_response http_api::healthz() const {
  http_response res;
  res.body = R"({"status":"ok"})";
  return res;
}

http_response http_api::readyz() const {
  switch (current_readiness()) {
    case readiness::ready:
      return json_response(200, {{"status", "ready"}});
    case readiness::starting:
      return json_response(503, {{"status", "starting"}});
    case readiness::draining:
      break;
  }
  return json_response(503, {{"status", "draining"}});
}

http_response http_api::metrics_text() {
  http_response res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = metrics_.scrape();
  return res;
}

http_response http_api::openapi() const {
  http_response res;
  res.content_type = "application/yaml";
  res.body = std::string(openapi_text());
  return res;
}

}  // namespace gatherd::service
