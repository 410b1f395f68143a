// The WSGI environ: interned keys, the per-route template copied per
// request, and C++ filling only the per-request values.
#include "bridge.hpp"
#include "proxies.hpp"

#include <boost/beast/core/string.hpp>

#include <charconv>

namespace fapws::py {

namespace {

PyObject* intern(const char* s)
{
    return PyUnicode_InternFromString(s);
}

}  // namespace

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

PyObject* wsgi_app::last_value::get(std::string_view s)
{
    if (!obj || s != text) {
        PyObject* v = latin1(s);
        if (!v)
            return nullptr;
        Py_XSETREF(obj, v);
        text.assign(s);
    }
    Py_INCREF(obj);
    return obj;
}

void wsgi_app::last_value::reset() noexcept
{
    Py_CLEAR(obj);
    text.clear();
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
    PyObject* uri = latin1(req.target());
    if (!uri || PyDict_SetItem(env, names->REQUEST_URI, uri) < 0 || PyDict_SetItem(env, names->RAW_URI, uri) < 0) {
        Py_XDECREF(uri);
        Py_DECREF(method);
        return fail();
    }
    // A target with no query and nothing to decode is PATH_INFO as it is.
    PyObject* path = req.path_info().data() == req.target().data() && req.path_info().size() == req.target().size() &&
                             req.target().find('%') == std::string_view::npos
                         ? uri
                         : decoded_path(req.path_info());
    if (path == uri)
        Py_INCREF(uri);
    Py_DECREF(uri);
    if (set_steal(env, names->REQUEST_METHOD, method) < 0 || set_steal(env, names->PATH_INFO, path) < 0 ||
        set_steal(env, names->QUERY_STRING, latin1(req.query())) < 0)
        return fail();
    PyObject* proto = req.version() == 10 ? names->http10 : names->http11;
    Py_INCREF(proto);
    if (set_steal(env, names->SERVER_PROTOCOL, proto) < 0 ||
        set_steal(env, names->SERVER_NAME, listener_value(req.listener(), false)) < 0 ||
        set_steal(env, names->SERVER_PORT, listener_value(req.listener(), true)) < 0)
        return fail();

    std::string addr = req.listener().unix_socket ? std::string() : req.remote_addr();
    if (set_steal(env, names->REMOTE_ADDR, remote_addr_.get(addr)) < 0)
        return fail();
    if (!req.listener().unix_socket) {
        char port[8];
        auto r = std::to_chars(port, port + sizeof port, req.remote_port());
        if (set_steal(env, names->REMOTE_PORT, remote_port_.get({port, static_cast<std::size_t>(r.ptr - port)})) < 0)
            return fail();
    }

    bool had_length = false;
    bool forwarding = false;  // a forwarding header is present (proxies.hpp)
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
        forwarding = forwarding || is_forwarding(f.name);
        PyObject* key = header_key(f.name);
        if (!key)
            return fail();
        PyObject* value = f.name.size() == 4 && boost::beast::iequals(f.name, "host") ? host_.get(f.value)
                                                                                 : latin1(f.value);
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
    // Forwarding headers count only from a trusted proxy; the loop above
    // noted whether there are any.
    if (forwarding && !proxies_.empty() && proxies_.trusts(addr)) {
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


}  // namespace fapws::py
