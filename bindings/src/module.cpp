#include <pybind11/pybind11.h>

namespace fapws::py {
void bind_server(pybind11::module_& m);
void bind_wsgi(pybind11::module_& m);
void bind_pushed(pybind11::module_& m);
}  // namespace fapws::py

PYBIND11_MODULE(_core, m)
{
    m.doc() = "FAPWS core: the C++ HTTP server and WSGI bridge (private; use the fapws package).";
    fapws::py::bind_server(m);
    fapws::py::bind_wsgi(m);
    fapws::py::bind_pushed(m);
}
