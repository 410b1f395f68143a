// The WSGI bridge: calls the application and hands its answer to the core.
// The per-request path uses the CPython API directly: the environ is a copy
// of a prepared dict with interned keys (environ.cpp), start_response and
// wsgi.input are small C types (start_response.cpp, input.cpp), and bodies
// are handed to the core as views of the application's bytes objects
// (bodies.cpp, pushed.cpp).
#include "bridge.hpp"
#include "pushed.hpp"

#include <fapws/log.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace fapws::py {

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
    remote_addr_.reset();
    remote_port_.reset();
    host_.reset();
    app_ = pyb::object();
    template_ = pyb::dict();
    file_wrapper_ = pyb::object();
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
    py_ref environ(build_environ(req));
    if (!environ)
        return fail(req, res, "building the WSGI environ");
    start_response_object* sr = take_sr();
    if (!sr)
        return fail(req, res, "start_response");
    struct drop_sr {
        wsgi_app* app;
        start_response_object* sr;
        ~drop_sr() { app->release_sr(sr); }
    } drop{this, sr};
    PyObject* args[2] = {environ.get(), reinterpret_cast<PyObject*>(sr)};
    py_ref result(PyObject_Vectorcall(app_.ptr(), args, 2, nullptr));
    environ = py_ref();
    if (!result)
        return fail(req, res, "WSGI application");
    // The answer's shape decides how its body reaches the core.
    if (is_pushed(result.get()))
        return pushed_body(req, res, std::move(result), sr);
    if (PyList_CheckExact(result.get()) || PyTuple_CheckExact(result.get()))
        return sequence_body(req, res, std::move(result), sr);
    if (file_wrapper_ && Py_TYPE(result.get()) == reinterpret_cast<PyTypeObject*>(file_wrapper_.ptr()) &&
        !sr->written && file_body(req, res, result, sr))
        return;
    iterable_body(req, res, std::move(result), sr);
}

// The common case: a list or tuple of bytes, with a Content-Length.
void wsgi_app::sequence_body(const request& req, response& res, py_ref result, start_response_object* sr)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(result.get());
    PyObject** items = PySequence_Fast_ITEMS(result.get());
    std::uint64_t total = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s", Py_TYPE(items[i])->tp_name);
            return fail(req, res, "WSGI application");
        }
        total += static_cast<std::uint64_t>(PyBytes_GET_SIZE(items[i]));
    }
    if (!commit(res, sr))
        return fail(req, res, "WSGI application");
    if (!sr->written && n == 1 && total <= small_body) {
        res.body(std::string(bytes_view(items[0])));
        return;
    }
    // write() data first, then the items.
    if (sr->written)
        Py_INCREF(sr->written);  // Py_NewRef is 3.10+
    py_ref all(sr->written ? sr->written : PyList_New(0));
    if (!all)
        return fail(req, res, "WSGI application");
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all.get()); ++i)
        total += static_cast<std::uint64_t>(PyBytes_GET_SIZE(PyList_GET_ITEM(all.get(), i)));
    for (Py_ssize_t i = 0; i < n; ++i)
        if (PyList_Append(all.get(), items[i]) < 0)
            return fail(req, res, "WSGI application");
    list_body(res, all.get(), total);
}

// wsgi.file_wrapper over a regular file: sendfile from its descriptor, at
// its current position. False when it is not a real file (then it is
// iterated like any iterable).
bool wsgi_app::file_body(const request& req, response& res, const py_ref& result, start_response_object* sr)
{
    py_ref filelike(PyObject_GetAttr(result.get(), names->filelike));
    py_ref fdobj(filelike ? PyObject_CallMethodNoArgs(filelike.get(), names->fileno) : nullptr);
    int fd = fdobj ? static_cast<int>(PyLong_AsLong(fdobj.get())) : -1;
    struct stat st;
    off_t pos = fd >= 0 ? ::lseek(fd, 0, SEEK_CUR) : -1;
    if (fd < 0 || pos < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        PyErr_Clear();
        return false;
    }
    if (!commit(res, sr)) {
        call_close(result.get());
        fail(req, res, "WSGI application");
        return true;
    }
    int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
        PyErr_Clear();
        return false;
    }
    res.file(dup, static_cast<std::uint64_t>(pos), static_cast<std::uint64_t>(std::max<off_t>(0, st.st_size - pos)));
    call_close(result.get());
    return true;
}

// Any other iterable. Pulled up to its first non-empty item here: the
// application may call start_response as late as that (PEP 3333); the
// rest is pulled by the core, one item per block.
void wsgi_app::iterable_body(const request& req, response& res, py_ref result, start_response_object* sr)
{
    py_ref iter(PyObject_GetIter(result.get()));
    if (!iter)
        return fail(req, res, "WSGI application (result is not iterable)");
    py_ref first;
    for (;;) {
        py_ref item(PyIter_Next(iter.get()));
        if (!item) {
            if (PyErr_Occurred()) {
                call_close(result.get());
                return fail(req, res, "WSGI application");
            }
            break;
        }
        if (!PyBytes_Check(item.get())) {
            PyErr_Format(PyExc_TypeError, "response body items must be bytes, not %.100s",
                         Py_TYPE(item.get())->tp_name);
            call_close(result.get());
            return fail(req, res, "WSGI application");
        }
        if (PyBytes_GET_SIZE(item.get()) > 0) {
            first = std::move(item);
            break;
        }
    }
    if (!commit(res, sr)) {
        call_close(result.get());
        return fail(req, res, "WSGI application");
    }
    if (sr->written) {
        PyObject* w = sr->written;
        std::uint64_t total = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(w); ++i)
            total += static_cast<std::uint64_t>(PyBytes_GET_SIZE(PyList_GET_ITEM(w, i)));
        if (!first) {
            call_close(result.get());
            return list_body(res, w, total);
        }
        // Rare: both. write() data joined with the first item.
        py_ref joined(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total) + PyBytes_GET_SIZE(first.get())));
        if (!joined) {
            call_close(result.get());
            return fail(req, res, "WSGI application");
        }
        char* p = PyBytes_AS_STRING(joined.get());
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(w); ++i) {
            std::string_view v = bytes_view(PyList_GET_ITEM(w, i));
            std::memcpy(p, v.data(), v.size());
            p += v.size();
        }
        std::memcpy(p, PyBytes_AS_STRING(first.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(first.get())));
        first = std::move(joined);
    }
    res.stream(fapws::py::iterable_body(result.release(), iter.release(), first.release()));
}

// A fapws.Pushed: the body comes later, from send(). The status and headers
// known now decide the framing; the head itself waits for the first block.
void wsgi_app::pushed_body(const request& req, response& res, py_ref result, start_response_object* sr)
{
    if (sr->status && !commit(res, sr)) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        drop_pushed(result.get());  // on_close: this body will not be served
        PyErr_Restore(t, v, tb);
        return fail(req, res, "WSGI application");
    }
    std::unique_ptr<body_source> src = take_pushed(result.get(), sr, sr->written, *opt_.loop);
    result = py_ref();
    Py_CLEAR(sr->written);
    if (!src)
        return fail(req, res, "WSGI application");
    res.stream(std::move(src));
}

void bind_wsgi(pyb::module_& m)
{
    init_names();
    bind_start_response(m);
    bind_input(m);
}

}  // namespace fapws::py
