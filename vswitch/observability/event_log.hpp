// EventLog: how a run loop reports rare events (a peer stalled or back, a corrupt channel)
// without ever waiting for the reader of its stderr. Messages leave the data path through a
// moodycamel queue; a thread of the endpoint's own writes them out. A full or unread stderr
// pipe would otherwise freeze forwarding on a write(); here at most kMaxPending messages
// wait and the rest are counted as dropped. The writer sleeps untimed while nothing is
// posted (an idle endpoint stays at zero wakeups).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include <concurrentqueue/blockingconcurrentqueue.h>

namespace vswitch {

class EventLog {
 public:
  static constexpr std::size_t kMaxPending = 1024;

  explicit EventLog(std::string prefix);
  ~EventLog();  // writes everything posted before, then stops the writer
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Never blocks (one allocation); drops and counts when kMaxPending are waiting.
  void post(std::string message) noexcept;
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  void run();

  std::string prefix_;
  moodycamel::BlockingConcurrentQueue<std::string> queue_;
  // relaxed: a bound and a statistic; the queue itself orders the messages it carries.
  std::atomic<std::size_t> pending_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::thread writer_;
};

}  // namespace vswitch
