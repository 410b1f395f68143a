// start_response (PEP 3333): a small C type, validated as it is called,
// reused between requests when the application kept no reference to it.
#include "bridge.hpp"

#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>

namespace fapws::py {

namespace {

void sr_dealloc(PyObject* self_)
{
    auto* self = reinterpret_cast<start_response_object*>(self_);
    Py_XDECREF(self->status);
    Py_XDECREF(self->headers);
    Py_XDECREF(self->written);
    Py_XDECREF(self->write);
    PyObject_Free(self_);
}

bool has_control(PyObject* s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    if (kind == PyUnicode_1BYTE_KIND) {
        // The common case: short latin-1 strings, eight bytes at a time; a
        // word with a byte below 0x20 or a DEL is looked at a byte at a
        // time (a tab is allowed).
        static constexpr auto ctl = [] {
            std::array<bool, 256> t{};
            for (int c = 0; c < 0x20; ++c)
                t[c] = c != '\t';
            t[0x7f] = true;
            return t;
        }();
        const unsigned char* p = PyUnicode_1BYTE_DATA(s);
        constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            std::uint64_t x;
            std::memcpy(&x, p + i, 8);
            const std::uint64_t del = x ^ (ones * 0x7f);
            if (((x - ones * 0x20) & ~x & highs) | ((del - ones) & ~del & highs))
                for (int k = 0; k < 8; ++k)
                    if (ctl[p[i + k]])
                        return true;
        }
        for (; i < n; ++i)
            if (ctl[p[i]])
                return true;
        return false;
    }
    const void* data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; ++i) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}

PyObject* sr_write(PyObject* self_, PyObject* data);
PyMethodDef sr_write_def = {"write", sr_write, METH_O, "write(data): body bytes, sent before the returned iterable."};

PyObject* sr_call(PyObject* self_, PyObject* args, PyObject* kwargs)
{
    auto* self = reinterpret_cast<start_response_object*>(self_);
    static const char* kw[] = {"status", "response_headers", "exc_info", nullptr};
    PyObject *status, *headers, *exc_info = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response", const_cast<char**>(kw),
                                     &status, &headers, &exc_info))
        return nullptr;
    if (exc_info != Py_None) {
        if (self->committed) {
            // PEP 3333: the head is out; re-raise the application's error.
            if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
                PyErr_SetString(PyExc_TypeError, "exc_info must be a (type, value, traceback) tuple");
                return nullptr;
            }
            PyObject* t = PyTuple_GET_ITEM(exc_info, 0);
            PyObject* v = PyTuple_GET_ITEM(exc_info, 1);
            PyObject* tb = PyTuple_GET_ITEM(exc_info, 2);
            Py_INCREF(t);
            Py_INCREF(v);
            if (tb == Py_None)
                tb = nullptr;
            else
                Py_INCREF(tb);
            PyErr_Restore(t, v, tb);
            return nullptr;
        }
    } else if (self->status) {
        PyErr_SetString(PyExc_RuntimeError, "start_response() called twice without exc_info");
        return nullptr;
    }
    if (!PyUnicode_Check(status)) {
        PyErr_SetString(PyExc_TypeError, "status must be a str such as '200 OK'");
        return nullptr;
    }
    Py_ssize_t slen = PyUnicode_GET_LENGTH(status);
    bool ok = slen >= 3 && PyUnicode_KIND(status) == PyUnicode_1BYTE_KIND;
    if (ok) {
        const char* s = reinterpret_cast<const char*>(PyUnicode_1BYTE_DATA(status));
        ok = std::isdigit(static_cast<unsigned char>(s[0])) && std::isdigit(static_cast<unsigned char>(s[1])) &&
             std::isdigit(static_cast<unsigned char>(s[2])) && s[0] != '0' && (slen == 3 || s[3] == ' ') &&
             !has_control(status);
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "invalid status %R: expected three digits and a reason, as '200 OK'", status);
        return nullptr;
    }
    if (!PyList_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "response_headers must be a list of (name, value) tuples");
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); ++i) {
        PyObject* h = PyList_GET_ITEM(headers, i);
        if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(h, 0)) ||
            !PyUnicode_Check(PyTuple_GET_ITEM(h, 1))) {
            PyErr_Format(PyExc_TypeError, "response header %R is not a (str, str) tuple", h);
            return nullptr;
        }
        if (has_control(PyTuple_GET_ITEM(h, 0)) || has_control(PyTuple_GET_ITEM(h, 1))) {
            PyErr_Format(PyExc_ValueError, "response header %R holds a control character (CR/LF injection?)", h);
            return nullptr;
        }
    }
    Py_INCREF(status);
    Py_XSETREF(self->status, status);
    Py_INCREF(headers);
    Py_XSETREF(self->headers, headers);
    // write holds self: a cycle the owner breaks (see wsgi_app::release_sr).
    if (!self->write && !(self->write = PyCFunction_New(&sr_write_def, self_)))
        return nullptr;
    Py_INCREF(self->write);
    return self->write;
}

PyObject* sr_write(PyObject* self_, PyObject* data)
{
    auto* self = reinterpret_cast<start_response_object*>(self_);
    // write() data is sent ahead of the body; once the head is out (the
    // iterable is being sent, or the request is over) it would be lost.
    if (self->committed) {
        PyErr_SetString(PyExc_RuntimeError,
                        "write() called after the response started (during iteration or after the request "
                        "ended); yield the bytes from the iterable instead");
        return nullptr;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return nullptr;
    }
    if (!self->written && !(self->written = PyList_New(0)))
        return nullptr;
    if (PyList_Append(self->written, data) < 0)
        return nullptr;
    Py_RETURN_NONE;
}

PyMethodDef sr_methods[] = {
    {"write", sr_write, METH_O, "Write body bytes (buffered until the application returns)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyTypeObject start_response_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

// Hands the status line and headers to the core; false with a Python error set.
bool commit(response& res, start_response_object* sr)
{
    if (!sr->status) {
        PyErr_SetString(PyExc_RuntimeError, "the application returned without calling start_response()");
        return false;
    }
    try {
        const char* s = reinterpret_cast<const char*>(PyUnicode_1BYTE_DATA(sr->status));
        Py_ssize_t n = PyUnicode_GET_LENGTH(sr->status);
        int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        if (n > 4)
            res.status(code, std::string_view(s + 4, static_cast<std::size_t>(n - 4)));
        else
            res.status(code);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sr->headers); ++i) {
            PyObject* h = PyList_GET_ITEM(sr->headers, i);
            PyObject* name = PyTuple_GET_ITEM(h, 0);
            PyObject* value = PyTuple_GET_ITEM(h, 1);
            if (PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
                PyErr_Format(PyExc_ValueError, "response header %R is not latin-1 (PEP 3333)", h);
                return false;
            }
            res.header(std::string_view(reinterpret_cast<const char*>(PyUnicode_1BYTE_DATA(name)),
                                        static_cast<std::size_t>(PyUnicode_GET_LENGTH(name))),
                       std::string_view(reinterpret_cast<const char*>(PyUnicode_1BYTE_DATA(value)),
                                        static_cast<std::size_t>(PyUnicode_GET_LENGTH(value))));
        }
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
        return false;
    }
    sr->committed = 1;
    return true;
}


void bind_start_response(pyb::module_& m)
{
    start_response_type.tp_name = "fapws._core.StartResponse";
    start_response_type.tp_basicsize = sizeof(start_response_object);
    start_response_type.tp_flags = Py_TPFLAGS_DEFAULT;
    start_response_type.tp_doc = "The start_response callable of one request (PEP 3333).";
    start_response_type.tp_call = sr_call;
    start_response_type.tp_dealloc = sr_dealloc;
    start_response_type.tp_methods = sr_methods;
    if (PyType_Ready(&start_response_type) < 0)
        throw pyb::error_already_set();
    Py_INCREF(&start_response_type);
    m.add_object("StartResponse", reinterpret_cast<PyObject*>(&start_response_type));
}

}  // namespace fapws::py
