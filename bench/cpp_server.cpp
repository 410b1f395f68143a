// The C++ embedder under benchmark: the bench workloads on fapws handlers.
//   cpp_server PORT [STATIC_DIR]
#include <fapws/server.hpp>

#include <string>

namespace {

class repeat_source final : public fapws::body_source {
public:
    bool next(std::string_view& b) override
    {
        if (n_++ >= 100)
            return false;
        b = block_;
        return true;
    }

private:
    int n_ = 0;
    std::string block_ = std::string(1024, 'g');
};

}  // namespace

int main(int argc, char** argv)
{
    fapws::server srv;
    static const std::string ten_k(10 * 1024, 'k');
    srv.route("/", [](const fapws::request&, fapws::response& res) {
        res.header("Content-Type", "text/plain");
        res.body_ref("Hello, World!");
    });
    srv.route("/10k", [](const fapws::request&, fapws::response& res) {
        res.header("Content-Type", "text/plain");
        res.body_ref(ten_k);
    });
    srv.route("/echo", [](const fapws::request& req, fapws::response& res) {
        std::string body(req.body().size(), '\0');
        req.body().read_at(0, body.data(), body.size());
        res.header("Content-Type", "application/octet-stream");
        res.body(std::move(body));
    });
    srv.route("/gen", [](const fapws::request&, fapws::response& res) {
        res.stream(std::make_unique<repeat_source>());
    });
    if (argc > 2)
        srv.static_files("/static", argv[2]);
    srv.listen(std::string("127.0.0.1:") + argv[1]);
    srv.run();
}
