// Prefix routing: the longest mount prefix that matches whole path segments
// wins ("/hello" matches "/hello" and "/hello/x", not "/helloworld").
#pragma once

#include <fapws/http.hpp>

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

    bool allows(std::string_view method) const noexcept;
    std::string allow_header() const;  // "GET, HEAD"
};

class router {
public:
    // Mounts h on prefix ("/" or "" is the catch-all). A trailing '/' is
    // ignored ("/app/" == "/app"). Re-mounting a prefix replaces it.
    void mount(std::string prefix, handler h, route_options opt = {});
    // Called when nothing matches; without it the answer is 404.
    void fallback(handler h);

    struct match {
        const handler* target = nullptr;
        std::size_t prefix_len = 0;  // becomes SCRIPT_NAME
        const route_options* options = nullptr;
    };
    // Finds the handler for a raw (still percent-encoded) path.
    match find(std::string_view path) const noexcept;
    bool empty() const noexcept { return routes_.empty() && !fallback_; }

private:
    struct route {
        std::string prefix;
        handler h;
        route_options opt;
    };
    // Longest prefix first. Each route is its own node: a request whose
    // body is still arriving keeps pointers to its handler and options while
    // another route may be mounted (re-mounting replaces in place).
    std::vector<std::unique_ptr<route>> routes_;
    handler fallback_;
    route_options fallback_opt_;
};

}  // namespace fapws
