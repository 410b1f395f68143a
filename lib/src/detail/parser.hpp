// The request parser: Beast's basic_parser with callbacks that record views
// into the input instead of building an http::fields (no allocation per
// header), plus the checks Beast leaves to us: per-line limits, HTTP version,
// Transfer-Encoding framing (RFC 9112 sections 6.1 and 6.3), Host (3.2),
// request-target forms (3.2.1-3.2.4), trailers kept out of the head (7.1.2).
//
// Ownership: every view recorded into the request points into the bytes
// handed to put() (see input()); a field Beast rewrote into a buffer of its
// own (an obs-fold value) is refused, never recorded.
#pragma once

#include <fapws/http.hpp>

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <cstdint>
#include <string>

namespace fapws::detail {

namespace http = boost::beast::http;
using beast_error = boost::beast::error_code;

// Where the body bytes go: a function and its context, so the connection
// needs no vtable (8 bytes per idle connection).
struct body_sink {
    void (*append)(void* ctx, std::string_view bytes, beast_error& ec) = nullptr;
    void* ctx = nullptr;
};

class request_parser final : public http::basic_parser<true> {
public:
    // Why a request was refused, decided while parsing.
    enum class verdict : unsigned char {
        ok,
        bad_request,       // 400
        line_too_long,     // 431 (header line)
        uri_too_long,      // 414 (request line)
        bad_version,       // 505
        too_large,         // 431 (trailer section past the head's budget)
        not_implemented,   // 501 (CONNECT, a transfer coding we do not decode)
    };

    request_parser(request& req, body_sink sink, std::size_t line_limit) noexcept
        : req_(&req), sink_(sink), line_limit_(line_limit)
    {
    }
    request_parser(request_parser&&) = default;

    // After a move, the views are rebased by the connection.
    void retarget(request& req) noexcept { req_ = &req; }
    // The bytes the next put() parses: a field outside them was copied by
    // Beast (obs-fold) and is refused.
    void input(const char* begin, const char* end) noexcept
    {
        in_begin_ = begin;
        in_end_ = end;
    }
    // Bytes the trailer section may take: header_limit less the head's size.
    void trailer_budget(std::size_t n) noexcept { trailer_left_ = n; }
    std::size_t trailer_left() const noexcept { return trailer_left_; }

    verdict why() const noexcept { return verdict_; }
    bool expect_continue() const noexcept { return expect_continue_; }
    bool connection_close() const noexcept { return conn_close_; }
    bool connection_keep_alive() const noexcept { return conn_keep_alive_; }
    bool has_body() const noexcept { return has_body_; }
    std::uint64_t body_bytes() const noexcept { return body_bytes_; }
    // First byte offset of the head in the buffer handed to put(), and its end.
    const char* head_begin() const noexcept { return head_begin_; }
    const char* input_begin() const noexcept { return in_begin_; }
    const char* input_end() const noexcept { return in_end_; }
    // Whether every view of r lies in [begin, end) (or is one of the
    // parser's static literals): the check behind "a request never keeps a
    // view into memory it does not own", asserted in debug builds.
    static bool owns_views(const request& r, const char* begin, const char* end) noexcept;

private:
    void on_request_impl(http::verb, boost::beast::string_view method,
                         boost::beast::string_view target, int version,
                         beast_error& ec) override;
    void on_response_impl(int, boost::beast::string_view, int, beast_error& ec) override
    {
        ec = http::error::bad_method;
    }
    void on_field_impl(http::field f, boost::beast::string_view name,
                       boost::beast::string_view value, beast_error& ec) override;
    void on_header_impl(beast_error& ec) override;
    void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                           beast_error& ec) override;
    std::size_t on_body_impl(boost::beast::string_view body, beast_error& ec) override;
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view extensions,
                              beast_error& ec) override
    {
        // A chunk line is bounded like a header line (issue #9).
        if (extensions.size() + 24 > line_limit_)
            return refuse(verdict::bad_request, ec);
        ec = {};
    }
    void on_trailer_field(std::string_view name, std::string_view value, beast_error& ec);
    void on_transfer_encoding(std::string_view value, beast_error& ec);
    bool inside_input(std::string_view v) const noexcept
    {
        return v.data() >= in_begin_ && v.data() + v.size() <= in_end_;
    }
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                   beast_error& ec) override
    {
        return on_body_impl(body, ec);
    }
    void on_finish_impl(beast_error& ec) override { ec = {}; }

    void refuse(verdict v, beast_error& ec) noexcept
    {
        verdict_ = v;
        ec = http::error::bad_value;
    }

    request* req_;
    body_sink sink_;
    std::size_t line_limit_;
    const char* head_begin_ = nullptr;
    const char* in_begin_ = nullptr;
    const char* in_end_ = nullptr;
    std::string_view authority_;  // of an absolute-form target: wins over Host
    std::size_t trailer_left_ = 0;
    std::uint64_t body_bytes_ = 0;
    verdict verdict_ = verdict::ok;
    bool expect_continue_ = false;
    bool conn_close_ = false;
    bool conn_keep_alive_ = false;
    bool has_body_ = false;
    bool saw_te_ = false;
    bool saw_cl_ = false;
    bool saw_host_ = false;
    bool te_chunked_ = false;      // chunked seen (it must be the last coding)
    bool te_unsupported_ = false;  // another coding: 501
};

}  // namespace fapws::detail
