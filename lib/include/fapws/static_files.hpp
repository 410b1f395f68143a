// Serves one directory tree: sendfile(2), conditional and range requests,
// precompressed variants, and an open-file cache so a hot file costs no
// open() or stat() per request.
#pragma once

#include <fapws/http.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace fapws {

struct static_options {
    std::optional<long> max_age;          // Cache-Control: max-age=N
    bool index = true;                    // serve DIR/index.html for DIR/
    bool listing = false;                 // HTML listing when there is no index
    bool follow_outside_symlinks = false; // allow symlinks that leave the root
    bool precompressed = true;            // FILE.br / FILE.gz when accepted
    std::size_t cache_entries = 4096;     // open files kept
    std::size_t cache_small_file = 16 * 1024;  // files up to this are kept in memory
    std::chrono::milliseconds cache_ttl{1000}; // revalidate (stat) after this
};

namespace detail {
class static_cache;
}

// A handler (see fapws::handler). Copies share the cache. Loop thread only.
class static_files {
public:
    // Throws setup_error when root is not a readable directory.
    static_files(const std::string& root, static_options opt = {});
    void operator()(const request& req, response& res) const;

private:
    std::shared_ptr<detail::static_cache> cache_;
};

// Percent-decodes once and normalises a request path to "a/b/c" (no
// leading slash). Returns false for paths that must not be served: NUL,
// backslash, a ".." segment. Exposed for tests.
bool normalise_path(std::string_view raw, std::string& out);

}  // namespace fapws
