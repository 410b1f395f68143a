// An answer that waits 200 ms for something (here a timer; in real life an
// upstream call or a database row on the same io_context) without blocking
// any other request. A client that leaves cancels the wait.
//   delayed [HOST:PORT]     (default 127.0.0.1:8080); then GET /
#include <fapws/server.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <iostream>
#include <memory>

namespace net = boost::asio;

int main(int argc, char** argv)
{
    try {
        fapws::server srv;
        srv.route("/", [](fapws::responder r) {
            auto timer = std::make_shared<net::steady_timer>(r.get_executor(), std::chrono::milliseconds(200));
            auto slot = r.cancellation_slot();
            timer->async_wait(net::bind_cancellation_slot(slot, [timer, r = std::move(r)](fapws::error_code ec) mutable {
                if (ec)
                    return;  // the client left: nothing to answer
                fapws::response res;
                res.header("Content-Type", "text/plain");
                res.body("waited 200 ms for " + std::string(r.req().path()) + "\n");
                r.send(std::move(res));
            }));
        });
        auto where = srv.listen(argc > 1 ? argv[1] : "127.0.0.1:8080");
        fapws::log_info("listening on http://" + where.address + ":" + std::to_string(where.port) + "/");
        srv.run();
    } catch (const fapws::setup_error& e) {
        std::cerr << "delayed: " << e.what() << '\n';
        return 2;
    }
}
