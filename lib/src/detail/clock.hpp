// Cheap clocks for the hot path: the coarse monotonic clock for deadlines and
// a per-second cache of the HTTP Date header (RFC 9110 section 5.6.7).
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace fapws::detail {

// Milliseconds on CLOCK_MONOTONIC_COARSE: a vDSO read with ~4 ms resolution,
// plenty for timeouts counted in seconds.
inline std::int64_t now_ms() noexcept
{
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// "Sun, 06 Nov 1994 08:49:37 GMT" for t.
std::string http_date(std::time_t t);

// The current "Date: ...\r\n" line, reformatted once a second.
std::string_view date_line() noexcept;

// "[10/Oct/2000:13:55:36 +0000]" for the access log, cached per second.
std::string_view clf_time() noexcept;

}  // namespace fapws::detail
