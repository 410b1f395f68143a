// The counters a server keeps (server::counters()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>

namespace fapws {

// Counters, updated on the loop thread; read them there (or accept a torn read).
struct stats {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_closed = 0;
    std::uint64_t connections_open = 0;
    std::uint64_t requests = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t bad_requests = 0;       // 400
    std::uint64_t header_too_large = 0;   // 431
    std::uint64_t body_too_large = 0;     // 413
    std::uint64_t bad_version = 0;        // 505
    std::uint64_t handler_errors = 0;     // 500 or a cut response
    std::uint64_t not_found = 0;          // 404 from the router
    std::uint64_t timeouts_header = 0;
    std::uint64_t timeouts_keepalive = 0;
    std::uint64_t timeouts_io = 0;
    std::uint64_t io_errors = 0;
    std::uint64_t deferred_run = 0;
    std::uint64_t task_errors = 0;        // timers and deferred tasks that threw
    // Responses by status class: [2] counts 2xx, ..., [5] 5xx (stock error
    // answers included).
    std::uint64_t responses[6] = {};
    // With config::latency_histogram: responses by latency, from the
    // request's complete head to the response head. latency[i] counts those
    // at most latency_bounds_us[i] (and above the bound before); the last
    // slot counts the rest. Not cumulative (Prometheus buckets are: add up).
    static constexpr std::uint32_t latency_bounds_us[] = {1'000,   2'500,   5'000,     10'000,    25'000,
                                                          50'000,  100'000, 250'000,   500'000,   1'000'000,
                                                          2'500'000, 5'000'000, 10'000'000};
    static constexpr std::size_t latency_buckets = std::size(latency_bounds_us) + 1;
    std::uint64_t latency[latency_buckets] = {};
    std::uint64_t latency_sum_us = 0;
};

}  // namespace fapws
