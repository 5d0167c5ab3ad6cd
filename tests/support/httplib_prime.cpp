#include "tests/support/httplib_prime.hpp"

#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

namespace edgefleet::testing {

void PrimeHttplibClient() {
  static std::once_flag once;
  std::call_once(once, [] {
    httplib::Server server;
    server.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("primed", "text/plain");
    });
    const int port = server.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port, 0) << "cannot bind a loopback port to prime cpp-httplib's client";
    std::thread listener([&server] { server.listen_after_bind(); });
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(5, 0);
    // bind_to_any_port has the socket listening, so the connection waits for accept.
    httplib::Result res = client.Get("/");
    server.stop();
    listener.join();
    ASSERT_TRUE(res) << "priming request to 127.0.0.1:" << port << " failed";
    EXPECT_EQ(res->status, 200);
  });
}

}  // namespace edgefleet::testing
