// The WSGI bridge: a fapws::handler that calls a Python WSGI application.
// Runs on the loop thread; takes the GIL itself (cheap when already held).
#pragma once

#include <fapws/http.hpp>

#include "proxies.hpp"

#include <boost/asio/io_context.hpp>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace fapws::py {

namespace pyb = pybind11;

// Holds the GIL for a scope: cheap when this thread already holds it (the
// loop runs with it), takes it after the loop released it to wait for I/O.
struct gil {
    PyGILState_STATE s = PyGILState_Ensure();
    gil() = default;
    ~gil() { PyGILState_Release(s); }
    gil(const gil&) = delete;
    gil& operator=(const gil&) = delete;
};

struct wsgi_options {
    bool debug = false;               // traceback in the 500 page
    boost::asio::io_context* loop = nullptr;  // the server's: other threads post there
    std::vector<std::string> forwarded_allow_ips;  // proxies whose forwarding headers count (proxies.hpp)
};

// The start_response callable of one request (a C type).
struct start_response_object {
    PyObject_HEAD
    PyObject* status;
    PyObject* headers;
    PyObject* written;  // list of bytes from write(), or null
    PyObject* write;    // the write() callable start_response returns
    int committed;      // the head was handed to the server
    int deferred;       // a Pushed body holds it: the head goes out later
};

// Hands the status line and headers to the core; false with a Python error
// set. Marks the head committed: start_response(..., exc_info) re-raises.
bool commit(response& res, start_response_object* sr);

class py_ref;  // bridge.hpp

// Shared by every request to one mounted app; owned by the route's handler.
class wsgi_app {
public:
    wsgi_app(pyb::object app, pyb::dict environ_template, pyb::object file_wrapper, wsgi_options opt);
    ~wsgi_app();
    void operator()(const request& req, response& res);

private:
    PyObject* build_environ(const request& req);
    PyObject* header_key(std::string_view name);
    PyObject* listener_value(const listener_info& l, bool port);
    void fail(const request& req, response& res, const char* what);
    // The answer's shapes (wsgi.cpp).
    void sequence_body(const request& req, response& res, py_ref result, start_response_object* sr);
    bool file_body(const request& req, response& res, const py_ref& result, start_response_object* sr);
    void iterable_body(const request& req, response& res, py_ref result, start_response_object* sr);
    void pushed_body(const request& req, response& res, py_ref result, start_response_object* sr);
    // One start_response per request, reused when the application kept none.
    start_response_object* take_sr();
    void release_sr(start_response_object* sr);
    start_response_object* spare_sr_ = nullptr;

    pyb::object app_;
    pyb::dict template_;
    pyb::object file_wrapper_;
    wsgi_options opt_;
    trusted_proxies proxies_;
    // Environ keys for header names seen so far ("user-agent" -> HTTP_USER_AGENT).
    std::unordered_map<std::string, PyObject*> header_keys_;
    std::unordered_map<const listener_info*, std::pair<PyObject*, PyObject*>> listeners_;
    const listener_info* last_listener_ = nullptr;
    std::pair<PyObject*, PyObject*> last_listener_values_{nullptr, nullptr};
    // The last str made for a per-request value, reused while the next
    // request has the same text: one client's address, port and Host repeat
    // on every request of its connection.
    struct last_value {
        PyObject* obj = nullptr;
        std::string text;
        PyObject* get(std::string_view s);  // a new reference, or nullptr
        void reset() noexcept;
    };
    last_value remote_addr_, remote_port_, host_;
};

// Registers the C-level types (start_response, wsgi.input) on the module.
void bind_wsgi(pyb::module_& m);

// Formats and logs the pending Python exception (clears it). Returns the text.
std::string log_python_error(const char* context);

}  // namespace fapws::py
