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
    // origin-form or asterisk-form; absolute-form is accepted (RFC 9112
    // section 3.2.2) and its path used; authority-form is for CONNECT only.
    if (target.empty())
        return refuse(verdict::bad_request, ec);
    head_begin_ = method.data();
    request& r = *req_;
    r.method_ = sv(method);
    r.target_ = sv(target);
    r.version_ = version;
    r.fields_.clear();
    std::string_view t = r.target_;
    if (t.front() != '/' && t != "*") {
        // absolute-form: scheme "://" authority path
        auto scheme_end = t.find("://");
        if (scheme_end == std::string_view::npos) {
            if (method != "CONNECT")
                return refuse(verdict::bad_request, ec);
        } else {
            auto path_start = t.find('/', scheme_end + 3);
            t = path_start == std::string_view::npos ? std::string_view("/") : t.substr(path_start);
        }
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
    r.head_ = method == "HEAD";
    ec = {};
}

void request_parser::on_field_impl(http::field f, boost::beast::string_view name,
                                   boost::beast::string_view value, beast_error& ec)
{
    if (name.size() + value.size() + 4 > line_limit_)
        return refuse(verdict::line_too_long, ec);
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
    case http::field::transfer_encoding: {
        // Beast rejects CL+TE in one order only and ignores a TE without
        // chunked; a request whose last coding is not chunked has no
        // determinable length (RFC 9112 section 6.3): 400, always.
        if (saw_cl_)
            return refuse(verdict::bad_request, ec);
        saw_te_ = true;
        te_chunked_last_ = false;
        for (auto tok : http::token_list{value})
            te_chunked_last_ = iequals(sv(tok), "chunked");
        if (!te_chunked_last_)
            return refuse(verdict::bad_request, ec);
        break;
    }
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

void request_parser::on_header_impl(beast_error& ec)
{
    request& r = *req_;
    // RFC 9112 section 6.1: a 1.0 message with Transfer-Encoding is faulty.
    if (saw_te_ && r.version_ == 10)
        return refuse(verdict::bad_request, ec);
    // RFC 9112 section 3.2: a 1.1 request without Host is 400.
    if (r.version_ == 11 && !r.has_header("host"))
        return refuse(verdict::bad_request, ec);
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

}  // namespace fapws::detail
