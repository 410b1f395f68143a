// fapws.Pushed: a response body the application writes to later, from the
// loop (a timer, a deferred task, another request) or from another thread.
// Served by fapws it is a paused body_source: an idle subscriber costs its
// connection and a small queue, no CPU. Under another WSGI server it is a
// blocking iterator over the same queue.
#pragma once

#include "wsgi.hpp"

#include <boost/asio/io_context.hpp>

#include <memory>

namespace fapws::py {

bool is_pushed(PyObject* o) noexcept;

// A server's loop runs Python on this thread: a Pushed iterated here (by a
// middleware that wrapped it) would wait for itself, so it raises instead.
void serving_on_this_thread() noexcept;

// The body of a response whose application returned a Pushed: the head
// goes out with the first send() (or close()), committed from `sr` then,
// so start_response(..., exc_info) may still change it. Null, with a Python
// error set, when that Pushed was already returned by another request.
// `written` holds write() data to send first (may be null).
std::unique_ptr<body_source> take_pushed(PyObject* o, start_response_object* sr, PyObject* written,
                                         boost::asio::io_context& loop);

// A Pushed returned with a response that failed before its body (a bad
// header): it will not be served; on_close runs now.
void drop_pushed(PyObject* o);

void bind_pushed(pyb::module_& m);

}  // namespace fapws::py
