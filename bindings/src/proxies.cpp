#include "proxies.hpp"

#include <boost/beast/core/string.hpp>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>
#include <stdexcept>

namespace fapws::py {

namespace {

using boost::beast::iequals;

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// Parses an address; family 0 when it is not one.
int parse_ip(std::string_view text, std::array<unsigned char, 16>& out) noexcept
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof buf)
        return 0;
    text.copy(buf, text.size());
    buf[text.size()] = '\0';
    if (::inet_pton(AF_INET, buf, out.data()) == 1)
        return AF_INET;
    if (::inet_pton(AF_INET6, buf, out.data()) == 1)
        return AF_INET6;
    return 0;
}

// "192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:80", "2001:db8::1" -> the address.
std::string_view strip_port(std::string_view v) noexcept
{
    if (!v.empty() && v.front() == '[') {
        auto end = v.find(']');
        return end == std::string_view::npos ? std::string_view() : v.substr(1, end - 1);
    }
    if (v.find(':') != v.rfind(':'))
        return v;  // a bare IPv6 address
    return v.substr(0, v.find(':'));
}

std::string_view unquote(std::string_view v) noexcept
{
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"')
        return v.substr(1, v.size() - 2);
    return v;
}

// The elements of a comma-separated list, right to left.
template <typename F>
void each_from_right(std::string_view list, F f)
{
    while (!list.empty()) {
        auto comma = list.rfind(',');
        std::string_view item = comma == std::string_view::npos ? list : list.substr(comma + 1);
        if (!f(trim(item)))
            return;
        if (comma == std::string_view::npos)
            return;
        list = list.substr(0, comma);
    }
}

std::string_view scheme_of(std::string_view v) noexcept
{
    v = trim(unquote(trim(v)));
    if (iequals(v, "https"))
        return "https";
    if (iequals(v, "http"))
        return "http";
    return {};
}

}  // namespace

trusted_proxies::trusted_proxies(const std::vector<std::string>& specs)
{
    for (const std::string& raw : specs) {
        std::string_view spec = trim(raw);
        if (spec.empty())
            continue;
        if (spec == "*") {
            any_ = true;
            continue;
        }
        if (spec == "unix") {
            unix_ = true;
            continue;
        }
        net n{};
        std::string_view addr = spec;
        int prefix = -1;
        if (auto slash = spec.find('/'); slash != std::string_view::npos) {
            addr = spec.substr(0, slash);
            std::string_view bits = spec.substr(slash + 1);
            auto r = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
            if (r.ec != std::errc() || r.ptr != bits.data() + bits.size())
                prefix = 999;
        }
        n.family = parse_ip(addr, n.bytes);
        const int width = n.family == AF_INET ? 32 : 128;
        if (n.family == 0 || prefix > width || prefix == 999 || (prefix < 0 && spec.find('/') != std::string_view::npos))
            throw std::invalid_argument("invalid --forwarded-allow-ips entry '" + std::string(spec) +
                                        "' (an address, a CIDR range such as 10.0.0.0/8, '*' or 'unix')");
        n.prefix = prefix < 0 ? width : prefix;
        nets_.push_back(n);
    }
}

bool trusted_proxies::trusts(std::string_view addr) const noexcept
{
    if (any_)
        return true;
    if (addr.empty())
        return unix_;
    std::array<unsigned char, 16> b{};
    int family = parse_ip(addr, b);
    if (family == 0)
        return false;
    for (const net& n : nets_) {
        if (n.family != family)
            continue;
        int full = n.prefix / 8, rest = n.prefix % 8;
        bool match = std::equal(b.begin(), b.begin() + full, n.bytes.begin());
        if (match && rest) {
            unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
            match = (b[full] & mask) == (n.bytes[full] & mask);
        }
        if (match)
            return true;
    }
    return false;
}

bool is_forwarding(std::string_view name) noexcept
{
    return (name.size() == 9 && iequals(name, "forwarded")) ||
           (name.size() > 12 && iequals(name.substr(0, 12), "x-forwarded-"));
}

forwarded_info forwarded_by(const request& req, const trusted_proxies& proxies)
{
    forwarded_info out;
    std::string_view fwd = req.header("forwarded");
    if (!fwd.empty()) {
        // RFC 7239: elements "for=...;proto=...", the nearest proxy's last.
        each_from_right(fwd, [&](std::string_view element) {
            std::string_view for_value, proto_value;
            while (!element.empty()) {
                auto semi = element.find(';');
                std::string_view pair = trim(element.substr(0, semi));
                auto eq = pair.find('=');
                if (eq != std::string_view::npos) {
                    std::string_view key = trim(pair.substr(0, eq)), value = trim(pair.substr(eq + 1));
                    if (iequals(key, "for"))
                        for_value = strip_port(unquote(value));
                    else if (iequals(key, "proto"))
                        proto_value = scheme_of(value);
                }
                if (semi == std::string_view::npos)
                    break;
                element = element.substr(semi + 1);
            }
            if (out.proto.empty() && !proto_value.empty())
                out.proto = proto_value;
            std::array<unsigned char, 16> b{};
            if (for_value.empty() || parse_ip(for_value, b) == 0)
                return false;  // "unknown" or an obfuscated name: stop here
            out.client = std::string(for_value);
            return proxies.trusts(for_value);  // a proxy: look further left
        });
        return out;
    }
    std::string_view xff = req.header("x-forwarded-for");
    each_from_right(xff, [&](std::string_view item) {
        std::string_view addr = strip_port(item);
        std::array<unsigned char, 16> b{};
        if (parse_ip(addr, b) == 0)
            return false;
        out.client = std::string(addr);
        return proxies.trusts(addr);
    });
    std::string_view proto = req.header("x-forwarded-proto");
    each_from_right(proto, [&](std::string_view item) {
        out.proto = std::string(scheme_of(item));  // the nearest proxy's
        return false;
    });
    return out;
}

}  // namespace fapws::py
