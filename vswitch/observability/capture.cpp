#include "vswitch/observability/capture.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "shm/fabric.hpp"
#include "shm/sys/clock.hpp"
#include "shm/sys/fence.hpp"

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
      request_word_(words(region_) + kRequest),
      waiting_word_(ring.consumer_waiting_word()),
      bell_(ring.consumer_waiting_word()),
      producer_(ring, nullptr),
      max_frame_(geometry.max_frame),
      wake_bytes_(geometry.ring_bytes / 4) {}

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

void CaptureWriter::check(std::uint64_t request, std::uint64_t now_ns) noexcept {
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
    // A predecessor of this endpoint (it restarted) may have counted for this session.
    const bool continued = load(w + kSeen) == session_;
    captured_ = continued ? load(w + kCaptured) : 0;
    dropped_ = continued ? load(w + kDropped) : 0;
    expired_ = continued ? load(w + kExpired) : 0;
  }
  heartbeat_checked_ns_ = now_ns;
  const std::uint64_t beat = load(w + kHeartbeat);
  const std::uint64_t now_ms = now_ns / 1'000'000;
  // The reader may have stored a beat after this pass read its clock: not stale.
  alive_ = beat >= now_ms || now_ms - beat <= kCaptureHeartbeatTimeoutMs;
  dirty_ = true;  // the session taken up, the frames left out meanwhile: to the endpoint line
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
  unannounced_ += shm::record_bytes(len);
  ++captured_;
  ++captured_total_;
}

void CaptureWriter::publish_slow() noexcept {
  producer_.publish();  // [R1]: the records before the head (no doorbell: no handshake inside)
  if (unannounced_ >= wake_bytes_) {
    unannounced_ = 0;
    // [F1c] full fence: orders [R1] above before the load of consumer_waiting. Pairs with
    //       [F2] in FrameConsumer::peek_or_arm(), which the reader runs before it sleeps.
    //       Without it both sides can read the other's old value and the reader sleeps,
    //       a quarter ring waiting, until its timeout while the ring fills.
    sys::full_fence();
    std::atomic_ref<std::uint32_t> waiting(*waiting_word_);
    // relaxed: ordered by [F1c]. exchange, not store(0): a plain store could erase a
    // newer arm by the reader.
    if (waiting.load(std::memory_order_relaxed) != 0 && waiting.exchange(0, std::memory_order_relaxed) != 0)
      bell_.ring();
  }
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
  // The same object as the mapping: a vswitchd that restarted in between made a new one.
  shm::RegionHeader h{};
  if (::pread(fd.get(), &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h) || h.generation != r.value().generation())
    return sys::Unexpected("capture " + name + ": the object changed while it was opened (vswitchd restarted?)");
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
  // vswitchd unlinks its objects when it stops: this one will get nothing more.
  struct stat st {};
  if (::fstat(lock_.get(), &st) == 0 && st.st_nlink == 0) gone_ = true;
}

void CaptureReader::discard() noexcept {
  // Bounded: a producer that keeps writing cannot keep us here; its records carry an old
  // session and validate() skips them anyway.
  for (int i = 0; i < 4; ++i)
    if (consumer_.consume_burst(ring_bytes_ / 64, [](std::span<const std::byte>) {}) == 0) break;
}

sys::Status<std::string> CaptureReader::start(std::uint32_t directions, std::uint32_t snaplen) noexcept {
  // Every page of the object, now: on tmpfs a page is allocated when first written, and
  // an endpoint writing into a full /dev/shm would get SIGBUS. Allocated pages stay.
  struct stat st {};
  if (::fstat(lock_.get(), &st) != 0) return sys::Unexpected(std::string("fstat: ") + std::strerror(errno));
  if (::fallocate(lock_.get(), 0, 0, st.st_size) != 0)
    return sys::Unexpected("cannot reserve the capture ring's " + std::to_string(st.st_size >> 10) +
                           " KiB in /dev/shm: " + std::strerror(errno));
  discard();
  resyncs_before_ = consumer_.counters().resyncs;
  // Sessions count up: an endpoint that cached an earlier request never takes a new one
  // for it (its snaplen and counts are read afresh).
  const auto previous = static_cast<std::uint32_t>(load(line(kRequest)) >> 8);
  std::uint32_t session = previous + 1;
  if (previous == 0) {
    std::random_device rd;
    session = static_cast<std::uint32_t>(rd());
  }
  if (session == 0) session = 1;
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
  return {};
}

void CaptureReader::wait(std::chrono::milliseconds timeout) noexcept {
  heartbeat(false);
  const auto sleep = std::min(timeout, std::chrono::milliseconds(kCaptureHeartbeatMs));
  const shm::PopResult r = consumer_.peek_or_arm();  // [F2] inside, before the re-check
  if (r.status == shm::Pop::kRecord) return;
  if (r.status == shm::Pop::kCorrupt) {
    // A head the endpoint keeps invalid would otherwise have us loop at full speed.
    std::this_thread::sleep_for(sleep);
    return;
  }
  shm::FutexDoorbell::wait(ring_.consumer_waiting_word(), sleep);
  consumer_.disarm();
}

void CaptureReader::stop() noexcept {
  started_ = false;
  // The session stays, without directions: the next capture counts up from it.
  store(line(kRequest), std::uint64_t{session_} << 8);
  discard();
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
