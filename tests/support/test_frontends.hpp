// Frontends that stand for a guest in tests and benchmarks of the endpoint loop: a sender
// that alternates between two destinations, a receiver that withholds its buffers (or
// takes every frame), a receiver that only counts.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vswitch/dataplane/endpoint.hpp"
#include "vswitch/frontends/generator.hpp"

namespace vswitch::test_support {

// Sends generator frames to each of two destinations, alternating between them (a, b, a,
// b, ...), each destination its own stream; takes whatever it is given.
class AlternatingFrontend final : public Frontend {
 public:
  AlternatingFrontend(const GeneratorFrontend::Config& to_a, const GeneratorFrontend::Config& to_b)
      : a_(to_a), b_(to_b) {}
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override {
    GeneratorFrontend& g = next_is_a_ ? a_ : b_;
    RxResult r = g.receive(buf, now_ns);
    if (r.status != Rx::kNone) {
      next_is_a_ = !next_is_a_;
      sent.fetch_add(1, std::memory_order_relaxed);  // a statistic, read after or roughly
    }
    return r;
  }
  [[nodiscard]] std::optional<std::uint64_t> next_due_ns() const noexcept override {
    return (next_is_a_ ? a_ : b_).next_due_ns();
  }
  Delivery deliver(const endpoints::virtio::CheckedNetHeader&, std::span<const std::byte>, FrameAddresses, PortId,
                   std::uint64_t&) noexcept override {
    return Delivery::kDelivered;
  }
  std::atomic<std::uint64_t> sent{0};

 private:
  GeneratorFrontend a_, b_;
  bool next_is_a_ = true;
};

// A receiver whose guest posts no receive buffer while `take` is false: every delivery
// waits (kRetryLater); with `take` true it takes and counts every frame. A refusal keeps
// the resume note the loop handed over (`handed_note`) and, when `leave_note` is not 0,
// leaves that note instead, as a frontend that delivered part of a frame does.
class WithholdingFrontend final : public Frontend {
 public:
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  [[nodiscard]] bool may_defer_delivery() const noexcept override { return true; }
  Delivery deliver(const endpoints::virtio::CheckedNetHeader&, std::span<const std::byte>, FrameAddresses, PortId,
                   std::uint64_t& resume) noexcept override {
    // `take` is a switch flipped by the test thread; relaxed: nothing else is published
    // with it (nor with the note, read by the test once the loop's thread is done).
    if (!take.load(std::memory_order_relaxed)) {
      handed_note.store(resume, std::memory_order_relaxed);
      if (leave_note != 0) resume = leave_note;
      return Delivery::kRetryLater;
    }
    delivered.fetch_add(1, std::memory_order_relaxed);
    return Delivery::kDelivered;
  }
  std::atomic<bool> take{false};
  std::atomic<std::uint64_t> delivered{0};
  std::uint64_t leave_note = 0;  // set before the loop runs
  std::atomic<std::uint64_t> handed_note{0};
};

// Sends the records it is given (virtio-net header, then frame), one per receive(), and
// keeps every record it is handed (the header as delivered, then the frame).
class ScriptedFrontend final : public Frontend {
 public:
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte> buf, std::uint64_t) noexcept override {
    if (next_ >= to_send.size()) return {Rx::kNone};
    const auto& r = to_send[next_++];
    std::copy(r.begin(), r.end(), buf.begin());
    return {Rx::kFrame, r.size()};
  }
  // Keeps the frame as a real frontend delivers it: the loop's checked addresses, then
  // the rest of the frame.
  Delivery deliver(const endpoints::virtio::CheckedNetHeader& header, std::span<const std::byte> frame,
                   FrameAddresses addresses, PortId, std::uint64_t&) noexcept override {
    std::vector<std::byte> r(endpoints::virtio::kNetHeaderBytes + frame.size());
    endpoints::virtio::write(header.get(), std::span<std::byte, endpoints::virtio::kNetHeaderBytes>(
                                               r.data(), endpoints::virtio::kNetHeaderBytes));
    std::copy(frame.begin(), frame.end(), r.begin() + endpoints::virtio::kNetHeaderBytes);
    std::copy(addresses.begin(), addresses.end(), r.begin() + endpoints::virtio::kNetHeaderBytes);
    received.push_back(std::move(r));
    return Delivery::kDelivered;
  }
  std::string set_link(bool up) noexcept override {
    links.push_back(up);
    return {};
  }
  std::vector<std::vector<std::byte>> to_send;
  std::vector<std::vector<std::byte>> received;
  std::vector<bool> links;  // every set_link, in order

 private:
  std::size_t next_ = 0;
};

}  // namespace vswitch::test_support
