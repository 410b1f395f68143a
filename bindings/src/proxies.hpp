// Trusted proxies: whose X-Forwarded-For / X-Forwarded-Proto / Forwarded
// (RFC 7239) headers may set REMOTE_ADDR and wsgi.url_scheme. Headers from
// any other peer never change the environ. No Python here.
#pragma once

#include <fapws/http.hpp>

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace fapws::py {

class trusted_proxies {
public:
    trusted_proxies() = default;
    // Addresses ("10.0.0.1", "::1"), CIDR ranges ("10.0.0.0/8",
    // "fd00::/8"), "*" (any peer) and "unix" (peers on a UNIX socket).
    // Throws std::invalid_argument naming a bad entry.
    explicit trusted_proxies(const std::vector<std::string>& specs);

    bool empty() const noexcept { return nets_.empty() && !any_ && !unix_; }
    // addr: the peer as text; empty for a UNIX socket peer.
    bool trusts(std::string_view addr) const noexcept;

private:
    struct net {
        int family;  // AF_INET or AF_INET6
        std::array<unsigned char, 16> bytes;
        int prefix;
    };
    std::vector<net> nets_;
    bool any_ = false;
    bool unix_ = false;
};

struct forwarded_info {
    std::string client;  // empty: keep the peer's address
    std::string proto;   // "http", "https" or empty
};

// The client and scheme a trusted peer reports. The client is the
// rightmost address that is not itself a trusted proxy (entries further
// left could be forged by the client). Forwarded wins over X-Forwarded-*.
forwarded_info forwarded_by(const request& req, const trusted_proxies& proxies);

// Whether a header name is a forwarding one (Forwarded, X-Forwarded-*): a
// cheap test the environ's pass over the header names makes.
bool is_forwarding(std::string_view name) noexcept;

}  // namespace fapws::py
