#include "vswitch/frontends/generator.hpp"

namespace vswitch {

namespace virtio = endpoints::virtio;
namespace gen = endpoints::generator;

GeneratorFrontend::GeneratorFrontend(const Config& config, const GeneratorCounters& initial)
    : config_(config), counters_(initial), sequence_(config.first_sequence) {
  if (config_.sizes.empty()) config_.sizes.push_back(gen::kMinFrame);
  if (config_.rate_fps != 0) period_ns_ = 1'000'000'000 / config_.rate_fps;
}

GeneratorFrontend::Config GeneratorFrontend::receive_only(MacAddress source) {
  Config c;
  c.source = source;
  c.send = false;
  return c;
}

std::optional<std::uint64_t> GeneratorFrontend::next_due_ns() const noexcept {
  if (paused_ || !config_.send || (config_.count != 0 && sequence_ - config_.first_sequence >= config_.count)) return std::nullopt;
  if (period_ns_ == 0) return std::optional<std::uint64_t>(0);
  return next_due_ns_;
}

Frontend::RxResult GeneratorFrontend::receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept {
  if (paused_ || !config_.send || (config_.count != 0 && sequence_ - config_.first_sequence >= config_.count))
    return {Rx::kNone};
  if (period_ns_ != 0) {
    if (next_due_ns_ == 0) next_due_ns_ = now_ns;
    if (now_ns < next_due_ns_) return {Rx::kNone};
    // Behind by more than 10 ms (the machine was busy): do not burst to catch up.
    if (now_ns - next_due_ns_ > 10'000'000) next_due_ns_ = now_ns;
    next_due_ns_ += period_ns_;
  }
  std::size_t size = config_.sizes[size_index_];
  size_index_ = (size_index_ + 1) % config_.sizes.size();
  if (size + virtio::kNetHeaderBytes > buf.size()) size = buf.size() - virtio::kNetHeaderBytes;
  virtio::write(virtio::NetHeader{}, buf.first<virtio::kNetHeaderBytes>());
  if (!gen::write_test_frame(buf.subspan(virtio::kNetHeaderBytes, size), config_.destination.bytes, config_.source.bytes,
                             gen::FrameId{config_.stream, sequence_}))
    return {Rx::kError};
  ++sequence_;
  ++counters_.sent;
  return {Rx::kFrame, virtio::kNetHeaderBytes + size};
}

// The generator checks test frames and counts: it reads the frame once, addresses and
// all, from the channel (a peer that rewrites them after the loop's check fools only
// these counters, which a switch's user does not forward on).
Frontend::Delivery GeneratorFrontend::deliver(const virtio::CheckedNetHeader&, std::span<const std::byte> frame,
                                             FrameAddresses, PortId from, std::uint64_t&) noexcept {
  auto id = gen::check_test_frame(frame);  // reads the frame once, into its own copy
  if (!id) {
    if (id.error() == gen::FrameError::kNotATestFrame || id.error() == gen::FrameError::kTooShort)
      ++counters_.foreign;
    else
      ++counters_.bad;
    return Delivery::kDelivered;
  }
  if (from >= streams_.size()) return Delivery::kDelivered;
  Stream& s = streams_[from];
  if (!s.seen || s.id != id.value().stream) {
    // A new sender incarnation (the peer restarted): keep the old stream's verdict.
    if (s.seen) {
      retired_lost_ += s.tracker.lost();
      retired_out_of_order_ += s.tracker.out_of_order();
    }
    const bool first_ever = !s.seen;
    s = Stream{true, id.value().stream, {}};
    if (first_ever && config_.join_streams_midway) s.tracker.resume_at(id.value().sequence);
  }
  const std::uint64_t lost_before = s.tracker.lost(), ooo_before = s.tracker.out_of_order();
  s.tracker.observe(id.value().sequence);
  ++counters_.received;
  counters_.lost += s.tracker.lost() - lost_before;
  counters_.out_of_order += s.tracker.out_of_order() - ooo_before;
  return Delivery::kDelivered;
}

}  // namespace vswitch
