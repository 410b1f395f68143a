#include "detail/parser.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

namespace fapws::detail {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept
{
    return boost::beast::iequals(a, b);
}

std::string_view sv(boost::beast::string_view s) noexcept { return {s.data(), s.size()}; }

// RFC 9110 section 5.6.2: tchar.
bool is_tchar(unsigned char c) noexcept
{
    if (c >= 0x80 || c <= 0x20 || c == 0x7f)
        return false;
    static constexpr std::string_view delimiters = "\"(),/:;<=>?@[\\]{}";
    return delimiters.find(static_cast<char>(c)) == std::string_view::npos;
}

bool is_token(std::string_view s) noexcept
{
    if (s.empty())
        return false;
    for (unsigned char c : s)
        if (!is_tchar(c))
            return false;
    return true;
}

std::string_view trim_ows(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

bool is_hex(char c) noexcept
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 section 3.2.2 and 3.2.3: host [ ":" port ], where host is an
// IP-literal in brackets or a reg-name / IPv4address (unreserved, sub-delims,
// pct-encoded). Empty is allowed: RFC 9112 section 3.2 has a client send an
// empty Host when the target has no authority.
bool valid_host(std::string_view v) noexcept
{
    std::size_t i = 0;
    if (!v.empty() && v.front() == '[') {
        auto close = v.find(']');
        if (close == std::string_view::npos || close < 3)
            return false;
        for (char c : v.substr(1, close - 1))
            if (!(is_hex(c) || c == ':' || c == '.' || c == 'v' || c == 'V'))
                return false;
        i = close + 1;
    } else {
        static constexpr std::string_view extra = "-._~!$&'()*+,;=";
        for (; i < v.size() && v[i] != ':'; ++i) {
            char c = v[i];
            if (c == '%') {
                if (i + 2 >= v.size() || !is_hex(v[i + 1]) || !is_hex(v[i + 2]))
                    return false;
                i += 2;
                continue;
            }
            bool alnum = is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            if (!alnum && extra.find(c) == std::string_view::npos)
                return false;
        }
    }
    if (i == v.size())
        return true;
    if (v[i] != ':')
        return false;
    for (char c : v.substr(i + 1))
        if (!is_digit(c))
            return false;
    return true;
}

constexpr std::string_view root_path = "/";
constexpr std::string_view host_name = "Host";

}  // namespace

void request_parser::on_request_impl(http::verb, boost::beast::string_view method,
                                     boost::beast::string_view target, int version,
                                     beast_error& ec)
{
    // Beast only reads one digit each side of the dot: HTTP/2.0 is 20.
    if (version != 10 && version != 11)
        return refuse(verdict::bad_version, ec);
    // "GET " + target + " HTTP/1.1\r\n"
    if (method.size() + target.size() + 11 > line_limit_)
        return refuse(verdict::uri_too_long, ec);
    if (target.empty())
        return refuse(verdict::bad_request, ec);
    // A tunnel is not something this server makes (RFC 9110 section 9.3.6).
    if (method == "CONNECT")
        return refuse(verdict::not_implemented, ec);
    if (!inside_input(sv(method)) || !inside_input(sv(target)))
        return refuse(verdict::bad_request, ec);
    head_begin_ = method.data();
    request& r = *req_;
    r.method_ = sv(method);
    r.target_ = sv(target);
    r.version_ = version;
    r.fields_.clear();
    std::string_view t = r.target_;
    if (t == "*") {
        // asterisk-form is for OPTIONS only (RFC 9112 section 3.2.4).
        if (method != "OPTIONS")
            return refuse(verdict::bad_request, ec);
    } else if (t.front() != '/') {
        // absolute-form (RFC 9112 section 3.2.2): an http or https URI whose
        // authority replaces Host. authority-form is CONNECT's, refused above.
        auto colon = t.find(':');
        std::string_view scheme = t.substr(0, colon == std::string_view::npos ? 0 : colon);
        if (!(iequals(scheme, "http") || iequals(scheme, "https")) || t.substr(colon + 1, 2) != "//")
            return refuse(verdict::bad_request, ec);
        t.remove_prefix(colon + 3);
        std::string_view authority = t.substr(0, t.find_first_of("/?#"));
        // userinfo is deprecated and a classic confusion (RFC 9110 section 4.2.4).
        if (authority.empty() || authority.find('@') != std::string_view::npos || !valid_host(authority))
            return refuse(verdict::bad_request, ec);
        authority_ = authority;
        t.remove_prefix(authority.size());
    }
    auto q = t.find('?');
    if (q == std::string_view::npos) {
        r.path_ = t;
        r.query_ = {};
    } else {
        r.path_ = t.substr(0, q);
        r.query_ = t.substr(q + 1);
    }
    // A fragment is never sent by a conforming client; drop it if one is.
    if (auto h = r.path_.find('#'); h != std::string_view::npos)
        r.path_ = r.path_.substr(0, h);
    if (r.path_.empty())
        r.path_ = root_path;  // "http://a" and "http://a?x" mean "/" (RFC 9112 section 3.2.2)
    r.head_ = method == "HEAD";
    ec = {};
}

void request_parser::on_field_impl(http::field f, boost::beast::string_view name,
                                   boost::beast::string_view value, beast_error& ec)
{
    if (name.size() + value.size() + 4 > line_limit_)
        return refuse(verdict::line_too_long, ec);
    // Beast joins an obs-fold value in a buffer of its own that is gone once
    // it returns. RFC 9112 section 5.2 lets a server refuse folding: 400.
    if (!inside_input(sv(name)) || !inside_input(sv(value)))
        return refuse(verdict::bad_request, ec);
    if (is_header_done())
        return on_trailer_field(sv(name), sv(value), ec);
    req_->fields_.push_back({sv(name), sv(value)});
    switch (f) {
    case http::field::connection:
    case http::field::proxy_connection:
        for (auto tok : http::token_list{value}) {
            if (iequals(sv(tok), "close"))
                conn_close_ = true;
            else if (iequals(sv(tok), "keep-alive"))
                conn_keep_alive_ = true;
        }
        break;
    case http::field::expect:
        if (iequals(sv(value), "100-continue"))
            expect_continue_ = true;
        break;
    case http::field::host:
        // RFC 9112 section 3.2: exactly one Host, and a valid one.
        if (saw_host_ || !valid_host(sv(value)))
            return refuse(verdict::bad_request, ec);
        saw_host_ = true;
        break;
    case http::field::transfer_encoding:
        return on_transfer_encoding(sv(value), ec);
    case http::field::content_length:
        if (saw_te_)
            return refuse(verdict::bad_request, ec);
        saw_cl_ = true;
        break;
    default:
        break;
    }
    ec = {};
}

// Transfer-Encoding as a strict list of codings (RFC 9112 section 6.1): only
// chunked is decoded, applied once, last. Beast frames a message as chunked
// only when the first "chunked" is the last element, so "chunked, chunked"
// would reach the app unframed; any doubt here is a 400.
void request_parser::on_transfer_encoding(std::string_view value, beast_error& ec)
{
    if (saw_cl_)
        return refuse(verdict::bad_request, ec);
    saw_te_ = true;
    while (!value.empty()) {
        auto comma = value.find(',');
        std::string_view item = trim_ows(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        if (item.empty())
            continue;  // RFC 9110 section 5.6.1: empty list elements are allowed
        if (te_chunked_)
            return refuse(verdict::bad_request, ec);  // something after chunked
        auto semi = item.find(';');
        std::string_view coding = trim_ows(item.substr(0, semi));
        if (!is_token(coding))
            return refuse(verdict::bad_request, ec);
        if (iequals(coding, "chunked")) {
            if (semi != std::string_view::npos)
                return refuse(verdict::bad_request, ec);  // chunked takes no parameters
            te_chunked_ = true;
        } else {
            te_unsupported_ = true;
        }
    }
    ec = {};
}

// Trailer fields are never merged into the head's (a proxy vetted the head,
// not what follows the body); they count against the header budget.
void request_parser::on_trailer_field(std::string_view name, std::string_view value, beast_error& ec)
{
    std::size_t n = name.size() + value.size() + 4;
    if (n > trailer_left_)
        return refuse(verdict::too_large, ec);
    trailer_left_ -= n;
    ec = {};
}

void request_parser::on_header_impl(beast_error& ec)
{
    request& r = *req_;
    if (saw_te_) {
        // RFC 9112 section 6.1: a 1.0 message with Transfer-Encoding is faulty.
        if (r.version_ == 10 || !te_chunked_)
            return refuse(verdict::bad_request, ec);
        if (te_unsupported_)
            return refuse(verdict::not_implemented, ec);
        // One source of truth for framing: what Beast will frame by.
        if (!chunked())
            return refuse(verdict::bad_request, ec);
    }
    // RFC 9112 section 3.2: a 1.1 request without Host is 400.
    if (r.version_ == 11 && !saw_host_)
        return refuse(verdict::bad_request, ec);
    if (!authority_.empty()) {
        // RFC 9112 section 3.2.2: the target's authority wins over Host.
        bool replaced = false;
        for (auto& fld : r.fields_) {
            if (iequals(fld.name, host_name)) {
                fld.value = authority_;
                replaced = true;
            }
        }
        if (!replaced)
            r.fields_.push_back({host_name, authority_});
    }
    // Known here, before any body byte arrived (Beast's on_body_init waits
    // for one), so Expect: 100-continue can be answered.
    has_body_ = chunked() || (content_length() && *content_length() > 0);
    if (r.version_ == 11)
        r.keep_alive_ = !conn_close_;
    else
        r.keep_alive_ = conn_keep_alive_ && !conn_close_;
    ec = {};
}

void request_parser::on_body_init_impl(const boost::optional<std::uint64_t>& length,
                                       beast_error& ec)
{
    has_body_ = has_body_ || chunked() || (length && *length > 0);
    ec = {};
}

std::size_t request_parser::on_body_impl(boost::beast::string_view body, beast_error& ec)
{
    body_bytes_ += body.size();
    sink_.append(sink_.ctx, sv(body), ec);
    return ec ? 0 : body.size();
}

bool request_parser::owns_views(const request& r, const char* begin, const char* end) noexcept
{
    auto in = [&](std::string_view v) {
        return v.empty() || v.data() == root_path.data() || v.data() == host_name.data() ||
               (v.data() >= begin && v.data() + v.size() <= end);
    };
    if (!in(r.method_) || !in(r.target_) || !in(r.path_) || !in(r.query_))
        return false;
    for (const auto& f : r.fields_)
        if (!in(f.name) || !in(f.value))
            return false;
    return true;
}

}  // namespace fapws::detail
