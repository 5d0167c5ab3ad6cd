// A Clock whose time moves only when the test says so: Advance(), or a SleepFor() of the code
// under test, which returns at once with the time moved on. For one test thread.
#pragma once

#include "manifests/clock.hpp"

namespace edgefleet::testing {

class FakeClock final : public manifests::Clock {
 public:
  TimePoint Now() const override { return now_; }
  void SleepFor(Duration duration) override {
    now_ += duration;
    ++sleeps_;
  }
  void Advance(Duration duration) { now_ += duration; }
  int sleeps() const { return sleeps_; }

 private:
  TimePoint now_{std::chrono::hours(1)};
  int sleeps_ = 0;
};

}  // namespace edgefleet::testing
