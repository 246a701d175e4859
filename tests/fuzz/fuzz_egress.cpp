// The egress guard's address checks (libcore/fetch/egress_guard), without DNS: the input is a
// flags byte, then addresses (4 bytes for IPv4 or 16 for IPv6, as the flags say), then the
// host name they "resolved" from.
//
// Asserted: loopback, unspecified, multicast, link-local and private addresses are never
// public, in either family, nor IPv6 addresses that embed one (mapped, NAT64, compatible); the
// decision lets through exactly the public endpoints (or all of them for trusted hosts and with
// --allow-private-fetch) and names the first refused one; the refusal message never says where
// the name pointed (issue 14, defect 8).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "libcore/fetch/egress_guard.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
namespace fetch = gatherd::core::fetch;
namespace ip = boost::asio::ip;

namespace {

bool obviously_private_v4(const ip::address_v4& a) {
  const auto b = a.to_bytes();
  return a.is_loopback() || a.is_unspecified() || a.is_multicast() || b[0] == 10 ||
         (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
         (b[0] == 169 && b[1] == 254) || (b[0] == 100 && (b[1] & 0xc0) == 64) || b[0] == 0;
}

bool obviously_private_v6(const ip::address_v6& a) {
  const auto b = a.to_bytes();
  return a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_link_local() ||
         (b[0] & 0xfe) == 0xfc;
}

// The IPv4 address an IPv6 one carries in its low 32 bits, for the prefixes that mean it.
std::optional<ip::address_v4> embedded(const ip::address_v6& a) {
  const auto b = a.to_bytes();
  const bool zeros80 = std::all_of(b.begin(), b.begin() + 10, [](auto x) { return x == 0; });
  const bool mapped = zeros80 && b[10] == 0xff && b[11] == 0xff;
  const bool compatible = zeros80 && b[10] == 0 && b[11] == 0;
  const bool nat64 = b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
                     std::all_of(b.begin() + 4, b.begin() + 12, [](auto x) { return x == 0; });
  if (!mapped && !compatible && !nat64) return std::nullopt;
  return ip::address_v4({b[12], b[13], b[14], b[15]});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return -1;
  const std::uint8_t flags = data[0];
  std::size_t at = 1;
  std::vector<ip::tcp::endpoint> endpoints;
  for (int i = 0; i < 4; ++i) {
    const bool v6 = flags & (1u << i);
    const std::size_t n = v6 ? 16 : 4;
    if (size - at < n) break;
    ip::address address;
    if (v6) {
      ip::address_v6::bytes_type bytes;
      std::copy_n(data + at, n, bytes.begin());
      address = ip::address_v6(bytes);
    } else {
      address = ip::address_v4({data[at], data[at + 1], data[at + 2], data[at + 3]});
    }
    at += n;
    endpoints.emplace_back(address, 443);
  }
  const std::string host(reinterpret_cast<const char*>(data) + at, size - at);

  for (const auto& e : endpoints) {
    const ip::address a = e.address();
    const bool is_public = fetch::is_public_address(a);
    if (a.is_v4()) {
      if (obviously_private_v4(a.to_v4()))
        require(!is_public, "a private IPv4 is public", a.to_string());
      // The same address, IPv4-mapped, is judged the same.
      require(fetch::is_public_address(ip::make_address_v6(ip::v4_mapped, a.to_v4())) == is_public,
              "an IPv4-mapped address judged differently", a.to_string());
    } else {
      const auto v6 = a.to_v6();
      if (obviously_private_v6(v6)) require(!is_public, "a private IPv6 is public", a.to_string());
      if (const auto v4 = embedded(v6); v4 && !v6.is_loopback() && !v6.is_unspecified()) {
        require(fetch::is_public_address(*v4) == is_public,
                "an IPv6 address judged apart from the IPv4 it embeds", a.to_string());
      }
    }
  }

  const bool allow_private = flags & 0x10;
  const bool trusted = flags & 0x20;
  fetch::egress_policy policy{allow_private, {}};
  if (trusted && !host.empty()) policy.allow_hosts.push_back(host);
  const auto decision = fetch::check_egress(policy, host, endpoints);
  std::vector<ip::tcp::endpoint> expected;
  std::optional<ip::address> first_refused;
  for (const auto& e : endpoints) {
    if (allow_private || (trusted && !host.empty()) || fetch::is_public_address(e.address())) {
      expected.push_back(e);
    } else if (!first_refused) {
      first_refused = e.address();
    }
  }
  require(decision.allowed == expected, "the guard let through other endpoints");
  require(decision.refused == first_refused, "the guard named another refused address");

  const std::string message = fetch::egress_denied_message(host);
  for (const auto& e : endpoints) {
    const std::string address = e.address().to_string();
    if (host.find(address) == std::string::npos) {
      require(message.find(address) == std::string::npos, "the refusal says where a name points",
              message);
    }
  }
  return 0;
}
