// Fuzz target: the software offloads facing an arbitrary frame from a guest or a
// namespace. The input is a virtio-net header (12 bytes) and the frame after it; only a
// header that parse() accepts is used, as in the switch. Checksum completion runs on a
// copy; segmentation builds every segment into a buffer of exactly segment_bytes(i) (ASan
// catches any write past it) and checks the segments' payloads add up to the frame's.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "endpoints/virtio/net_offload.hpp"

using namespace vswitch::endpoints::virtio;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  const auto parsed = parse(input);
  if (!parsed) return 0;
  const NetHeader* header = &parsed.value().get();
  std::vector<std::byte> frame(input.begin() + kNetHeaderBytes, input.end());
  if ((header->flags & kNetHdrFlagNeedsCsum) != 0) {
    std::vector<std::byte> copy = frame;
    complete_checksum(*header, copy);
  }
  auto seg_or = TcpSegmenter::parse(*header, frame, 1024);
  if (!seg_or) return 0;
  const TcpSegmenter* seg = &seg_or.value();
  if (seg->segments() == 0 || seg->segments() > 1024) std::abort();
  const std::size_t h = seg->header_bytes();
  if (h > frame.size()) std::abort();
  std::size_t payload = 0;
  for (std::size_t i = 0; i < seg->segments(); ++i) {
    std::vector<std::byte> out(seg->segment_bytes(i));
    if (out.size() < h || out.size() - h > header->gso_size) std::abort();
    if (seg->build(i, out) != out.size()) std::abort();
    payload += out.size() - h;
  }
  if (payload != frame.size() - h) std::abort();  // every payload byte in exactly one segment
  return 0;
}
