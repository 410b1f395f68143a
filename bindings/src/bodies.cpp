// Response bodies handed to the core: a list of bytes (joined when small,
// sent from the bytes objects otherwise) and any iterable, one item per
// block, pulled after the previous block went to the socket.
#include "bridge.hpp"

#include <fapws/log.hpp>

#include <stdexcept>

namespace fapws::py {

namespace {


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
        call_close(result_);
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

}  // namespace

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


std::unique_ptr<body_source> iterable_body(PyObject* result, PyObject* iter, PyObject* first)
{
    return std::make_unique<iter_source>(result, iter, first);
}

}  // namespace fapws::py
