// Private to the WSGI bridge: what its files share. Never installed.
#pragma once

#include "wsgi.hpp"

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

namespace fapws::py {

// An owned reference (it steals what it is given), released when it goes
// out of scope: no cleanup ladder before each return. The GIL is held by
// whoever owns it; as cheap as the Py_DECREF it replaces.
class py_ref {
public:
    py_ref() noexcept = default;
    explicit py_ref(PyObject* p) noexcept : p_(p) {}
    py_ref(py_ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    py_ref& operator=(py_ref&& o) noexcept
    {
        Py_XSETREF(p_, std::exchange(o.p_, nullptr));
        return *this;
    }
    py_ref(const py_ref&) = delete;
    py_ref& operator=(const py_ref&) = delete;
    ~py_ref() { Py_XDECREF(p_); }

    PyObject* get() const noexcept { return p_; }
    PyObject* release() noexcept { return std::exchange(p_, nullptr); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    PyObject* p_ = nullptr;
};

// Bodies up to this size are copied once into the response.
constexpr std::size_t small_body = 16 * 1024;

// Interned names, made once (init_names).
struct names_t {
    PyObject *REQUEST_METHOD, *PATH_INFO, *QUERY_STRING, *CONTENT_TYPE, *CONTENT_LENGTH,
        *SERVER_NAME, *SERVER_PORT, *SERVER_PROTOCOL, *REMOTE_ADDR, *REMOTE_PORT, *REQUEST_URI,
        *RAW_URI, *wsgi_input, *wsgi_url_scheme, *http10, *http11, *http, *https, *empty, *close,
        *filelike, *fileno;
    PyObject* methods[9];
};
extern names_t* names;
extern const char* const method_names[9];
void init_names();

PyObject* presized_dict(Py_ssize_t n);
// New references; null with a Python error set.
PyObject* latin1(std::string_view s);
PyObject* decoded_path(std::string_view raw);
PyObject* decimal(unsigned long long v);
// Stores v under k, stealing v; -1 when v is null or the store failed.
int set_steal(PyObject* d, PyObject* k, PyObject* v);
std::string_view bytes_view(PyObject* b);

// start_response (start_response.cpp).
extern PyTypeObject start_response_type;
void bind_start_response(pyb::module_& m);

// wsgi.input (input.cpp): a new reference, or null with a Python error.
PyObject* make_input(const request_body& body);
void bind_input(pyb::module_& m);

// Bodies (bodies.cpp).
// A list of bytes (borrowed; the body takes its own reference).
void list_body(response& res, PyObject* items, std::uint64_t total);
// Any iterable: result, its iterator and the first item (all stolen).
std::unique_ptr<body_source> iterable_body(PyObject* result, PyObject* iter, PyObject* first);
// result.close() (PEP 3333), keeping a pending error for the caller's log.
void call_close(PyObject* result);

}  // namespace fapws::py
