#include "vswitch/observability/event_log.hpp"

#include <unistd.h>

#include <cerrno>

namespace vswitch {
namespace {
// The writer's stop request: a message no caller can post (post() prefixes nothing, but
// every real message is non-empty: post() refuses empty ones).
const std::string kStop;
}  // namespace

EventLog::EventLog(std::string prefix) : prefix_(std::move(prefix)), writer_([this] { run(); }) {}

EventLog::~EventLog() {
  queue_.enqueue(kStop);  // FIFO per producer: everything this thread posted comes first
  writer_.join();
}

void EventLog::post(std::string message) noexcept {
  if (message.empty()) return;
  // pending_ and dropped_ are plain counters, relaxed: nothing is published through them
  // (the messages themselves travel through the queue, which orders them).
  if (pending_.fetch_add(1, std::memory_order_relaxed) >= kMaxPending) {
    pending_.fetch_sub(1, std::memory_order_relaxed);
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  try {
    queue_.enqueue(std::move(message));
  } catch (...) {  // out of memory: the event is lost, and counted
    pending_.fetch_sub(1, std::memory_order_relaxed);
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void EventLog::run() {
  std::uint64_t reported_dropped = 0;
  for (;;) {
    std::string m;
    queue_.wait_dequeue(m);  // untimed: no wakeups while nothing happens
    if (m.empty()) return;
    pending_.fetch_sub(1, std::memory_order_relaxed);
    std::string line = prefix_ + m + "\n";
    if (const std::uint64_t d = dropped(); d != reported_dropped) {
      line += prefix_ + std::to_string(d - reported_dropped) + " more events dropped (log backlog full)\n";
      reported_dropped = d;
    }
    const char* p = line.data();
    std::size_t left = line.size();
    while (left != 0) {
      const ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // stderr gone: nothing better to do with the message
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
}

}  // namespace vswitch
