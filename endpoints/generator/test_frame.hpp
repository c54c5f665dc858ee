// The generator frontend's frames: Ethernet frames (EtherType 0x88B5, IEEE local
// experimental) whose payload proves its own integrity and place in a stream, so a soak can
// tell every lost, duplicated, reordered or corrupted frame apart.
//
//   0   destination MAC, source MAC, EtherType 0x88B5          (14 bytes)
//   14  magic "VSWG" (u32), stream id (u32), sequence (u64),
//       frame length (u32), checksum (u32) over all other bytes  (24 bytes)
//   38  filler derived from (stream, sequence)
//
// All fields little-endian. Frames are 60..65535 bytes (no FCS).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "shm/sys/result.hpp"

namespace vswitch::endpoints::generator {

inline constexpr std::uint16_t kEtherType = 0x88B5;
inline constexpr std::size_t kMinFrame = 60;
inline constexpr std::size_t kMaxFrame = 65535;
inline constexpr std::size_t kHeaderBytes = 38;

struct FrameId {
  std::uint32_t stream = 0;
  std::uint64_t sequence = 0;
};

// Writes a whole frame into `out` (its size is the frame length, 60..65535).
// Returns false, writing nothing, when the size is out of range.
bool write_test_frame(std::span<std::byte> out, std::span<const std::uint8_t, 6> dst,
                      std::span<const std::uint8_t, 6> src,
                      FrameId id) noexcept;

enum class FrameError : std::uint8_t { kTooShort, kNotATestFrame, kBadLength, kBadChecksum };
std::string_view to_string(FrameError e);

// Validates a received frame (read once) and returns its id.
[[nodiscard]] sys::Result<FrameId, FrameError> check_test_frame(std::span<const std::byte> frame) noexcept;

// Follows one stream's sequence numbers: every gap counts its missing frames as lost, every
// step back (a late or duplicate frame) counts as out of order; a late frame stays counted in
// lost() too, so lost() - out_of_order() is a lower bound and lost() an upper bound on the
// frames that never arrived. The soak compares lost() with the switch's drop counters.
class SequenceTracker {
 public:
  void observe(std::uint64_t sequence) noexcept;
  // Joins a stream in the middle: `sequence` is the next one expected (nothing before it
  // counts as lost). For a receiver that restarted while the sender went on.
  void resume_at(std::uint64_t sequence) noexcept { next_ = sequence; }
  [[nodiscard]] std::uint64_t received() const noexcept { return received_; }
  [[nodiscard]] std::uint64_t lost() const noexcept { return lost_; }
  [[nodiscard]] std::uint64_t out_of_order() const noexcept { return out_of_order_; }
  [[nodiscard]] std::uint64_t next_expected() const noexcept { return next_; }

 private:
  std::uint64_t next_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t lost_ = 0;
  std::uint64_t out_of_order_ = 0;
};

}  // namespace vswitch::endpoints::generator
