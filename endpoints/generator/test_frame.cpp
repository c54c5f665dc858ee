#include "endpoints/generator/test_frame.hpp"

#include <cstring>

namespace vswitch::endpoints::generator {

namespace {

constexpr std::uint32_t kMagic = 0x47575356;  // "VSWG" little-endian

template <typename T>
void put(std::byte* p, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}
template <typename T>
T get(const std::byte* p) noexcept {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (static_cast<T>(std::to_integer<unsigned>(p[i])) << (8 * i)));
  return v;
}

// FNV-1a over the frame with the checksum field (bytes 34..37) taken as zero.
std::uint32_t checksum(const std::byte* p, std::size_t n) noexcept {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned b = (i >= 34 && i < 38) ? 0u : std::to_integer<unsigned>(p[i]);
    h = (h ^ b) * 16777619u;
  }
  return h;
}

}  // namespace

std::string_view to_string(FrameError e) {
  switch (e) {
    case FrameError::kTooShort: return "shorter than a test frame";
    case FrameError::kNotATestFrame: return "not a generator frame";
    case FrameError::kBadLength: return "length field disagrees with the frame";
    case FrameError::kBadChecksum: return "checksum mismatch";
  }
  return "unknown";
}

bool write_test_frame(std::span<std::byte> out, std::span<const std::uint8_t, 6> dst,
                      std::span<const std::uint8_t, 6> src,
                      FrameId id) noexcept {
  if (out.size() < kMinFrame || out.size() > kMaxFrame) return false;
  std::byte* p = out.data();
  std::memcpy(p, dst.data(), dst.size());
  std::memcpy(p + 6, src.data(), src.size());
  p[12] = static_cast<std::byte>(kEtherType >> 8);  // network order on the wire
  p[13] = static_cast<std::byte>(kEtherType & 0xff);
  put<std::uint32_t>(p + 14, kMagic);
  put<std::uint32_t>(p + 18, id.stream);
  put<std::uint64_t>(p + 22, id.sequence);
  put<std::uint32_t>(p + 30, static_cast<std::uint32_t>(out.size()));
  std::uint64_t x = id.sequence * 0x9E3779B97F4A7C15ULL ^ id.stream;
  for (std::size_t i = kHeaderBytes; i < out.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<std::byte>(x);
  }
  put<std::uint32_t>(p + 34, checksum(p, out.size()));
  return true;
}

sys::Result<FrameId, FrameError> check_test_frame(std::span<const std::byte> frame) noexcept {
  using sys::Unexpected;
  if (frame.size() < kHeaderBytes) return Unexpected{FrameError::kTooShort};
  const std::byte* p = frame.data();
  const unsigned type = (std::to_integer<unsigned>(p[12]) << 8) | std::to_integer<unsigned>(p[13]);
  if (type != kEtherType || get<std::uint32_t>(p + 14) != kMagic) return Unexpected{FrameError::kNotATestFrame};
  if (get<std::uint32_t>(p + 30) != frame.size()) return Unexpected{FrameError::kBadLength};
  if (get<std::uint32_t>(p + 34) != checksum(p, frame.size())) return Unexpected{FrameError::kBadChecksum};
  return FrameId{get<std::uint32_t>(p + 18), get<std::uint64_t>(p + 22)};
}

void SequenceTracker::observe(std::uint64_t sequence) noexcept {
  ++received_;
  if (sequence >= next_) {
    lost_ += sequence - next_;
    next_ = sequence + 1;
  } else {
    ++out_of_order_;  // late or duplicate; a late one was counted in lost_ when its gap was seen
  }
}

}  // namespace vswitch::endpoints::generator
