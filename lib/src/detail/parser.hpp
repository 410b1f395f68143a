// The request parser: Beast's basic_parser with callbacks that record views
// into the input instead of building an http::fields (no allocation per
// header), plus the checks Beast leaves to us: per-line limits, HTTP version,
// Transfer-Encoding framing (RFC 9112 section 6.3).
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
    };

    request_parser(request& req, body_sink sink, std::size_t line_limit) noexcept
        : req_(&req), sink_(sink), line_limit_(line_limit)
    {
    }
    request_parser(request_parser&&) = default;

    // After a move, the views are rebased by the connection.
    void retarget(request& req) noexcept { req_ = &req; }

    verdict why() const noexcept { return verdict_; }
    bool expect_continue() const noexcept { return expect_continue_; }
    bool connection_close() const noexcept { return conn_close_; }
    bool connection_keep_alive() const noexcept { return conn_keep_alive_; }
    bool has_body() const noexcept { return has_body_; }
    std::uint64_t body_bytes() const noexcept { return body_bytes_; }
    // First byte offset of the head in the buffer handed to put(), and its end.
    const char* head_begin() const noexcept { return head_begin_; }

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
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                              beast_error& ec) override
    {
        ec = {};
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
    std::uint64_t body_bytes_ = 0;
    verdict verdict_ = verdict::ok;
    bool expect_continue_ = false;
    bool conn_close_ = false;
    bool conn_keep_alive_ = false;
    bool has_body_ = false;
    bool saw_te_ = false;
    bool saw_cl_ = false;
    bool te_chunked_last_ = false;
};

}  // namespace fapws::detail
