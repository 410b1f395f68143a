// Private: what a responder owns while its answer is pending. Never installed.
#pragma once

#include <fapws/responder.hpp>

#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>

namespace fapws::detail {

class connection;

// One request handed to an asynchronous handler. Owned by its responder
// until send()/start_stream() hands it back to the connection, which then
// owns it until the response head is built. The connection only points at
// it (flight::waiting) while it waits, to mark it gone and emit the
// cancellation when the client leaves or the server stops.
struct exchange {
    explicit exchange(connection& c) noexcept;
    ~exchange();  // drops the reference on the connection
    exchange(const exchange&) = delete;
    exchange& operator=(const exchange&) = delete;

    connection* conn;
    request req;  // owns its bytes
    boost::asio::cancellation_signal cancel;
    async_error gone = {};  // set when the answer can no longer be sent
    std::unique_ptr<response> answer;  // set by send(), until it is emitted
    // route_options::timeout, when the route has one.
    std::optional<boost::asio::steady_timer> deadline;
};

}  // namespace fapws::detail
