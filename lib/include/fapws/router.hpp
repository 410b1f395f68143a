// Prefix routing: the longest mount prefix that matches whole path segments
// wins ("/hello" matches "/hello" and "/hello/x", not "/helloworld").
#pragma once

#include <fapws/http.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fapws {

// Per-route settings, checked when a request's head is complete.
struct route_options {
    // The methods the route answers ("GET", "HEAD", ...); empty: any. A
    // request with a body and another method gets 405 with Allow before a
    // byte of its body is read (no 100 Continue), and the connection closes.
    std::vector<std::string> methods;
    // Called once the head is complete, before 100 Continue and before any
    // body byte is read (authentication, quotas, per-route size checks).
    // Returning true means it answered in `res`: the handler is not called,
    // and a body that was announced is not read (the connection then
    // closes). It may throw: a 500. Loop thread.
    std::function<bool(const request&, response&)> on_head;
    // For an asynchronous handler: the time it has to answer, from the
    // complete request to send() or start_stream(). Then the client gets
    // 504, the handler's cancellation slot fires, and a later send()
    // returns async_error::timed_out. Zero: no limit.
    std::chrono::milliseconds timeout{0};
    // For an asynchronous handler: call it once the head is complete and let
    // it read the body as it arrives (responder::read_body), never spooled.
    // A synchronous handler always gets the whole body.
    bool stream_body = false;
    // The largest body this route takes, in bytes (0: config::body_limit,
    // which also caps this). A longer declared body gets 413 before a byte
    // of it is read; a chunked one, once it passes the limit.
    std::uint64_t body_limit = 0;

    bool allows(std::string_view method) const noexcept;
    std::string allow_header() const;  // "GET, HEAD"
};

class router {
public:
    // Mounts h on prefix ("/" or "" is the catch-all). A trailing '/' is
    // ignored ("/app/" == "/app"). Re-mounting a prefix replaces it.
    void mount(std::string prefix, handler h, route_options opt = {});
    // An asynchronous handler (responder.hpp).
    void mount(std::string prefix, async_handler h, route_options opt = {});
    // Called when nothing matches; without it the answer is 404.
    void fallback(handler h);

    struct match {
        const handler* target = nullptr;              // a synchronous handler, or
        const async_handler* async_target = nullptr;  // an asynchronous one
        std::size_t prefix_len = 0;                   // becomes SCRIPT_NAME
        const route_options* options = nullptr;
        bool found() const noexcept { return target || async_target; }
    };
    // Finds the handler for a raw (still percent-encoded) path.
    match find(std::string_view path) const noexcept;
    bool empty() const noexcept { return routes_.empty() && !fallback_; }

private:
    struct route {
        std::string prefix;
        handler h;
        async_handler ah;
        route_options opt;
    };
    void put(std::string prefix, handler h, async_handler ah, route_options opt);
    // Longest prefix first. Each route is its own node: a request whose
    // body is still arriving keeps pointers to its handler and options while
    // another route may be mounted (re-mounting replaces in place).
    std::vector<std::unique_ptr<route>> routes_;
    handler fallback_;
    route_options fallback_opt_;
};

}  // namespace fapws
