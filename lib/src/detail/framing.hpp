// How a response is framed (RFC 9112 section 6): a pure decision, so the
// table test (test/cpp/parser_test.cpp) states every case once.
#pragma once

#include <cstdint>
#include <optional>

namespace fapws::detail {

// 1xx, 204 and 304 carry no body (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
constexpr bool body_allowed(int status) noexcept
{
    return status >= 200 && status != 204 && status != 304;
}

struct framing {
    bool body;     // the status allows a body (HEAD: the head says what GET would send)
    bool length;   // Content-Length: `declared`
    bool chunked;  // Transfer-Encoding: chunked
    bool keep;     // the connection stays open after this response
};

// status: the final status; version: 10 or 11; keep_asked: the request
// allows keep-alive (HTTP/1.1 without close, 1.0 with keep-alive); must_close:
// the response or the server wants the connection closed; declared: the body
// length when known before the head.
constexpr framing frame(int status, int version, bool keep_asked, bool must_close,
                        std::optional<std::uint64_t> declared) noexcept
{
    framing f{body_allowed(status), false, false, keep_asked && !must_close};
    if (!f.body)
        return f;
    if (declared)
        f.length = true;
    else if (version == 11)
        f.chunked = true;
    else
        f.keep = false;  // HTTP/1.0 without a length: the close ends the body
    return f;
}

}  // namespace fapws::detail
