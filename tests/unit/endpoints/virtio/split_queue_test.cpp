#include "endpoints/virtio/split_queue.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "tests/support/guest_driver.hpp"

namespace vswitch::endpoints::virtio {
namespace {

using test::GuestDriver;

constexpr std::uint16_t kSize = 8;

struct Fixture {
  explicit Fixture(bool event_idx = false, std::vector<GuestRegion> extra = {})
      : guest(kSize, event_idx),
        memory([&] {
          auto regions = extra;
          regions.push_back(guest.region());
          return GuestMemory::create(regions).value();
        }()),
        queue(SplitQueue::create(memory, guest.layout()).value()) {}
  // A buffer of `len` bytes in guest memory; returns its gpa.
  std::uint64_t buffer(std::uint32_t len) { return guest.alloc(len); }

  GuestDriver guest;
  GuestMemory memory;
  SplitQueue queue;
  Chain chain;
};

// Asserts the whole effect of a bad chain: counted under `e`, head handed back, returned
// with length 0, and the queue still works for the next (valid) chain.
void expect_bad_chain(Fixture& f, std::uint16_t head, ChainError e) {
  f.guest.make_available(head);
  const PopResult r = f.queue.pop(f.chain);
  ASSERT_EQ(r.status, Pop::kBadChain) << to_string(e);
  EXPECT_EQ(r.error, e) << "got " << to_string(r.error);
  EXPECT_EQ(f.queue.counters().chain_errors[static_cast<std::size_t>(e)], 1u);
  EXPECT_EQ(f.chain.head, head);
  EXPECT_TRUE(f.chain.buffers.empty());
  const std::uint16_t used_before = f.guest.used_idx();
  f.queue.add_used(f.chain.head, 0);
  f.queue.publish_used();
  ASSERT_EQ(f.guest.used_idx(), static_cast<std::uint16_t>(used_before + 1));
  EXPECT_EQ(f.guest.used(used_before).id, head);
  EXPECT_EQ(f.guest.used(used_before).len, 0u);
  // The device goes on: a good chain in descriptor 7 pops normally.
  f.guest.set_desc(7, Descriptor{f.buffer(64), 64, 0, 0});
  f.guest.make_available(7);
  ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  EXPECT_EQ(f.chain.head, 7);
}

TEST(SplitQueue, ReadableThenWritableChain) {
  Fixture f;
  const auto out = f.buffer(100), in = f.buffer(200);
  f.guest.set_desc(0, Descriptor{out, 100, kDescFlagNext, 1});
  f.guest.set_desc(1, Descriptor{in, 200, kDescFlagWrite, 0});
  EXPECT_EQ(f.queue.pop(f.chain).status, Pop::kEmpty);
  f.guest.make_available(0);
  ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  ASSERT_EQ(f.chain.buffers.size(), 2u);
  EXPECT_EQ(f.chain.buffers[0].bytes.data(), f.guest.host(out));
  EXPECT_FALSE(f.chain.buffers[0].device_writable);
  EXPECT_EQ(f.chain.buffers[1].bytes.size(), 200u);
  EXPECT_TRUE(f.chain.buffers[1].device_writable);
  EXPECT_EQ(f.chain.readable_bytes, 100u);
  EXPECT_EQ(f.chain.writable_bytes, 200u);
  EXPECT_EQ(f.queue.pop(f.chain).status, Pop::kEmpty);
  f.queue.add_used(0, 150);
  EXPECT_EQ(f.guest.used_idx(), 0) << "nothing visible before publish_used";
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used_idx(), 1);
  EXPECT_EQ(f.guest.used(0).id, 0u);
  EXPECT_EQ(f.guest.used(0).len, 150u);
}

TEST(SplitQueue, ZeroLengthDescriptorIsAcceptedAsNoBytes) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{0xdead0000, 0, kDescFlagNext, 1});  // unmapped, but empty
  f.guest.set_desc(1, Descriptor{f.buffer(10), 10, 0, 0});
  f.guest.make_available(0);
  ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  EXPECT_EQ(f.chain.buffers.size(), 1u);
  EXPECT_EQ(f.chain.readable_bytes, 10u);
}

TEST(SplitQueue, IndirectChain) {
  Fixture f;
  const auto table = f.guest.indirect_table({Descriptor{f.buffer(12), 12, kDescFlagNext, 1},
                                             Descriptor{f.buffer(1500), 1500, kDescFlagNext, 2},
                                             Descriptor{f.buffer(64), 64, kDescFlagWrite, 0}});
  f.guest.set_desc(3, Descriptor{table, 48, kDescFlagIndirect, 0});
  f.guest.make_available(3);
  ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  EXPECT_EQ(f.chain.head, 3);
  EXPECT_EQ(f.chain.buffers.size(), 3u);
  EXPECT_EQ(f.chain.readable_bytes, 1512u);
  EXPECT_EQ(f.chain.writable_bytes, 64u);
}

TEST(SplitQueue, DirectDescriptorsFollowedByAnIndirectOne) {
  Fixture f;  // virtio 1.1: "zero or more normal chained descriptors followed by a single indirect"
  const auto table = f.guest.indirect_table({Descriptor{f.buffer(64), 64, kDescFlagWrite, 0}});
  f.guest.set_desc(0, Descriptor{f.buffer(12), 12, kDescFlagNext, 1});
  f.guest.set_desc(1, Descriptor{table, 16, kDescFlagIndirect, 0});
  f.guest.make_available(0);
  ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  EXPECT_EQ(f.chain.buffers.size(), 2u);
}

TEST(SplitQueue, HeadOutOfRange) {
  Fixture f;
  expect_bad_chain(f, kSize, ChainError::kHeadOutOfRange);
}

TEST(SplitQueue, NextOutOfRange) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{f.buffer(8), 8, kDescFlagNext, kSize});
  expect_bad_chain(f, 0, ChainError::kNextOutOfRange);
}

TEST(SplitQueue, LoopEndsAtTheQueueSize) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{f.buffer(8), 8, kDescFlagNext, 1});
  f.guest.set_desc(1, Descriptor{f.buffer(8), 8, kDescFlagNext, 0});
  expect_bad_chain(f, 0, ChainError::kTooLong);
}

TEST(SplitQueue, ZeroLengthSelfLoopEndsToo) {
  Fixture f;  // DPDK cc7301908c: a zero-length self-loop spun forever
  f.guest.set_desc(2, Descriptor{0, 0, kDescFlagNext, 2});
  expect_bad_chain(f, 2, ChainError::kTooLong);
}

TEST(SplitQueue, IndirectWithNext) {
  Fixture f;
  const auto table = f.guest.indirect_table({Descriptor{f.buffer(8), 8, 0, 0}});
  f.guest.set_desc(0, Descriptor{table, 16, kDescFlagIndirect | kDescFlagNext, 1});
  expect_bad_chain(f, 0, ChainError::kIndirectWithNext);
}

TEST(SplitQueue, NestedIndirect) {
  Fixture f;
  const auto inner = f.guest.indirect_table({Descriptor{f.buffer(8), 8, 0, 0}});
  const auto outer = f.guest.indirect_table({Descriptor{inner, 16, kDescFlagIndirect, 0}});
  f.guest.set_desc(0, Descriptor{outer, 16, kDescFlagIndirect, 0});
  expect_bad_chain(f, 0, ChainError::kIndirectNested);
}

TEST(SplitQueue, IndirectLengthZeroOrNotAMultipleOf16) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{f.buffer(32), 0, kDescFlagIndirect, 0});
  expect_bad_chain(f, 0, ChainError::kIndirectBadLength);
  Fixture g;
  g.guest.set_desc(0, Descriptor{g.buffer(32), 17, kDescFlagIndirect, 0});
  expect_bad_chain(g, 0, ChainError::kIndirectBadLength);
}

TEST(SplitQueue, IndirectLargerThanTheQueue) {
  Fixture f;
  const auto table = f.buffer(16 * (kSize + 1));
  f.guest.set_desc(0, Descriptor{table, 16 * (kSize + 1), kDescFlagIndirect, 0});
  expect_bad_chain(f, 0, ChainError::kIndirectTooLarge);
}

TEST(SplitQueue, IndirectTableLoopEndsAtItsEntries) {
  Fixture f;
  const auto table =
      f.guest.indirect_table({Descriptor{f.buffer(8), 8, kDescFlagNext, 1}, Descriptor{f.buffer(8), 8, kDescFlagNext, 0}});
  f.guest.set_desc(0, Descriptor{table, 32, kDescFlagIndirect, 0});
  expect_bad_chain(f, 0, ChainError::kTooLong);
}

TEST(SplitQueue, IndirectTableUnmapped) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{0x10, 32, kDescFlagIndirect, 0});
  expect_bad_chain(f, 0, ChainError::kIndirectUnmapped);
}

TEST(SplitQueue, BufferUnmappedOrWrapping) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{0x10, 8, 0, 0});
  expect_bad_chain(f, 0, ChainError::kBufferUnmapped);
  Fixture g;
  g.guest.set_desc(0, Descriptor{~std::uint64_t{0} - 3, 8, 0, 0});
  expect_bad_chain(g, 0, ChainError::kBufferUnmapped);
  Fixture h;  // starts inside guest memory, runs past its end
  h.guest.set_desc(0, Descriptor{GuestDriver::kBase + (1 << 20) - 4, 8, 0, 0});
  expect_bad_chain(h, 0, ChainError::kBufferUnmapped);
}

TEST(SplitQueue, BufferSpanningTwoRegionsIsRefused) {
  // A second region right after the driver's: contiguous in guest-physical space, but a
  // buffer crossing the boundary lies in two mappings and must not be followed.
  static std::byte other[4096];
  Fixture f(false, {GuestRegion{GuestDriver::kBase + (1 << 20), sizeof other, other}});
  f.guest.set_desc(0, Descriptor{GuestDriver::kBase + (1 << 20) - 8, 16, 0, 0});
  expect_bad_chain(f, 0, ChainError::kBufferUnmapped);
}

TEST(SplitQueue, ReadableAfterWritable) {
  Fixture f;
  f.guest.set_desc(0, Descriptor{f.buffer(8), 8, kDescFlagWrite | kDescFlagNext, 1});
  f.guest.set_desc(1, Descriptor{f.buffer(8), 8, 0, 0});
  expect_bad_chain(f, 0, ChainError::kReadableAfterWritable);
}

TEST(SplitQueue, MoreThanFourGigabytesInAChain) {
  // 6 GiB of address space reserved, never touched: the queue only forms pointers.
  const std::size_t big = std::size_t{6} << 30;
  void* p = ::mmap(nullptr, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "cannot reserve 6 GiB of address space here (e.g. under qemu-user)";
  const std::uint64_t big_gpa = std::uint64_t{1} << 40;
  {
    Fixture f(false, {GuestRegion{big_gpa, big, static_cast<std::byte*>(p)}});
    f.guest.set_desc(0, Descriptor{big_gpa, 0x80000000u, kDescFlagNext, 1});
    f.guest.set_desc(1, Descriptor{big_gpa, 0x80000000u, kDescFlagNext, 2});
    f.guest.set_desc(2, Descriptor{big_gpa, 0x10u, 0, 0});
    expect_bad_chain(f, 0, ChainError::kTooManyBytes);
  }
  ::munmap(p, big);
}

TEST(SplitQueue, AvailIndexRunningAheadBreaksTheQueueUntilReset) {
  Fixture f;
  f.guest.set_avail_idx(kSize + 1);
  PopResult r = f.queue.pop(f.chain);
  EXPECT_EQ(r.status, Pop::kBroken);
  EXPECT_EQ(r.queue_error, QueueError::kAvailIndexJump);
  EXPECT_EQ(f.queue.pop(f.chain).status, Pop::kBroken) << "broken stays broken: no spinning on it";
  EXPECT_EQ(f.queue.counters().queue_errors[static_cast<std::size_t>(QueueError::kAvailIndexJump)], 1u);
  f.guest.set_avail_idx(0);
  f.queue.reset(0, 0);
  EXPECT_EQ(f.queue.pop(f.chain).status, Pop::kEmpty);
}

TEST(SplitQueue, MoreInFlightThanTheQueueSizeBreaksIt) {
  Fixture f;
  for (std::uint16_t i = 0; i < kSize; ++i) f.guest.set_desc(i, Descriptor{f.buffer(8), 8, 0, 0});
  for (std::uint16_t i = 0; i < kSize; ++i) f.guest.make_available(i);
  for (std::uint16_t i = 0; i < kSize; ++i) ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  f.guest.make_available(0);  // the driver reuses a head it never got back
  const PopResult r = f.queue.pop(f.chain);
  EXPECT_EQ(r.status, Pop::kBroken);
  EXPECT_EQ(r.queue_error, QueueError::kTooManyInFlight);
}

TEST(SplitQueue, UsedElementsOfABatchAppearWithOneIndexStore) {
  Fixture f;
  for (std::uint16_t i = 0; i < 5; ++i) {
    f.guest.set_desc(i, Descriptor{f.buffer(8), 8, 0, 0});
    f.guest.make_available(i);
  }
  for (std::uint16_t i = 0; i < 5; ++i) {
    ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
    f.queue.add_used(f.chain.head, i);
  }
  EXPECT_EQ(f.guest.used_idx(), 0);
  f.queue.publish_used();
  EXPECT_EQ(f.guest.used_idx(), 5);
  for (std::uint16_t i = 0; i < 5; ++i) EXPECT_EQ(f.guest.used(i).len, i);
}

TEST(SplitQueue, FlagsModeNotifications) {
  Fixture f(false);
  f.queue.add_used(0, 0);
  f.queue.publish_used();
  EXPECT_TRUE(f.queue.needs_notification());
  f.guest.set_avail_flags(kAvailFlagNoInterrupt);
  f.queue.add_used(1, 0);
  f.queue.publish_used();
  EXPECT_FALSE(f.queue.needs_notification());
  // Kicks: disable sets NO_NOTIFY, enable clears it and re-checks avail.
  f.queue.disable_notification();
  EXPECT_EQ(f.guest.used_flags(), kUsedFlagNoNotify);
  EXPECT_FALSE(f.queue.enable_notification());
  EXPECT_EQ(f.guest.used_flags(), 0);
  f.guest.set_desc(0, Descriptor{f.buffer(8), 8, 0, 0});
  f.guest.make_available(0);
  EXPECT_TRUE(f.queue.enable_notification()) << "a chain made available must stop the sleep";
}

TEST(SplitQueue, EventIdxNotifiesExactlyWhenUsedEventIsPassed) {
  Fixture f(true);
  f.guest.set_used_event(2);
  f.queue.add_used(0, 0);
  f.queue.publish_used();                    // used 0 -> 1
  EXPECT_TRUE(f.queue.needs_notification())  // the first decision after a start always notifies
      << "signalled_used_valid starts false";
  f.queue.add_used(0, 0);
  f.queue.publish_used();  // 1 -> 2: used_event 2 not yet passed (entry 2 not used)
  EXPECT_FALSE(f.queue.needs_notification());
  f.queue.add_used(0, 0);
  f.queue.add_used(0, 0);
  f.queue.publish_used();  // 2 -> 4: entry 2 used
  EXPECT_TRUE(f.queue.needs_notification());
  EXPECT_FALSE(f.queue.needs_notification()) << "nothing new since the last decision";
}

TEST(SplitQueue, EventIdxAcrossTheWrapAt65535) {
  Fixture f(true);
  f.queue.reset(0, 65534);
  f.queue.add_used(0, 0);
  f.queue.publish_used();  // 65534 -> 65535
  EXPECT_TRUE(f.queue.needs_notification());
  f.guest.set_used_event(65535);
  f.queue.add_used(0, 0);
  f.queue.add_used(0, 0);
  f.queue.publish_used();  // 65535 -> 1 (wrapped): entry 65535 used
  EXPECT_EQ(f.guest.used_idx(), 1);
  EXPECT_TRUE(f.queue.needs_notification());
  f.guest.set_used_event(5);
  f.queue.add_used(0, 0);
  f.queue.publish_used();  // 1 -> 2
  EXPECT_FALSE(f.queue.needs_notification());
}

TEST(SplitQueue, EventIdxEnableWritesAvailEventAndRechecks) {
  Fixture f(true);
  f.guest.set_desc(0, Descriptor{f.buffer(8), 8, 0, 0});
  f.guest.make_available(0);
  ASSERT_EQ(f.queue.pop(f.chain).status, Pop::kChain);
  EXPECT_FALSE(f.queue.enable_notification());
  EXPECT_EQ(f.guest.avail_event(), 1) << "kick me when entry 1 is made available";
  f.guest.make_available(0);
  EXPECT_TRUE(f.queue.enable_notification());
}

TEST(SplitQueue, LayoutIsValidated) {
  GuestDriver g(kSize, false);
  auto mem = GuestMemory::create({g.region()}).value();
  QueueLayout l = g.layout();
  l.size = 6;
  EXPECT_FALSE(SplitQueue::create(mem, l).has_value());
  l = g.layout();
  l.desc_gpa += 8;
  EXPECT_FALSE(SplitQueue::create(mem, l).has_value());
  l = g.layout();
  l.used_gpa = GuestDriver::kBase + (1 << 20) - 16;  // runs past the end of guest memory
  EXPECT_FALSE(SplitQueue::create(mem, l).has_value());
}

TEST(GuestMemory, RegionsAreValidated) {
  static std::byte a[64], b[64];
  EXPECT_FALSE(GuestMemory::create({}).has_value());
  EXPECT_FALSE(GuestMemory::create({GuestRegion{0, 0, a}}).has_value());
  EXPECT_FALSE(GuestMemory::create({GuestRegion{0, 64, nullptr}}).has_value());
  EXPECT_FALSE(GuestMemory::create({GuestRegion{~std::uint64_t{0} - 10, 64, a}}).has_value());
  EXPECT_FALSE(GuestMemory::create({GuestRegion{0, 64, a}, GuestRegion{32, 64, b}}).has_value());
  auto m = GuestMemory::create({GuestRegion{64, 64, b}, GuestRegion{0, 64, a}});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->translate(70, 8)->data(), b + 6);
  EXPECT_FALSE(m->translate(60, 8).has_value()) << "spans two regions";
  EXPECT_FALSE(m->translate(128, 1).has_value());
}

}  // namespace
}  // namespace vswitch::endpoints::virtio
