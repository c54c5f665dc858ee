// The capture object between an endpoint (CaptureWriter) and vswitchctl (CaptureReader):
// nothing is copied while nobody captures; a session gets exactly its frames, cut to its
// snaplen, in both directions or one; a full ring drops and counts; a reader that stops
// renewing its heartbeat stops the copying; one reader per endpoint; and a hostile
// endpoint's records are skipped and counted, never trusted. Plus the pcapng blocks.
#include "vswitch/observability/capture.hpp"
#include "vswitch/observability/pcapng.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "shm/sys/clock.hpp"

namespace vswitch {
namespace {

using namespace std::chrono_literals;

constexpr CaptureGeometry kGeometry{65536, 2048};

std::string unique_switch() {
  static std::atomic<int> n{0};
  return "captest" + std::to_string(::getpid()) + "x" + std::to_string(n++);
}

std::vector<std::byte> frame_of(std::size_t len, std::uint8_t seed) {
  std::vector<std::byte> f(len);
  for (std::size_t i = 0; i < len; ++i) f[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
  return f;
}

struct Got {
  std::uint64_t timestamp_ns;
  std::uint32_t direction;
  std::uint32_t original;
  std::vector<std::byte> bytes;
};

class Capture : public ::testing::Test {
 protected:
  void SetUp() override {
    sw_ = unique_switch();
    auto region = create_capture_object(sw_, "ep", kGeometry, 5);
    ASSERT_TRUE(region.has_value()) << (region ? "" : region.error());
    object_.emplace(std::move(region.value()));
    auto w = CaptureWriter::attach_sized(sw_, "ep", kGeometry, 5);
    ASSERT_TRUE(w.has_value()) << (w ? "" : w.error());
    writer_.emplace(std::move(w.value()));
    auto r = CaptureReader::attach(sw_, "ep", kGeometry, 5);
    ASSERT_TRUE(r.has_value()) << (r ? "" : r.error());
    reader_ = std::move(r.value());
  }

  void begin(std::uint32_t directions, std::uint32_t snaplen) {
    auto st = reader_->start(directions, snaplen);
    ASSERT_TRUE(st.has_value()) << st.error();
  }
  std::vector<Got> drain_all() {
    std::vector<Got> got;
    reader_->drain(100000, [&](const CapturedFrame& f) {
      got.push_back({f.timestamp_ns, f.direction, f.original_bytes, std::vector<std::byte>(f.bytes.begin(), f.bytes.end())});
    });
    return got;
  }
  // The ring's producer index, as the reader would see it.
  std::uint64_t ring_head() const {
    auto ring = shm::RingArea::adopt(object_->payload().subspan(kCaptureRingOffset,
                                                                shm::RingArea::bytes_for(kGeometry.ring_bytes)),
                                     kGeometry.ring_bytes, kGeometry.max_payload());
    return ring.value().snapshot().head;
  }
  // What the endpoint does with a frame.
  void pass(std::uint32_t direction, std::span<const std::byte> frame,
            std::uint64_t now = sys::monotonic_ns()) {
    if (writer_->wants(direction, now)) writer_->copy(direction, frame);
  }

  std::string sw_;
  std::optional<shm::Region> object_;
  std::optional<CaptureWriter> writer_;
  std::unique_ptr<CaptureReader> reader_;
};

TEST_F(Capture, NothingIsCopiedWhileNobodyCaptures) {
  const auto f = frame_of(100, 1);
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(writer_->wants(kCaptureRx, sys::monotonic_ns()));
    EXPECT_FALSE(writer_->wants(kCaptureTx, sys::monotonic_ns()));
  }
  writer_->publish();
  EXPECT_EQ(ring_head(), 0u);
  EXPECT_EQ(writer_->captured_total(), 0u);
  EXPECT_FALSE(reader_->report().seen);
}

TEST_F(Capture, ASessionGetsEveryFrameInOrderWithItsDirection) {
  begin(kCaptureBoth, 0);
  const std::uint64_t before = sys::monotonic_ns();
  std::vector<std::vector<std::byte>> sent;
  for (int i = 0; i < 20; ++i) {
    sent.push_back(frame_of(60 + static_cast<std::size_t>(i) * 50, static_cast<std::uint8_t>(i)));
    pass(i % 2 == 0 ? kCaptureRx : kCaptureTx, sent.back());
  }
  writer_->publish();
  const std::uint64_t after = sys::monotonic_ns();
  const auto got = drain_all();
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_GE(got[i].timestamp_ns, before);  // CLOCK_MONOTONIC, when the copy was made
    EXPECT_LE(got[i].timestamp_ns, after);
    if (i != 0) {
      EXPECT_GE(got[i].timestamp_ns, got[i - 1].timestamp_ns);
    }
    EXPECT_EQ(got[i].direction, i % 2 == 0 ? kCaptureRx : kCaptureTx);
    EXPECT_EQ(got[i].original, sent[i].size());
    EXPECT_EQ(got[i].bytes, sent[i]) << "frame " << i;
  }
  const CaptureEndpointReport rep = reader_->report();
  EXPECT_TRUE(rep.seen);
  EXPECT_EQ(rep.captured, 20u);
  EXPECT_EQ(rep.dropped, 0u);
  EXPECT_EQ(reader_->invalid_records(), 0u);
}

TEST_F(Capture, OneDirectionOnly) {
  begin(kCaptureTx, 0);
  const auto f = frame_of(64, 3);
  EXPECT_FALSE(writer_->wants(kCaptureRx, sys::monotonic_ns()));
  EXPECT_TRUE(writer_->wants(kCaptureTx, sys::monotonic_ns()));
  pass(kCaptureRx, f);
  pass(kCaptureTx, f);
  writer_->publish();
  const auto got = drain_all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].direction, kCaptureTx);
}

TEST_F(Capture, SnaplenCutsTheCopyNotTheOriginalLength) {
  begin(kCaptureBoth, 60);
  const auto f = frame_of(1000, 9);
  pass(kCaptureRx, f);
  writer_->publish();
  const auto got = drain_all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].original, 1000u);
  EXPECT_EQ(got[0].bytes, std::vector<std::byte>(f.begin(), f.begin() + 60));
}

TEST_F(Capture, AFullRingDropsAndCountsNeverWaits) {
  begin(kCaptureBoth, 0);
  const auto f = frame_of(1000, 2);
  for (int i = 0; i < 200; ++i) pass(kCaptureRx, f);  // 200 KB into a 64 KiB ring, nobody reading
  writer_->publish();
  const CaptureEndpointReport rep = reader_->report();
  EXPECT_EQ(rep.captured + rep.dropped, 200u);
  EXPECT_GT(rep.dropped, 0u);
  EXPECT_EQ(writer_->dropped_total(), rep.dropped);
  const auto got = drain_all();
  EXPECT_EQ(got.size(), rep.captured);
  // Room again: the next frames are copied.
  pass(kCaptureRx, f);
  writer_->publish();
  EXPECT_EQ(drain_all().size(), 1u);
  EXPECT_EQ(reader_->report().captured, rep.captured + 1);
}

// A reader killed with SIGKILL leaves its request set; its heartbeat then ages, and an
// endpoint that finds it stale copies nothing more and counts what it left out. A
// heartbeat fresh again (a reader that was only slow) brings the copying back.
TEST_F(Capture, AStaleHeartbeatStopsTheCopyingAndAFreshOneResumesIt) {
  begin(kCaptureBoth, 0);
  const auto f = frame_of(64, 4);
  const std::uint64_t now = sys::monotonic_ns();
  EXPECT_TRUE(writer_->wants(kCaptureRx, now));
  const std::uint64_t later = now + (kCaptureHeartbeatTimeoutMs + 500) * 1'000'000;
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(writer_->wants(kCaptureRx, later + static_cast<std::uint64_t>(i)));
  // The count reaches the endpoint line with the next look at the heartbeat.
  EXPECT_FALSE(writer_->wants(kCaptureRx, later + CaptureWriter::kHeartbeatCheckNs));
  writer_->publish();
  EXPECT_EQ(reader_->report().expired, 6u);
  EXPECT_EQ(ring_head(), 0u);
  // Back within the timeout of the reader's last beat (it stored one at start).
  pass(kCaptureRx, f, sys::monotonic_ns());
  writer_->publish();
  EXPECT_EQ(drain_all().size(), 1u);
}

// The reader reserves every page of the object at start: an endpoint never writes into an
// unallocated tmpfs page (a full /dev/shm would fault it with SIGBUS).
TEST_F(Capture, StartReservesTheRingsPages) {
  struct stat st {};
  const std::string path = "/dev/shm" + capture_object_name(sw_, "ep");
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<std::uint64_t>(st.st_blocks) * 512, kGeometry.ring_bytes / 2);
  begin(kCaptureBoth, 0);
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_GE(static_cast<std::uint64_t>(st.st_blocks) * 512, static_cast<std::uint64_t>(st.st_size));
}

// An endpoint restarted during a capture takes the same session up and continues its
// predecessor's counts, so the reader's summary covers both.
TEST_F(Capture, ARestartedEndpointContinuesTheSessionsCounts) {
  begin(kCaptureBoth, 0);
  const auto f = frame_of(80, 8);
  for (int i = 0; i < 3; ++i) pass(kCaptureRx, f);
  writer_->publish();
  writer_.reset();  // the endpoint dies
  auto w = CaptureWriter::attach_sized(sw_, "ep", kGeometry, 5);
  ASSERT_TRUE(w.has_value());
  writer_.emplace(std::move(w.value()));
  for (int i = 0; i < 2; ++i) pass(kCaptureTx, f);
  writer_->publish();
  EXPECT_EQ(reader_->report().captured, 5u);
  EXPECT_EQ(drain_all().size(), 5u);
}

// Writer and reader on two threads, the reader sleeping in wait() whenever the ring is
// empty: every frame is either handed over once, in order, or counted as dropped; none is
// lost to a missed wake-up (the reader's 5 ms timeout would hide a lost wake-up only as
// delay, so the ring here is small enough that a quarter of it wakes the reader often).
TEST_F(Capture, AWriterAndASleepingReaderOnTwoThreads) {
  begin(kCaptureBoth, 0);
  constexpr std::uint32_t kFrames = 20000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::vector<std::byte> f(64);
    for (std::uint32_t i = 0; i < kFrames; ++i) {
      std::memcpy(f.data(), &i, sizeof i);
      pass(kCaptureRx, f);
      if (i % 16 == 15) writer_->publish();
    }
    writer_->publish();
    done = true;
  });
  std::uint64_t got = 0;
  std::int64_t last = -1;
  bool ordered = true;
  for (;;) {
    const bool finished = done.load();
    const std::size_t n = reader_->drain(4096, [&](const CapturedFrame& fr) {
      std::uint32_t seq = 0;
      std::memcpy(&seq, fr.bytes.data(), sizeof seq);
      if (static_cast<std::int64_t>(seq) <= last) ordered = false;
      last = seq;
      ++got;
    });
    if (n == 0 && finished) break;
    if (n == 0) reader_->wait(1000ms);
  }
  writer.join();
  EXPECT_TRUE(ordered);
  const CaptureEndpointReport rep = reader_->report();
  EXPECT_EQ(rep.captured + rep.dropped, kFrames);
  EXPECT_EQ(got, rep.captured);
}

TEST_F(Capture, ANewSessionNeverShowsAnEarlierOnesFrames) {
  begin(kCaptureBoth, 0);
  const auto old_frame = frame_of(100, 5);
  pass(kCaptureRx, old_frame);
  writer_->publish();
  reader_->stop();
  // The endpoint copies once more before it sees the stop (its request cached).
  writer_->copy(kCaptureRx, old_frame);
  writer_->publish();
  begin(kCaptureBoth, 0);
  writer_->copy(kCaptureRx, old_frame);  // still the old session: it has not looked yet
  writer_->publish();
  const auto new_frame = frame_of(200, 6);
  pass(kCaptureTx, new_frame);  // looks: the new session
  writer_->publish();
  const auto got = drain_all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, new_frame);
  EXPECT_GE(reader_->stale_records(), 1u);
  EXPECT_EQ(reader_->report().captured, 1u);
}

TEST_F(Capture, OneReaderPerEndpoint) {
  auto second = CaptureReader::attach(sw_, "ep", kGeometry, 5);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().find("already being captured"), std::string::npos) << second.error();
  reader_.reset();
  auto third = CaptureReader::attach(sw_, "ep", kGeometry, 5);
  EXPECT_TRUE(third.has_value()) << (third ? "" : third.error());
}

TEST_F(Capture, AReaderRefusesAnotherGenerationOrGeometry) {
  reader_.reset();
  auto wrong_generation = CaptureReader::attach(sw_, "ep", kGeometry, 6);
  EXPECT_FALSE(wrong_generation.has_value());
  auto wrong_size = CaptureReader::attach(sw_, "ep", CaptureGeometry{131072, 2048}, 5);
  ASSERT_FALSE(wrong_size.has_value());
  EXPECT_NE(wrong_size.error().find("ring_bytes = 131072"), std::string::npos) << wrong_size.error();
  auto off = CaptureReader::attach(sw_, "ep", CaptureGeometry{0, 2048}, 5);
  ASSERT_FALSE(off.has_value());
  EXPECT_NE(off.error().find("capture is off"), std::string::npos);
}

// The endpoint is hostile: whatever it writes into the ring, the reader hands on only
// records that are well formed and of its session, and counts the rest.
TEST_F(Capture, MalformedRecordsAreSkippedAndCounted) {
  begin(kCaptureBoth, 100);
  // The session the reader asked for, as the endpoint would learn it.
  const auto f = frame_of(50, 7);
  pass(kCaptureRx, f);
  writer_->publish();
  ASSERT_EQ(drain_all().size(), 1u);
  std::uint32_t session = 0;
  {
    // The session word is the request's upper bits: read it as the endpoint can.
    const auto* words = reinterpret_cast<const std::uint64_t*>(object_->payload().data());
    session = static_cast<std::uint32_t>(words[0] >> 8);
  }
  auto ring = shm::RingArea::adopt(
      object_->payload().subspan(kCaptureRingOffset, shm::RingArea::bytes_for(kGeometry.ring_bytes)),
      kGeometry.ring_bytes, kGeometry.max_payload());
  ASSERT_TRUE(ring.has_value());
  // A second producer over the same ring stands for the compromised endpoint; the real
  // writer must not run meanwhile, so it starts where the writer's head is.
  shm::FrameProducer hostile(ring.value(), nullptr);
  // FrameProducer starts from the shared head: the writer published everything.
  auto push = [&](CaptureRecordHeader h, std::size_t bytes) {
    std::vector<std::byte> rec(sizeof h + bytes);
    std::memcpy(rec.data(), &h, sizeof h);
    ASSERT_EQ(hostile.try_push(rec), shm::Reserve::kReserved);
  };
  const std::uint64_t t = sys::monotonic_ns();
  push({t, session, 3, 10, 0}, 10);           // no such direction
  push({t, session, kCaptureRx, 5, 0}, 10);   // longer than the frame it claims to be part of
  push({t, session, kCaptureRx, 500, 0}, 101);  // more than the snaplen asked for
  push({t, session, kCaptureRx, 5000, 0}, 10);  // a frame longer than max_frame
  push({t, session, kCaptureTx, 10, 1}, 10);  // reserved word set
  {
    std::vector<std::byte> shorter(8);        // shorter than a capture header
    ASSERT_EQ(hostile.try_push(shorter), shm::Reserve::kReserved);
  }
  push({t, session, kCaptureTx, 10, 0}, 10);  // the one good record
  hostile.publish();
  const auto got = drain_all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].direction, kCaptureTx);
  EXPECT_EQ(reader_->invalid_records(), 6u);
}

// Whether thread `tid` of this process is asleep (state S in /proc/self/task/TID/stat).
// The waiter below does nothing but load a word and wait in futex(2), so asleep means
// blocked there. The state, not /proc/.../syscall: under qemu-user (the aarch64 tests)
// that file shows the host's system call numbers, not the target's.
bool asleep(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'S';
}

// The reader sleeps on the ring's wake-request word; a publish wakes it. The ring comes
// only once the waiter is asleep in the kernel, and with a 60 s timeout only the
// wake-up ends the wait before the join below.
TEST(FutexDoorbell, ARingAfterTheClearWakesTheWaiter) {
  alignas(8) std::uint32_t word = 1;
  std::atomic<pid_t> tid{0};
  std::thread waiter([&] {
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    while (std::atomic_ref<std::uint32_t>(word).load() == 1) shm::FutexDoorbell::wait(&word, 60000ms);
  });
  // Bounded: a waiter never seen asleep fails the test instead of hanging it.
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  bool slept = false;
  while (!slept && std::chrono::steady_clock::now() < give_up) {
    slept = tid.load() != 0 && asleep(tid.load());
    if (!slept) std::this_thread::yield();
  }
  EXPECT_TRUE(slept) << "the waiter was never seen asleep in futex(2)";
  shm::FutexDoorbell bell(&word);
  std::atomic_ref<std::uint32_t>(word).store(0);  // what the producer's exchange(0) does
  const auto t0 = std::chrono::steady_clock::now();
  bell.ring();
  waiter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "the wake-up was lost; the wait ran into its timeout";
}

TEST(FutexDoorbell, AWaitOnAClearedWordReturnsAtOnce) {
  alignas(8) std::uint32_t word = 0;
  const auto t0 = std::chrono::steady_clock::now();
  shm::FutexDoorbell::wait(&word, 60000ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
}

// ---- pcapng ---------------------------------------------------------------------------

std::uint32_t u32_at(const std::vector<std::byte>& b, std::size_t at) {
  std::uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
std::uint16_t u16_at(const std::vector<std::byte>& b, std::size_t at) {
  std::uint16_t v;
  std::memcpy(&v, b.data() + at, 2);
  return v;
}

// Every block: a multiple of 4 bytes, its total length at both ends; walks the file.
std::vector<std::uint32_t> block_types(const std::vector<std::byte>& file) {
  std::vector<std::uint32_t> types;
  std::size_t at = 0;
  while (at < file.size()) {
    EXPECT_LE(at + 12, file.size());
    const std::uint32_t type = u32_at(file, at);
    const std::uint32_t len = u32_at(file, at + 4);
    EXPECT_EQ(len % 4, 0u);
    EXPECT_LE(at + len, file.size());
    if (len < 12 || at + len > file.size()) break;
    EXPECT_EQ(u32_at(file, at + len - 4), len) << "trailing length of block at " << at;
    types.push_back(type);
    at += len;
  }
  return types;
}

TEST(Pcapng, BlocksAreWellFormedAndCarryTheFrame) {
  std::vector<std::byte> file;
  pcapng::append_section_header(file, "test");
  pcapng::append_interface(file, 65536, "ep0", "an endpoint");
  const auto frame = frame_of(61, 1);  // not a multiple of 4: padded
  const std::size_t packet_at = file.size();
  pcapng::append_packet(file, 0x0123456789abcdefULL, frame, 1514, pcapng::Direction::kOutbound);
  EXPECT_EQ(block_types(file), (std::vector<std::uint32_t>{pcapng::kSectionHeaderType,
                                                           pcapng::kInterfaceDescriptionType,
                                                           pcapng::kEnhancedPacketType}));
  EXPECT_EQ(u32_at(file, 8), pcapng::kByteOrderMagic);
  // The interface: Ethernet, its snaplen.
  const std::size_t idb = u32_at(file, 4);
  EXPECT_EQ(u16_at(file, idb + 8), pcapng::kLinkTypeEthernet);
  EXPECT_EQ(u32_at(file, idb + 12), 65536u);
  // The packet: interface 0, the timestamp split high/low, lengths, bytes, then epb_flags.
  EXPECT_EQ(u32_at(file, packet_at + 8), 0u);
  EXPECT_EQ(u32_at(file, packet_at + 12), 0x01234567u);
  EXPECT_EQ(u32_at(file, packet_at + 16), 0x89abcdefu);
  EXPECT_EQ(u32_at(file, packet_at + 20), 61u);
  EXPECT_EQ(u32_at(file, packet_at + 24), 1514u);
  EXPECT_EQ(std::memcmp(file.data() + packet_at + 28, frame.data(), frame.size()), 0);
  const std::size_t opt = packet_at + 28 + 64;  // 61 bytes padded to 64
  EXPECT_EQ(u16_at(file, opt), 2u);             // epb_flags
  EXPECT_EQ(u16_at(file, opt + 2), 4u);
  EXPECT_EQ(u32_at(file, opt + 4), 2u);         // outbound
}

}  // namespace
}  // namespace vswitch
