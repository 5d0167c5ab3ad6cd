// The bounded worker pool of the HTTP layer's kPool lane: a fixed number of threads and a queue
// of at most `queue_limit` jobs. TryPost never waits: a full queue is the caller's 503.
//
// Thread safety: every method from any thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace edgefleet::http {

class WorkerPool final {
 public:
  WorkerPool(int threads, std::size_t queue_limit);
  ~WorkerPool();  // Shutdown()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job`; false (and `job` not kept) when `queue_limit` jobs already wait or the pool is
  // shutting down.
  bool TryPost(std::function<void()> job);
  // Jobs running now / waiting now.
  std::uint64_t running() const;
  std::uint64_t waiting() const;
  // Lets running jobs finish, drops the waiting ones, joins the threads. Idempotent.
  void Shutdown();

 private:
  void Work();

  const std::size_t limit_;
  mutable std::mutex mu_;
  std::condition_variable work_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  std::size_t running_ = 0;                 // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace edgefleet::http
