// fapws.Pushed (see pushed.hpp). Its state lives in a pushed_state shared by
// the Python object and, while fapws serves it, the response's source; the
// source's destruction (body ended, client gone, server stopped) is the one
// place on_close runs from. Everything is guarded by the GIL, except the
// condition the portable iterator sleeps on.
#include "pushed.hpp"

#include <fapws/log.hpp>

#include <boost/asio/post.hpp>

#include <condition_variable>
#include <vector>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace fapws::py {

namespace {

struct backpressure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class pushed_source;

// The loop a fapws server runs Python on, for the iterator's deadlock check.
std::thread::id serving_thread;

struct pushed_state {
    // Sent, not yet pulled by the server: queue[head..]. A vector, not a
    // deque: an idle subscriber's empty queue allocates nothing (a deque
    // allocates 576 bytes up front).
    std::vector<pyb::bytes> queue;
    std::size_t head = 0;
    std::size_t queued = 0;        // bytes in queue
    std::size_t in_flight = 0;     // the block the server is writing now
    std::size_t high_water;
    bool closed = false;    // close() called: the body ends after the queue
    bool finished = false;  // nobody will read more: ended, client gone, stopped
    bool taken = false;     // returned by an application to fapws
    pushed_source* source = nullptr;  // while fapws serves it
    std::thread::id loop;
    boost::asio::io_context* ioc = nullptr;
    pyb::object on_close;
    // The portable iterator sleeps without the GIL until `signals` moves.
    std::mutex m;
    std::condition_variable cv;
    std::uint64_t signals = 0;

    explicit pushed_state(std::size_t hw) : high_water(hw) {}

    bool empty() const noexcept { return head == queue.size(); }
    pyb::bytes pop()
    {
        pyb::bytes b = std::move(queue[head++]);
        if (head == queue.size()) {
            queue.clear();
            head = 0;
        }
        queued -= static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr()));
        return b;
    }

    void signal()
    {
        {
            std::lock_guard<std::mutex> lk(m);
            ++signals;
        }
        cv.notify_all();
    }

    // Runs on_close once: fapws calls it on the loop, the portable path
    // where the body ends.
    void run_on_close()
    {
        finished = true;
        queue.clear();
        queue.shrink_to_fit();
        head = queued = 0;
        pyb::object cb = std::move(on_close);
        on_close = pyb::object();
        if (!cb || cb.is_none())
            return;
        PyObject* r = PyObject_CallNoArgs(cb.ptr());
        if (r)
            Py_DECREF(r);
        else
            log_python_error("Pushed.on_close callback");
    }
};

// Released under the GIL, wherever the last reference goes (a handler
// posted to the loop runs and is destroyed without it).
std::shared_ptr<pushed_state> make_state(std::size_t high_water)
{
    return std::shared_ptr<pushed_state>(new pushed_state(high_water), [](pushed_state* p) {
        gil g;
        delete p;
    });
}

class pushed_source final : public body_source {
public:
    pushed_source(std::shared_ptr<pushed_state> st, start_response_object* sr) : st_(std::move(st)), sr_(sr)
    {
        Py_INCREF(reinterpret_cast<PyObject*>(sr_));
        sr_->deferred = 1;
        // Committed at return only to decide the framing: the head is not
        // out, so start_response(..., exc_info) may still replace it.
        if (sr_->committed) {
            committed_status_ = sr_->status;
            Py_INCREF(committed_status_);
            sr_->committed = 0;
        }
        st_->source = this;
    }
    ~pushed_source() override
    {
        gil g;
        current_ = pyb::object();
        st_->in_flight = 0;
        st_->source = nullptr;
        sr_->deferred = 0;
        sr_->committed = 1;
        Py_DECREF(reinterpret_cast<PyObject*>(sr_));
        Py_XDECREF(committed_status_);
        st_->run_on_close();
    }

    bool next(std::string_view& block) override
    {
        gil g;
        current_ = pyb::object();
        st_->in_flight = 0;
        if (!st_->empty()) {
            pyb::bytes b = st_->pop();
            const auto n = static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr()));
            st_->in_flight = n;
            block = std::string_view(PyBytes_AS_STRING(b.ptr()), n);
            current_ = std::move(b);
            return true;
        }
        if (st_->closed)
            return false;
        pause();
        block = {};
        return true;
    }

    // The head leaves now: commit what start_response holds, unless it was
    // committed at return and not changed since (exc_info).
    void before_head(response& res) override
    {
        gil g;
        if (committed_status_ && sr_->status == committed_status_) {
            sr_->committed = 1;
            return;
        }
        res.clear_headers();
        if (!commit(res, sr_))
            throw std::runtime_error(log_python_error("WSGI application (Pushed body)"));
    }

private:
    std::shared_ptr<pushed_state> st_;
    start_response_object* sr_;
    PyObject* committed_status_ = nullptr;  // what the framing was decided on
    pyb::object current_;
};

// The Python object: a handle on the shared state.
struct pushed {
    std::shared_ptr<pushed_state> st;
};

// Tells whoever reads the queue that it moved.
void wake(pushed& p)
{
    pushed_state& s = *p.st;
    if (!s.taken)
        return s.signal();
    if (!s.source)
        return;
    if (std::this_thread::get_id() == s.loop)
        return s.source->resume();
    // Another thread: the connection belongs to the loop. One post (an
    // allocation and a wake-up of the loop) per call.
    boost::asio::post(*s.ioc, [st = p.st]() mutable {
        gil g;
        if (st->source)
            st->source->resume();
        st.reset();
    });
}

bool send(pushed& p, pyb::handle data)
{
    pushed_state& s = *p.st;
    if (s.finished || s.closed)
        return false;
    pyb::bytes b;
    if (PyBytes_Check(data.ptr())) {
        b = pyb::reinterpret_borrow<pyb::bytes>(data);
    } else if (PyByteArray_Check(data.ptr()) || PyMemoryView_Check(data.ptr())) {
        b = pyb::reinterpret_steal<pyb::bytes>(PyBytes_FromObject(data.ptr()));
        if (!b)
            throw pyb::error_already_set();
    } else {
        throw pyb::type_error(std::string("Pushed.send() takes bytes, not ") + Py_TYPE(data.ptr())->tp_name);
    }
    const auto n = static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr()));
    if (n == 0)
        return true;
    if (s.queued + s.in_flight + n > s.high_water)
        throw backpressure("Pushed: " + std::to_string(s.queued + s.in_flight) +
                           " bytes wait for a slow client (high_water " + std::to_string(s.high_water) + ")");
    s.queue.push_back(std::move(b));
    s.queued += n;
    wake(p);
    return true;
}

void close(pushed& p)
{
    pushed_state& s = *p.st;
    if (s.closed || s.finished)
        return;
    s.closed = true;
    wake(p);
}

// The portable path: another WSGI server iterates it on its own thread.
pyb::bytes next_block(pushed& p)
{
    pushed_state& s = *p.st;
    if (s.taken)
        throw pyb::type_error("this Pushed body is served by fapws; it cannot be iterated");
    if (std::this_thread::get_id() == serving_thread) {
        if (!s.finished)
            s.run_on_close();  // never served
        throw std::runtime_error(
            "a fapws.Pushed body must be returned by the WSGI application itself: fapws serves it without "
            "iterating; wrapped by middleware it would block the loop");
    }
    for (;;) {
        if (!s.empty())
            return s.pop();
        if (s.closed || s.finished) {
            if (!s.finished)
                s.run_on_close();
            throw pyb::stop_iteration();
        }
        std::uint64_t seen;
        {
            std::lock_guard<std::mutex> lk(s.m);
            seen = s.signals;
        }
        auto keep = p.st;  // close() from another thread may drop nothing we use
        pyb::gil_scoped_release unlocked;
        std::unique_lock<std::mutex> lk(s.m);
        s.cv.wait(lk, [&] { return s.signals != seen; });
    }
}

}  // namespace

void serving_on_this_thread() noexcept
{
    serving_thread = std::this_thread::get_id();
}

bool is_pushed(PyObject* o) noexcept
{
    static PyTypeObject* type = nullptr;
    if (!type) {
        auto* ti = pyb::detail::get_type_info(typeid(pushed));
        type = ti ? ti->type : nullptr;
    }
    return type && Py_TYPE(o) == type;
}

void drop_pushed(PyObject* o)
{
    auto& p = pyb::handle(o).cast<pushed&>();
    if (!p.st->taken && !p.st->finished)
        p.st->run_on_close();
}

std::unique_ptr<body_source> take_pushed(PyObject* o, start_response_object* sr, PyObject* written,
                                         boost::asio::io_context& loop)
{
    auto& p = pyb::handle(o).cast<pushed&>();
    pushed_state& s = *p.st;
    if (s.taken) {
        PyErr_SetString(PyExc_RuntimeError, "this Pushed body was already returned for another request");
        return nullptr;
    }
    s.taken = true;
    s.loop = std::this_thread::get_id();
    s.ioc = &loop;
    if (written) {
        // write() data goes first.
        std::vector<pyb::bytes> all;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(written); ++i) {
            PyObject* b = PyList_GET_ITEM(written, i);
            s.queued += static_cast<std::size_t>(PyBytes_GET_SIZE(b));
            all.push_back(pyb::reinterpret_borrow<pyb::bytes>(b));
        }
        for (std::size_t i = s.head; i < s.queue.size(); ++i)
            all.push_back(std::move(s.queue[i]));
        s.queue = std::move(all);
        s.head = 0;
    }
    if (s.finished) {
        PyErr_SetString(PyExc_RuntimeError, "this Pushed body was already consumed");
        return nullptr;
    }
    return std::make_unique<pushed_source>(p.st, sr);
}

void bind_pushed(pyb::module_& m)
{
    static pyb::exception<backpressure> exc(m, "Backpressure", PyExc_BufferError);
    pyb::register_exception_translator([](std::exception_ptr e) {
        try {
            if (e)
                std::rethrow_exception(e);
        } catch (const backpressure& b) {
            PyErr_SetString(exc.ptr(), b.what());
        }
    });
    pyb::class_<pushed>(m, "Pushed",
                        "A response body written to later: return it from a WSGI application, then send().")
        .def(pyb::init([](std::size_t high_water) {
                 if (high_water == 0)
                     throw pyb::value_error("high_water must be positive");
                 return pushed{make_state(high_water)};
             }),
             pyb::arg("high_water") = std::size_t(1) << 20)
        .def("send", &send, pyb::arg("data"),
             "Queues bytes for the client and returns True, or False once the body is closed or the client "
             "gone. Raises Backpressure past high_water bytes waiting for a slow client.")
        .def("close", &close, "Ends the body after what is queued; keep-alive goes on.")
        .def(
            "on_close",
            [](pushed& p, pyb::object cb) {
                if (!PyCallable_Check(cb.ptr()))
                    throw pyb::type_error("on_close() takes a callable");
                if (p.st->finished) {
                    PyObject* r = PyObject_CallNoArgs(cb.ptr());
                    if (!r)
                        throw pyb::error_already_set();
                    Py_DECREF(r);
                    return;
                }
                p.st->on_close = std::move(cb);
            },
            pyb::arg("callback"),
            "Runs callback() once when the body is over: closed and sent, the client gone, or the server "
            "stopped. At once if it is over already.")
        .def_property_readonly(
            "buffered", [](const pushed& p) { return p.st->queued + p.st->in_flight; },
            "Bytes sent and not yet taken by the client's socket.")
        .def_property_readonly(
            "closed", [](const pushed& p) { return p.st->closed || p.st->finished; },
            "True once close() was called or the client is gone.")
        .def_property_readonly("high_water", [](const pushed& p) { return p.st->high_water; })
        .def("__iter__", [](pyb::object self) { return self; })
        .def("__next__", &next_block);
}

}  // namespace fapws::py
