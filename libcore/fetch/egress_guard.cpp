#include "libcore/fetch/egress_guard.hpp"

#include <algorithm>
#include <array>
#include <cstdint>

namespace gatherd::core::fetch {
namespace {

struct v4_range {
  std::uint32_t base;
  int prefix;
};

constexpr std::uint32_t v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return std::uint32_t{a} << 24 | std::uint32_t{b} << 16 | std::uint32_t{c} << 8 | d;
}

constexpr std::array<v4_range, 15> non_public_v4{{
    {v4(0, 0, 0, 0), 8},        // "this network"
    {v4(10, 0, 0, 0), 8},       // private
    {v4(100, 64, 0, 0), 10},    // shared address space (CGNAT)
    {v4(127, 0, 0, 0), 8},      // loopback
    {v4(169, 254, 0, 0), 16},   // link-local, incl. the 169.254.169.254 metadata service
    {v4(172, 16, 0, 0), 12},    // private
    {v4(192, 0, 0, 0), 24},     // IETF protocol assignments
    {v4(192, 0, 2, 0), 24},     // TEST-NET-1
    {v4(192, 168, 0, 0), 16},   // private
    {v4(198, 18, 0, 0), 15},    // benchmarking
    {v4(198, 51, 100, 0), 24},  // TEST-NET-2
    {v4(203, 0, 113, 0), 24},   // TEST-NET-3
    {v4(224, 0, 0, 0), 4},      // multicast
    {v4(240, 0, 0, 0), 4},      // reserved, incl. 255.255.255.255 broadcast
    {v4(255, 255, 255, 255), 32},
}};

bool in_range(std::uint32_t address, v4_range range) {
  const std::uint32_t mask = range.prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - range.prefix);
  return (address & mask) == (range.base & mask);
}

bool is_public_v4(const boost::asio::ip::address_v4& address) {
  const std::uint32_t value = address.to_uint();
  return std::none_of(non_public_v4.begin(), non_public_v4.end(),
                      [value](v4_range r) { return in_range(value, r); });
}

bool has_prefix(const boost::asio::ip::address_v6::bytes_type& bytes,
                std::initializer_list<std::uint8_t> prefix) {
  return std::equal(prefix.begin(), prefix.end(), bytes.begin());
}

boost::asio::ip::address_v4 embedded_v4(const boost::asio::ip::address_v6::bytes_type& bytes) {
  return boost::asio::ip::address_v4({bytes[12], bytes[13], bytes[14], bytes[15]});
}

bool is_public_v6(const boost::asio::ip::address_v6& address) {
  const auto bytes = address.to_bytes();
  if (address.is_unspecified() || address.is_loopback()) return false;
  if (bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80) return false;  // fe80::/10 link-local
  if ((bytes[0] & 0xfe) == 0xfc) return false;  // fc00::/7 unique local, incl. fd00:ec2::254
  if (bytes[0] == 0xff) return false;           // ff00::/8 multicast
  if (has_prefix(bytes, {0x20, 0x01, 0x0d, 0xb8})) return false;  // 2001:db8::/32 documentation
  // An address that carries an IPv4 address in its low 32 bits is judged by it: ::ffff:a.b.c.d
  // (mapped), 64:ff9b::a.b.c.d (NAT64) and ::a.b.c.d (the deprecated "compatible" form).
  if (has_prefix(bytes, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}) ||
      has_prefix(bytes, {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0}) ||
      has_prefix(bytes, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})) {
    return is_public_v4(embedded_v4(bytes));
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
    return lower(x) == lower(y);
  });
}

}  // namespace

bool is_public_address(const boost::asio::ip::address& address) {
  return address.is_v4() ? is_public_v4(address.to_v4()) : is_public_v6(address.to_v6());
}

egress_decision check_egress(const egress_policy& policy, std::string_view host,
                             std::span<const boost::asio::ip::tcp::endpoint> endpoints) {
  egress_decision decision;
  const bool trusted = policy.allow_private ||
                       std::any_of(policy.allow_hosts.begin(), policy.allow_hosts.end(),
                                   [host](const std::string& h) { return iequals(h, host); });
  for (const auto& endpoint : endpoints) {
    if (trusted || is_public_address(endpoint.address())) {
      decision.allowed.push_back(endpoint);
    } else if (!decision.refused) {
      decision.refused = endpoint.address();
    }
  }
  return decision;
}

std::string egress_denied_message(std::string_view host) {
  // Where the name points stays unsaid: echoing it would let a client map internal DNS.
  return "egress to " + std::string(host) + " refused: it is not a public destination";
}

}  // namespace gatherd::core::fetch
