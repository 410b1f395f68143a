#include "detail/clock.hpp"

namespace fapws::detail {

namespace {

constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::time_t coarse_now() noexcept
{
    timespec ts;
#if defined(CLOCK_REALTIME_COARSE)
    ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);  // Linux: no system call, tick resolution
#elif defined(CLOCK_REALTIME_FAST)
    ::clock_gettime(CLOCK_REALTIME_FAST, &ts);  // FreeBSD's name for the same
#else
    ::clock_gettime(CLOCK_REALTIME, &ts);
#endif
    return ts.tv_sec;
}

}  // namespace

std::string http_date(std::time_t t)
{
    std::tm tm;
    ::gmtime_r(&t, &tm);
    char buf[40];
    int n = std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
                          tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                          tm.tm_sec);
    return std::string(buf, static_cast<std::size_t>(n));
}

std::string_view date_line() noexcept
{
    // One loop thread formats; other threads never call this.
    static std::time_t cached = 0;
    static std::string line;
    std::time_t now = coarse_now();
    if (now != cached) {
        cached = now;
        line = "Date: " + http_date(now) + "\r\n";
    }
    return line;
}

std::string_view clf_time() noexcept
{
    static std::time_t cached = 0;
    static char buf[40];
    static std::size_t len = 0;
    std::time_t now = coarse_now();
    if (now != cached) {
        cached = now;
        std::tm tm;
        ::localtime_r(&now, &tm);
        len = std::strftime(buf, sizeof buf, "[%d/%b/%Y:%H:%M:%S %z]", &tm);
    }
    return {buf, len};
}

}  // namespace fapws::detail
