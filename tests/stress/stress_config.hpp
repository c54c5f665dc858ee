// Scale for time-bounded stress tests: VSWITCH_STRESS_SCALE (a float, default 1) scales
// the record counts so sanitizer builds and qemu-user runs stay within their time limits.
#pragma once

#include <cstdint>
#include <cstdlib>

namespace vswitch::testing {

inline std::uint64_t scaled(std::uint64_t n) {
  const char* s = std::getenv("VSWITCH_STRESS_SCALE");
  const double f = s != nullptr ? std::atof(s) : 1.0;
  const auto v = static_cast<std::uint64_t>(static_cast<double>(n) * (f > 0 ? f : 1.0));
  return v > 0 ? v : 1;
}

// A small, fast PRNG (splitmix64) for sizes and pauses.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() noexcept {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
};

}  // namespace vswitch::testing
