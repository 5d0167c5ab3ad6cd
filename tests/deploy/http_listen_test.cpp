// deploy/http_listen: once ListenInBackground returns, stop() ends the accept loop. Before it
// existed, a stop that came before the loop ran was lost and the join below never returned
// (ctest's timeout would fail this test); 200 rounds make that race likely if it came back.
#include "deploy/http_listen.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

namespace edgefleet::deploy {
namespace {

TEST(ListenInBackground, AStopRightAfterStartEndsTheLoop) {
  for (int round = 0; round < 200; ++round) {
    httplib::Server server;
    ASSERT_GT(server.bind_to_any_port("127.0.0.1"), 0);
    auto loop = ListenInBackground(server);
    ASSERT_TRUE(loop) << loop.error().message;
    EXPECT_TRUE(server.is_running());
    server.stop();
    loop->join();
    EXPECT_FALSE(server.is_running()) << "round " << round;
  }
}

}  // namespace
}  // namespace edgefleet::deploy
