// Server-sent events to every subscriber from one timer: an idle subscriber
// costs a connection and a body_writer, no thread. Open / in a browser.
//   sse [HOST:PORT]     (default 127.0.0.1:8080); GET /events streams
#include <fapws/server.hpp>

#include <chrono>
#include <iostream>
#include <memory>
#include <set>
#include <string>

int main(int argc, char** argv)
{
    try {
        fapws::server srv;
        std::set<std::shared_ptr<fapws::body_writer>> subscribers;
        srv.route("/events", [&subscribers](fapws::responder r) {
            fapws::response head;
            head.header("Content-Type", "text/event-stream");
            head.header("Cache-Control", "no-cache");
            fapws::error_code ec;
            auto w = std::make_shared<fapws::body_writer>(r.start_stream(std::move(head), ec));
            if (!ec)
                subscribers.insert(w);
        });
        srv.route("/", [](const fapws::request&, fapws::response& res) {
            res.header("Content-Type", "text/html; charset=utf-8");
            res.body_ref("<!doctype html><title>clock</title><pre id=t></pre><script>"
                         "new EventSource('/events').onmessage=e=>t.textContent=e.data</script>\n");
        });
        int tick = 0;
        srv.add_timer(std::chrono::seconds(1), [&] {
            std::string event = "data: tick " + std::to_string(++tick) + "\n\n";
            for (auto it = subscribers.begin(); it != subscribers.end();) {
                auto w = *it;
                if (w->client_gone()) {
                    it = subscribers.erase(it);
                    continue;
                }
                // A subscriber that does not read is dropped rather than
                // buffered without end.
                if (w->buffered() > 64 * 1024) {
                    w->abort();
                    it = subscribers.erase(it);
                    continue;
                }
                w->async_write(event, [](fapws::error_code) {});
                ++it;
            }
        });
        auto where = srv.listen(argc > 1 ? argv[1] : "127.0.0.1:8080");
        fapws::log_info("listening on http://" + where.address + ":" + std::to_string(where.port) + "/");
        srv.run();
    } catch (const fapws::setup_error& e) {
        std::cerr << "sse: " << e.what() << '\n';
        return 2;
    }
}
