#include "vswitch/observability/capture.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "shm/fabric.hpp"
#include "shm/sys/clock.hpp"

namespace vswitch {
namespace {

// Word offsets (in u64) in the payload. The reader's line and the endpoint's are 128 bytes
// apart, like the ring's control words (x86 prefetches 64-byte lines in pairs).
constexpr std::size_t kRequest = 0;      // reader: session << 8 | directions; 0: no capture
constexpr std::size_t kSnaplen = 1;      // reader: bytes per frame to copy (0: whole frames)
constexpr std::size_t kHeartbeat = 2;    // reader: CLOCK_MONOTONIC ms of its last sign of life
constexpr std::size_t kSeen = 16;        // endpoint: the session its counts are for
constexpr std::size_t kCaptured = 17;    // endpoint: frames copied in that session
constexpr std::size_t kDropped = 18;     // endpoint: frames not copied, the ring being full
constexpr std::size_t kExpired = 19;     // endpoint: frames not copied, the heartbeat being stale
constexpr std::uint64_t kHeartbeatCheckNs = 100'000'000;

std::uint64_t* words(const shm::Region& r) noexcept { return reinterpret_cast<std::uint64_t*>(r.payload().data()); }
std::uint64_t load(const std::uint64_t* w) noexcept {
  return std::atomic_ref<std::uint64_t>(*const_cast<std::uint64_t*>(w)).load(std::memory_order_relaxed);
}
void store(std::uint64_t* w, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(*w).store(v, std::memory_order_relaxed);
}

std::span<std::byte> ring_span(const shm::Region& r, const CaptureGeometry& g) {
  return r.payload().subspan(kCaptureRingOffset, shm::RingArea::bytes_for(g.ring_bytes));
}

}  // namespace

std::string capture_object_name(const std::string& switch_name, const std::string& endpoint_name) {
  return shm::object_name(switch_name, "capture." + endpoint_name);
}

sys::Result<shm::Region, std::string> create_capture_object(const std::string& switch_name,
                                                            const std::string& endpoint_name,
                                                            const CaptureGeometry& geometry,
                                                            std::uint64_t generation) {
  if (!shm::valid_name_component(endpoint_name))
    return sys::Unexpected("capture: endpoint name \"" + endpoint_name + "\" must be 1-64 of [A-Za-z0-9_-]");
  auto r = shm::Region::create(capture_object_name(switch_name, endpoint_name), shm::RegionKind::kCapture,
                               geometry.payload_bytes(), generation);
  if (!r) return sys::Unexpected("capture: " + r.error().detail);
  auto ring = shm::RingArea::init(ring_span(r.value(), geometry), geometry.ring_bytes, geometry.max_payload());
  if (!ring) return sys::Unexpected("capture " + r.value().name() + ": " + std::string(to_string(ring.error())));
  r.value().publish_ready();  // [R0]: the empty ring and the zero request before the magic
  return std::move(r.value());
}

// ---- CaptureWriter --------------------------------------------------------------------

CaptureWriter::CaptureWriter(shm::Region region, shm::RingArea ring, const CaptureGeometry& geometry)
    : region_(std::move(region)),
      bell_(std::make_unique<shm::FutexDoorbell>(ring.consumer_waiting_word())),
      producer_(ring, bell_.get()),
      max_frame_(geometry.max_frame) {}

sys::Result<CaptureWriter, std::string> CaptureWriter::over(shm::Region region, const CaptureGeometry& geometry) {
  if (region.payload().size() != geometry.payload_bytes())
    return sys::Unexpected("capture " + region.name() + ": " + std::to_string(region.payload().size()) +
                           " bytes, expected " + std::to_string(geometry.payload_bytes()));
  auto ring = shm::RingArea::adopt(ring_span(region, geometry), geometry.ring_bytes, geometry.max_payload());
  if (!ring) return sys::Unexpected("capture " + region.name() + ": " + std::string(to_string(ring.error())));
  return CaptureWriter(std::move(region), ring.value(), geometry);
}

sys::Result<CaptureWriter, std::string> CaptureWriter::attach_sized(const std::string& switch_name,
                                                                    const std::string& endpoint_name,
                                                                    const CaptureGeometry& geometry,
                                                                    std::uint64_t generation) {
  auto r = shm::Region::attach_sized(capture_object_name(switch_name, endpoint_name),
                                     shm::Region::payload_offset() + geometry.payload_bytes(), generation);
  if (!r) return sys::Unexpected(r.error().detail);
  return over(std::move(r.value()), geometry);
}

std::atomic_ref<std::uint64_t> CaptureWriter::request_word() const noexcept {
  return std::atomic_ref<std::uint64_t>(words(region_)[kRequest]);
}

bool CaptureWriter::check(std::uint64_t request, std::uint64_t now_ns) noexcept {
  std::uint64_t* w = words(region_);
  if (request != request_) {
    // [A-CAP] acquire fence after the relaxed load of the request in wants(). Pairs with
    //         the reader's release store of it ([R-CAP] in CaptureReader::start()): the
    //         snaplen and heartbeat it stored first are visible to the loads below.
    std::atomic_thread_fence(std::memory_order_acquire);
    request_ = request;
    session_ = static_cast<std::uint32_t>(request >> 8);
    const std::uint64_t snaplen = load(w + kSnaplen);  // read once
    snaplen_ = snaplen == 0 || snaplen > max_frame_ ? max_frame_ : static_cast<std::uint32_t>(snaplen);
    captured_ = dropped_ = expired_ = 0;
    heartbeat_checked_ns_ = 0;
    dirty_ = true;  // the reader learns that its request was taken up
  }
  if (heartbeat_checked_ns_ == 0 || now_ns - heartbeat_checked_ns_ >= kHeartbeatCheckNs) {
    heartbeat_checked_ns_ = now_ns | 1;
    const std::uint64_t beat = load(w + kHeartbeat);
    const std::uint64_t now_ms = now_ns / 1'000'000;
    // The reader may have stored a beat after this pass read its clock: not stale.
    alive_ = beat >= now_ms || now_ms - beat <= kCaptureHeartbeatTimeoutMs;
  }
  if (!alive_) {
    ++expired_;
    dirty_ = true;
  }
  return alive_;
}

void CaptureWriter::copy(std::uint32_t direction, std::span<const std::byte> frame) noexcept {
  const std::size_t take = std::min<std::size_t>({frame.size(), snaplen_, max_frame_});
  const auto len = static_cast<std::uint32_t>(sizeof(CaptureRecordHeader) + take);
  dirty_ = true;
  const shm::Reservation r = producer_.try_reserve(len);
  if (r.status != shm::Reserve::kReserved) {
    ++dropped_;
    ++dropped_total_;
    return;
  }
  const CaptureRecordHeader h{sys::monotonic_ns(), session_, direction, static_cast<std::uint32_t>(frame.size()), 0};
  std::memcpy(r.payload.data(), &h, sizeof h);
  std::memcpy(r.payload.data() + sizeof h, frame.data(), take);
  producer_.commit(len);
  ++captured_;
  ++captured_total_;
}

void CaptureWriter::publish_slow() noexcept {
  producer_.publish();  // [R1] for the records, then the wake-up if the reader sleeps ([F1])
  std::uint64_t* w = words(region_);
  store(w + kSeen, session_);
  store(w + kCaptured, captured_);
  store(w + kDropped, dropped_);
  store(w + kExpired, expired_);
  dirty_ = false;
}

// ---- CaptureReader --------------------------------------------------------------------

CaptureReader::CaptureReader(shm::Region region, shm::RingArea ring, sys::Fd lock, const CaptureGeometry& geometry)
    : region_(std::move(region)),
      ring_(ring),
      consumer_(ring, nullptr),  // the endpoint never waits for room: no free-send handshake
      lock_(std::move(lock)),
      max_frame_(geometry.max_frame),
      ring_bytes_(geometry.ring_bytes) {}

CaptureReader::~CaptureReader() {
  if (started_) stop();
}

sys::Result<std::unique_ptr<CaptureReader>, std::string> CaptureReader::attach(const std::string& switch_name,
                                                                               const std::string& endpoint_name,
                                                                               const CaptureGeometry& geometry,
                                                                               std::uint64_t generation) {
  const std::string name = capture_object_name(switch_name, endpoint_name);
  if (geometry.ring_bytes == 0)
    return sys::Unexpected(std::string("capture is off in this topology ([capture] ring_bytes = 0)"));
  auto r = shm::Region::attach(name, shm::RegionKind::kCapture, generation, shm::Access::kReadWrite);
  if (!r) return sys::Unexpected(r.error().detail);
  if (r.value().payload().size() != geometry.payload_bytes())
    return sys::Unexpected("capture " + name + ": " + std::to_string(r.value().payload().size()) +
                           " bytes, expected " + std::to_string(geometry.payload_bytes()) +
                           " for ring_bytes = " + std::to_string(geometry.ring_bytes) +
                           " (was the topology file changed since vswitchd started?)");
  auto ring = shm::RingArea::adopt(ring_span(r.value(), geometry), geometry.ring_bytes, geometry.max_payload());
  if (!ring) return sys::Unexpected("capture " + name + ": " + std::string(to_string(ring.error())));
  // The lock: on the object's file, through a descriptor of our own. flock belongs to the
  // open file, so the kernel releases it when this process ends, however it ends.
  const std::string path = "/dev/shm" + name;
  sys::Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return sys::Unexpected("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return sys::Unexpected("endpoint \"" + endpoint_name + "\" is already being captured (another vswitchctl " +
                             "capture holds the lock on " + path + ")");
    return sys::Unexpected("cannot lock " + path + ": " + std::strerror(errno));
  }
  return std::make_unique<CaptureReader>(std::move(r.value()), ring.value(), std::move(fd), geometry);
}

std::uint64_t* CaptureReader::line(std::size_t offset) const noexcept { return words(region_) + offset; }

void CaptureReader::heartbeat(bool force) noexcept {
  const std::uint64_t now = sys::monotonic_ms();
  if (!force && now - last_heartbeat_ms_ < kCaptureHeartbeatMs) return;
  store(line(kHeartbeat), now);
  last_heartbeat_ms_ = now;
}

void CaptureReader::discard() noexcept {
  // Bounded: a producer that keeps writing cannot keep us here; its records carry an old
  // session and validate() skips them anyway.
  for (int i = 0; i < 4; ++i)
    if (consumer_.consume_burst(ring_bytes_ / 64, [](std::span<const std::byte>) {}) == 0) break;
}

void CaptureReader::start(std::uint32_t directions, std::uint32_t snaplen) noexcept {
  discard();
  resyncs_before_ = consumer_.counters().resyncs;
  const std::uint64_t old = load(line(kRequest));
  std::random_device rd;
  std::uint32_t session = 0;
  while (session == 0 || session == static_cast<std::uint32_t>(old >> 8)) session = static_cast<std::uint32_t>(rd());
  session_ = session;
  snaplen_ = snaplen == 0 || snaplen > max_frame_ ? max_frame_ : snaplen;
  invalid_ = stale_ = 0;
  store(line(kSnaplen), snaplen_);
  heartbeat(true);
  // [R-CAP] release: the snaplen and the heartbeat above before the request. Pairs with
  //         [A-CAP] in CaptureWriter::check().
  std::atomic_ref<std::uint64_t>(*line(kRequest))
      .store(std::uint64_t{session} << 8 | (directions & kCaptureBoth), std::memory_order_release);
  started_ = true;
}

void CaptureReader::wait(std::chrono::milliseconds timeout) noexcept {
  heartbeat(false);
  const shm::PopResult r = consumer_.peek_or_arm();  // [F2] inside, before the re-check
  if (r.status != shm::Pop::kEmpty) return;
  // Never past the next heartbeat: a reader that sleeps must still look alive.
  const auto period = std::chrono::milliseconds(kCaptureHeartbeatMs);
  shm::FutexDoorbell::wait(ring_.consumer_waiting_word(), std::min(timeout, period));
  consumer_.disarm();
}

void CaptureReader::stop() noexcept {
  started_ = false;
  store(line(kRequest), 0);
  discard();
  // The ring's pages back to the system: on tmpfs an object's pages stay allocated until
  // the object goes, and a capture object is kept for the switch's lifetime. Only whole
  // pages of the data area are punched; the control words stay. A record the endpoint
  // writes after this (it stops within a pass) lands in a fresh zero page and is skipped
  // by the next session.
  const std::uint64_t data = shm::Region::payload_offset() + kCaptureRingOffset + shm::kRingDataOffset;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t from = (data + page - 1) / page * page;
  const std::uint64_t end = data + ring_bytes_;
  if (end > from)
    (void)::fallocate(lock_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                      static_cast<off_t>(end - from));
}

CaptureEndpointReport CaptureReader::report() const noexcept {
  CaptureEndpointReport rep;
  rep.seen = session_ != 0 && load(line(kSeen)) == session_;
  if (!rep.seen) return rep;
  rep.captured = load(line(kCaptured));
  rep.dropped = load(line(kDropped));
  rep.expired = load(line(kExpired));
  return rep;
}

bool CaptureReader::validate(std::span<const std::byte> record, CapturedFrame& out) noexcept {
  if (record.size() < sizeof(CaptureRecordHeader)) {
    ++invalid_;
    return false;
  }
  CaptureRecordHeader h;
  std::memcpy(&h, record.data(), sizeof h);  // read once: the endpoint may change it
  if (h.session != session_) {
    ++stale_;  // copied for an earlier session, before the endpoint saw ours
    return false;
  }
  const std::size_t captured = record.size() - sizeof h;
  if ((h.direction != kCaptureRx && h.direction != kCaptureTx) || captured > snaplen_ ||
      h.original_bytes < captured || h.original_bytes > max_frame_ || h.reserved != 0) {
    ++invalid_;
    return false;
  }
  out = CapturedFrame{h.timestamp_ns, h.direction, h.original_bytes, record.subspan(sizeof h)};
  return true;
}

}  // namespace vswitch
