// Records that prove their own integrity: a sequence number, the payload length and a
// checksum over everything else. Used by the stress tests and the benchmark to show that
// no record is lost, reordered or corrupted on its way through a ring.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace vswitch::testing {

inline constexpr std::size_t kCheckedHeaderBytes = 24;  // seq, length, checksum

// A fast 4-lane multiply-xor hash; not cryptographic, only a corruption detector.
inline std::uint64_t checksum(const std::byte* p, std::size_t n) noexcept {
  constexpr std::uint64_t k = 0x9E3779B97F4A7C15ULL;
  std::uint64_t h0 = 1, h1 = 2, h2 = 3, h3 = 4;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    std::uint64_t w[4];
    std::memcpy(w, p + i, 32);
    h0 = (h0 ^ w[0]) * k;
    h1 = (h1 ^ w[1]) * k;
    h2 = (h2 ^ w[2]) * k;
    h3 = (h3 ^ w[3]) * k;
  }
  std::uint64_t h = h0 ^ (h1 << 1) ^ (h2 << 2) ^ (h3 << 3) ^ n;
  for (; i < n; ++i) h = (h ^ std::to_integer<std::uint64_t>(p[i])) * k;
  return h ^ (h >> 29);
}

// Fills `out` (>= kCheckedHeaderBytes) with a record for `seq`: the body is taken from
// `pattern` at an offset that depends on seq, so consecutive records differ.
inline void make_record(std::span<std::byte> out, std::uint64_t seq,
                        std::span<const std::byte> pattern) noexcept {
  const std::size_t body = out.size() - kCheckedHeaderBytes;
  const std::size_t off = static_cast<std::size_t>(seq * 8191) % (pattern.size() - body + 1);
  std::memcpy(out.data() + kCheckedHeaderBytes, pattern.data() + off, body);
  const std::uint64_t len = out.size();
  std::memcpy(out.data(), &seq, 8);
  std::memcpy(out.data() + 8, &len, 8);
  const std::uint64_t sum = checksum(out.data() + kCheckedHeaderBytes, body) ^ seq ^ (len << 40);
  std::memcpy(out.data() + 16, &sum, 8);
}

enum class RecordCheck { kOk, kTooShort, kBadLength, kBadChecksum };

// Verifies a record; `seq_out` receives the sequence number it claims.
inline RecordCheck check_record(std::span<const std::byte> in, std::uint64_t& seq_out) noexcept {
  if (in.size() < kCheckedHeaderBytes) return RecordCheck::kTooShort;
  std::uint64_t seq, len, sum;
  std::memcpy(&seq, in.data(), 8);
  std::memcpy(&len, in.data() + 8, 8);
  std::memcpy(&sum, in.data() + 16, 8);
  seq_out = seq;
  if (len != in.size()) return RecordCheck::kBadLength;
  const std::uint64_t expect =
      checksum(in.data() + kCheckedHeaderBytes, in.size() - kCheckedHeaderBytes) ^ seq ^ (len << 40);
  return expect == sum ? RecordCheck::kOk : RecordCheck::kBadChecksum;
}

}  // namespace vswitch::testing
