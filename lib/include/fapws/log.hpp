// Error log (stderr, levelled) and access log (Common or Combined Log Format,
// buffered and flushed on a timer, never blocking the loop once per line).
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

namespace fapws {

enum class log_level { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

// Process-wide error log. Thread-safe enough for the single loop thread plus
// rare writes from others: each line is one write(2).
log_level get_log_level() noexcept;
void set_log_level(log_level) noexcept;
bool parse_log_level(std::string_view name, log_level& out) noexcept;
void log(log_level, std::string_view message) noexcept;
// Where lines at or above the level go instead of stderr (an embedder's
// logger; the Python bindings' --log-config). The sink gets the bare
// message; it must not throw (what it throws is dropped). Empty: stderr.
// Set it before the server runs; it is called from the thread that logs.
void set_log_sink(std::function<void(log_level, std::string_view)> sink);

inline void log_error(std::string_view m) noexcept { log(log_level::error, m); }
inline void log_warning(std::string_view m) noexcept { log(log_level::warning, m); }
inline void log_info(std::string_view m) noexcept { log(log_level::info, m); }
inline void log_debug(std::string_view m) noexcept { log(log_level::debug, m); }

enum class access_log_format { common, combined };

}  // namespace fapws
