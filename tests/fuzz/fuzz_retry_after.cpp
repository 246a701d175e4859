// The upstream Retry-After parser (libcore/fetch/fetcher.hpp `retry_after`), which decides how
// long a fetch waits before its next attempt. Each input line is one response header,
// `name:value` (as the client received it, the value taken as is).
//
// Asserted: the delay is within [0, 1 day]; only the first Retry-After header counts, its name
// matched case-insensitively; delta-seconds are read exactly (capped at a day), and an
// IMF-fixdate or a number never makes the caller wait longer than the cap.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "libcore/fetch/fetcher.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
namespace fetch = gatherd::core::fetch;

namespace {

bool is_retry_after(std::string_view name) {
  constexpr std::string_view wanted = "retry-after";
  return std::equal(name.begin(), name.end(), wanted.begin(), wanted.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == b;
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  fetch::header_list headers;
  while (!input.empty() && headers.size() < 16) {
    const auto line = input.substr(0, input.find('\n'));
    input.remove_prefix(std::min(input.size(), line.size() + 1));
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  const auto delay = fetch::retry_after(headers);
  if (delay) {
    require(delay->count() >= 0 && delay->count() <= 86'400'000, "a delay out of [0, 1 day]",
            std::to_string(delay->count()));
  }
  const auto first = std::find_if(headers.begin(), headers.end(),
                                  [](const auto& h) { return is_retry_after(h.first); });
  if (first == headers.end()) {
    require(!delay, "a delay without a Retry-After header");
    return 0;
  }
  require(fetch::retry_after({*first}) == delay, "a later header changed the delay");
  const std::string& value = first->second;
  const bool all_digits = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
  if (all_digits) {
    std::uint64_t seconds = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    const std::int64_t expected =  // more digits than 64 bits hold: a day, as any long wait
        ec == std::errc{} ? static_cast<std::int64_t>(std::min<std::uint64_t>(seconds, 86400)) : 86400;
    require(delay && delay->count() == expected * 1000, "delta-seconds misread", value);
  }
  return 0;
}
