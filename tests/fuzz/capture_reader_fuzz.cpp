// Fuzz target: vswitchctl's capture reader facing whatever a compromised endpoint writes
// into its capture object: the ring's indices, its records, the capture headers in them
// and the endpoint's line. The reader must hand on only frames that lie inside the ring's
// data area, no longer than the snaplen, with a known direction and an original length at
// least the captured one; every call must return (bounded work, no wait on a full ring).
//
// Input: head (8 bytes), tail (8 bytes), then the data area. Any 4 bytes "SESS" in the
// data are replaced by the reader's session, so records of the session are easy to reach.
#include <unistd.h>

#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "shm/frame_ring.hpp"
#include "vswitch/observability/capture.hpp"

using namespace vswitch;

namespace {

constexpr CaptureGeometry kGeometry{4096, 1500};
constexpr std::uint32_t kSnaplen = 200;

struct Fixture {
  Fixture() {
    const std::string sw = "fuzzcap" + std::to_string(::getpid());
    auto o = create_capture_object(sw, "ep", kGeometry, 3);
    if (!o) {
      std::fprintf(stderr, "capture_reader fuzz: %s\n", o.error().c_str());
      std::abort();
    }
    object.emplace(std::move(o.value()));
    auto r = CaptureReader::attach(sw, "ep", kGeometry, 3);
    if (!r) {
      std::fprintf(stderr, "capture_reader fuzz: %s\n", r.error().c_str());
      std::abort();
    }
    reader = std::move(r.value());
    if (!reader->start(kCaptureBoth, kSnaplen)) std::abort();
    session = reader->session();
  }
  std::optional<shm::Region> object;  // unlinked at exit
  std::unique_ptr<CaptureReader> reader;
  std::uint32_t session = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture f;
  // What the endpoint writes, through the creator's mapping; the reader has its own.
  std::byte* const ring = f.object->payload().data() + kCaptureRingOffset;
  std::byte* const data_area = ring + shm::kRingDataOffset;
  const std::byte* const lo = f.reader->region().payload().data() + kCaptureRingOffset + shm::kRingDataOffset;
  const std::byte* const hi = lo + kGeometry.ring_bytes;
  if (size >= 16) {
    std::memcpy(ring + shm::kRingHeadOffset, data, 8);
    std::memcpy(ring + shm::kRingTailOffset, data + 8, 8);
    const std::size_t n = std::min<std::size_t>(size - 16, kGeometry.ring_bytes);
    std::memcpy(data_area, data + 16, n);
    for (std::size_t i = 0; i + 4 <= n; ++i)
      if (std::memcmp(data_area + i, "SESS", 4) == 0) std::memcpy(data_area + i, &f.session, 4);
  }
  std::uint64_t sink = 0;
  f.reader->drain(64, [&](const CapturedFrame& fr) {
    if (fr.bytes.data() < lo || fr.bytes.data() + fr.bytes.size() > hi) std::abort();
    if (fr.bytes.size() > kSnaplen || fr.original_bytes < fr.bytes.size() || fr.original_bytes > kGeometry.max_frame)
      std::abort();
    if (fr.direction != kCaptureRx && fr.direction != kCaptureTx) std::abort();
    for (auto b : fr.bytes) sink += std::to_integer<std::uint64_t>(b);
  });
  f.reader->wait(std::chrono::milliseconds(0));  // a record: returns at once; none: a zero timeout
  (void)f.reader->report();
  return sink == 0xffffffffffffffffULL;  // keep the reads
}
