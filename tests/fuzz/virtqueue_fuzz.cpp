// Fuzz target: the device side of a split virtqueue facing an arbitrary guest. The input
// becomes guest memory (descriptor table, avail ring, indirect tables, buffers) of a small
// two-region guest; the device pops until the queue is empty or broken, writes into every
// writable buffer and reads every readable one (ASan checks each span is really inside
// guest memory), returns every head exactly once, and runs the notification decisions.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "endpoints/virtio/split_queue.hpp"

using namespace vswitch::endpoints::virtio;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto queue_size = static_cast<std::uint16_t>(1u << (data[0] % 6));  // 1..32
  const bool event_idx = (data[1] & 1) != 0;
  // Region A: 16 KiB at gpa 0x10000 holding the rings first, then whatever the input says.
  // Region B: 4 KiB right after it in guest-physical space (a buffer may try to straddle).
  alignas(4096) static std::byte region_a[16384];
  alignas(4096) static std::byte region_b[4096];
  std::memset(region_a, 0, sizeof region_a);
  std::memset(region_b, 0, sizeof region_b);
  std::memcpy(region_a, data + 2, std::min(size - 2, sizeof region_a));
  if (size - 2 > sizeof region_a)
    std::memcpy(region_b, data + 2 + sizeof region_a, std::min(size - 2 - sizeof region_a, sizeof region_b));

  auto memory = GuestMemory::create({GuestRegion{0x10000, sizeof region_a, region_a},
                                     GuestRegion{0x14000, sizeof region_b, region_b}});
  if (!memory) std::abort();
  QueueLayout layout;
  layout.size = queue_size;
  layout.event_idx = event_idx;
  layout.desc_gpa = 0x10000;
  layout.avail_gpa = layout.desc_gpa + 16u * queue_size;
  layout.used_gpa = (layout.avail_gpa + 6u + 2u * queue_size + 3) & ~std::uint64_t{3};
  auto q = SplitQueue::create(memory.value(), layout);
  if (!q) std::abort();

  Chain chain;
  std::uint64_t checksum = 0;
  std::vector<bool> returned(65536, false);
  for (int i = 0; i < 4 * queue_size; ++i) {
    const PopResult r = q->pop(chain);
    if (r.status == Pop::kEmpty || r.status == Pop::kBroken) break;
    std::uint32_t written = 0;
    if (r.status == Pop::kChain) {
      for (const GuestBuffer& b : chain.buffers) {
        if (b.device_writable) {
          std::memset(b.bytes.data(), 0xA5, b.bytes.size());
          written += static_cast<std::uint32_t>(b.bytes.size());
        } else {
          for (std::byte x : b.bytes) checksum += static_cast<std::uint8_t>(x);
        }
      }
      if (chain.readable_bytes + chain.writable_bytes > (std::uint64_t{1} << 32)) std::abort();
    }
    q->add_used(chain.head, written);
    returned[chain.head] = true;
  }
  q->publish_used();
  (void)q->needs_notification();
  (void)q->enable_notification();
  q->disable_notification();
  return checksum == 0xFFFFFFFFFFFFFFFFULL ? 1 : 0;  // keeps the reads
}
