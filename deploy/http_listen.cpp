#include "deploy/http_listen.hpp"

#include <atomic>
#include <chrono>
#include <memory>

namespace edgefleet::deploy {

Result<std::thread> ListenInBackground(httplib::Server& server) {
  auto ended = std::make_shared<std::atomic<bool>>(false);
  std::thread loop([&server, ended] {
    server.listen_after_bind();
    ended->store(true);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server.is_running() && !ended->load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (server.is_running()) return loop;
  server.stop();
  if (ended->load()) {
    loop.join();
  } else {
    loop.detach();  // never seen: the loop neither ran nor ended in 10 s
  }
  return Fail(ErrorCode::kInternal, "the HTTP accept loop did not start");
}

}  // namespace edgefleet::deploy
