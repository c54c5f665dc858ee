// Fuzz target: a consumer facing an arbitrary ring. The input is laid over a ring area
// (header, indices and data); the consumer must never read outside the data area, must
// hand out only payloads that lie inside it, and must keep running (every corruption is
// counted and resynchronised). Inputs whose header fails validation exercise attach().
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "shm/frame_ring.hpp"

using namespace vswitch::shm;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint64_t kCapacity = 1024;
  constexpr std::size_t kBytes = RingArea::bytes_for(kCapacity);
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> mem(static_cast<std::byte*>(std::aligned_alloc(64, kBytes)));
  std::span<std::byte> area(mem.get(), kBytes);

  // 1. The raw bytes as a ring area: attach() must refuse or accept without crashing.
  std::memset(area.data(), 0, kBytes);
  if (size != 0) std::memcpy(area.data(), data, std::min(size, kBytes));
  (void)RingArea::attach(area);

  // 2. A valid ring whose indices and data come from the input.
  auto ring = RingArea::init(area, kCapacity, 512);
  if (!ring) std::abort();
  if (size >= 16) {
    std::memcpy(area.data() + kRingHeadOffset, data, 8);  // head
    std::memcpy(area.data() + kRingTailOffset, data + 8, 8);  // tail
    std::memcpy(area.data() + kRingDataOffset, data + 16, std::min<std::size_t>(size - 16, kCapacity));
  }
  FrameConsumer c(*ring, nullptr);
  const std::byte* lo = area.data() + kRingDataOffset;
  const std::byte* hi = lo + kCapacity;
  std::uint64_t sink = 0;
  auto check = [&](std::span<const std::byte> p) {
    if (p.size() > 512 || p.data() < lo || p.data() + p.size() > hi) std::abort();
    for (auto b : p) sink += std::to_integer<std::uint64_t>(b);
  };
  for (int i = 0; i < 64; ++i) {
    if (i % 2 == 0) {
      c.consume_burst(4, check);
      continue;
    }
    PopResult r = c.peek();
    if (r.status == Pop::kRecord) {
      check(r.payload);
      c.consume();
    }
  }
  return sink == 0xffffffffffffffffULL;  // keep the reads
}
