// The embedder example: one route, one timer, one deferred task.
//   hello [HOST:PORT]     (default 127.0.0.1:8080)
#include <fapws/server.hpp>

#include <chrono>
#include <iostream>

int main(int argc, char** argv)
{
    try {
        fapws::server srv;
        srv.route("/", [](const fapws::request&, fapws::response& res) {
            res.header("Content-Type", "text/plain");
            res.body_ref("Hello, World!");
        });
        srv.add_timer(std::chrono::seconds(60), [&srv] {
            const auto& c = srv.counters();
            fapws::log_info("served " + std::to_string(c.requests) + " requests");
        });
        srv.defer([] { fapws::log_info("loop idle: ready"); });
        auto where = srv.listen(argc > 1 ? argv[1] : "127.0.0.1:8080");
        fapws::log_info("listening on http://" + where.address + ":" + std::to_string(where.port) + "/");
        srv.run();
    } catch (const fapws::setup_error& e) {
        std::cerr << "hello: " << e.what() << '\n';
        return 2;
    }
}
