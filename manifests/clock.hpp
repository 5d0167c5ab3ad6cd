// Time for decisions. The watch window (and, as they move over, backoff and rollout waves) read
// the time and wait through a Clock, so their rules are unit-tested with a fake clock in
// milliseconds instead of by processes that sleep (tests/support/fake_clock.hpp).
//
// Thread safety: SteadyClock() may be used from any thread. A Clock's own rules are its
// implementation's; the fake one is for one test thread.
#pragma once

#include <chrono>

namespace edgefleet::manifests {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  // Monotonic time (not wall-clock: never steps back when the box's time is set).
  virtual TimePoint Now() const = 0;
  // Waits `duration` (a fake clock advances by it instead).
  virtual void SleepFor(Duration duration) = 0;
};

// The process's real clock: std::chrono::steady_clock and std::this_thread::sleep_for.
Clock& SteadyClock();

}  // namespace edgefleet::manifests
