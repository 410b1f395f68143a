// fapws._core.Server: the C++ server driven from Python. The loop runs with
// the GIL held and releases it only while it blocks for I/O, so threads the
// application started keep running; a 100 ms timer lets Python handle signals.
#include <fapws/server.hpp>

#include "pushed.hpp"
#include "wsgi.hpp"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>

#include <chrono>
#include <limits>
#include <string_view>
#include <cstdio>

namespace fapws::py {

namespace {

// A Python callable kept by C++ code that may drop it without the GIL.
class py_callable {
public:
    explicit py_callable(pyb::object o) : o_(o.release().ptr()) {}
    py_callable(const py_callable& other) : o_(other.o_)
    {
        gil g;
        Py_INCREF(o_);
    }
    ~py_callable()
    {
        gil g;
        Py_DECREF(o_);
    }
    PyObject* get() const { return o_; }

private:
    PyObject* o_;
};

std::chrono::milliseconds ms(double seconds)
{
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0 + 0.5));
}

// fapws::config, field by field (BOOST_DESCRIBE_STRUCT in config.hpp), so the
// options and their defaults are declared once, in C++. handle_signals is
// not an option here: Python owns the signals.
template <typename F>
void each_option(F&& f)
{
    boost::mp11::mp_for_each<boost::describe::describe_members<config, boost::describe::mod_public>>(
        [&](auto d) {
            if (std::string_view(d.name) != "handle_signals")
                f(d.name, d.pointer);
        });
}

pyb::object to_python(std::chrono::milliseconds v) { return pyb::float_(v.count() / 1000.0); }
pyb::object to_python(bool v) { return pyb::bool_(v); }
pyb::object to_python(const std::string& v) { return pyb::str(v); }
template <typename T>
pyb::object to_python(T v)
{
    return pyb::int_(v);
}

void from_python(std::chrono::milliseconds& v, pyb::handle h, const char* name)
{
    const double x = h.cast<double>();
    if (!(x >= 0 && x <= 2'000'000))  // timeouts are capped at 24 days
        throw pyb::value_error(std::string(name) + " must be 0..2000000 seconds");
    v = ms(x);
}
void from_python(bool& v, pyb::handle h, const char*) { v = pyb::bool_(pyb::reinterpret_borrow<pyb::object>(h)); }
void from_python(std::string& v, pyb::handle h, const char*) { v = h.cast<std::string>(); }
template <typename T>
void from_python(T& v, pyb::handle h, const char* name)
{
    if (!pyb::isinstance<pyb::int_>(h) || pyb::isinstance<pyb::bool_>(h))
        throw pyb::type_error(std::string(name) + " must be an int");
    const long long x = h.cast<long long>();
    if (x < 0 || static_cast<unsigned long long>(x) > std::numeric_limits<T>::max())
        throw pyb::value_error(std::string(name) + " out of range: " + std::to_string(x));
    v = static_cast<T>(x);
}

class py_server {
public:
    explicit py_server(config cfg) : srv_(std::move(cfg)) {}

    server srv_;
    PyThreadState* saved_ = nullptr;
    int interrupts_ = 0;
    PyObject* pending_error_[3] = {nullptr, nullptr, nullptr};

    void run()
    {
        srv_.set_wait_hooks([this] { saved_ = PyEval_SaveThread(); },
                            [this] {
                                PyEval_RestoreThread(saved_);
                                saved_ = nullptr;
                            });
        interrupts_ = 0;
        serving_on_this_thread();
        timer signals = srv_.add_timer(std::chrono::milliseconds(100), [this] { check_signals(); });
        try {
            srv_.run();
        } catch (...) {
            signals.stop();
            throw;
        }
        signals.stop();
        if (pending_error_[0]) {
            PyErr_Restore(pending_error_[0], pending_error_[1], pending_error_[2]);
            pending_error_[0] = pending_error_[1] = pending_error_[2] = nullptr;
            throw pyb::error_already_set();
        }
    }

    void check_signals()
    {
        gil g;
        if (PyErr_CheckSignals() == 0)
            return;
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyErr_Clear();
            if (++interrupts_ == 1) {
                log_info("interrupted: graceful stop (interrupt again to stop now)");
                srv_.stop();
            } else {
                srv_.stop_now();
            }
            return;
        }
        // A Python signal handler raised: stop and re-raise from run().
        if (!pending_error_[0])
            PyErr_Fetch(&pending_error_[0], &pending_error_[1], &pending_error_[2]);
        else
            PyErr_Clear();
        srv_.stop_now();
    }
};

}  // namespace

void bind_server(pyb::module_& m)
{
    static pyb::exception<setup_error> setup_exc(m, "SetupError", PyExc_OSError);
    static pyb::exception<defer_queue_full> defer_exc(m, "DeferQueueFull", PyExc_RuntimeError);
    pyb::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p)
                std::rethrow_exception(p);
        } catch (const setup_error& e) {
            PyErr_SetString(setup_exc.ptr(), e.what());
        } catch (const defer_queue_full& e) {
            PyErr_SetString(defer_exc.ptr(), e.what());
        }
    });

    m.attr("LATENCY_BOUNDS_US") = std::vector<std::uint32_t>(std::begin(stats::latency_bounds_us),
                                                            std::end(stats::latency_bounds_us));
    m.def("defaults", [] {
        pyb::dict d;
        const config c;
        each_option([&](const char* name, const auto& field) { d[name] = to_python(c.*field); });
        return d;
    }, "The core's options (fapws::config) and their defaults; timeouts in seconds.");

    m.def("set_log_level", [](const std::string& name) {
        log_level l;
        if (!parse_log_level(name, l))
            throw pyb::value_error("unknown log level '" + name + "' (debug, info, warning, error, off)");
        set_log_level(l);
    });
    // The core's error lines to a Python callable handler(level, message)
    // (--log-config routes them to the "fapws.error" logger). The handler
    // is kept as a bare reference: no destructor runs after Python ended.
    m.def("set_log_handler", [](pyb::object handler) {
        static PyObject* current = nullptr;
        PyObject* old = current;
        if (handler.is_none()) {
            set_log_sink({});
            current = nullptr;
        } else {
            current = handler.release().ptr();
            set_log_sink([](log_level l, std::string_view msg) {
                if (!Py_IsInitialized())
                    return;
                pyb::gil_scoped_acquire g;
                PyObject* h = current;
                if (!h)
                    return;
                static const char* names[] = {"debug", "info", "warning", "error", "off"};
                PyObject* text = PyUnicode_DecodeUTF8(msg.data(), static_cast<Py_ssize_t>(msg.size()),
                                                      "backslashreplace");
                PyObject* r = text ? PyObject_CallFunction(h, "sO", names[static_cast<int>(l)], text) : nullptr;
                Py_XDECREF(text);
                if (r)
                    Py_DECREF(r);
                else
                    PyErr_Clear();  // a failing handler must not fail the request that logged
            });
        }
        Py_XDECREF(old);
    }, pyb::arg("handler"), "Send the core's error log lines to handler(level, message); None: stderr.");
    m.def("log", [](const std::string& level, const std::string& msg) {
        log_level l = log_level::info;
        parse_log_level(level, l);
        log(l, msg);
    });

    pyb::class_<timer>(m, "Timer", "A periodic timer on the loop (from Server.add_timer).")
        .def("stop", &timer::stop, "Stop calling the callback.")
        .def("restart", &timer::restart, "Start again; the next call is one interval from now.")
        .def_property_readonly("running", &timer::running)
        .def_property_readonly("interval", [](const timer& t) { return t.interval().count() / 1000.0; });

    pyb::class_<py_server>(m, "Server")
        .def(pyb::init([](const pyb::kwargs& options) {
                 config c;
                 for (auto [key, value] : options) {
                     const std::string name = pyb::str(key);
                     bool found = false;
                     each_option([&](const char* n, auto field) {
                         if (name == n) {
                             from_python(c.*field, value, n);
                             found = true;
                         }
                     });
                     if (!found)
                         throw pyb::type_error("Server() got an unexpected keyword argument '" + name +
                                               "' (fapws._core.defaults() lists the options)");
                 }
                 c.handle_signals = false;  // Python owns the signals
                 return std::make_unique<py_server>(std::move(c));
             }),
             "Keyword options: the names of fapws._core.defaults() (fapws::config).")
        .def("listen",
             [](py_server& s, const std::string& spec, bool reuse_port, const std::string& url_scheme,
                bool proxy_protocol) {
                 listen_options o;
                 o.reuse_port = reuse_port;
                 o.url_scheme = url_scheme;
                 o.proxy_protocol = proxy_protocol;
                 listener_info i = s.srv_.listen(spec, o);
                 return pyb::make_tuple(i.address, i.port);
             },
             pyb::arg("spec"), pyb::arg("reuse_port") = false, pyb::arg("url_scheme") = "http",
             pyb::arg("proxy_protocol") = false)
        .def("notify_fork",
             [](py_server& s, const std::string& stage) {
                 using ctx = boost::asio::execution_context;
                 if (stage == "prepare")
                     s.srv_.notify_fork(ctx::fork_prepare);
                 else if (stage == "parent")
                     s.srv_.notify_fork(ctx::fork_parent);
                 else if (stage == "child")
                     s.srv_.notify_fork(ctx::fork_child);
                 else
                     throw pyb::value_error("stage must be 'prepare', 'parent' or 'child'");
             },
             "Around os.fork(): a child gets its own epoll set with the inherited listeners.")
        .def("listener_fds", [](py_server& s) { return s.srv_.listener_fds(); },
             "The listening descriptors, in listen() order (owned by the server).")
        .def("route_wsgi",
             [](py_server& s, std::string prefix, pyb::object app, pyb::dict environ, pyb::object file_wrapper,
                bool debug, std::vector<std::string> forwarded_allow_ips) {
                 wsgi_options o;
                 o.debug = debug;
                 o.loop = &s.srv_.context();
                 o.forwarded_allow_ips = std::move(forwarded_allow_ips);
                 auto a = std::make_shared<wsgi_app>(std::move(app), std::move(environ), std::move(file_wrapper),
                                                     std::move(o));
                 s.srv_.route(std::move(prefix), [a](const request& req, response& res) { (*a)(req, res); });
             },
             pyb::arg("prefix"), pyb::arg("app"), pyb::arg("environ"), pyb::arg("file_wrapper"),
             pyb::arg("debug") = false,
             pyb::arg("forwarded_allow_ips") = std::vector<std::string>{})
        .def("route_static",
             [](py_server& s, std::string prefix, const std::string& directory, long max_age, bool index,
                bool listing, bool follow_symlinks, bool precompressed) {
                 static_options o;
                 if (max_age >= 0)
                     o.max_age = max_age;
                 o.index = index;
                 o.listing = listing;
                 o.follow_outside_symlinks = follow_symlinks;
                 o.precompressed = precompressed;
                 s.srv_.static_files(std::move(prefix), directory, o);
             },
             pyb::arg("prefix"), pyb::arg("directory"), pyb::arg("max_age") = -1, pyb::arg("index") = true,
             pyb::arg("listing") = false, pyb::arg("follow_symlinks") = false, pyb::arg("precompressed") = true)
        .def("add_timer",
             [](py_server& s, double seconds, pyb::object cb) {
                 if (!(seconds > 0))
                     throw pyb::value_error("timer interval must be positive");
                 py_callable fn(std::move(cb));
                 return s.srv_.add_timer(ms(seconds), [fn] {
                     gil g;
                     PyObject* r = PyObject_CallNoArgs(fn.get());
                     if (r)
                         Py_DECREF(r);
                     else
                         log_python_error("timer callback");
                 });
             },
             pyb::arg("seconds"), pyb::arg("callback"))
        .def("defer",
             // `combined` (equal callback and argument) is fapws.Server.defer's
             // business: Python equality, which a C++ key cannot express.
             [](py_server& s, pyb::object cb, pyb::object arg) {
                 py_callable fn(std::move(cb)), a(std::move(arg));
                 return s.srv_.defer(
                     [fn, a] {
                         gil g;
                         PyObject* r = PyObject_CallOneArg(fn.get(), a.get());
                         if (r)
                             Py_DECREF(r);
                         else
                             log_python_error("deferred callback");
                     });
             },
             pyb::arg("callback"), pyb::arg("arg") = pyb::none())
        .def("defer_queue_size", [](py_server& s) { return s.srv_.defer_queue_size(); })
        .def("access_log",
             [](py_server& s, const std::string& path, bool combined, const std::string& format) {
                 if (!format.empty())
                     s.srv_.access_log(path, std::string_view(format));
                 else
                     s.srv_.access_log(path, combined ? access_log_format::combined : access_log_format::common);
             },
             pyb::arg("path"), pyb::arg("combined") = false, pyb::arg("format") = "")
        .def("run", &py_server::run, "Serve until stopped (Ctrl-C: graceful stop; twice: now).")
        .def("stop", [](py_server& s) { s.srv_.stop(); }, "Graceful stop; safe from any thread.")
        .def("stop_now", [](py_server& s) { s.srv_.stop_now(); })
        .def_property_readonly("stopping", [](py_server& s) { return s.srv_.stopping(); })
        .def("stats", [](py_server& s) {
            const stats& c = s.srv_.counters();
            pyb::dict d;
            d["connections_accepted"] = c.connections_accepted;
            d["connections_closed"] = c.connections_closed;
            d["connections_open"] = c.connections_open;
            d["requests"] = c.requests;
            d["bytes_out"] = c.bytes_out;
            d["bad_requests"] = c.bad_requests;
            d["header_too_large"] = c.header_too_large;
            d["body_too_large"] = c.body_too_large;
            d["bad_version"] = c.bad_version;
            d["handler_errors"] = c.handler_errors;
            d["not_found"] = c.not_found;
            d["timeouts_header"] = c.timeouts_header;
            d["timeouts_keepalive"] = c.timeouts_keepalive;
            d["timeouts_io"] = c.timeouts_io;
            d["io_errors"] = c.io_errors;
            d["deferred_run"] = c.deferred_run;
            d["task_errors"] = c.task_errors;
            d["defer_queue_size"] = s.srv_.defer_queue_size();
            for (int k = 1; k <= 5; ++k)
                d[("responses_" + std::to_string(k) + "xx").c_str()] = c.responses[k];
            if (s.srv_.settings().latency_histogram) {
                for (std::size_t i = 0; i < stats::latency_buckets; ++i)
                    d[("latency_" + std::to_string(i)).c_str()] = c.latency[i];
                d["latency_sum_us"] = c.latency_sum_us;
            }
            return d;
        });
}

}  // namespace fapws::py
