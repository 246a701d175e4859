// The SSRF guard: outbound requests may only reach public addresses. The check is made on the
// RESOLVED addresses (and on IP literals), so a public name that resolves to 127.0.0.1 or to a
// cloud metadata address is refused as well.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gatherd::core::fetch {

struct egress_policy {
  bool allow_private = false;  // --allow-private-fetch: tests and local demos
  std::vector<std::string>
      allow_hosts;  // exact host names (case-insensitive) that bypass the guard
};

// False for loopback, private, shared (CGNAT), link-local, multicast, documentation, benchmark
// and reserved ranges; IPv6 addresses that embed an IPv4 address (mapped, compatible, NAT64)
// are judged by that address.
bool is_public_address(const boost::asio::ip::address& address);

struct egress_decision {
  std::vector<boost::asio::ip::tcp::endpoint> allowed;  // empty: the request must fail
  std::optional<boost::asio::ip::address> refused;      // the first refused address, if any
};

// Filters the resolved endpoints of `host` through `policy`.
egress_decision check_egress(const egress_policy& policy, std::string_view host,
                             std::span<const boost::asio::ip::tcp::endpoint> endpoints);

// "egress to <host> refused: ...", for fetch_denied errors; never the address it resolved to.
std::string egress_denied_message(std::string_view host);

}  // namespace gatherd::core::fetch
