"""--metrics PATH: the core's counters in Prometheus' text format.

One process answers with its own counters. Under a supervisor every worker
publishes its counters to shared memory once a second (and just before it
answers a scrape), the supervisor adds a finished worker's counters to a
"retired" total, so whichever worker answers reports the sum over all of
them, and totals never go down when workers are recycled or reloaded.
"""

import mmap
import struct

from fapws import _core

COUNTERS = [
    # (stats key, metric, labels, help)
    ("requests", "fapws_requests_total", "", "Requests dispatched to a handler."),
    ("responses_1xx", "fapws_responses_total", 'class="1xx"', "Responses by status class."),
    ("responses_2xx", "fapws_responses_total", 'class="2xx"', None),
    ("responses_3xx", "fapws_responses_total", 'class="3xx"', None),
    ("responses_4xx", "fapws_responses_total", 'class="4xx"', None),
    ("responses_5xx", "fapws_responses_total", 'class="5xx"', None),
    ("bytes_out", "fapws_bytes_out_total", "", "Bytes written to clients."),
    ("connections_accepted", "fapws_connections_accepted_total", "", "Connections accepted."),
    ("bad_requests", "fapws_errors_total", 'kind="bad_request"', "Errors by kind."),
    ("header_too_large", "fapws_errors_total", 'kind="header_too_large"', None),
    ("body_too_large", "fapws_errors_total", 'kind="body_too_large"', None),
    ("bad_version", "fapws_errors_total", 'kind="bad_version"', None),
    ("handler_errors", "fapws_errors_total", 'kind="handler"', None),
    ("io_errors", "fapws_errors_total", 'kind="io"', None),
    ("task_errors", "fapws_errors_total", 'kind="task"', None),
    ("timeouts_header", "fapws_timeouts_total", 'kind="header"', "Connections closed by a timeout."),
    ("timeouts_keepalive", "fapws_timeouts_total", 'kind="keepalive"', None),
    ("timeouts_io", "fapws_timeouts_total", 'kind="io"', None),
    ("not_found", "fapws_not_found_total", "", "404 answers from the router."),
    ("deferred_run", "fapws_deferred_tasks_total", "", "Deferred tasks run."),
]
# The latency histogram (config::latency_histogram): one count per bucket
# (not cumulative) and the sum; counters too, so they add up over workers.
_BOUNDS = [us / 1e6 for us in _core.LATENCY_BOUNDS_US]
LATENCY = [f"latency_{i}" for i in range(len(_BOUNDS) + 1)] + ["latency_sum_us"]
GAUGES = [
    ("connections_open", "fapws_connections_open", "Connections open now."),
    ("defer_queue_size", "fapws_defer_queue_size", "Deferred tasks waiting."),
]
_COUNTED = [c[0] for c in COUNTERS] + LATENCY
_FIELDS = _COUNTED + [g[0] for g in GAUGES]
_ROW = struct.Struct("Q" * (len(_FIELDS) + 1))  # + the publishing pid (0: empty slot)


class Board:
    """Shared memory: a header (restarts, retired totals), one row per
    worker slot. Made by the supervisor before it forks."""

    def __init__(self, slots):
        self.slots = slots
        self.mem = mmap.mmap(-1, _ROW.size * (slots + 1))

    def _row(self, i):
        return list(_ROW.unpack_from(self.mem, _ROW.size * (i + 1)))

    def publish(self, slot, pid, stats):
        _ROW.pack_into(self.mem, _ROW.size * (slot + 1), *[int(stats.get(k, 0)) for k in _FIELDS], pid)

    def retire(self, slot, restarted):
        """A worker ended: its counters join the retired totals."""
        row = self._row(slot)
        head = self._row(-1)
        for i, key in enumerate(_FIELDS):
            if i < len(_COUNTED):
                head[i] += row[i]
        head[-1] += 1 if restarted else 0
        _ROW.pack_into(self.mem, 0, *head)
        _ROW.pack_into(self.mem, _ROW.size * (slot + 1), *([0] * len(row)))

    def totals(self):
        head = self._row(-1)
        sums = dict(zip(_FIELDS, head[:len(_FIELDS)]))
        for k, _, _ in GAUGES:
            sums[k] = 0
        workers = 0
        for slot in range(self.slots):
            row = self._row(slot)
            if row[-1] == 0:
                continue
            workers += 1
            for i, key in enumerate(_FIELDS):
                sums[key] += row[i]
        return sums, workers, head[-1]


def _histogram(stats):
    name = "fapws_request_duration_seconds"
    out = [f"# HELP {name} From a request's complete head to its response head (the handler's time; "
           "a streamed body's later blocks are not counted).", f"# TYPE {name} histogram"]
    total = 0
    for i, bound in enumerate(_BOUNDS):
        total += stats.get(f"latency_{i}", 0)
        out.append(f'{name}_bucket{{le="{bound:g}"}} {total}')
    total += stats.get(f"latency_{len(_BOUNDS)}", 0)
    out.append(f'{name}_bucket{{le="+Inf"}} {total}')
    out.append(f"{name}_sum {stats.get('latency_sum_us', 0) / 1e6:.6f}")
    out.append(f"{name}_count {total}")
    return "\n".join(out)


class Metrics:
    """The WSGI application answering a Prometheus scrape."""

    def __init__(self, server, board=None, slot=None):
        self.server, self.board, self.slot = server, board, slot

    def publish(self):
        import os

        if self.board is not None:
            self.board.publish(self.slot, os.getpid(), self.server.stats())

    def text(self):
        if self.board is None:
            stats, workers, restarts = self.server.stats(), 1, None
        else:
            self.publish()
            stats, workers, restarts = self.board.totals()
        out, seen = [], set()
        for key, name, labels, help_ in COUNTERS:
            if name not in seen:
                seen.add(name)
                out.append(f"# HELP {name} {help_}\n# TYPE {name} counter")
            out.append(f"{name}{{{labels}}} {stats.get(key, 0)}" if labels else f"{name} {stats.get(key, 0)}")
        out.append(_histogram(stats))
        for key, name, help_ in GAUGES:
            out.append(f"# HELP {name} {help_}\n# TYPE {name} gauge\n{name} {stats.get(key, 0)}")
        out.append(f"# HELP fapws_workers Worker processes serving.\n# TYPE fapws_workers gauge\nfapws_workers {workers}")
        if restarts is not None:
            out.append("# HELP fapws_worker_restarts_total Workers replaced (died, killed by the watchdog, "
                       f"recycled).\n# TYPE fapws_worker_restarts_total counter\nfapws_worker_restarts_total {restarts}")
        return ("\n".join(out) + "\n").encode()

    def __call__(self, environ, start_response):
        body = self.text()
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                                  ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]
