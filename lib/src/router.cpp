#include <fapws/router.hpp>

#include <algorithm>

namespace fapws {

namespace {

std::string normalise(std::string prefix)
{
    while (!prefix.empty() && prefix.back() == '/')
        prefix.pop_back();
    if (!prefix.empty() && prefix.front() != '/')
        prefix.insert(prefix.begin(), '/');
    return prefix;
}

}  // namespace

void router::mount(std::string prefix, handler h)
{
    prefix = normalise(std::move(prefix));
    for (auto& r : routes_) {
        if (r.prefix == prefix) {
            r.h = std::move(h);
            return;
        }
    }
    routes_.push_back({std::move(prefix), std::move(h)});
    std::stable_sort(routes_.begin(), routes_.end(),
                     [](const route& a, const route& b) { return a.prefix.size() > b.prefix.size(); });
}

void router::fallback(handler h)
{
    fallback_ = std::move(h);
}

router::match router::find(std::string_view path) const noexcept
{
    for (const auto& r : routes_) {
        const std::string& p = r.prefix;
        if (path.size() < p.size() || path.compare(0, p.size(), p) != 0)
            continue;
        // Whole segments only: "/hello" takes "/hello" and "/hello/x".
        if (path.size() == p.size() || path[p.size()] == '/' || p.empty())
            return {&r.h, p.size()};
    }
    if (fallback_)
        return {&fallback_, 0};
    return {};
}

}  // namespace fapws
