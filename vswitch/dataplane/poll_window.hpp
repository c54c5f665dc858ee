// PollWindow: how long an endpoint's loop spins after its last work before it sleeps.
//
// A sleeping endpoint pays a wake-up (a doorbell or a readable TAP, then the scheduler)
// for the next frame: tens of microseconds on a VM, more than the frame's whole crossing.
// Spinning a little after the last work catches a reply or the next frame of a flow
// without that wake-up, but spinning for nothing costs the CPU the spin takes. The window
// is therefore learned from the sleeps themselves, the rule Linux's KVM halt-polling uses
// for a vCPU's halt:
//   - a sleep that ended (with a wake-up) within `max_ns` would have been avoided by a
//     spin that long: the window grows (doubles, from kStartNs), up to `max_ns`;
//   - a sleep longer than `max_ns` could not have been: the window shrinks by an eighth
//     (slowly, so one quiet gap between two bursts does not undo what the bursts taught);
//     below kStartNs it is 0.
// A fixed floor (`fixed_ns`, the topology's poll_us) is spun whatever was learned.
// Spinning starts only after work, so an endpoint with no traffic never spins: its first
// sleep is endless (or a heartbeat's length, far above any max_ns) and the window decays.
#pragma once

#include <algorithm>
#include <cstdint>

namespace vswitch {

class PollWindow {
 public:
  static constexpr std::uint64_t kStartNs = 2'000;

  PollWindow(std::uint64_t fixed_ns, std::uint64_t max_ns) noexcept : fixed_ns_(fixed_ns), max_ns_(max_ns) {}

  // Spin this long after the last work before sleeping.
  [[nodiscard]] std::uint64_t window_ns() const noexcept { return std::max(fixed_ns_, learned_ns_); }
  [[nodiscard]] std::uint64_t learned_ns() const noexcept { return learned_ns_; }

  // The loop slept (blocked in the kernel) for `slept_ns` and woke.
  void slept(std::uint64_t slept_ns) noexcept {
    if (max_ns_ == 0) return;
    if (slept_ns <= max_ns_) {
      learned_ns_ = std::min(max_ns_, std::max(kStartNs, learned_ns_ * 2));
      ++grows_;
    } else if (learned_ns_ != 0) {
      learned_ns_ -= learned_ns_ / 8;
      if (learned_ns_ < kStartNs) learned_ns_ = 0;
      ++shrinks_;
    }
  }

  [[nodiscard]] std::uint64_t grows() const noexcept { return grows_; }
  [[nodiscard]] std::uint64_t shrinks() const noexcept { return shrinks_; }

 private:
  std::uint64_t fixed_ns_;
  std::uint64_t max_ns_;
  std::uint64_t learned_ns_ = 0;
  std::uint64_t grows_ = 0;
  std::uint64_t shrinks_ = 0;
};

}  // namespace vswitch
