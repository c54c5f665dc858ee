#include "vswitch/frontends.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "endpoints/virtio/net_offload.hpp"
#include "shm/frame_ring.hpp"
#include "shm/sys/eventfd.hpp"

namespace vswitch {

namespace virtio = endpoints::virtio;
namespace gen = endpoints::generator;

Frontend::RxResult TapFrontend::receive(std::span<std::byte> buf, std::uint64_t) noexcept {
  auto r = device_.read(buf);
  if (!r) {
    ++read_errors_;
    return {Rx::kError};
  }
  if (!r.value()) return {Rx::kNone};
  return {Rx::kFrame, *r.value()};
}

Frontend::Delivery TapFrontend::deliver(const virtio::NetHeader& header, std::span<const std::byte> frame,
                                       PortId) noexcept {
  // The header we hand the kernel is the validated copy, re-encoded, never the bytes in
  // shared memory; the frame goes from shared memory to the kernel in one copy.
  std::array<std::byte, virtio::kNetHeaderBytes> h{};
  virtio::NetHeader out = header;
  out.num_buffers = 0;
  virtio::write(out, std::span<std::byte, virtio::kNetHeaderBytes>(h));
  const iovec parts[2] = {{h.data(), h.size()}, {const_cast<std::byte*>(frame.data()), frame.size()}};
  if (auto s = device_.write(parts); !s) {
    ++write_errors_;
    last_write_errno_ = s.error().err;
    return Delivery::kRefused;
  }
  return Delivery::kDelivered;
}

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

Frontend::Delivery GeneratorFrontend::deliver(const virtio::NetHeader&, std::span<const std::byte> frame,
                                             PortId from) noexcept {
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

// ---------------------------------------------------------------------------------------
// vhost-user

namespace vswitch {

namespace vu = endpoints::vhost_user;

sys::Result<std::unique_ptr<VhostUserFrontend>, std::string> VhostUserFrontend::create(const std::string& socket_path,
                                                                                     std::uint16_t max_queue_size,
                                                                                     const VhostUserCounters& initial) {
  auto l = vu::listen_unix(socket_path);
  if (!l) return sys::Unexpected(l.error());
  sys::Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) return sys::Unexpected(std::string("epoll_create1 failed"));
  std::unique_ptr<VhostUserFrontend> f(
      new VhostUserFrontend(std::move(l.value()), std::move(ep), max_queue_size, initial));
  if (!f->watch(f->listen_.get(), true)) return sys::Unexpected(f->watch_error_);
  return f;
}

VhostUserFrontend::VhostUserFrontend(sys::Fd listen, sys::Fd epoll, std::uint16_t max_queue_size,
                                     const VhostUserCounters& initial)
    : listen_(std::move(listen)),
      epoll_(std::move(epoll)),
      backend_(max_queue_size),
      totals_(initial.totals),
      private_(shm::kMaxFrameBytes),
      segment_(shm::kMaxFrameBytes) {
  // The queues count bad chains by reason; they count on from the predecessor's totals.
  net_.bad_chains = initial.totals.bad_chains;
  for (std::size_t i = 0; i < net_.chain_errors.size(); ++i) net_.chain_errors[i] = initial.chain_errors.by_reason[i];
  for (std::size_t i = 0; i < net_.tx_errors.size(); ++i) net_.tx_errors[i] = initial.tx_errors.by_reason[i];
  for (std::size_t i = 0; i < net_.rx_drops.size(); ++i) net_.rx_drops[i] = initial.rx_drops.by_reason[i];
}

VhostUserFrontend::~VhostUserFrontend() = default;

void VhostUserFrontend::say(const std::string& m) noexcept {
  if (log_ != nullptr) log_->post(m);
}

bool VhostUserFrontend::watch(int fd, bool on) noexcept {
  if (fd < 0) return true;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) == 0) return true;
  // Removing fails only for a descriptor that is no longer in the set (ENOENT) or open
  // (EBADF): either way it is out of the set, which is all a removal wants.
  if (!on) return true;
  watch_error_ = sys::SysError{"epoll_ctl(ADD)", errno}.message();
  return false;
}

bool VhostUserFrontend::rewatch_kick() noexcept {
  const int kick = backend_.queue(vu::kTxQueue) != nullptr ? backend_.kick_fd(vu::kTxQueue) : -1;
  if (kick != watched_kick_) {
    if (watched_kick_ >= 0) watch(watched_kick_, false);
    watched_kick_ = -1;
    if (!watch(kick, true)) return false;
    watched_kick_ = kick;
  }
  // The RX kick matters only while a frame waits for buffers.
  const int rx = rx_waiting_ && backend_.queue(vu::kRxQueue) != nullptr ? backend_.kick_fd(vu::kRxQueue) : -1;
  if (rx != watched_rx_kick_) {
    if (watched_rx_kick_ >= 0) watch(watched_rx_kick_, false);
    watched_rx_kick_ = -1;
    if (!watch(rx, true)) return false;
    watched_rx_kick_ = rx;
  }
  return true;
}

void VhostUserFrontend::disconnect(const std::string& why) noexcept {
  if (!why.empty()) {
    ++totals_.protocol_errors;
    say("vhost-user front-end disconnected: " + why);
  } else {
    say("vhost-user front-end disconnected");
  }
  if (watched_kick_ >= 0) watch(watched_kick_, false);
  watched_kick_ = -1;
  if (watched_rx_kick_ >= 0) watch(watched_rx_kick_, false);
  watched_rx_kick_ = -1;
  rx_waiting_ = false;
  segmenting_ = {};
  rx_.forget_pool();  // its chains lived in the guest memory about to be unmapped
  backend_.reset();
  if (conn_) watch(conn_->fd(), false);
  conn_.reset();
}

void VhostUserFrontend::service() noexcept {
  serviced_ = true;
  epoll_event events[4];
  const int n = ::epoll_wait(epoll_.get(), events, 4, 0);
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == listen_.get()) {
      sys::Fd s(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!s.valid()) continue;
      if (conn_) disconnect("");  // a new front-end replaces one that did not say goodbye
      conn_.emplace(std::move(s));
      ++totals_.connections;
      say("vhost-user front-end connected");
      if (!watch(conn_->fd(), true)) {
        disconnect("its socket cannot be watched: " + watch_error_);
        continue;
      }
    } else if (conn_ && fd == conn_->fd()) {
      for (;;) {
        auto r = conn_->read();
        if (r.status == vu::Connection::Read::kPending) break;
        if (r.status == vu::Connection::Read::kClosed) {
          disconnect("");
          break;
        }
        if (r.status == vu::Connection::Read::kError) {
          disconnect(r.error);
          break;
        }
        // A control message may stop the RX queue: give pooled RX chains back first, so no
        // descriptor is ever lost to the guest.
        if (auto* rxq = backend_.queue(vu::kRxQueue)) {
          rx_.release_pool(*rxq);
          rxq->publish_used();
        }
        const vu::Request req = r.message->request;
        auto out = backend_.handle(std::move(*r.message));
        if (!out) {
          disconnect(std::string(vu::to_string(req)) + ": " + out.error());
          break;
        }
        if (out->reply && !conn_->send(*out->reply)) {
          disconnect("could not send a reply");
          break;
        }
        if (out->queues_changed) {
          if (!rewatch_kick()) {
            disconnect("a kick eventfd epoll refuses: " + watch_error_);
            break;
          }
          // Rule 7: after a (re)start, look at every ring as if kicked.
          if (auto* rxq = backend_.queue(vu::kRxQueue)) rx_used_seen_ = rxq->next_used();
          if (auto* txq = backend_.queue(vu::kTxQueue)) tx_used_seen_ = txq->next_used();
        }
      }
    } else if (fd == watched_kick_ || fd == watched_rx_kick_) {
      // Drained; the pops below see what it announced. A kick descriptor that cannot be
      // read would be reported readable forever: the front-end's fault, disconnect.
      if (auto d = sys::drain_counter(fd); !d) disconnect("kick eventfd: " + d.error().message());
    }
  }
}

Frontend::RxResult VhostUserFrontend::receive(std::span<std::byte> buf, std::uint64_t) noexcept {
  if (!serviced_) service();
  auto* q = backend_.queue(vu::kTxQueue);
  if (q == nullptr) return {Rx::kNone};
  const auto r = endpoints::virtio::tx_pop(*q, buf, net_);
  switch (r.status) {
    case endpoints::virtio::TxResult::Status::kFrame:
      return {Rx::kFrame, r.bytes};
    case endpoints::virtio::TxResult::Status::kEmpty:
      return {Rx::kNone};
    case endpoints::virtio::TxResult::Status::kBroken:
      disconnect("TX queue broken (avail index jump or too many chains in flight)");
      return {Rx::kNone};
  }
  return {Rx::kNone};
}

Frontend::Delivery VhostUserFrontend::deliver(const endpoints::virtio::NetHeader& header,
                                             std::span<const std::byte> frame, PortId) noexcept {
  namespace virtio = endpoints::virtio;
  if (!serviced_) service();
  auto* q = backend_.queue(vu::kRxQueue);
  if (q == nullptr) {  // no guest (yet), or its RX queue is not running: nothing to wait for
    rx_waiting_ = false;
    segmenting_ = {};
    return Delivery::kNoGuest;
  }
  // Offloads the guest did not accept are completed here, as a NIC would: a TCP GSO
  // frame is cut into gso_size segments, a partial checksum is filled in. The work is
  // done on a private copy (the record lies in shared memory).
  const std::uint8_t gso = header.gso_type & static_cast<std::uint8_t>(~virtio::kGsoEcn);
  const bool ecn_ok = (header.gso_type & virtio::kGsoEcn) == 0 || backend_.has(vu::kFeatureGuestEcn);
  const bool gso_ok = gso == virtio::kGsoNone ||
                      (ecn_ok && ((gso == virtio::kGsoTcpV4 && backend_.has(vu::kFeatureGuestTso4)) ||
                                  (gso == virtio::kGsoTcpV6 && backend_.has(vu::kFeatureGuestTso6))));
  const bool csum_ok = (header.flags & virtio::kNetHdrFlagNeedsCsum) == 0 || backend_.has(vu::kFeatureGuestCsum);
  if (frame.size() > private_.size()) return Delivery::kTooLarge;  // never: records are at most that
  if (!gso_ok) return deliver_segmented(*q, header, frame);
  if (!csum_ok) {
    std::memcpy(private_.data(), frame.data(), frame.size());  // frame.size() <= max record
    const std::span<std::byte> copy(private_.data(), frame.size());
    virtio::complete_checksum(header, copy);
    virtio::NetHeader plain;  // checksum done: nothing left for the guest to do
    ++totals_.csum_completed;
    return deliver_one(*q, plain, copy);
  }
  return deliver_one(*q, virtio::header_for_driver(header, backend_.has(vu::kFeatureGuestCsum)), frame);
}

Frontend::Delivery VhostUserFrontend::deliver_one(endpoints::virtio::SplitQueue& q,
                                                 const endpoints::virtio::NetHeader& header,
                                                 std::span<const std::byte> frame) noexcept {
  switch (rx_.deliver(q, header, frame, net_)) {
    case endpoints::virtio::RxQueue::Status::kDelivered:
      if (rx_waiting_) {
        q.disable_notification();  // buffers came: RX kicks are not needed any more
        rx_waiting_ = false;
      }
      return Delivery::kDelivered;
    case endpoints::virtio::RxQueue::Status::kNoBuffers:
      // Wait for the guest's buffers (the "need K" wait): the frame stays in its channel
      // and arm() asks the guest to kick when it posts more. Counted once per wait.
      if (!rx_waiting_) ++totals_.rx_no_buffers;
      rx_waiting_ = true;
      if (!rewatch_kick()) {
        disconnect("an RX kick eventfd epoll refuses: " + watch_error_);
        return Delivery::kNoGuest;
      }
      return Delivery::kRetryLater;
    case endpoints::virtio::RxQueue::Status::kDropped:
      rx_waiting_ = false;
      return Delivery::kTooLarge;
    case endpoints::virtio::RxQueue::Status::kBroken:
      disconnect("RX queue broken (avail index jump or too many chains in flight)");
      return Delivery::kNoGuest;
  }
  return Delivery::kRefused;
}

Frontend::Delivery VhostUserFrontend::deliver_segmented(endpoints::virtio::SplitQueue& q,
                                                       const endpoints::virtio::NetHeader& header,
                                                       std::span<const std::byte> frame) noexcept {
  namespace virtio = endpoints::virtio;
  std::memcpy(private_.data(), frame.data(), frame.size());
  auto seg = virtio::TcpSegmenter::parse(header, std::span<const std::byte>(private_.data(), frame.size()),
                                         kMaxSoftwareSegments);
  if (!seg) {
    segmenting_ = {};
    return Delivery::kUnsupported;
  }
  // A retry of the same record (it stays in its channel while we wait for RX buffers)
  // resumes after the segments the guest already has: none is delivered twice.
  std::size_t i = 0;
  if (segmenting_.record == frame.data() && segmenting_.bytes == frame.size()) i = segmenting_.next;
  for (; i < seg->segments(); ++i) {
    const std::size_t n = seg->build(i, segment_);
    const Delivery d = deliver_one(q, virtio::NetHeader{}, std::span<const std::byte>(segment_.data(), n));
    if (d == Delivery::kRetryLater) {
      segmenting_ = {frame.data(), frame.size(), i};
      return d;
    }
    if (d != Delivery::kDelivered) {
      segmenting_ = {};
      return d;
    }
    ++totals_.segments_made;
  }
  segmenting_ = {};
  return Delivery::kDelivered;
}

void VhostUserFrontend::notify(std::uint32_t index) noexcept {
  auto* q = backend_.queue(index);
  if (q == nullptr) return;
  std::uint16_t& seen = index == vu::kTxQueue ? tx_used_seen_ : rx_used_seen_;
  if (q->next_used() == seen) return;
  seen = q->next_used();
  q->publish_used();  // [VR]
  if (q->needs_notification() && backend_.call_fd(index) >= 0) {  // [VF1] inside
    if (auto st = sys::signal_counter(backend_.call_fd(index)); !st) {
      disconnect("call eventfd: " + st.error().message());  // the interrupt cannot reach the guest
      return;
    }
    ++totals_.interrupts;
  }
}

VhostUserCounters VhostUserFrontend::counters() const noexcept {
  VhostUserCounters c;
  c.totals = totals_;
  c.totals.bad_chains = net_.bad_chains;
  for (std::size_t i = 0; i < net_.chain_errors.size(); ++i) c.chain_errors.by_reason[i] = net_.chain_errors[i];
  for (std::size_t i = 0; i < net_.tx_errors.size(); ++i) c.tx_errors.by_reason[i] = net_.tx_errors[i];
  for (std::size_t i = 0; i < net_.rx_drops.size(); ++i) c.rx_drops.by_reason[i] = net_.rx_drops[i];
  return c;
}

void VhostUserFrontend::flush() noexcept {
  notify(vu::kTxQueue);
  notify(vu::kRxQueue);
  serviced_ = false;  // the next pass looks at control and kicks again
}

bool VhostUserFrontend::arm() noexcept {
  // [VF2] inside enable_notification: a chain added meanwhile keeps us awake.
  if (auto* tx = backend_.queue(vu::kTxQueue); tx != nullptr && tx->enable_notification()) return false;
  if (rx_waiting_) {
    if (!rewatch_kick()) {
      disconnect("an RX kick eventfd epoll refuses: " + watch_error_);
      return false;  // not asleep: the next pass sees no guest
    }
    if (auto* rx = backend_.queue(vu::kRxQueue); rx != nullptr && rx->enable_notification()) return false;
  }
  return true;
}

}  // namespace vswitch
