// WakeCoalescing: whether an endpoint's next sleep waits to be woken or runs on a timer.
//
// A sleeping endpoint asks its peers (and its guest) to wake it for the next frame. Each
// wake-up costs the sleeper some microseconds of CPU (the scheduler, epoll's return, the
// doorbell's read) and the waker a system call. A steady flow whose frames come a few
// microseconds apart then costs a wake-up every frame or two: at 100k frames/s, a
// quarter of a core on a 2-vCPU VM. A spinning poll window catches such frames without
// wake-ups but spins through every gap: a whole core. NICs answer this with interrupt
// moderation (ethtool's rx-usecs), Linux's NAPI with deferred interrupts
// (napi_defer_hard_irqs with gro_flush_timeout): while traffic is dense, nobody
// interrupts for each packet; the host takes what came on a timer.
//
// With `coalesce_ns` > 0 the loop does the same:
//   - the flow is dense when the loop found work again within `coalesce_ns` of running
//     out (it spun or slept less than that) kDenseAfter times in a row, and stays dense
//     while each timed sleep ends with work waiting. A lone exchange (a ping and its
//     reply, a few within the period) does not make a flow dense: only a stream does;
//   - while it is dense, the loop neither spins its poll window nor asks to be woken for
//     frames: it sleeps `coalesce_ns` on a timer and takes the whole batch when it wakes
//     (its peers, seeing no wake request, make no system call either);
//   - a timed sleep after which there is nothing to do ends it: the loop spins its window
//     and sleeps until woken, as without coalescing. An idle endpoint never runs the
//     timer, and the first frame after a quiet spell is not delayed.
// The price: while a flow is dense, a frame may wait up to `coalesce_ns` (plus the
// timer's slack) before the loop sees it. 0 turns it off.
#pragma once

#include <cstdint>

namespace vswitch {

class WakeCoalescing {
 public:
  static constexpr unsigned kDenseAfter = 4;

  explicit WakeCoalescing(std::uint64_t coalesce_ns) noexcept : coalesce_ns_(coalesce_ns) {}

  [[nodiscard]] std::uint64_t coalesce_ns() const noexcept { return coalesce_ns_; }
  [[nodiscard]] bool dense() const noexcept { return dense_; }

  // The loop found work `idle_ns` after it last ran out (spinning, sleeping, or both).
  void worked(std::uint64_t idle_ns) noexcept {
    if (coalesce_ns_ == 0) return;
    if (after_timed_) {
      after_timed_ = false;  // the batch the timer was for: still dense
      return;
    }
    short_gaps_ = idle_ns <= coalesce_ns_ ? short_gaps_ + 1 : 0;
    dense_ = short_gaps_ >= kDenseAfter;
  }

  // The loop has nothing to do: true when it should sleep on the timer now (no spin, no
  // wake request). A timed sleep that was followed by no work ends the dense spell.
  [[nodiscard]] bool timed() noexcept {
    if (after_timed_) {
      after_timed_ = false;
      dense_ = false;
      short_gaps_ = 0;
    }
    return dense_;
  }

  // The loop took the timed sleep timed() asked for.
  void slept_timed() noexcept { after_timed_ = true; }

 private:
  std::uint64_t coalesce_ns_;
  unsigned short_gaps_ = 0;  // work found within the period of running out, in a row
  bool dense_ = false;
  bool after_timed_ = false;
};

}  // namespace vswitch
