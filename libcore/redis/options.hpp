// How a connection (or a subscriber) reaches Redis and how patient it is.
#pragma once

#include <memory>

#include "libcore/clock.hpp"
#include "libcore/redis/endpoint.hpp"
#include "libcore/redis/observer.hpp"

namespace gatherd::core::redis {

struct connection_options {
  endpoint where;
  // Per command (and per subscribe), and for connecting plus AUTH/SELECT/PING: a reply later
  // than this fails the command with `timeout` and resets the connection (`--backend-timeout-ms`).
  millis timeout{1000};
  // Reconnect attempts after a failure wait a random time in [step/2, step]; the step starts at
  // reconnect_min, doubles per failed attempt up to reconnect_max, and resets once connected.
  millis reconnect_min{50};
  millis reconnect_max{2000};
  // Metrics and logs; may be null. Shared: the connection's background work may outlive its
  // handle for a moment.
  std::shared_ptr<connection_observer> observer;
};

}  // namespace gatherd::core::redis
