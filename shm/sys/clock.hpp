// The clocks the switch uses: CLOCK_MONOTONIC for every interval and deadline (and for MAC
// table ages, which vswitchctl compares across processes), CLOCK_REALTIME only for
// timestamps shown to people. vDSO calls: no system call on x86 or aarch64.
#pragma once

#include <cstdint>
#include <ctime>

namespace vswitch::sys {

inline std::uint64_t clock_ns(clockid_t id) noexcept {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}
inline std::uint64_t monotonic_ns() noexcept { return clock_ns(CLOCK_MONOTONIC); }
inline std::uint64_t monotonic_ms() noexcept { return monotonic_ns() / 1'000'000u; }
inline std::uint64_t unix_ms() noexcept { return clock_ns(CLOCK_REALTIME) / 1'000'000u; }

}  // namespace vswitch::sys
