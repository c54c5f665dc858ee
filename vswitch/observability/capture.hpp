// Capture: a copy of one endpoint's frames for `vswitchctl capture`, made only while a
// capture is attached, in shared memory the endpoint already mapped before it gave up its
// privileges.
//
// One object per endpoint, "/vswitch.<switch>.capture.<endpoint>" (RegionKind::kCapture),
// created by vswitchd with the other objects when [capture] ring_bytes is not 0. Payload:
//   0    reader line    written only by the reader: request, snaplen, heartbeat_ms
//   128  endpoint line  written only by the endpoint: session, captured, dropped, expired
//   256  FrameRing      producer: the endpoint; consumer: the reader
// Each ring record is a CaptureRecordHeader and then the frame's first snaplen bytes.
//
// The protocol:
//   - The reader takes an exclusive flock on the object's file (one capture per endpoint;
//     the kernel drops the lock with the reader's process, however it ends), reserves the
//     ring's pages, discards what the ring still holds, writes snaplen and its heartbeat,
//     and then the request: session << 8 | directions, with release ([R-CAP]). Sessions
//     count up, so a new one never equals one an endpoint may still have cached.
//   - The endpoint, for every frame it reads from or delivers to its frontend, loads the
//     request once (relaxed) and tests it against the frame's direction. No direction,
//     the case whenever nobody captures, ends it there: no other shared word is read,
//     nothing is written, no system call is made. A request it has not seen before is
//     acquired ([A-CAP]) and its snaplen read.
//   - The reader stores CLOCK_MONOTONIC ms in heartbeat_ms at least every 250 ms. An
//     endpoint that finds it older than 2 s (it looks every 100 ms) copies nothing and
//     only counts the frames: a reader killed by SIGKILL leaves its request set, and the
//     endpoint then pays a load, a test and an increment per frame until the next capture.
//   - A frame that finds no room in the ring is not copied, and counted (dropped); the
//     frame itself is forwarded as always. The endpoint never waits for the reader.
//   - The endpoint publishes its copies once per loop pass. The reader sleeps on the
//     ring's consumer_waiting word (a shared futex, shm::FutexDoorbell) for 5 ms (up to
//     100 ms while nothing comes);
//     the endpoint wakes it early only once a quarter of the ring waits (coalesced like a
//     NIC's interrupts: at most one system call per quarter ring, none at low rates). The
//     handshake is the ring's own ([F2] in FrameConsumer::peek_or_arm, [F1c] in
//     CaptureWriter::publish_slow); a wake-up lost anyway would cost at most that sleep.
//   - The reader stops by writing the request without directions. The ring's pages stay
//     reserved until vswitchd removes the object (punching them out while the endpoint may
//     still be writing its last copy could fault it on a full /dev/shm).

// Trust: the endpoint is hostile to the reader. The reader maps the ring by the geometry
// the topology gives (RingArea::adopt), validates every record the ring hands it
// (FrameConsumer), then every capture header (read once): session, direction and lengths;
// a record that fails is skipped and counted. What the endpoint writes into its capture is
// what it claims to have seen: a compromised endpoint can lie about its own traffic, and
// nothing else. The reader is root (the objects are 0600, vswitchd's); the endpoint reads
// only the reader line and never trusts it with more than whether and how much to copy.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "shm/doorbell.hpp"
#include "shm/frame_ring.hpp"
#include "shm/region.hpp"
#include "shm/sys/fd.hpp"
#include "shm/sys/fence.hpp"
#include "shm/sys/result.hpp"
#include "vswitch/config/topology.hpp"

namespace vswitch {

// Directions, from the switch port's side: rx = frames the endpoint read from its frontend
// (sent by the VM or the namespace), tx = frames it delivered to its frontend.
inline constexpr std::uint32_t kCaptureRx = 1;
inline constexpr std::uint32_t kCaptureTx = 2;
inline constexpr std::uint32_t kCaptureBoth = kCaptureRx | kCaptureTx;

// In front of every captured frame. Written by the endpoint; untrusted by the reader.
struct CaptureRecordHeader {
  std::uint64_t timestamp_ns;    // CLOCK_MONOTONIC when the endpoint copied the frame
  std::uint32_t session;         // the request it was copied for
  std::uint32_t direction;       // kCaptureRx or kCaptureTx
  std::uint32_t original_bytes;  // the frame's length; the record holds at most snaplen of it
  std::uint32_t reserved;        // 0
};
static_assert(sizeof(CaptureRecordHeader) == CaptureConfig::kRecordHeaderBytes);

inline constexpr std::uint64_t kCaptureRingOffset = 256;
// How often the reader renews its heartbeat, and how old one may be before an endpoint
// stops copying.
inline constexpr std::uint64_t kCaptureHeartbeatMs = 250;
inline constexpr std::uint64_t kCaptureHeartbeatTimeoutMs = 2000;
// How long the reader sleeps on an armed, empty ring: the delay before frames that never
// add up to a quarter ring (which would wake it) are written out. vswitchctl starts at the
// shortest and doubles it while nothing comes, so an idle capture wakes ~10 times a second.
inline constexpr std::uint64_t kCaptureWaitMs = 5;
inline constexpr std::uint64_t kCaptureIdleWaitMs = 100;

// The shape of every capture object of a topology.
struct CaptureGeometry {
  std::uint64_t ring_bytes = 0;
  std::uint32_t max_frame = 0;

  [[nodiscard]] static CaptureGeometry of(const Topology& t) noexcept {
    return {t.capture.ring_bytes, t.fabric.max_frame};
  }
  [[nodiscard]] std::uint32_t max_payload() const noexcept {
    return max_frame + static_cast<std::uint32_t>(sizeof(CaptureRecordHeader));
  }
  [[nodiscard]] std::uint64_t payload_bytes() const noexcept {
    return kCaptureRingOffset + shm::RingArea::bytes_for(ring_bytes);
  }
};

// "/vswitch.<switch>.capture.<endpoint>"
[[nodiscard]] std::string capture_object_name(const std::string& switch_name, const std::string& endpoint_name);

// vswitchd's: creates an endpoint's capture object, empty, with no request; the object
// owns the name (unlinks it when destroyed).
[[nodiscard]] sys::Result<shm::Region, std::string> create_capture_object(const std::string& switch_name,
                                                                          const std::string& endpoint_name,
                                                                          const CaptureGeometry& geometry,
                                                                          std::uint64_t generation);

// The endpoint's side. Owned by its run loop's thread.
class CaptureWriter {
 public:
  // The endpoint program's own object, by its size alone (shm::Region::attach_sized): the
  // reader can write its headers, and must not keep a restarted endpoint from starting.
  [[nodiscard]] static sys::Result<CaptureWriter, std::string> attach_sized(const std::string& switch_name,
                                                                            const std::string& endpoint_name,
                                                                            const CaptureGeometry& geometry,
                                                                            std::uint64_t generation);
  // Over a region made by create_capture_object (tests, and vswitchd's own threads).
  [[nodiscard]] static sys::Result<CaptureWriter, std::string> over(shm::Region region,
                                                                    const CaptureGeometry& geometry);

  // The directions the reader asks for (0: nobody captures): one relaxed load of a word
  // nobody writes while no capture runs. The endpoint loop reads it once per pass and asks
  // wants() only for a direction named here, so a switch nobody captures pays a test of a
  // register per frame.
  [[nodiscard]] std::uint32_t requested() const noexcept {
    // relaxed: a request this writer has not seen before is acquired in check() ([A-CAP]).
    return static_cast<std::uint32_t>(std::atomic_ref<std::uint64_t>(*request_word_).load(std::memory_order_relaxed)) &
           kCaptureBoth;
  }
  // Whether a frame going `direction` is to be copied now (`now_ns`: CLOCK_MONOTONIC, the
  // loop pass's clock); asked only while requested() names the direction. A capture whose
  // reader stopped renewing its heartbeat (killed): a load, a test and a count per frame,
  // and a look at the heartbeat every 100 ms.
  [[nodiscard]] bool wants(std::uint32_t direction, std::uint64_t now_ns) noexcept {
    // relaxed: a request this writer has not seen before is acquired in check() ([A-CAP]).
    const std::uint64_t request = std::atomic_ref<std::uint64_t>(*request_word_).load(std::memory_order_relaxed);
    // 0: no capture since vswitchd started; after one, the word keeps its session with no
    // direction.
    if ((request & direction) == 0) [[likely]]
      return false;
    if (request != request_ || now_ns - heartbeat_checked_ns_ >= kHeartbeatCheckNs) [[unlikely]]
      check(request, now_ns);
    if (alive_) return true;
    ++expired_;  // published with the next look at the heartbeat
    return false;
  }
  // Copies the frame's first snaplen bytes, or counts it as dropped when the ring is full.
  void copy(std::uint32_t direction, std::span<const std::byte> frame) noexcept;
  // Once per loop pass: makes this pass's copies visible, wakes a sleeping reader once a
  // quarter of the ring waits for it, and stores the session's counts in the endpoint
  // line. Nothing when nothing was copied and the heartbeat not looked at.
  void publish() noexcept {
    if (dirty_) publish_slow();
  }

  // Every frame copied or dropped by this process, whatever the session.
  [[nodiscard]] std::uint64_t captured_total() const noexcept { return captured_total_; }
  [[nodiscard]] std::uint64_t dropped_total() const noexcept { return dropped_total_; }

  static constexpr std::uint64_t kHeartbeatCheckNs = 100'000'000;

 private:
  CaptureWriter(shm::Region region, shm::RingArea ring, const CaptureGeometry& geometry);
  // A request not seen before (its snaplen; its counts, continued when a predecessor of
  // this endpoint had taken it up), and the reader's heartbeat.
  void check(std::uint64_t request, std::uint64_t now_ns) noexcept;
  void publish_slow() noexcept;

  shm::Region region_;
  std::uint64_t* request_word_;  // in region_: the reader's request
  std::uint32_t* waiting_word_;  // in region_: the ring's consumer_waiting, the reader's futex
  shm::FutexDoorbell bell_;
  shm::FrameProducer producer_;  // without a doorbell: publish_slow() wakes the reader itself
  std::uint32_t max_frame_;
  std::uint64_t wake_bytes_;     // a quarter of the ring
  std::uint64_t unannounced_ = 0;  // record bytes published since the reader was last woken
  std::uint64_t request_ = 0;  // the request the values below are for
  std::uint32_t session_ = 0;
  std::uint32_t snaplen_ = 0;
  bool alive_ = false;         // the reader's heartbeat was fresh at the last look
  std::uint64_t heartbeat_checked_ns_ = 0;
  bool dirty_ = false;
  std::uint64_t captured_ = 0;  // this session
  std::uint64_t dropped_ = 0;
  std::uint64_t expired_ = 0;
  std::uint64_t captured_total_ = 0;
  std::uint64_t dropped_total_ = 0;
};

// One frame as the reader hands it on, after validation. `bytes` lies in the ring (shared
// memory): copy it before the callback returns.
struct CapturedFrame {
  std::uint64_t timestamp_ns;  // CLOCK_MONOTONIC
  std::uint32_t direction;     // kCaptureRx or kCaptureTx
  std::uint32_t original_bytes;
  std::span<const std::byte> bytes;
};

// What the endpoint says about the session (its line, untrusted: for the report only).
struct CaptureEndpointReport {
  bool seen = false;  // the endpoint has taken up this session's request
  std::uint64_t captured = 0;
  std::uint64_t dropped = 0;  // the ring was full
  std::uint64_t expired = 0;  // the reader's heartbeat had lapsed (it was stopped or too slow)
};

// vswitchctl's side: one session at a time, one reader per endpoint (flock).
class CaptureReader {
 public:
  CaptureReader(shm::Region region, shm::RingArea ring, sys::Fd lock, const CaptureGeometry& geometry);
  // Maps the object read-write after validating its region header (kind, generation) and
  // that its size is what `geometry` (from the topology) implies; takes its lock. Fails
  // with a message naming the object, or saying who holds the lock.
  [[nodiscard]] static sys::Result<std::unique_ptr<CaptureReader>, std::string> attach(const std::string& switch_name,
                                                                      const std::string& endpoint_name,
                                                                      const CaptureGeometry& geometry,
                                                                      std::uint64_t generation);
  CaptureReader(const CaptureReader&) = delete;
  CaptureReader& operator=(const CaptureReader&) = delete;
  ~CaptureReader();  // stop()s a session still running

  // Reserves the ring's pages (a full /dev/shm refuses the capture here, instead of
  // faulting the endpoint when it first writes a page), discards what the ring holds, then
  // asks for `directions` (kCapture*), at most `snaplen` bytes of each frame (0 or above
  // max_frame: whole frames). The pages stay reserved until vswitchd removes the object.
  [[nodiscard]] sys::Status<std::string> start(std::uint32_t directions, std::uint32_t snaplen) noexcept;
  // Hands f(const CapturedFrame&) up to `max` valid records of this session; records of
  // another session or invalid ones are skipped and counted. Returns the frames handed.
  // Renews the heartbeat when due.
  template <typename F>
  std::size_t drain(std::size_t max, F&& f);
  // Sleeps until the endpoint wakes it (a quarter of the ring waiting) or `timeout` passes
  // (never longer than the heartbeat period); returns at once when the ring holds a
  // record. A ring found corrupt (a hostile endpoint) is slept on all the same: no spinning.
  void wait(std::chrono::milliseconds timeout) noexcept;
  // Withdraws the request: the word keeps the session, without a direction.
  void stop() noexcept;
  // vswitchd removed the object (it stopped): nothing more will come. Looked at with the
  // heartbeat.
  [[nodiscard]] bool gone() const noexcept { return gone_; }

  [[nodiscard]] CaptureEndpointReport report() const noexcept;
  [[nodiscard]] std::uint32_t session() const noexcept { return session_; }
  // This reader's own mapping of the object (the frames drain() hands out lie in it).
  [[nodiscard]] const shm::Region& region() const noexcept { return region_; }
  [[nodiscard]] std::uint32_t snaplen() const noexcept { return snaplen_; }
  // Records this session skipped: malformed (a broken or hostile endpoint), or copied
  // for an earlier session; and how often the ring itself was found corrupt.
  [[nodiscard]] std::uint64_t invalid_records() const noexcept { return invalid_; }
  [[nodiscard]] std::uint64_t stale_records() const noexcept { return stale_; }
  [[nodiscard]] std::uint64_t ring_resyncs() const noexcept { return consumer_.counters().resyncs - resyncs_before_; }

 private:
  [[nodiscard]] std::uint64_t* line(std::size_t offset) const noexcept;
  void heartbeat(bool force) noexcept;
  void discard() noexcept;  // consumes what the ring holds, unread
  // Validates a record; fills `out` and returns true when it is a frame of this session.
  bool validate(std::span<const std::byte> record, CapturedFrame& out) noexcept;

  shm::Region region_;
  shm::RingArea ring_;
  shm::FrameConsumer consumer_;
  sys::Fd lock_;
  std::uint32_t max_frame_;
  std::uint64_t ring_bytes_;
  std::uint32_t session_ = 0;
  std::uint32_t snaplen_ = 0;
  std::uint64_t last_heartbeat_ms_ = 0;
  std::uint64_t invalid_ = 0;
  std::uint64_t stale_ = 0;
  std::uint64_t resyncs_before_ = 0;
  bool started_ = false;
  bool gone_ = false;
};

template <typename F>
std::size_t CaptureReader::drain(std::size_t max, F&& f) {
  heartbeat(false);
  std::size_t handed = 0;
  std::size_t seen = 0;  // every record, valid or not: a hostile endpoint cannot keep us here
  // Small bursts: the endpoint gets room back while a long drain goes on.
  constexpr std::size_t kBurst = 16;
  while (seen < max) {
    const std::size_t want = std::min(kBurst, max - seen);
    const std::size_t got = consumer_.consume_burst(want, [&](std::span<const std::byte> record) {
      CapturedFrame frame{};
      if (!validate(record, frame)) return;
      f(static_cast<const CapturedFrame&>(frame));
      ++handed;
    });
    seen += got;
    if (got < want) break;  // empty (or corrupt: resynchronised, counted in ring_resyncs)
  }
  return handed;
}

}  // namespace vswitch
