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

bool route_options::allows(std::string_view method) const noexcept
{
    if (methods.empty())
        return true;
    return std::find(methods.begin(), methods.end(), method) != methods.end();
}

std::string route_options::allow_header() const
{
    std::string out;
    for (const auto& m : methods) {
        if (!out.empty())
            out += ", ";
        out += m;
    }
    return out;
}

void router::mount(std::string prefix, handler h, route_options opt)
{
    put(std::move(prefix), std::move(h), nullptr, std::move(opt));
}

void router::mount(std::string prefix, async_handler h, route_options opt)
{
    put(std::move(prefix), nullptr, std::move(h), std::move(opt));
}

void router::put(std::string prefix, handler h, async_handler ah, route_options opt)
{
    prefix = normalise(std::move(prefix));
    for (auto& r : routes_) {
        if (r->prefix == prefix) {
            r->h = std::move(h);
            r->ah = std::move(ah);
            r->opt = std::move(opt);
            return;
        }
    }
    routes_.push_back(std::make_unique<route>(route{std::move(prefix), std::move(h), std::move(ah), std::move(opt)}));
    std::stable_sort(routes_.begin(), routes_.end(),
                     [](const auto& a, const auto& b) { return a->prefix.size() > b->prefix.size(); });
}

void router::fallback(handler h)
{
    fallback_ = std::move(h);
}

router::match router::find(std::string_view path) const noexcept
{
    for (const auto& node : routes_) {
        const route& r = *node;
        const std::string& p = r.prefix;
        if (path.size() < p.size() || path.compare(0, p.size(), p) != 0)
            continue;
        // Whole segments only: "/hello" takes "/hello" and "/hello/x".
        if (path.size() == p.size() || path[p.size()] == '/' || p.empty())
            return {r.h ? &r.h : nullptr, r.ah ? &r.ah : nullptr, p.size(), &r.opt};
    }
    if (fallback_)
        return {&fallback_, nullptr, 0, &fallback_opt_};
    return {};
}

}  // namespace fapws
