// The C++ embedder under benchmark: the bench workloads on fapws handlers.
//   cpp_server PORT [STATIC_DIR]
#include <fapws/server.hpp>

#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

class repeat_source final : public fapws::body_source {
public:
    // Its blocks are in hand: the embedder's fast path joins them per write
    // (a WSGI generator never is: PEP 3333 forbids holding a block back).
    bool gathers() const override { return true; }
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
    // Asynchronous workloads (issue #10): requests left pending, and SSE
    // subscribers that GET /publish sends one event to.
    std::vector<fapws::responder> pending;
    srv.route("/pending", [&pending](fapws::responder r) { pending.push_back(std::move(r)); });
    std::set<std::shared_ptr<fapws::body_writer>> subscribers;
    srv.route("/events", [&subscribers](fapws::responder r) {
        fapws::response head;
        head.header("Content-Type", "text/event-stream");
        fapws::error_code ec;
        auto w = std::make_shared<fapws::body_writer>(r.start_stream(std::move(head), ec));
        if (!ec)
            subscribers.insert(w);
    });
    long published = 0;
    srv.route("/publish", [&](const fapws::request&, fapws::response& res) {
        std::string event = "data: event " + std::to_string(++published) + "\n\n";
        for (auto it = subscribers.begin(); it != subscribers.end();) {
            if ((*it)->client_gone()) {
                it = subscribers.erase(it);
                continue;
            }
            (*it)->async_write(event, [](fapws::error_code) {});
            ++it;
        }
        res.body(std::to_string(subscribers.size()) + "\n");
    });
    if (argc > 2)
        srv.static_files("/static", argv[2]);
    srv.listen(std::string("127.0.0.1:") + argv[1]);
    srv.run();
}
