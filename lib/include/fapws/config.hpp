// Server-wide limits and timeouts. Plain data: fill it before constructing a
// fapws::server; it is copied and read only from the loop thread afterwards.
// Every field is listed in BOOST_DESCRIBE_STRUCT at the end: the Python
// bindings take their keyword options and defaults from that list.
#pragma once

#include <boost/describe/class.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace fapws {

struct config {
    // Request line plus all header lines, in bytes; beyond it the answer is
    // 431 and the connection is closed.
    std::size_t header_limit = 64 * 1024;
    // One request line or one header line (name, value and CRLF) -> 431.
    std::size_t header_line_limit = 8 * 1024;
    // Request body, in bytes, after de-chunking -> 413.
    std::uint64_t body_limit = std::uint64_t{1} << 30;
    // Bodies up to this size are held in memory; larger ones are spooled to
    // an unlinked temporary file in spool_dir as they arrive.
    std::size_t body_memory_limit = 1 << 20;
    std::string spool_dir;  // empty: $TMPDIR, else /tmp
    // A streamed response body is pulled one block at a time; the next block
    // is produced only after the previous one was written.
    std::size_t block_size = 64 * 1024;
    // Responses to pipelined requests batched into one write.
    std::size_t max_pipelined = 32;

    // Time allowed to receive a whole request head, counted from its first
    // byte, or from accept for a new connection (slowloris defence).
    std::chrono::milliseconds header_timeout{30'000};
    // Idle keep-alive connection. 75 s, like nginx: longer than the 60 s idle
    // timeout of the usual load balancers in front of us, so they close first
    // and never send a request on a connection we are closing; an idle
    // connection costs well under 400 bytes, so holding it is cheap.
    std::chrono::milliseconds keepalive_timeout{75'000};
    // Inactivity while reading a request body or writing a response.
    std::chrono::milliseconds io_timeout{60'000};
    // A request body must keep an average of this many bytes per second once
    // io_timeout has passed since its head: otherwise 408 and close. Without
    // it a body trickled at a byte every few seconds holds a connection for
    // ever (io_timeout counts inactivity only). 500, like Apache's
    // mod_reqtimeout MinRate; nginx and gunicorn have no such limit. 0: off.
    std::uint32_t body_min_rate = 500;
    // Graceful stop: in-flight requests get this long to finish.
    std::chrono::milliseconds shutdown_timeout{10'000};
    // Graceful stop: an idle connection (keep-alive, or accepted and not
    // yet sent its request) stays open this long, and a request that comes
    // meanwhile is answered with Connection: close. Closing it at once
    // races a client that is sending on it right then: its request would
    // fail (seen when workers recycle under load). 0: close at once.
    std::chrono::milliseconds drain_grace{1'000};

    // Several processes on one port (fapws --workers): once this process's
    // loop has been stuck this long (a long synchronous handler), its idle
    // keep-alive connections get a FIN, so their clients send the next
    // request to a process that is free instead of waiting behind the
    // handler. A request already sent on one is answered after it. 0: off
    // (one process: nobody else could answer). Only with run().
    std::chrono::milliseconds busy_release{0};

    // Deferred tasks queued at once; one more is an error to the caller.
    std::size_t defer_limit = 10'000;

    int backlog = 1024;
    // Install SIGINT/SIGTERM (graceful stop, second SIGINT: immediate) and
    // ignore SIGPIPE. The Python bindings turn this off and let Python own
    // its signals.
    bool handle_signals = true;

    std::string server_header = "fapws";

    // Count each response's latency (from its request's complete head to
    // its response head: the handler's time) in stats::latency. Off by
    // default: it reads the clock twice per request.
    bool latency_histogram = false;
};

BOOST_DESCRIBE_STRUCT(config, (),
                      (header_limit, header_line_limit, body_limit, body_memory_limit, spool_dir, block_size,
                       max_pipelined, header_timeout, keepalive_timeout, io_timeout, body_min_rate,
                       shutdown_timeout, drain_grace, busy_release, defer_limit, backlog, handle_signals, server_header,
                       latency_histogram))

}  // namespace fapws
