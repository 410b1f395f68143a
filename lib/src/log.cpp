#include <fapws/log.hpp>

#include <boost/beast/core/string.hpp>

#include <atomic>
#include <ctime>
#include <string>

#include <unistd.h>

namespace fapws {

namespace {

std::atomic<log_level> level{log_level::info};
std::function<void(log_level, std::string_view)> sink_fn;

std::string_view name_of(log_level l) noexcept
{
    switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    default: return "off";
    }
}

}  // namespace

log_level get_log_level() noexcept
{
    return level.load(std::memory_order_relaxed);
}

void set_log_level(log_level l) noexcept
{
    level.store(l, std::memory_order_relaxed);
}

bool parse_log_level(std::string_view name, log_level& out) noexcept
{
    for (auto l : {log_level::debug, log_level::info, log_level::warning, log_level::error, log_level::off}) {
        if (boost::beast::iequals(name, name_of(l))) {
            out = l;
            return true;
        }
    }
    if (boost::beast::iequals(name, "warn")) {
        out = log_level::warning;
        return true;
    }
    return false;
}

void set_log_sink(std::function<void(log_level, std::string_view)> sink)
{
    sink_fn = std::move(sink);
}

void log(log_level l, std::string_view message) noexcept
{
    if (l < get_log_level() || l == log_level::off)
        return;
    try {
        if (sink_fn)
            return sink_fn(l, message);
        char stamp[32];
        std::time_t t = std::time(nullptr);
        std::tm tm;
        ::gmtime_r(&t, &tm);
        std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        std::string line;
        line.reserve(message.size() + 48);
        line.append(stamp, n);
        // The process: with --workers, which one failed.
        line.append(" [");
        line.append(std::to_string(::getpid()));
        line.append("] [");
        line.append(name_of(l));
        line.append("] ");
        line.append(message);
        line.push_back('\n');
        [[maybe_unused]] auto r = ::write(2, line.data(), line.size());
    } catch (...) {
    }
}

}  // namespace fapws
