// A consumer facing a corrupted ring: each broken index or record header gives its own
// error, is counted, the ring is resynchronised and the next good record flows. Nothing is
// read outside the data area (run under ASan by scripts/test.sh).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "shm/frame_ring.hpp"
#include "tests/unit/shm/ring_fixture.hpp"

namespace vswitch::shm {
namespace {

using testing::bytes_of;
using testing::HeapRing;

using RawRecordHeader = detail::RecordHeader;
using detail::kKindData;
using detail::kKindPad;

RawRecordHeader header_at(const HeapRing& ring, std::uint64_t pos) {
  RawRecordHeader h;
  std::memcpy(&h, ring.data() + pos, sizeof h);
  return h;
}
void set_header_at(const HeapRing& ring, std::uint64_t pos, RawRecordHeader h) {
  std::memcpy(ring.data() + pos, &h, sizeof h);
}

// Publishes two records, lets `corrupt` break the ring, then expects `error` from the
// consumer, one count of it, and that a record published afterwards arrives intact.
// `resyncs` says whether the consumer had to drop what was in the ring (a bad record) or
// could keep it (a bad head word, which the producer's next publish repairs).
void expect_recovery(RingError error, bool resyncs, const std::function<void(HeapRing&)>& corrupt) {
  SCOPED_TRACE(std::string(to_string(error)));
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);
  ASSERT_EQ(p.try_push(bytes_of(100, 2)), Reserve::kReserved);
  p.publish();
  corrupt(ring);
  PopResult r = c.peek();
  ASSERT_EQ(r.status, Pop::kCorrupt);
  EXPECT_EQ(r.error, error);
  EXPECT_EQ(c.counters().errors[static_cast<std::size_t>(error)], 1u);
  EXPECT_EQ(c.counters().resyncs, resyncs ? 1u : 0u);
  ASSERT_EQ(p.try_push(bytes_of(77, 3)), Reserve::kReserved);
  p.publish();
  std::vector<std::vector<std::byte>> seen;
  for (PopResult next = c.peek(); next.status == Pop::kRecord; next = c.peek()) {
    seen.emplace_back(next.payload.begin(), next.payload.end());
    c.consume();
  }
  if (resyncs) {
    ASSERT_EQ(seen.size(), 1u);
  } else {
    ASSERT_EQ(seen.size(), 3u);  // nothing lost
    EXPECT_EQ(seen[0], bytes_of(100, 1));
    EXPECT_EQ(seen[1], bytes_of(100, 2));
  }
  EXPECT_EQ(seen.back(), bytes_of(77, 3));
}

TEST(FrameRingCorruption, HeadMisaligned) {
  expect_recovery(RingError::kHeadMisaligned, false, [](HeapRing& r) { r.head_word() += 3; });
}

TEST(FrameRingCorruption, HeadTooFarAhead) {
  expect_recovery(RingError::kHeadOutOfRange, false, [](HeapRing& r) { r.head_word() += 4096; });
}

TEST(FrameRingCorruption, HeadBehindTail) {
  expect_recovery(RingError::kHeadOutOfRange, false, [](HeapRing& r) { r.head_word() = ~std::uint64_t{7}; });
}

TEST(FrameRingCorruption, HeadStillInvalidOnSecondLookResyncs) {
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);
  p.publish();
  ring.head_word() = 8 * 1024;  // far ahead, and the producer publishes nothing new
  EXPECT_EQ(c.peek().status, Pop::kCorrupt);
  EXPECT_EQ(c.counters().resyncs, 0u);  // first look: keep our tail
  EXPECT_EQ(c.peek().status, Pop::kCorrupt);
  EXPECT_EQ(c.counters().resyncs, 1u);  // second look: resync to that head
  EXPECT_EQ(c.counters().errors[static_cast<std::size_t>(RingError::kHeadOutOfRange)], 2u);
  EXPECT_EQ(ring.tail_word(), 8u * 1024);
  EXPECT_EQ(c.peek().status, Pop::kEmpty);  // consistent again, and running
}

TEST(FrameRingCorruption, RecordKindInvalid) {
  expect_recovery(RingError::kRecordKindInvalid, true, [](HeapRing& r) {
    auto h = header_at(r, 0);
    h.kind = 0xdeadbeef;
    set_header_at(r, 0, h);
  });
}

// A consumer that defers its releases (set_defer_release) skips a corrupt stretch like
// any other, but gives the bytes back only with its own release(), after whatever it
// commits first: what it consumed before the corruption is not released early.
TEST(FrameRingCorruption, ADeferringConsumerReleasesAResyncOnlyWhenTold) {
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  c.set_defer_release(true);
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);
  ASSERT_EQ(p.try_push(bytes_of(100, 2)), Reserve::kReserved);
  p.publish();
  ASSERT_EQ(c.peek().status, Pop::kRecord);
  c.consume();
  RawRecordHeader h = header_at(ring, 112);  // the second record, after 8 + 100 + 4 of padding
  h.kind = 0x77;
  set_header_at(ring, 112, h);
  EXPECT_EQ(c.peek().status, Pop::kCorrupt);
  EXPECT_EQ(ring.tail_word(), 0u) << "nothing released before the consumer says so";
  EXPECT_EQ(c.consumed_to(), 224u);
  c.release();
  EXPECT_EQ(ring.tail_word(), 224u);
}

TEST(FrameRingCorruption, RecordLengthAboveMaxPayload) {
  expect_recovery(RingError::kRecordTooLarge, true, [](HeapRing& r) {
    auto h = header_at(r, 0);
    h.length = 513;
    set_header_at(r, 0, h);
  });
}

TEST(FrameRingCorruption, RecordLengthHuge) {
  expect_recovery(RingError::kRecordTooLarge, true, [](HeapRing& r) {
    auto h = header_at(r, 0);
    h.length = 0xffffffffu;
    set_header_at(r, 0, h);
  });
}

TEST(FrameRingCorruption, RecordBeyondPublishedHead) {
  expect_recovery(RingError::kRecordBeyondHead, true, [](HeapRing& r) {
    auto h = header_at(r, 0);
    h.length = 300;  // 308 bytes, but only 2 * 112 published
    set_header_at(r, 0, h);
  });
}

TEST(FrameRingCorruption, PadWithWrongLength) {
  expect_recovery(RingError::kPadLengthInvalid, true, [](HeapRing& r) {
    set_header_at(r, 0, RawRecordHeader{100, kKindPad});  // a pad that stops short of the end
  });
}

TEST(FrameRingCorruption, RecordCrossingTheEnd) {
  // A record at offset 912 claiming 200 bytes would run past 1024.
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  for (int i = 0; i < 8; ++i) {  // advance to offset 912 (8 * 112 = 896, + 16)
    ASSERT_EQ(p.try_push(bytes_of(104, 1)), Reserve::kReserved);
  }
  ASSERT_EQ(p.try_push(bytes_of(8, 1)), Reserve::kReserved);
  p.publish();
  for (int i = 0; i < 9; ++i) {
    ASSERT_EQ(c.peek().status, Pop::kRecord);
    c.consume();
  }
  c.release();
  ASSERT_EQ(p.try_push(bytes_of(100, 2)), Reserve::kReserved);  // at 912, 112 bytes: fits exactly
  p.publish();
  set_header_at(ring, 912, RawRecordHeader{200, kKindData});
  PopResult r = c.peek();
  ASSERT_EQ(r.status, Pop::kCorrupt);
  EXPECT_EQ(r.error, RingError::kRecordCrossesEnd);
  ASSERT_EQ(p.try_push(bytes_of(50, 3)), Reserve::kReserved);
  p.publish();
  ASSERT_EQ(c.peek().status, Pop::kRecord);
}

TEST(FrameRingCorruption, ConsumeBurstCountsCorruptionAndGoesOn) {
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);
  ASSERT_EQ(p.try_push(bytes_of(100, 2)), Reserve::kReserved);
  p.publish();
  auto h = header_at(ring, 112);  // the second record
  h.kind = 0xdeadbeef;
  set_header_at(ring, 112, h);
  std::vector<std::vector<std::byte>> got;
  auto take = [&](std::span<const std::byte> d) { got.emplace_back(d.begin(), d.end()); };
  EXPECT_EQ(c.consume_burst(10, take), 1u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], bytes_of(100, 1));
  EXPECT_EQ(c.counters().errors[static_cast<std::size_t>(RingError::kRecordKindInvalid)], 1u);
  ASSERT_EQ(p.try_push(bytes_of(50, 3)), Reserve::kReserved);
  p.publish();
  got.clear();
  EXPECT_EQ(c.consume_burst(10, take), 1u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], bytes_of(50, 3));
}

TEST(FrameRingCorruption, ProducerToleratesTailOutOfRange) {
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  for (int i = 0; i < 9; ++i) (void)p.try_push(bytes_of(100, 1));  // fill to the brim
  ring.tail_word() = 123456789;  // garbage: ahead of head
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);  // treats ring as drained
  EXPECT_EQ(p.counters().errors[static_cast<std::size_t>(RingError::kTailOutOfRange)], 1u);
  p.publish();
  // The consumer's own tail is authoritative: it keeps reading where it was.
  EXPECT_NE(c.peek().status, Pop::kEmpty);
}

TEST(FrameRingCorruption, RandomScribblesNeverCrash) {
  HeapRing ring(4096, 1024);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  std::uint64_t rng = 42;
  auto next = [&rng] { return rng = rng * 6364136223846793005ULL + 1442695040888963407ULL; };
  std::uint64_t records = 0;
  for (int round = 0; round < 20000; ++round) {
    for (int i = 0; i < 4; ++i) (void)p.try_push(bytes_of(next() % 1025, 0x11));
    p.publish();
    if (next() % 4 == 0) {
      const std::uint64_t what = next() % 3;
      if (what == 0) ring.head_word() ^= std::uint64_t{1} << (next() % 64);
      if (what == 1) ring.data()[next() % 4096] = static_cast<std::byte>(next());
      if (what == 2) ring.tail_word() ^= std::uint64_t{1} << (next() % 64);
    }
    for (int i = 0; i < 8; ++i) {
      PopResult r = c.peek();
      if (r.status == Pop::kRecord) {
        ASSERT_LE(r.payload.size(), 1024u);
        // Touch every byte: ASan proves we stay inside the ring.
        volatile std::byte sink{};
        for (auto b : r.payload) sink = b;
        (void)sink;
        c.consume();
        ++records;
      } else if (r.status == Pop::kEmpty) {
        break;
      }
    }
  }
  EXPECT_GT(records, 10000u);
  EXPECT_GT(c.counters().resyncs, 0u);
}

}  // namespace
}  // namespace vswitch::shm
