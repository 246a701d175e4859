// Clocks: steady time for deadlines and waits, wall time for what clients read.
#pragma once

#include <chrono>

namespace gatherd::core {

using steady_clock = std::chrono::steady_clock;
using wall_clock = std::chrono::system_clock;
using millis = std::chrono::milliseconds;

}  // namespace gatherd::core
