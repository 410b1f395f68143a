// Errors the library throws during setup (and, for older includes, the
// counters: stats.hpp).
#pragma once

#include <fapws/stats.hpp>

#include <stdexcept>
#include <string>

namespace fapws {

// Setup failed: bad listen address, bind error, unreadable directory...
// Thrown only from configuration calls, never from the loop.
class setup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The defer queue is full (config::defer_limit); nothing was queued.
class defer_queue_full : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace fapws
