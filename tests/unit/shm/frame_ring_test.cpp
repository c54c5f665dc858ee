#include "shm/frame_ring.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "tests/unit/shm/ring_fixture.hpp"

namespace vswitch::shm {
namespace {

using testing::bytes_of;
using testing::CountingDoorbell;
using testing::HeapRing;

std::vector<std::byte> pop_copy(FrameConsumer& c) {
  PopResult r = c.peek();
  EXPECT_EQ(r.status, Pop::kRecord);
  std::vector<std::byte> out(r.payload.begin(), r.payload.end());
  c.consume();
  return out;
}

TEST(FrameRing, EmptyRingPeeksEmpty) {
  HeapRing ring(1024, 256);
  FrameConsumer c(ring.area(), nullptr);
  EXPECT_EQ(c.peek().status, Pop::kEmpty);
}

TEST(FrameRing, RecordIsInvisibleUntilPublished) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(100, 0xab)), Reserve::kReserved);
  EXPECT_EQ(c.peek().status, Pop::kEmpty);
  p.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(100, 0xab));
  EXPECT_EQ(c.peek().status, Pop::kEmpty);
}

TEST(FrameRing, PopReturnsRecordsInPublishOrder) {
  HeapRing ring(4096, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  for (unsigned i = 1; i <= 10; ++i) ASSERT_EQ(p.try_push(bytes_of(i * 7, static_cast<unsigned char>(i))), Reserve::kReserved);
  p.publish();
  for (unsigned i = 1; i <= 10; ++i) EXPECT_EQ(pop_copy(c), bytes_of(i * 7, static_cast<unsigned char>(i)));
}

TEST(FrameRing, BatchPublishIsOneIndexStore) {
  HeapRing ring(64 * 1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  for (int i = 0; i < 32; ++i) ASSERT_EQ(p.try_push(bytes_of(60, 1)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(p.counters().batches, 1u);
  EXPECT_EQ(p.counters().records, 32u);
  for (int i = 0; i < 32; ++i) pop_copy(c);
  c.release();
  EXPECT_EQ(c.counters().batches, 1u);
  EXPECT_EQ(c.counters().records, 32u);
  EXPECT_EQ(ring.tail_word(), ring.head_word());
}

TEST(FrameRing, FullRingRefusesUntilReleased) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  int pushed = 0;
  while (p.try_push(bytes_of(56, 2)) == Reserve::kReserved) ++pushed;  // 64-byte records
  EXPECT_EQ(pushed, 16);
  // kFull published what was pending, so the consumer sees all of it.
  pop_copy(c);  // 64 bytes consumed: below the auto-release batch (1024 / 8)
  EXPECT_EQ(p.try_push(bytes_of(56, 2)), Reserve::kFull);  // consumed but not released
  c.release();
  EXPECT_EQ(p.try_push(bytes_of(56, 2)), Reserve::kReserved);
}

TEST(FrameRing, LargeBatchesPublishAndReleaseByThemselves) {
  // A caller that batches 32 records of 64 KiB would hold the whole ring back; the ring
  // publishes and releases every eighth of its capacity instead.
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);  // 112 bytes: still pending
  EXPECT_EQ(ring.head_word(), 0u);
  ASSERT_EQ(p.try_push(bytes_of(100, 2)), Reserve::kReserved);  // 224 >= 128: published
  EXPECT_EQ(ring.head_word(), 224u);
  pop_copy(c);
  EXPECT_EQ(ring.tail_word(), 0u);
  pop_copy(c);
  EXPECT_EQ(ring.tail_word(), 224u);
}

TEST(FrameRing, ExactlyFullRingHoldsCapacityBytes) {
  HeapRing ring(256, 248);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(248, 9)), Reserve::kReserved);  // 8 + 248 = 256: the whole ring
  EXPECT_EQ(p.try_push(bytes_of(0, 0)), Reserve::kFull);
  p.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(248, 9));
  c.release();
  EXPECT_EQ(p.try_push(bytes_of(248, 10)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(248, 10));
}

TEST(FrameRing, RecordThatDoesNotFitAtTheEndIsPaddedAndStartsAtZero) {
  HeapRing ring(1024, 600);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(592, 1)), Reserve::kReserved);  // 600 bytes at [0, 600)
  p.publish();
  pop_copy(c);
  c.release();
  // 424 bytes remain before the end; a 600-byte record must go to offset 0.
  ASSERT_EQ(p.try_push(bytes_of(592, 2)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(592, 2));
  c.release();
  EXPECT_EQ(ring.head_word() % 1024, 600u);  // wrapped: record lives at [0, 600)
  EXPECT_EQ(ring.head_word(), 1024u + 600u);
  EXPECT_EQ(std::to_integer<int>(ring.data()[8]), 2);
}

TEST(FrameRing, RecordAfterPadWaitsForSpaceAtTheStart) {
  HeapRing ring(1024, 600);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(392, 1)), Reserve::kReserved);  // [0, 400)
  ASSERT_EQ(p.try_push(bytes_of(392, 2)), Reserve::kReserved);  // [400, 800)
  p.publish();
  pop_copy(c);
  c.release();  // 624 bytes free, but only 400 of them at the start
  // The pad [800, 1024) fits; the record would overlap the unread one at [400, 800).
  EXPECT_EQ(p.try_push(bytes_of(592, 3)), Reserve::kFull);
  EXPECT_EQ(pop_copy(c), bytes_of(392, 2));
  EXPECT_EQ(c.peek().status, Pop::kEmpty);  // skips the published pad, releases
  ASSERT_EQ(p.try_push(bytes_of(592, 3)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(592, 3));
}

TEST(FrameRing, MaximumSizeRecordsRoundTrip) {
  const std::uint32_t max = kDefaultMaxPayload;
  HeapRing ring(256 * 1024, max);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  for (int round = 0; round < 20; ++round) {
    std::vector<std::byte> big = bytes_of(max, static_cast<unsigned char>(round));
    big[0] = std::byte{0x5a};
    big[max - 1] = std::byte{0xa5};
    ASSERT_EQ(p.try_push(big), Reserve::kReserved) << round;
    p.publish();
    EXPECT_EQ(pop_copy(c), big) << round;
    c.release();
  }
  EXPECT_EQ(p.try_push(bytes_of(max + 1, 0)), Reserve::kTooLarge);
}

TEST(FrameRing, RingOfExactlyOneMaximumRecordStillCarriesThemAll) {
  // Capacity = one max record: a max record after a small one needs a pad to the end,
  // and then the whole ring, so the consumer must first skip the pad.
  HeapRing ring(1024, 1016);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  for (unsigned i = 0; i < 50; ++i) {
    const std::size_t len = (i % 2 == 0) ? 1016 : 100 + i;
    Reserve r = p.try_push(bytes_of(len, static_cast<unsigned char>(i)));
    if (r == Reserve::kFull) {
      ASSERT_TRUE(i > 0 && i % 2 == 0) << i;
      EXPECT_EQ(c.peek().status, Pop::kEmpty);  // skips and releases the published pad
      r = p.try_push(bytes_of(len, static_cast<unsigned char>(i)));
    }
    ASSERT_EQ(r, Reserve::kReserved) << i;
    p.publish();
    EXPECT_EQ(pop_copy(c), bytes_of(len, static_cast<unsigned char>(i))) << i;
    c.release();
  }
}

TEST(FrameRing, WrapAroundManyTimesKeepsEveryRecord) {
  HeapRing ring(4096, 1000);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  std::uint64_t sent = 0, got = 0;
  unsigned len_seed = 1;
  while (got < 20000) {
    for (int b = 0; b < 5; ++b) {
      const std::size_t len = 1 + (len_seed = len_seed * 1103515245u + 12345u) % 1000;
      std::vector<std::byte> rec = bytes_of(len, static_cast<unsigned char>(sent));
      std::memcpy(rec.data(), &sent, std::min<std::size_t>(len, 8));
      if (p.try_push(rec) != Reserve::kReserved) break;
      ++sent;
    }
    p.publish();
    for (;;) {
      PopResult r = c.peek();
      if (r.status != Pop::kRecord) {
        ASSERT_EQ(r.status, Pop::kEmpty);
        break;
      }
      std::uint64_t seq = 0;
      std::memcpy(&seq, r.payload.data(), std::min<std::size_t>(r.payload.size(), 8));
      const std::uint64_t mask = r.payload.size() >= 8 ? ~0ULL : (1ULL << (8 * r.payload.size())) - 1;
      ASSERT_EQ(seq, got & mask);
      c.consume();
      ++got;
    }
  }
  EXPECT_GT(ring.head_word(), 4096u * 100);  // wrapped many times
}

TEST(FrameRing, ZeroLengthRecordIsARecord) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push({}), Reserve::kReserved);
  p.publish();
  PopResult r = c.peek();
  ASSERT_EQ(r.status, Pop::kRecord);
  EXPECT_TRUE(r.payload.empty());
}

TEST(FrameRing, CommitShorterThanReservedUsesOnlyWhatWasWritten) {
  HeapRing ring(1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  Reservation r = p.try_reserve(500);
  ASSERT_EQ(r.status, Reserve::kReserved);
  std::memset(r.payload.data(), 7, 60);
  p.commit(60);
  p.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(60, 7));
  EXPECT_EQ(ring.head_word(), record_bytes(60));
}

TEST(FrameRing, ConsumerArmsOnlyWhenEmptyAndProducerRingsOnce) {
  HeapRing ring(1024, 256);
  CountingDoorbell consumer_bell;
  FrameProducer p(ring.area(), &consumer_bell);
  FrameConsumer c(ring.area(), nullptr);
  EXPECT_EQ(c.peek_or_arm().status, Pop::kEmpty);
  EXPECT_EQ(ring.consumer_waiting_word(), 1u);
  ASSERT_EQ(p.try_push(bytes_of(10, 1)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(consumer_bell.rings, 1);
  EXPECT_EQ(ring.consumer_waiting_word(), 0u);  // taken by the waker
  ASSERT_EQ(p.try_push(bytes_of(10, 1)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(consumer_bell.rings, 1);  // nobody armed: no second ring
  EXPECT_EQ(c.peek_or_arm().status, Pop::kRecord);
  EXPECT_EQ(ring.consumer_waiting_word(), 0u);
}

// A consumer that sleeps on a timer without arming asks to be rung when the ring is full:
// the producer rings it then (and only when it asked), armed or not.
TEST(FrameRing, AProducerRingsAConsumerThatAskedForFullRings) {
  HeapRing ring(1024, 256);
  CountingDoorbell consumer_bell;
  FrameProducer p(ring.area(), &consumer_bell);
  FrameConsumer c(ring.area(), nullptr);
  while (p.try_push(bytes_of(100, 1)) == Reserve::kReserved) {
  }
  p.publish();
  EXPECT_EQ(consumer_bell.rings, 0) << "nobody armed";
  EXPECT_FALSE(p.ring_if_consumer_wakes_on_full()) << "the consumer did not ask";
  EXPECT_EQ(consumer_bell.rings, 0);
  c.set_wake_on_full(true);
  EXPECT_TRUE(p.ring_if_consumer_wakes_on_full());
  EXPECT_EQ(consumer_bell.rings, 1);
  c.set_wake_on_full(false);
  EXPECT_FALSE(p.ring_if_consumer_wakes_on_full());
  EXPECT_EQ(consumer_bell.rings, 1);
  // A polling consumer (no doorbell) is never rung.
  c.set_wake_on_full(true);
  FrameProducer polling(ring.area(), nullptr);
  EXPECT_FALSE(polling.ring_if_consumer_wakes_on_full());
}

TEST(FrameRing, PeekOrArmWithDataDoesNotArm) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  ASSERT_EQ(p.try_push(bytes_of(10, 1)), Reserve::kReserved);
  p.publish();
  EXPECT_EQ(c.peek_or_arm().status, Pop::kRecord);
  EXPECT_EQ(ring.consumer_waiting_word(), 0u);
  EXPECT_EQ(c.counters().arms, 0u);
}

TEST(FrameRing, ProducerWaitsForTheBytesItNeedsNotForOneFrame) {
  HeapRing ring(1024, 600);
  CountingDoorbell producer_bell;
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), &producer_bell);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(p.try_push(bytes_of(120, 1)), Reserve::kReserved);  // full
  Reservation r = p.reserve_or_arm(392);  // needs 400 contiguous bytes
  ASSERT_EQ(r.status, Reserve::kFull);
  EXPECT_EQ(ring.producer_wants_word(), 400u);
  // Freeing 128 bytes at a time: no wakeup until 400 are free.
  pop_copy(c);
  c.release();
  pop_copy(c);
  c.release();
  pop_copy(c);
  c.release();
  EXPECT_EQ(producer_bell.rings, 0);
  pop_copy(c);
  c.release();  // 512 free
  EXPECT_EQ(producer_bell.rings, 1);
  EXPECT_EQ(ring.producer_wants_word(), 0u);
  EXPECT_EQ(p.reserve_or_arm(392).status, Reserve::kReserved);
}

TEST(FrameRing, EmptyRingAlwaysWakesAWaitingProducer) {
  HeapRing ring(1024, 1016);
  CountingDoorbell producer_bell;
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), &producer_bell);
  ASSERT_EQ(p.try_push(bytes_of(100, 1)), Reserve::kReserved);
  ASSERT_EQ(p.reserve_or_arm(1016).status, Reserve::kFull);  // needs the whole ring
  pop_copy(c);
  EXPECT_EQ(c.peek().status, Pop::kEmpty);  // releases, ring empty
  EXPECT_EQ(producer_bell.rings, 1);
  EXPECT_EQ(p.reserve_or_arm(1016).status, Reserve::kReserved);
}

TEST(FrameRing, ReserveOrArmSucceedingDisarms) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  EXPECT_EQ(p.reserve_or_arm(100).status, Reserve::kReserved);
  EXPECT_EQ(ring.producer_wants_word(), 0u);
  EXPECT_EQ(p.counters().arms, 0u);
}

TEST(FrameRing, RestartedConsumerResumesAtSharedTail) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  {
    FrameConsumer c(ring.area(), nullptr);
    ASSERT_EQ(p.try_push(bytes_of(10, 1)), Reserve::kReserved);
    ASSERT_EQ(p.try_push(bytes_of(10, 2)), Reserve::kReserved);
    p.publish();
    pop_copy(c);
    c.release();
  }
  FrameConsumer again(ring.area(), nullptr);
  EXPECT_EQ(pop_copy(again), bytes_of(10, 2));
}

// A consumer whose release is a commit of its own (set_defer_release): consume() and an
// empty peek() release nothing, release_due() says where consume() would have; the
// producer gets the room back at release().
TEST(FrameRing, ADeferringConsumerReleasesOnlyWhenTold) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  c.set_defer_release(true);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(p.try_push(bytes_of(24, static_cast<unsigned char>(i))), Reserve::kReserved);
  p.publish();
  for (int i = 0; i < 8; ++i) pop_copy(c);
  EXPECT_EQ(c.peek().status, Pop::kEmpty);
  EXPECT_EQ(ring.tail_word(), 0u) << "nothing released yet";
  EXPECT_TRUE(c.release_due()) << "8 records of 32 bytes: more than an eighth of 1024";
  EXPECT_EQ(c.consumed_to(), 256u);
  c.release();
  EXPECT_EQ(ring.tail_word(), 256u);
  EXPECT_EQ(c.released_to(), 256u);
  EXPECT_FALSE(c.release_due());
}

// A successor consumer skips what its predecessor handed on but never released: forward
// only, to a record boundary at or below the published head; anything else changes nothing.
TEST(FrameRing, ASuccessorSkipsToWhereItsPredecessorGot) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(p.try_push(bytes_of(24, static_cast<unsigned char>(i))), Reserve::kReserved);
  p.publish();  // records of 32 bytes at 0, 32, 64, 96; head 128
  FrameConsumer c(ring.area(), nullptr);
  EXPECT_FALSE(c.skip_to(36)) << "not aligned";
  EXPECT_FALSE(c.skip_to(48)) << "aligned, but inside the second record";
  EXPECT_FALSE(c.skip_to(160)) << "beyond the published head";
  EXPECT_EQ(c.consumed_to(), 0u);
  EXPECT_TRUE(c.skip_to(64));
  EXPECT_EQ(ring.tail_word(), 64u) << "released at once";
  EXPECT_FALSE(c.skip_to(32)) << "never backwards";
  EXPECT_TRUE(c.skip_to(64)) << "where it stands: nothing to do";
  EXPECT_EQ(pop_copy(c), bytes_of(24, 2));
}

TEST(FrameRing, RestartedProducerResumesAtSharedHead) {
  HeapRing ring(1024, 256);
  FrameConsumer c(ring.area(), nullptr);
  {
    FrameProducer p(ring.area(), nullptr);
    ASSERT_EQ(p.try_push(bytes_of(10, 1)), Reserve::kReserved);
    p.publish();
  }
  FrameProducer again(ring.area(), nullptr);
  ASSERT_EQ(again.try_push(bytes_of(10, 2)), Reserve::kReserved);
  again.publish();
  EXPECT_EQ(pop_copy(c), bytes_of(10, 1));
  EXPECT_EQ(pop_copy(c), bytes_of(10, 2));
}

TEST(RingArea, InitRejectsBadGeometry) {
  std::vector<std::byte> buf(RingArea::bytes_for(1024) + 64);
  auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 63) & ~std::uintptr_t{63});
  std::span<std::byte> area(aligned, RingArea::bytes_for(1024));
  EXPECT_EQ(RingArea::init(area, 1000, 100).error(), RingAttachError::kCapacityNotPowerOfTwo);
  EXPECT_EQ(RingArea::init(area, 1024, 1017).error(), RingAttachError::kMaxPayloadTooLarge);
  EXPECT_EQ(RingArea::init(area.subspan(0, 700), 1024, 100).error(), RingAttachError::kAreaSizeMismatch);
  EXPECT_EQ(RingArea::init(area.subspan(0, 100), 1024, 100).error(), RingAttachError::kAreaTooSmall);
  EXPECT_EQ(RingArea::init(area.subspan(8), 1024, 100).error(), RingAttachError::kMisaligned);
  EXPECT_EQ(RingArea::init(area.subspan(0, RingArea::bytes_for(32)), 32, 8).error(),
            RingAttachError::kCapacityOutOfRange);
  EXPECT_TRUE(RingArea::init(area, 1024, 1016).has_value());
}

}  // namespace
}  // namespace vswitch::shm

namespace vswitch::shm {
namespace {

using testing::bytes_of;
using testing::HeapRing;

std::vector<std::vector<std::byte>> drain_burst(FrameConsumer& c, std::size_t max) {
  std::vector<std::vector<std::byte>> got;
  c.consume_burst(max, [&](std::span<const std::byte> p) { got.emplace_back(p.begin(), p.end()); });
  return got;
}

TEST(FrameRingBurst, PushBurstWritesAndPublishesOnce) {
  HeapRing ring(64 * 1024, 512);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  const std::vector<std::uint32_t> lengths{1, 60, 512, 0, 100};
  const std::size_t n = p.try_push_burst(lengths, [](std::size_t i, std::span<std::byte> d) {
    for (auto& b : d) b = static_cast<std::byte>(i + 1);
  });
  EXPECT_EQ(n, lengths.size());
  EXPECT_EQ(p.counters().batches, 1u);
  auto got = drain_burst(c, 100);
  ASSERT_EQ(got.size(), lengths.size());
  for (std::size_t i = 0; i < lengths.size(); ++i) EXPECT_EQ(got[i], bytes_of(lengths[i], static_cast<unsigned char>(i + 1)));
  EXPECT_EQ(c.counters().batches, 1u);  // one release for the whole burst
  EXPECT_EQ(ring.tail_word(), ring.head_word());
}

TEST(FrameRingBurst, PushBurstStopsWhereTheRingIsFullOrARecordIsTooLarge) {
  HeapRing ring(1024, 256);
  FrameProducer p(ring.area(), nullptr);
  const std::vector<std::uint32_t> full(20, 120);  // 128-byte records: 8 fit
  EXPECT_EQ(p.try_push_burst(full, [](std::size_t, std::span<std::byte>) {}), 8u);
  HeapRing ring2(1024, 256);
  FrameProducer p2(ring2.area(), nullptr);
  const std::vector<std::uint32_t> big{10, 300, 10};
  EXPECT_EQ(p2.try_push_burst(big, [](std::size_t, std::span<std::byte>) {}), 1u);
}

TEST(FrameRingBurst, BurstsCrossThePadAtTheEnd) {
  HeapRing ring(1024, 600);
  FrameProducer p(ring.area(), nullptr);
  FrameConsumer c(ring.area(), nullptr);
  std::uint64_t sent = 0, got = 0;
  for (int round = 0; round < 500; ++round) {
    const std::vector<std::uint32_t> lengths{static_cast<std::uint32_t>(8 + round % 300), 8, 200};
    sent += p.try_push_burst(lengths, [&](std::size_t i, std::span<std::byte> d) {
      const std::uint64_t seq = sent + i;
      std::memcpy(d.data(), &seq, 8);
    });
    c.consume_burst(2, [&](std::span<const std::byte> d) {
      std::uint64_t seq;
      std::memcpy(&seq, d.data(), 8);
      ASSERT_EQ(seq, got);
      ++got;
    });
  }
  got += drain_burst(c, 1000).size();
  EXPECT_EQ(got, sent);
  EXPECT_GT(ring.head_word(), 1024u * 50);
}

}  // namespace
}  // namespace vswitch::shm
