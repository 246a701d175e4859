// The http_client of the service: Beast over Asio, OpenSSL for https, keep-alive pools per
// origin, the egress guard on every resolved address. Only beast_http_client.cpp includes
// Beast and OpenSSL, so that this header stays cheap to include.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"
#include "libcore/fetch/egress_guard.hpp"
#include "libcore/fetch/http_client.hpp"

namespace gatherd::core::fetch {

struct http_client_config {
  // Server-wide outbound connections (connecting + open).
  std::size_t max_connections = 1024;
  // Per origin (scheme://host:port). A request finding no room waits (FIFO), it is not refused.
  std::size_t max_connections_per_origin = 64;
  // Pooled idle connections older than this are closed.
  millis idle_timeout{30000};
  // DNS + TCP connect + TLS handshake, also capped by the request timeout.
  millis connect_timeout{5000};
  egress_policy egress;
  // Empty: the system CAs (set_default_verify_paths); else verify against this PEM file only.
  std::string ca_file;
  // Sent unless the request sets its own User-Agent; empty: none.
  std::string user_agent = "gatherd";
};

// Each request runs on a strand of its caller's executor, and new connections live there; the
// idle sweep runs on `io`. Every io_context involved must outlive the requests (the client
// itself may be destroyed before or after `io` stops). The sweep timer is armed only while idle
// connections exist, so it holds io_context::run() for about idle_timeout at most. Destroying
// the client closes the idle connections and ends the requests waiting for a connection with
// operation_aborted. Throws boost::system::system_error if `config.ca_file` cannot be loaded.
std::unique_ptr<http_client> make_beast_http_client(executor io, http_client_config config);

}  // namespace gatherd::core::fetch
