// The WSGI bridge. The per-request path uses the CPython API directly: the
// environ is a copy of a prepared dict with interned keys, start_response and
// wsgi.input are small C types, and bodies are handed to the core as views
// of the application's bytes objects.
#include "wsgi.hpp"

#include "proxies.hpp"
#include "pushed.hpp"

#include <fapws/log.hpp>

#include <boost/beast/core/string.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace fapws::py {

namespace {

constexpr std::size_t small_body = 16 * 1024;

// A dict with room for n keys. _PyDict_NewPresized is private CPython API,
// present from 3.9 to 3.12 at least; elsewhere a plain dict (it grows once
// at set-up: the template is built once per route, never per request).
PyObject* presized_dict(Py_ssize_t n)
{
#if PY_VERSION_HEX < 0x030D0000 && !defined(PYPY_VERSION)
    return _PyDict_NewPresized(n);
#else
    (void)n;
    return PyDict_New();
#endif
}

PyObject* intern(const char* s)
{
    return PyUnicode_InternFromString(s);
}

struct names_t {
    PyObject *REQUEST_METHOD, *PATH_INFO, *QUERY_STRING, *CONTENT_TYPE, *CONTENT_LENGTH,
        *SERVER_NAME, *SERVER_PORT, *SERVER_PROTOCOL, *REMOTE_ADDR, *REMOTE_PORT, *REQUEST_URI,
        *RAW_URI, *wsgi_input, *wsgi_url_scheme, *http10, *http11, *http, *https, *empty, *close,
        *filelike, *fileno;
    PyObject* methods[9];
};
names_t* names = nullptr;
const char* const method_names[9] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"};

void init_names()
{
    if (names)
        return;
    names = new names_t;
    names->REQUEST_METHOD = intern("REQUEST_METHOD");
    names->PATH_INFO = intern("PATH_INFO");
    names->QUERY_STRING = intern("QUERY_STRING");
    names->CONTENT_TYPE = intern("CONTENT_TYPE");
    names->CONTENT_LENGTH = intern("CONTENT_LENGTH");
    names->SERVER_NAME = intern("SERVER_NAME");
    names->SERVER_PORT = intern("SERVER_PORT");
    names->SERVER_PROTOCOL = intern("SERVER_PROTOCOL");
    names->REMOTE_ADDR = intern("REMOTE_ADDR");
    names->REMOTE_PORT = intern("REMOTE_PORT");
    names->REQUEST_URI = intern("REQUEST_URI");
    names->RAW_URI = intern("RAW_URI");
    names->wsgi_input = intern("wsgi.input");
    names->wsgi_url_scheme = intern("wsgi.url_scheme");
    names->http10 = intern("HTTP/1.0");
    names->http11 = intern("HTTP/1.1");
    names->http = intern("http");
    names->https = intern("https");
    names->empty = intern("");
    names->close = intern("close");
    names->filelike = intern("filelike");
    names->fileno = intern("fileno");
    for (int i = 0; i < 9; ++i)
        names->methods[i] = intern(method_names[i]);
}

PyObject* latin1(std::string_view s)
{
    if (s.empty()) {
        Py_INCREF(names->empty);
        return names->empty;
    }
    return PyUnicode_DecodeLatin1(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
}

// PEP 3333: PATH_INFO is the percent-decoded path as bytes, then latin-1.
PyObject* decoded_path(std::string_view raw)
{
    if (raw.find('%') == std::string_view::npos)
        return latin1(raw);
    return latin1(percent_decode(raw));
}

int set_steal(PyObject* d, PyObject* k, PyObject* v)
{
    if (!v)
        return -1;
    int r = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return r;
}

PyObject* decimal(unsigned long long v)
{
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return PyUnicode_DecodeLatin1(buf, r.ptr - buf, nullptr);
}

std::string_view bytes_view(PyObject* b)
{
    return {PyBytes_AS_STRING(b), static_cast<std::size_t>(PyBytes_GET_SIZE(b))};
}

// ---------------------------------------------------------------- start_response

}  // namespace

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
        // The common case: short latin-1 strings, one table lookup a byte.
        static constexpr auto ctl = [] {
            std::array<bool, 256> t{};
            for (int c = 0; c < 0x20; ++c)
                t[c] = c != '\t';
            t[0x7f] = true;
            return t;
        }();
        const unsigned char* p = PyUnicode_1BYTE_DATA(s);
        for (Py_ssize_t i = 0; i < n; ++i)
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

PyTypeObject start_response_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

// ---------------------------------------------------------------- wsgi.input

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

// ---------------------------------------------------------------- bodies

// A list of bytes with a known total: Content-Length without copying.
class list_source final : public body_source {
public:
    list_source(PyObject* list, std::uint64_t total) : list_(list), total_(total) {}
    ~list_source() override
    {
        gil g;
        Py_DECREF(list_);
    }
    bool next(std::string_view& block) override
    {
        // The application may share this list with its threads.
        gil g;
        if (i_ >= PyList_GET_SIZE(list_))
            return false;
        block = bytes_view(PyList_GET_ITEM(list_, i_++));
        return true;
    }
    std::optional<std::uint64_t> size() const override { return total_; }
    // Its items are all in hand: joining them delays nothing.
    bool gathers() const override { return true; }

private:
    PyObject* list_;
    Py_ssize_t i_ = 0;
    std::uint64_t total_;
};

// Any iterable: one item per block, pulled after the previous write.
class iter_source final : public body_source {
public:
    iter_source(PyObject* result, PyObject* iter, PyObject* first)
        : result_(result), iter_(iter), first_(first)
    {
    }
    ~iter_source() override
    {
        gil g;
        Py_XDECREF(current_);
        Py_XDECREF(first_);
        Py_XDECREF(iter_);
        // PEP 3333: close() exactly once, whether the body ended, failed or
        // the client went away.
        if (PyObject_HasAttr(result_, names->close)) {
            PyObject* r = PyObject_CallMethodNoArgs(result_, names->close);
            if (r)
                Py_DECREF(r);
            else
                log_python_error("close() of the response iterable");
        }
        Py_DECREF(result_);
    }
    bool next(std::string_view& block) override
    {
        gil g;
        Py_CLEAR(current_);
        if (first_) {
            current_ = first_;
            first_ = nullptr;
            block = bytes_view(current_);
            return true;
        }
        PyObject* item = PyIter_Next(iter_);
        if (!item) {
            if (PyErr_Occurred())
                throw std::runtime_error(log_python_error("response iterable"));
            return false;
        }
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            throw std::runtime_error(log_python_error("response iterable"));
        }
        current_ = item;
        block = bytes_view(item);
        return true;
    }

private:
    PyObject* result_;
    PyObject* iter_;
    PyObject* first_;
    PyObject* current_ = nullptr;
};

// Calls result.close() (PEP 3333) without losing the error that made us
// close: it stays pending for the caller's log, which then shows the real
// traceback instead of "NoneType: None".
void call_close(PyObject* result)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (PyObject_HasAttr(result, names->close)) {
        PyObject* r = PyObject_CallMethodNoArgs(result, names->close);
        if (r)
            Py_DECREF(r);
        else
            log_python_error("close() of the response iterable");
    }
    PyErr_Restore(t, v, tb);
}

}  // namespace

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

namespace {

// The body of a list, tuple or write() data: small ones are copied once into
// the response, larger ones are sent from the bytes objects themselves.
void list_body(response& res, PyObject* items, std::uint64_t total)
{
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (total <= small_body) {
        std::string body;
        body.reserve(static_cast<std::size_t>(total));
        for (Py_ssize_t i = 0; i < n; ++i)
            body.append(bytes_view(PyList_GET_ITEM(items, i)));
        res.body(std::move(body));
        return;
    }
    Py_INCREF(items);
    res.stream(std::make_unique<list_source>(items, total));
}

}  // namespace

std::string log_python_error(const char* context)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v)
        PyException_SetTraceback(v, tb);
    std::string text;
    PyObject* mod = PyImport_ImportModule("traceback");
    PyObject* lines = mod ? PyObject_CallMethod(mod, "format_exception", "OOO", t ? t : Py_None,
                                                v ? v : Py_None, tb ? tb : Py_None)
                          : nullptr;
    if (lines) {
        PyObject* sep = PyUnicode_FromString("");
        PyObject* joined = sep ? PyUnicode_Join(sep, lines) : nullptr;
        if (joined) {
            Py_ssize_t n;
            if (const char* s = PyUnicode_AsUTF8AndSize(joined, &n))
                text.assign(s, static_cast<std::size_t>(n));
        }
        Py_XDECREF(joined);
        Py_XDECREF(sep);
    }
    PyErr_Clear();
    Py_XDECREF(lines);
    Py_XDECREF(mod);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    if (text.empty())
        text = "unknown Python error\n";
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    log_error(std::string(context) + " failed:\n" + text);
    return text;
}

wsgi_app::wsgi_app(pyb::object app, pyb::dict environ_template, pyb::object file_wrapper, wsgi_options opt)
    : app_(std::move(app)), file_wrapper_(std::move(file_wrapper)), opt_(std::move(opt)),
      proxies_(opt_.forwarded_allow_ips)
{
    init_names();
    // PyDict_Copy clones the template's table, capacity included. Room for
    // about 40 keys and a slot already holding every key set per request
    // make the environ one copy plus value stores: no resize, no insert but
    // for the request's headers.
    auto t = pyb::reinterpret_steal<pyb::dict>(presized_dict(40));
    if (!t)
        throw pyb::error_already_set();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(environ_template.ptr(), &pos, &k, &v))
        if (PyDict_SetItem(t.ptr(), k, v) < 0)
            throw pyb::error_already_set();
    for (PyObject* key : {names->REQUEST_METHOD, names->PATH_INFO, names->QUERY_STRING, names->REQUEST_URI,
                          names->RAW_URI, names->SERVER_PROTOCOL, names->SERVER_NAME, names->SERVER_PORT,
                          names->REMOTE_ADDR, names->wsgi_url_scheme, names->wsgi_input})
        if (!PyDict_Contains(t.ptr(), key) && PyDict_SetItem(t.ptr(), key, names->empty) < 0)
            throw pyb::error_already_set();
    template_ = std::move(t);
}

// One start_response object per request, reused when the application kept
// no reference to it or to its write(): the common case costs no allocation.
start_response_object* wsgi_app::take_sr()
{
    start_response_object* sr = spare_sr_;
    spare_sr_ = nullptr;
    if (!sr) {
        sr = PyObject_New(start_response_object, &start_response_type);
        if (!sr)
            return nullptr;
        sr->write = nullptr;
    }
    sr->status = sr->headers = sr->written = nullptr;
    sr->committed = 0;
    sr->deferred = 0;
    return sr;
}

void wsgi_app::release_sr(start_response_object* sr)
{
    auto* o = reinterpret_cast<PyObject*>(sr);
    // Held by us, and by write() when it exists; write() held by sr only.
    Py_ssize_t expected = sr->write ? 2 : 1;
    if (!spare_sr_ && Py_REFCNT(o) == expected && (!sr->write || Py_REFCNT(sr->write) == 1)) {
        Py_CLEAR(sr->status);
        Py_CLEAR(sr->headers);
        Py_CLEAR(sr->written);
        spare_sr_ = sr;
        return;
    }
    if (!sr->deferred)
        sr->committed = 1;  // the request is over for a write() the app kept
    Py_CLEAR(sr->write);  // breaks the cycle; a write() kept by the app keeps sr
    Py_DECREF(o);
}

wsgi_app::~wsgi_app()
{
    gil g;
    if (spare_sr_) {
        Py_CLEAR(spare_sr_->write);
        Py_DECREF(reinterpret_cast<PyObject*>(spare_sr_));
    }
    for (auto& [k, v] : header_keys_)
        Py_DECREF(v);
    for (auto& [k, v] : listeners_) {
        Py_DECREF(v.first);
        Py_DECREF(v.second);
    }
    Py_XDECREF(last_addr_);
    app_ = pyb::object();
    template_ = pyb::dict();
    file_wrapper_ = pyb::object();
}

PyObject* wsgi_app::header_key(std::string_view name)
{
    auto it = header_keys_.find(std::string(name));
    if (it != header_keys_.end()) {
        Py_INCREF(it->second);
        return it->second;
    }
    std::string key = "HTTP_";
    for (char c : name)
        key.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    PyObject* k = PyUnicode_DecodeLatin1(key.data(), static_cast<Py_ssize_t>(key.size()), nullptr);
    if (k && header_keys_.size() < 512) {
        PyUnicode_InternInPlace(&k);
        Py_INCREF(k);
        header_keys_.emplace(std::string(name), k);
    }
    return k;
}

PyObject* wsgi_app::listener_value(const listener_info& l, bool port)
{
    if (&l == last_listener_) {
        PyObject* v = port ? last_listener_values_.second : last_listener_values_.first;
        Py_INCREF(v);
        return v;
    }
    auto it = listeners_.find(&l);
    if (it == listeners_.end()) {
        std::string name = l.address;
        if (name.empty() || name == "::" || name == "0.0.0.0")
            name = "localhost";
        PyObject* n = PyUnicode_FromString(name.c_str());
        PyObject* p = PyUnicode_FromString(std::to_string(l.port).c_str());
        it = listeners_.emplace(&l, std::make_pair(n, p)).first;
    }
    last_listener_ = &l;
    last_listener_values_ = it->second;
    PyObject* v = port ? it->second.second : it->second.first;
    Py_INCREF(v);
    return v;
}

PyObject* wsgi_app::build_environ(const request& req)
{
    PyObject* env = PyDict_Copy(template_.ptr());
    if (!env)
        return nullptr;
    auto fail = [&] {
        Py_DECREF(env);
        return nullptr;
    };
    PyObject* method = nullptr;
    for (int i = 0; i < 9 && !method; ++i)
        if (req.method() == method_names[i]) {
            method = names->methods[i];
            Py_INCREF(method);
        }
    if (!method)
        method = latin1(req.method());
    if (set_steal(env, names->REQUEST_METHOD, method) < 0 ||
        set_steal(env, names->PATH_INFO, decoded_path(req.path_info())) < 0 ||
        set_steal(env, names->QUERY_STRING, latin1(req.query())) < 0)
        return fail();
    PyObject* uri = latin1(req.target());
    if (!uri || PyDict_SetItem(env, names->REQUEST_URI, uri) < 0 || set_steal(env, names->RAW_URI, uri) < 0)
        return fail();
    PyObject* proto = req.version() == 10 ? names->http10 : names->http11;
    Py_INCREF(proto);
    if (set_steal(env, names->SERVER_PROTOCOL, proto) < 0 ||
        set_steal(env, names->SERVER_NAME, listener_value(req.listener(), false)) < 0 ||
        set_steal(env, names->SERVER_PORT, listener_value(req.listener(), true)) < 0)
        return fail();

    std::string addr = req.listener().unix_socket ? std::string() : req.remote_addr();
    if (!last_addr_ || addr != last_addr_text_) {
        Py_XDECREF(last_addr_);
        last_addr_ = latin1(addr);
        last_addr_text_ = addr;
        if (!last_addr_)
            return fail();
    }
    Py_INCREF(last_addr_);
    if (set_steal(env, names->REMOTE_ADDR, last_addr_) < 0)
        return fail();
    if (!req.listener().unix_socket &&
        set_steal(env, names->REMOTE_PORT, decimal(req.remote_port())) < 0)
        return fail();

    bool had_length = false;
    for (const auto& f : req.fields()) {
        if (boost::beast::iequals(f.name, "content-type")) {
            if (set_steal(env, names->CONTENT_TYPE, latin1(f.value)) < 0)
                return fail();
            continue;
        }
        if (boost::beast::iequals(f.name, "content-length")) {
            had_length = true;
            continue;
        }
        // A '_' in a name could impersonate another header once mapped to
        // HTTP_*: dropped, as nginx and gunicorn do.
        if (f.name.find('_') != std::string_view::npos)
            continue;
        PyObject* key = header_key(f.name);
        if (!key)
            return fail();
        PyObject* value = latin1(f.value);
        if (!value) {
            Py_DECREF(key);
            return fail();
        }
        PyObject* prev = PyDict_GetItemWithError(env, key);
        if (prev) {
            // Repeated header: joined, as PEP 3333 (CGI) asks.
            const char* sep = boost::beast::iequals(f.name, "cookie") ? "; " : ",";
            PyObject* joined = PyUnicode_FromFormat("%U%s%U", prev, sep, value);
            Py_DECREF(value);
            value = joined;
        }
        int r = value ? PyDict_SetItem(env, key, value) : -1;
        Py_XDECREF(value);
        Py_DECREF(key);
        if (r < 0)
            return fail();
    }
    const request_body& body = req.body();
    if (had_length || body.size() > 0) {
        if (set_steal(env, names->CONTENT_LENGTH, decimal(body.size())) < 0)
            return fail();
    }
    PyObject* scheme = nullptr;
    // Forwarding headers count only from a trusted proxy; without any, the
    // check costs one pass over the header names.
    if (!proxies_.empty() && has_forwarding(req) && proxies_.trusts(addr)) {
        forwarded_info f = forwarded_by(req, proxies_);
        if (!f.client.empty() && set_steal(env, names->REMOTE_ADDR, latin1(f.client)) < 0)
            return fail();
        if (!f.proto.empty())
            scheme = f.proto == "https" ? names->https : names->http;
    }
    if (!scheme)
        scheme = req.listener().url_scheme == "https" ? names->https : names->http;
    Py_INCREF(scheme);
    if (set_steal(env, names->wsgi_url_scheme, scheme) < 0 || set_steal(env, names->wsgi_input, make_input(body)) < 0)
        return fail();
    return env;
}

void wsgi_app::fail(const request& req, response& res, const char* what)
{
    // The log names the request: which of a thousand failed matters.
    std::string context(what);
    context += " for ";
    context += req.method();
    context += ' ';
    context += req.target().substr(0, 200);
    std::string tb = log_python_error(context.c_str());
    res.clear();
    res.status(500);
    res.header("Content-Type", "text/plain; charset=utf-8");
    if (opt_.debug)
        res.body("Internal Server Error\n\n" + tb + "\n");
    else
        res.body_ref("Internal Server Error\n");
}

void wsgi_app::operator()(const request& req, response& res)
{
    gil g;
    PyObject* environ = build_environ(req);
    if (!environ)
        return fail(req, res, "building the WSGI environ");
    start_response_object* sr = take_sr();
    if (!sr) {
        Py_DECREF(environ);
        return fail(req, res, "start_response");
    }
    PyObject* args[2] = {environ, reinterpret_cast<PyObject*>(sr)};
    PyObject* result = PyObject_Vectorcall(app_.ptr(), args, 2, nullptr);
    Py_DECREF(environ);
    struct drop_sr {
        wsgi_app* app;
        start_response_object* sr;
        ~drop_sr() { app->release_sr(sr); }
    } drop{this, sr};
    if (!result)
        return fail(req, res, "WSGI application");

    if (is_pushed(result))
        return pushed_body(req, res, result, sr);

    // The common case: a list or tuple of bytes.
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        PyObject* seq = result;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        PyObject** items = PySequence_Fast_ITEMS(seq);
        std::uint64_t total = 0;
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (!PyBytes_Check(items[i])) {
                PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s",
                             Py_TYPE(items[i])->tp_name);
                Py_DECREF(result);
                return fail(req, res, "WSGI application");
            }
            total += static_cast<std::uint64_t>(PyBytes_GET_SIZE(items[i]));
        }
        if (!commit(res, sr)) {
            Py_DECREF(result);
            return fail(req, res, "WSGI application");
        }
        if (!sr->written && n == 1 && total <= small_body) {
            res.body(std::string(bytes_view(items[0])));
        } else {
            PyObject* all = sr->written ? sr->written : PyList_New(0);
            if (sr->written)
                Py_INCREF(all);
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); ++i)
                total += static_cast<std::uint64_t>(PyBytes_GET_SIZE(PyList_GET_ITEM(all, i)));
            for (Py_ssize_t i = 0; all && i < n; ++i)
                PyList_Append(all, items[i]);
            if (!all) {
                Py_DECREF(result);
                return fail(req, res, "WSGI application");
            }
            list_body(res, all, total);
            Py_DECREF(all);
        }
        Py_DECREF(result);
        return;
    }

    // wsgi.file_wrapper over a real file: sendfile from its descriptor.
    if (file_wrapper_ && Py_TYPE(result) == reinterpret_cast<PyTypeObject*>(file_wrapper_.ptr()) && !sr->written) {
        PyObject* filelike = PyObject_GetAttr(result, names->filelike);
        PyObject* fdobj = filelike ? PyObject_CallMethodNoArgs(filelike, names->fileno) : nullptr;
        Py_XDECREF(filelike);
        int fd = fdobj ? static_cast<int>(PyLong_AsLong(fdobj)) : -1;
        Py_XDECREF(fdobj);
        struct stat st;
        off_t pos = fd >= 0 ? ::lseek(fd, 0, SEEK_CUR) : -1;
        if (fd >= 0 && pos >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            if (!commit(res, sr)) {
                call_close(result);
                Py_DECREF(result);
                return fail(req, res, "WSGI application");
            }
            int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (dup >= 0) {
                res.file(dup, static_cast<std::uint64_t>(pos),
                         static_cast<std::uint64_t>(std::max<off_t>(0, st.st_size - pos)));
                call_close(result);
                Py_DECREF(result);
                return;
            }
        }
        PyErr_Clear();  // not a real file: iterate it like any iterable
    }

    // Any iterable. Pull up to the first non-empty item: the application may
    // call start_response as late as that (PEP 3333).
    PyObject* iter = PyObject_GetIter(result);
    if (!iter) {
        Py_DECREF(result);
        return fail(req, res, "WSGI application (result is not iterable)");
    }
    PyObject* first = nullptr;
    for (;;) {
        PyObject* item = PyIter_Next(iter);
        if (!item) {
            if (PyErr_Occurred()) {
                Py_DECREF(iter);
                call_close(result);
                Py_DECREF(result);
                return fail(req, res, "WSGI application");
            }
            break;
        }
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            Py_DECREF(iter);
            call_close(result);
            Py_DECREF(result);
            return fail(req, res, "WSGI application");
        }
        if (PyBytes_GET_SIZE(item) > 0) {
            first = item;
            break;
        }
        Py_DECREF(item);
    }
    if (!commit(res, sr)) {
        Py_XDECREF(first);
        Py_DECREF(iter);
        call_close(result);
        Py_DECREF(result);
        return fail(req, res, "WSGI application");
    }
    if (sr->written) {
        // write() data goes first; then the iterable.
        PyObject* w = sr->written;
        std::uint64_t total = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(w); ++i)
            total += static_cast<std::uint64_t>(PyBytes_GET_SIZE(PyList_GET_ITEM(w, i)));
        if (!first) {
            Py_DECREF(iter);
            call_close(result);
            Py_DECREF(result);
            list_body(res, w, total);
            return;
        }
        // Rare: both. Concatenate what was written with the first item.
        PyObject* joined = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total) + PyBytes_GET_SIZE(first));
        char* p = PyBytes_AS_STRING(joined);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(w); ++i) {
            std::string_view v = bytes_view(PyList_GET_ITEM(w, i));
            std::memcpy(p, v.data(), v.size());
            p += v.size();
        }
        std::memcpy(p, PyBytes_AS_STRING(first), static_cast<std::size_t>(PyBytes_GET_SIZE(first)));
        Py_DECREF(first);
        first = joined;
    }
    res.stream(std::make_unique<iter_source>(result, iter, first));
}

// A fapws.Pushed: the body comes later, from send(). The status and headers
// known now decide the framing; the head itself waits for the first block.
void wsgi_app::pushed_body(const request& req, response& res, PyObject* result, start_response_object* sr)
{
    if (sr->status && !commit(res, sr)) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        drop_pushed(result);  // on_close: this body will not be served
        PyErr_Restore(t, v, tb);
        Py_DECREF(result);
        return fail(req, res, "WSGI application");
    }
    std::unique_ptr<body_source> src = take_pushed(result, sr, sr->written, *opt_.loop);
    Py_DECREF(result);
    Py_CLEAR(sr->written);
    if (!src)
        return fail(req, res, "WSGI application");
    res.stream(std::move(src));
}

void bind_wsgi(pyb::module_& m)
{
    init_names();
    start_response_type.tp_name = "fapws._core.StartResponse";
    start_response_type.tp_basicsize = sizeof(start_response_object);
    start_response_type.tp_flags = Py_TPFLAGS_DEFAULT;
    start_response_type.tp_doc = "The start_response callable of one request (PEP 3333).";
    start_response_type.tp_call = sr_call;
    start_response_type.tp_dealloc = sr_dealloc;
    start_response_type.tp_methods = sr_methods;
    if (PyType_Ready(&start_response_type) < 0)
        throw pyb::error_already_set();

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

    Py_INCREF(&start_response_type);
    m.add_object("StartResponse", reinterpret_cast<PyObject*>(&start_response_type));
    Py_INCREF(&input_type);
    m.add_object("Input", reinterpret_cast<PyObject*>(&input_type));
}

}  // namespace fapws::py
