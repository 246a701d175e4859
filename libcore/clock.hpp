// Clocks: steady time for deadlines and waits, wall time for what clients read.
#pragma once

#include <chrono>

namespace gatherd::core {

using steady_clock = std::chrono::steady_clock;
using wall_clock = std::chrono::system_clock;
using millis = std::chrono::milliseconds;

// One moment on both clocks: a batch of jobs is admitted at one instant, as a transaction's
// rows share its timestamp, so every job of a batch has the same created_at and its timed
// work (a sleep) counts from the same moment.
struct instant {
  wall_clock::time_point wall;
  steady_clock::time_point steady;
  static instant now() { return {wall_clock::now(), steady_clock::now()}; }
};

}  // namespace gatherd::core
