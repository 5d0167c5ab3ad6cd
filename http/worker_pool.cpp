#include "http/worker_pool.hpp"

#include <utility>

namespace edgefleet::http {

WorkerPool::WorkerPool(int threads, std::size_t queue_limit) : limit_(queue_limit) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

WorkerPool::~WorkerPool() { Shutdown(); }

bool WorkerPool::TryPost(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || jobs_.size() >= limit_) return false;
    jobs_.push_back(std::move(job));
  }
  work_.notify_one();
  return true;
}

std::uint64_t WorkerPool::running() const {
  std::lock_guard lock(mu_);
  return running_;
}

std::uint64_t WorkerPool::waiting() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

void WorkerPool::Shutdown() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    dropped.swap(jobs_);
  }
  work_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  dropped.clear();  // outside the lock: a job's captures may take a while to release
}

void WorkerPool::Work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      work_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++running_;
    }
    job();
    job = nullptr;
    std::lock_guard lock(mu_);
    --running_;
  }
}

}  // namespace edgefleet::http
