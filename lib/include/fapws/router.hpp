// Prefix routing: the longest mount prefix that matches whole path segments
// wins ("/hello" matches "/hello" and "/hello/x", not "/helloworld").
#pragma once

#include <fapws/http.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace fapws {

class router {
public:
    // Mounts h on prefix ("/" or "" is the catch-all). A trailing '/' is
    // ignored ("/app/" == "/app"). Re-mounting a prefix replaces it.
    void mount(std::string prefix, handler h);
    // Called when nothing matches; without it the answer is 404.
    void fallback(handler h);

    struct match {
        const handler* target = nullptr;
        std::size_t prefix_len = 0;  // becomes SCRIPT_NAME
    };
    // Finds the handler for a raw (still percent-encoded) path.
    match find(std::string_view path) const noexcept;
    bool empty() const noexcept { return routes_.empty() && !fallback_; }

private:
    struct route {
        std::string prefix;
        handler h;
    };
    std::vector<route> routes_;  // longest prefix first
    handler fallback_;
};

}  // namespace fapws
