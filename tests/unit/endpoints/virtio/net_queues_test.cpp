#include "endpoints/virtio/net_queues.hpp"

#include <gtest/gtest.h>

#include <numeric>

#include "tests/support/guest_driver.hpp"

namespace vswitch::endpoints::virtio {
namespace {

using test::GuestDriver;

constexpr std::uint16_t kSize = 32;
constexpr std::size_t kMaxRecord = kNetHeaderBytes + 65536;
constexpr TxOffloads kAllOffloads{true, true, true, true};

struct Fixture {
  Fixture() : guest(kSize, true, 4 << 20), memory(GuestMemory::create({guest.region()}).value()),
              queue(SplitQueue::create(memory, guest.layout()).value()) {}
  GuestDriver guest;
  GuestMemory memory;
  SplitQueue queue;
  NetQueueCounters counters;
};

std::vector<std::byte> frame_bytes(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> f(n);
  for (std::size_t i = 0; i < n; ++i) f[i] = static_cast<std::byte>(seed + i * 7);
  return f;
}

// A TX packet as the Linux driver lays it out: header in its own descriptor, frame split
// over `pieces` more.
void post_tx(Fixture& f, std::uint16_t head, const std::vector<std::byte>& packet, std::size_t pieces,
             std::uint16_t extra_flags = 0) {
  std::size_t at = 0;
  const std::size_t piece = (packet.size() + pieces - 1) / pieces;
  for (std::size_t k = 0; k < pieces; ++k) {
    const std::size_t n = std::min(piece, packet.size() - at);
    const auto gpa = f.guest.alloc(n);
    std::memcpy(f.guest.host(gpa), packet.data() + at, n);
    at += n;
    const bool last = k == pieces - 1;
    f.guest.set_desc(static_cast<std::uint16_t>(head + k),
                     Descriptor{gpa, static_cast<std::uint32_t>(n),
                                static_cast<std::uint16_t>((last ? 0 : kDescFlagNext) | extra_flags),
                                static_cast<std::uint16_t>(head + k + 1)});
  }
  f.guest.make_available(head);
}

std::vector<std::byte> packet(const NetHeader& h, std::size_t frame_len) {
  std::vector<std::byte> p(kNetHeaderBytes + frame_len);
  write(h, std::span<std::byte, kNetHeaderBytes>(p.data(), kNetHeaderBytes));
  auto fr = frame_bytes(frame_len, 3);
  std::memcpy(p.data() + kNetHeaderBytes, fr.data(), frame_len);
  return p;
}

TEST(NetTx, GathersHeaderAndFrameSplitOverDescriptors) {
  Fixture f;
  const auto p = packet(NetHeader{}, 1500);
  post_tx(f, 0, p, 4);  // the header itself straddles two descriptors
  std::vector<std::byte> out(kMaxRecord);
  const TxResult r = tx_pop(f.queue, out, kAllOffloads, f.counters);
  ASSERT_EQ(r.status, TxResult::Status::kFrame);
  ASSERT_EQ(r.bytes, p.size());
  EXPECT_EQ(std::memcmp(out.data(), p.data(), p.size()), 0);
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used_idx(), 1);
  EXPECT_EQ(f.guest.used(0).len, 0u);
  EXPECT_TRUE(f.queue.needs_notification()) << "TX completions interrupt the guest too";
  EXPECT_EQ(f.counters.tx_frames, 1u);
}

struct BadTx {
  const char* name;
  TxError error;
};

TEST(NetTx, BadChainsGoBackWithLengthZeroAndAreCounted) {
  Fixture f;
  std::vector<std::byte> out(1600);  // the largest record this test allows
  NetHeader gso;
  gso.gso_type = 99;
  post_tx(f, 0, packet(NetHeader{}, 100), 1, kDescFlagWrite);                         // writable in TX
  post_tx(f, 2, std::vector<std::byte>(kNetHeaderBytes + 10), 1);                    // no frame
  post_tx(f, 4, packet(NetHeader{}, 1700), 2);                                        // too large
  post_tx(f, 8, packet(gso, 100), 1);                                                 // bad header
  post_tx(f, 10, packet(NetHeader{}, 60), 1);                                          // good
  const TxResult r = tx_pop(f.queue, out, kAllOffloads, f.counters);
  ASSERT_EQ(r.status, TxResult::Status::kFrame);
  EXPECT_EQ(r.bytes, kNetHeaderBytes + 60);
  for (TxError e : {TxError::kWritableBuffer, TxError::kNoFrame, TxError::kTooLarge, TxError::kBadHeader})
    EXPECT_EQ(f.counters.tx_errors[static_cast<std::size_t>(e)], 1u) << to_string(e);
  EXPECT_EQ(f.counters.bad_chains, 4u);
  f.queue.publish_used();
  ASSERT_EQ(f.guest.used_idx(), 5) << "every head returned exactly once";
  const std::uint32_t ids[] = {0, 2, 4, 8, 10};
  for (std::uint16_t i = 0; i < 5; ++i) {
    EXPECT_EQ(f.guest.used(i).id, ids[i]);
    EXPECT_EQ(f.guest.used(i).len, 0u);
  }
  EXPECT_EQ(tx_pop(f.queue, out, kAllOffloads, f.counters).status, TxResult::Status::kEmpty);
}

// virtio 1.x 5.1.6.2.1: a driver must not set DATA_VALID or RSC_INFO, sets NEEDS_CSUM
// only with CSUM and a gso_type only with the matching HOST_TSO4/6 (ECN with HOST_ECN).
// The forbidden flags are cleared; a header asking for an offload that was not
// negotiated, or with gso_size / hdr_len that do not fit the frame, is refused and counted.
TEST(NetTx, HeadersAreCheckedAgainstTheNegotiatedOffloads) {
  Fixture f;
  std::vector<std::byte> out(kMaxRecord);
  NetHeader marked;  // a plain frame the guest claims is verified
  marked.flags = kNetHdrFlagDataValid | kNetHdrFlagRscInfo;
  post_tx(f, 0, packet(marked, 100), 1);
  TxResult r = tx_pop(f.queue, out, TxOffloads{}, f.counters);
  ASSERT_EQ(r.status, TxResult::Status::kFrame);
  EXPECT_EQ(std::to_integer<int>(out[0]), 0) << "DATA_VALID and RSC_INFO cleared";

  NetHeader csum;
  csum.flags = kNetHdrFlagNeedsCsum;
  csum.csum_start = 34;
  csum.csum_offset = 16;
  NetHeader tso4 = csum;
  tso4.gso_type = kGsoTcpV4;
  tso4.gso_size = 40;
  tso4.hdr_len = 54;
  NetHeader tso6 = tso4;
  tso6.gso_type = kGsoTcpV6;
  NetHeader ecn = tso4;
  ecn.gso_type = kGsoTcpV4 | kGsoEcn;
  NetHeader ufo = tso4;
  ufo.gso_type = kGsoUdp;
  NetHeader huge_mss = tso4;
  huge_mss.gso_size = 100;  // as large as the whole frame
  NetHeader long_hdr = tso4;
  long_hdr.hdr_len = 101;
  struct Case {
    NetHeader h;
    TxOffloads offloads;
    TxError error;
    bool fine_with_all;  // accepted once every offload it may ask for is negotiated
  } const cases[] = {
      {csum, TxOffloads{false, true, true, true}, TxError::kOffloadNotNegotiated, true},
      {tso4, TxOffloads{true, false, true, true}, TxError::kOffloadNotNegotiated, true},
      {tso6, TxOffloads{true, true, false, true}, TxError::kOffloadNotNegotiated, true},
      {ecn, TxOffloads{true, true, true, false}, TxError::kOffloadNotNegotiated, true},
      {ufo, kAllOffloads, TxError::kOffloadNotNegotiated, false},
      {huge_mss, kAllOffloads, TxError::kBadGsoSize, false},
      {long_hdr, kAllOffloads, TxError::kBadHdrLen, false},
  };
  std::uint16_t head = 1;
  for (const Case& c : cases) {
    const std::uint64_t before = f.counters.tx_errors[static_cast<std::size_t>(c.error)];
    post_tx(f, head++, packet(c.h, 100), 1);
    EXPECT_EQ(tx_pop(f.queue, out, c.offloads, f.counters).status, TxResult::Status::kEmpty) << to_string(c.error);
    EXPECT_EQ(f.counters.tx_errors[static_cast<std::size_t>(c.error)], before + 1) << to_string(c.error);
    post_tx(f, head++, packet(c.h, 100), 1);
    r = tx_pop(f.queue, out, kAllOffloads, f.counters);
    EXPECT_EQ(r.status, c.fine_with_all ? TxResult::Status::kFrame : TxResult::Status::kEmpty) << to_string(c.error);
  }
  EXPECT_EQ(f.counters.bad_chains, 7u + 3u) << "UFO, gso_size and hdr_len refused with every offload too";
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used(1).len, 0u);
}

// RX: `count` chains of `bytes` device-writable bytes each, heads 0..count-1.
std::vector<std::uint64_t> post_rx(Fixture& f, std::uint16_t count, std::uint32_t bytes, std::uint16_t first = 0) {
  std::vector<std::uint64_t> gpas;
  for (std::uint16_t i = first; i < first + count; ++i) {
    const auto gpa = f.guest.alloc(bytes);
    gpas.push_back(gpa);
    f.guest.set_desc(i, Descriptor{gpa, bytes, kDescFlagWrite, 0});
    f.guest.make_available(i);
  }
  return gpas;
}

TEST(NetRx, A64KiBGsoFrameOverMergeableBuffers) {
  Fixture f;
  RxQueue rx(true);
  const auto gpas = post_rx(f, 20, 4096);
  NetHeader h;
  h.flags = kNetHdrFlagNeedsCsum;
  h.gso_type = kGsoTcpV4;
  h.gso_size = 1448;
  h.hdr_len = 66;
  h.csum_start = 34;
  h.csum_offset = 16;
  const auto frame = frame_bytes(65536, 9);
  ASSERT_EQ(rx.deliver(f.queue, h, frame, f.counters), RxQueue::Status::kDelivered);
  f.queue.publish_used();
  const std::uint16_t n = f.guest.used_idx();
  EXPECT_EQ(n, 17) << "ceil((12 + 65536) / 4096) buffers";
  // Reassemble what the guest sees, in used order.
  std::vector<std::byte> got;
  for (std::uint16_t i = 0; i < n; ++i) {
    const auto e = f.guest.used(i);
    EXPECT_EQ(e.id, i);
    const std::byte* p = f.guest.host(gpas[e.id]);
    got.insert(got.end(), p, p + e.len);
  }
  ASSERT_EQ(got.size(), kNetHeaderBytes + frame.size());
  auto seen = parse(got);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->get().num_buffers, 17);
  EXPECT_EQ(seen->get().gso_type, kGsoTcpV4);
  EXPECT_EQ(seen->get().gso_size, 1448);
  EXPECT_EQ(std::memcmp(got.data() + kNetHeaderBytes, frame.data(), frame.size()), 0);
  EXPECT_EQ(rx.pooled(), 0u) << "ceil needs all 17 popped, nothing left over";
}

TEST(NetRx, WaitsForBuffersKeepingWhatItHasThenDelivers) {
  Fixture f;
  RxQueue rx(true);
  post_rx(f, 2, 1024);
  const auto frame = frame_bytes(3000, 1);
  EXPECT_EQ(rx.deliver(f.queue, NetHeader{}, frame, f.counters), RxQueue::Status::kNoBuffers);
  EXPECT_EQ(rx.pooled(), 2u);
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used_idx(), 0) << "nothing returned or half-written while waiting";
  EXPECT_FALSE(f.queue.enable_notification());
  post_rx(f, 2, 1024, 2);
  EXPECT_TRUE(f.queue.enable_notification()) << "the guest's new buffers end the wait";
  ASSERT_EQ(rx.deliver(f.queue, NetHeader{}, frame, f.counters), RxQueue::Status::kDelivered);
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used_idx(), 3);
  EXPECT_EQ(f.counters.rx_no_buffers, 1u);
  EXPECT_EQ(rx.pooled(), 0u) << "pops only as many chains as the frame needs";
}

TEST(NetRx, WithoutMergeableBuffersOneChainMustHoldTheFrame) {
  Fixture f;
  RxQueue rx(false);
  post_rx(f, 1, 1518);
  const auto big = frame_bytes(4000, 1);
  EXPECT_EQ(rx.deliver(f.queue, NetHeader{}, big, f.counters), RxQueue::Status::kDropped);
  EXPECT_EQ(f.counters.rx_drops[static_cast<std::size_t>(RxDrop::kBufferTooSmall)], 1u);
  const auto small = frame_bytes(1500, 2);
  ASSERT_EQ(rx.deliver(f.queue, NetHeader{}, small, f.counters), RxQueue::Status::kDelivered);
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used(0).len, kNetHeaderBytes + 1500);
}

TEST(NetRx, AFrameNoAmountOfBuffersCanHoldIsDroppedNotWaitedFor) {
  Fixture f;
  RxQueue rx(true);
  post_rx(f, kSize, 512);  // 16 KiB in all
  EXPECT_EQ(rx.deliver(f.queue, NetHeader{}, frame_bytes(20000, 1), f.counters), RxQueue::Status::kDropped);
  ASSERT_EQ(rx.deliver(f.queue, NetHeader{}, frame_bytes(1000, 1), f.counters), RxQueue::Status::kDelivered);
}

TEST(NetRx, ReadOnlyChainsAreReturnedUnused) {
  Fixture f;
  RxQueue rx(true);
  f.guest.set_desc(0, Descriptor{f.guest.alloc(2048), 2048, 0, 0});  // device-readable: wrong for RX
  f.guest.make_available(0);
  post_rx(f, 1, 2048, 1);
  ASSERT_EQ(rx.deliver(f.queue, NetHeader{}, frame_bytes(100, 1), f.counters), RxQueue::Status::kDelivered);
  f.queue.publish_used();
  ASSERT_EQ(f.guest.used_idx(), 2);
  EXPECT_EQ(f.guest.used(0).id, 0u);
  EXPECT_EQ(f.guest.used(0).len, 0u);
  EXPECT_EQ(f.counters.rx_drops[static_cast<std::size_t>(RxDrop::kReadableBuffer)], 1u);
  EXPECT_EQ(f.counters.bad_chains, 1u);
}

TEST(NetRx, CompletionStaysInAvailOrderWhenABadChainFollowsPooledOnes) {
  Fixture f;
  RxQueue rx(true);
  post_rx(f, 2, 1024);  // heads 0, 1: pooled, not enough for the frame
  const auto frame = frame_bytes(3000, 1);
  EXPECT_EQ(rx.deliver(f.queue, NetHeader{}, frame, f.counters), RxQueue::Status::kNoBuffers);
  EXPECT_EQ(rx.pooled(), 2u);
  f.guest.set_desc(2, Descriptor{f.guest.alloc(1024), 1024, 0, 0});  // head 2: device-readable, bad
  f.guest.make_available(2);
  post_rx(f, 3, 1024, 3);  // heads 3, 4, 5
  ASSERT_EQ(rx.deliver(f.queue, NetHeader{}, frame, f.counters), RxQueue::Status::kDelivered);
  f.queue.publish_used();
  ASSERT_EQ(f.guest.used_idx(), 6);
  for (std::uint16_t i = 0; i < 6; ++i) EXPECT_EQ(f.guest.used(i).id, i) << "used ring in avail order";
  EXPECT_EQ(f.guest.used(0).len, 0u);
  EXPECT_EQ(f.guest.used(1).len, 0u);
  EXPECT_EQ(f.guest.used(2).len, 0u);
  EXPECT_EQ(f.guest.used(3).len + f.guest.used(4).len + f.guest.used(5).len, kNetHeaderBytes + 3000);
  EXPECT_EQ(f.counters.rx_drops[static_cast<std::size_t>(RxDrop::kReturnedForOrder)], 2u);
  EXPECT_EQ(f.counters.rx_drops[static_cast<std::size_t>(RxDrop::kReadableBuffer)], 1u);
  EXPECT_EQ(f.counters.bad_chains, 1u);
}

}  // namespace
}  // namespace vswitch::endpoints::virtio
