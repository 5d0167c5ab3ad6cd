#include "agent/update_machine.hpp"
#include "agent/watch_judge.hpp"

#include <set>
#include <string>

#include <gtest/gtest.h>

namespace edgefleet::agent {
namespace {

using S = DeploymentState;

TEST(TransitionTableTest, HappyPathsReachCommitted) {
  S s = S::kPending;
  for (Event e :
       {Event::kStartDownload, Event::kDownloaded, Event::kManifestMatches, Event::kUnpacked,
        Event::kLoaded, Event::kParityPassed, Event::kActivated, Event::kWatchPassed}) {
    auto next = NextState(s, e);
    ASSERT_TRUE(next) << updater::ToString(s) << " on " << ToString(e);
    s = *next;
  }
  EXPECT_EQ(s, S::kCommitted);
  // Offline: no download, no watch window.
  s = S::kPending;
  for (Event e : {Event::kLocalBundle, Event::kManifestMatches, Event::kUnpacked, Event::kLoaded,
                  Event::kParityPassed, Event::kOfflineActivated}) {
    s = NextState(s, e).value();
  }
  EXPECT_EQ(s, S::kCommitted);
}

TEST(TransitionTableTest, NoWayBackToCommittedAfterServingWithoutWatch) {
  EXPECT_EQ(NextState(S::kWatching, Event::kBreach), S::kRollingBack);
  EXPECT_EQ(NextState(S::kRollingBack, Event::kSwitchedBack), S::kRolledBack);
  EXPECT_EQ(NextState(S::kWatching, Event::kRestartedServing), S::kRollingBack);
  EXPECT_FALSE(NextState(S::kRollingBack, Event::kWatchPassed));
  EXPECT_FALSE(NextState(S::kWatching, Event::kFailure));
  EXPECT_FALSE(NextState(S::kParity, Event::kWatchPassed));
  EXPECT_FALSE(NextState(S::kDownloading, Event::kParityPassed));
}

TEST(TransitionTableTest, EveryStateBeforeServingCanFailOrBeAbandoned) {
  for (S s :
       {S::kPending, S::kDownloading, S::kVerifying, S::kUnpacking, S::kLoading, S::kParity}) {
    EXPECT_EQ(NextState(s, Event::kFailure), S::kFailed) << updater::ToString(s);
    EXPECT_EQ(NextState(s, Event::kInterrupted), S::kAbandoned) << updater::ToString(s);
    EXPECT_FALSE(NextState(s, Event::kRestartedServing)) << updater::ToString(s);
  }
}

TEST(TransitionTableTest, TableIsAFunctionAndLeavesTerminalStatesAlone) {
  std::set<std::pair<S, Event>> seen;
  for (const auto& rule : TransitionTable()) {
    EXPECT_TRUE(seen.insert({rule.from, rule.event}).second)
        << updater::ToString(rule.from) << " on " << ToString(rule.event) << " twice";
    EXPECT_FALSE(updater::IsTerminal(rule.from)) << updater::ToString(rule.from);
    EXPECT_NE(ToString(rule.event), "unknown");
  }
}

// The watch's latency rule needs both the factor and the absolute floor: a sub-millisecond model
// whose p95 doubles on scheduler noise is not rolled back, a real slowdown is.
TEST(LatencyBreachTest, FactorAndFloorMustBothBeExceeded) {
  EXPECT_FALSE(LatencyBreach(0.5, 0.2, 2.0, 1.0));    // 2.5x, but only 0.3 ms more
  EXPECT_FALSE(LatencyBreach(30.0, 20.0, 2.0, 1.0));  // 10 ms more, but only 1.5x
  EXPECT_FALSE(LatencyBreach(2.0, 1.0, 2.0, 0.5));    // exactly the factor is not above it
  auto slow = LatencyBreach(2.5, 0.2, 2.0, 1.0);
  ASSERT_TRUE(slow);
  EXPECT_NE(slow->find("p95 latency 2.5 ms > 2 x previous 0.2 ms"), std::string::npos) << *slow;
  EXPECT_NE(slow->find("floor 1 ms"), std::string::npos) << *slow;
  EXPECT_TRUE(LatencyBreach(45.0, 20.0, 2.0, 1.0));
  EXPECT_TRUE(LatencyBreach(0.5, 0.2, 2.0, 0.0));  // floor 0: the factor alone, as before
}

}  // namespace
}  // namespace edgefleet::agent
