// wsgi.input: the request body, read before the application runs, from
// memory or from its spool file (a duplicated descriptor: it may outlive
// the request).
#include "bridge.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace fapws::py {

namespace {

struct input_object {
    PyObject_HEAD
    PyObject* data;  // bytes when in memory
    int fd;          // owned spool file descriptor, or -1
    Py_ssize_t pos;
    Py_ssize_t size;
};

void input_dealloc(PyObject* self_)
{
    auto* self = reinterpret_cast<input_object*>(self_);
    Py_XDECREF(self->data);
    if (self->fd >= 0)
        ::close(self->fd);
    PyObject_Free(self_);
}

PyObject* input_slice(input_object* self, Py_ssize_t n)
{
    if (n <= 0)
        return PyBytes_FromStringAndSize(nullptr, 0);
    if (self->data) {
        if (self->pos == 0 && n == self->size) {
            self->pos = n;
            Py_INCREF(self->data);
            return self->data;
        }
        PyObject* r = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->data) + self->pos, n);
        self->pos += n;
        return r;
    }
    PyObject* r = PyBytes_FromStringAndSize(nullptr, n);
    if (!r)
        return nullptr;
    Py_ssize_t done = 0;
    while (done < n) {
        ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = ::pread(self->fd, PyBytes_AS_STRING(r) + done, static_cast<std::size_t>(n - done), self->pos + done);
        Py_END_ALLOW_THREADS
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            Py_DECREF(r);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        done += got;
    }
    self->pos += n;
    return r;
}

Py_ssize_t size_arg(PyObject* const* args, Py_ssize_t nargs, bool& ok)
{
    ok = true;
    if (nargs == 0 || args[0] == Py_None)
        return -1;
    Py_ssize_t v = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred())
        ok = false;
    return v;
}

// The bytes a read(size)/readline(size) may return: the size argument
// (absent, None or negative: all) capped at what is left.
bool read_limit(input_object* self, PyObject* const* args, Py_ssize_t nargs, Py_ssize_t& limit)
{
    bool ok;
    Py_ssize_t want = size_arg(args, nargs, ok);
    Py_ssize_t left = self->size - self->pos;
    limit = want < 0 || want > left ? left : want;
    return ok;
}

PyObject* input_read(PyObject* self_, PyObject* const* args, Py_ssize_t nargs)
{
    auto* self = reinterpret_cast<input_object*>(self_);
    Py_ssize_t limit;
    if (!read_limit(self, args, nargs, limit))
        return nullptr;
    return input_slice(self, limit);
}

// Length of the next line (with its '\n'), at most limit bytes.
Py_ssize_t line_length(input_object* self, Py_ssize_t limit, bool& ok)
{
    ok = true;
    if (self->data) {
        const char* p = PyBytes_AS_STRING(self->data) + self->pos;
        const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(limit));
        return nl ? static_cast<const char*>(nl) - p + 1 : limit;
    }
    char buf[8192];
    Py_ssize_t scanned = 0;
    while (scanned < limit) {
        Py_ssize_t chunk = std::min<Py_ssize_t>(sizeof buf, limit - scanned);
        ssize_t got = ::pread(self->fd, buf, static_cast<std::size_t>(chunk), self->pos + scanned);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            ok = false;
            PyErr_SetFromErrno(PyExc_OSError);
            return 0;
        }
        if (const void* nl = std::memchr(buf, '\n', static_cast<std::size_t>(got)))
            return scanned + (static_cast<const char*>(nl) - buf) + 1;
        scanned += got;
    }
    return limit;
}

PyObject* input_readline(PyObject* self_, PyObject* const* args, Py_ssize_t nargs)
{
    auto* self = reinterpret_cast<input_object*>(self_);
    Py_ssize_t limit;
    if (!read_limit(self, args, nargs, limit))
        return nullptr;
    if (limit == 0)
        return PyBytes_FromStringAndSize(nullptr, 0);
    bool ok;
    Py_ssize_t n = line_length(self, limit, ok);
    if (!ok)
        return nullptr;
    return input_slice(self, n);
}

PyObject* input_readlines(PyObject* self_, PyObject* const* args, Py_ssize_t nargs)
{
    auto* self = reinterpret_cast<input_object*>(self_);
    bool ok;
    Py_ssize_t hint = size_arg(args, nargs, ok);
    if (!ok)
        return nullptr;
    PyObject* lines = PyList_New(0);
    Py_ssize_t total = 0;
    while (lines && self->pos < self->size && (hint <= 0 || total < hint)) {
        Py_ssize_t n = line_length(self, self->size - self->pos, ok);
        PyObject* line = ok ? input_slice(self, n) : nullptr;
        if (!line || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            Py_CLEAR(lines);
            break;
        }
        Py_DECREF(line);
        total += n;
    }
    return lines;
}

PyObject* input_iter(PyObject* self)
{
    Py_INCREF(self);
    return self;
}

PyObject* input_next(PyObject* self_)
{
    auto* self = reinterpret_cast<input_object*>(self_);
    if (self->pos >= self->size)
        return nullptr;
    bool ok;
    Py_ssize_t n = line_length(self, self->size - self->pos, ok);
    return ok ? input_slice(self, n) : nullptr;
}

PyMethodDef input_methods[] = {
    {"read", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_read)), METH_FASTCALL,
     "read(size=-1): up to size bytes; b'' at the end."},
    {"readline", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_readline)), METH_FASTCALL,
     "readline(size=-1)"},
    {"readlines", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_readlines)), METH_FASTCALL,
     "readlines(hint=-1)"},
    {nullptr, nullptr, 0, nullptr},
};

PyTypeObject input_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* empty_input = nullptr;

}  // namespace

PyObject* make_input(const request_body& body)
{
    if (body.size() == 0) {
        // Reading an empty body is stateless: one shared object serves all.
        Py_INCREF(empty_input);
        return empty_input;
    }
    auto* in = PyObject_New(input_object, &input_type);
    if (!in)
        return nullptr;
    in->data = nullptr;
    in->fd = -1;
    in->pos = 0;
    in->size = static_cast<Py_ssize_t>(body.size());
    if (body.in_memory()) {
        // The core's buffer lives only during the call; the input may outlive it.
        in->data = PyBytes_FromStringAndSize(body.data().data(), in->size);
        if (!in->data) {
            Py_DECREF(in);
            return nullptr;
        }
    } else {
        in->fd = ::fcntl(body.fd(), F_DUPFD_CLOEXEC, 0);
        if (in->fd < 0) {
            Py_DECREF(in);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    return reinterpret_cast<PyObject*>(in);
}


void bind_input(pyb::module_& m)
{
    input_type.tp_name = "fapws._core.Input";
    input_type.tp_basicsize = sizeof(input_object);
    input_type.tp_flags = Py_TPFLAGS_DEFAULT;
    input_type.tp_doc = "wsgi.input: the request body, read fully before the application runs.";
    input_type.tp_dealloc = input_dealloc;
    input_type.tp_methods = input_methods;
    input_type.tp_iter = input_iter;
    input_type.tp_iternext = input_next;
    if (PyType_Ready(&input_type) < 0)
        throw pyb::error_already_set();
    auto* in = PyObject_New(input_object, &input_type);
    in->data = PyBytes_FromStringAndSize(nullptr, 0);
    in->fd = -1;
    in->pos = in->size = 0;
    empty_input = reinterpret_cast<PyObject*>(in);
    Py_INCREF(&input_type);
    m.add_object("Input", reinterpret_cast<PyObject*>(&input_type));
}

}  // namespace fapws::py
