#include "tests/support/connection_attack.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace edgefleet::testing {
namespace {

using Clock = std::chrono::steady_clock;

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));  // completes in the background
  return fd;
}

// True when the server closed `fd` (read returns 0 or a reset).
bool ClosedByPeer(int fd) {
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN);
}

}  // namespace

ConnectionAttack::ConnectionAttack(int port, std::string header, int slow, int idle)
    : port_(port), header_(std::move(header)), thread_([this, slow, idle] { Run(slow, idle); }) {}

ConnectionAttack::~ConnectionAttack() { Stop(); }

void ConnectionAttack::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<double> ConnectionAttack::ClosedAfterSeconds() const {
  std::lock_guard lock(mu_);
  return closed_after_s_;
}

void ConnectionAttack::Run(int slow_count, int idle_count) {
  struct Held {
    int fd = -1;
    Clock::time_point opened;
    std::size_t sent = 0;
    bool slow = false;
  };
  std::vector<Held> held(static_cast<std::size_t>(slow_count + idle_count));
  auto open = [&](Held& h) {
    h.fd = Connect(port_);
    h.opened = Clock::now();
    h.sent = 0;
  };
  for (std::size_t i = 0; i < held.size(); ++i) {
    held[i].slow = static_cast<int>(i) < slow_count;
    open(held[i]);
  }
  auto next_byte = Clock::now();
  while (!stop_) {
    const bool drip = Clock::now() >= next_byte;
    if (drip) next_byte += std::chrono::seconds(2);
    for (Held& h : held) {
      if (ClosedByPeer(h.fd)) {
        const double lived = std::chrono::duration<double>(Clock::now() - h.opened).count();
        {
          std::lock_guard lock(mu_);
          closed_after_s_.push_back(lived);
        }
        ::close(h.fd);
        open(h);
      } else if (drip && h.slow && h.sent < header_.size()) {
        if (::send(h.fd, header_.data() + h.sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) ++h.sent;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (Held& h : held) ::close(h.fd);
}

}  // namespace edgefleet::testing
