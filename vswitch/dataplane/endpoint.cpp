#include "vswitch/dataplane/endpoint.hpp"

#include "shm/sys/clock.hpp"
#include "shm/sys/eventfd.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <ctime>

namespace vswitch {
namespace {

namespace virtio = endpoints::virtio;
constexpr std::size_t kNoPeer = ~std::size_t{0};
constexpr std::uint64_t kStatsPeriodNs = 10'000'000;   // counters to the stats slice while busy
constexpr std::uint64_t kFdbPeriodNs = 500'000'000;    // FDB snapshot while busy
constexpr std::uint64_t kSweepPeriodMs = 1000;
// The longest a unicast frame waits for room in a full channel. A fast consumer frees
// room within microseconds; one that has freed none in this time will not soon, and
// waiting longer would only make the frame stale (a switch port drops after a short
// wait too). Meanwhile later frames for that peer are dropped, those for others flow.
constexpr std::uint64_t kHoldNs = 5'000'000;

MacTable::Config table_config(const Topology& t) {
  MacTable::Config c;
  c.capacity = t.switch_config.mac_table_size;
  c.aging_ms = std::uint64_t{t.switch_config.aging_s} * 1000;
  c.max_per_port = t.switch_config.macs_per_port();
  c.ports = static_cast<std::uint32_t>(t.endpoints.size());
  return c;
}


}  // namespace

// Whether a frame breaks the port's MTU (`limit`: EndpointConfig::frame_limit(), mtu + 18).
// The IP packet it carries is what counts, as in the Linux bridge: mtu + 14 bytes of frame,
// 4 more with an 802.1Q tag. A GSO frame is held to it by its segments: gso_size after the
// headers up to the TCP header (csum_start) and a TCP header of 20 bytes at least, or a
// sender could pass any size by calling its frame GSO.
bool exceeds_mtu(std::span<const std::byte> frame, std::uint8_t gso_type, std::uint16_t gso_size,
                 std::uint16_t csum_start, std::uint32_t limit) noexcept {
  const std::uint32_t untagged = limit - static_cast<std::uint32_t>(kVlanTagBytes);
  if (endpoints::virtio::is_gso(gso_type))
    return std::uint32_t{gso_size} + csum_start + 20 > (vlan_tag(frame) ? limit : untagged);
  if (frame.size() <= untagged) return false;
  return frame.size() > limit || !vlan_tag(frame);
}

// Whether the Ethernet type after a frame's addresses (and after the tag the port took
// out) is another tag, 802.1Q or 802.1ad: a frame that would be taken for another VLAN's
// wherever its outer tag comes off.
bool starts_with_tag(std::span<const std::byte> frame) noexcept {
  if (frame.size() < kEthernetHeaderBytes) return false;
  std::array<std::uint8_t, 2> t{};
  std::memcpy(t.data(), frame.data() + 12, t.size());
  return (t[0] == 0x81 && t[1] == 0x00) || (t[0] == 0x88 && t[1] == 0xa8);
}

EndpointLoop::EndpointLoop(const EndpointResources& resources, Frontend& frontend, const EndpointCounters& initial)
    : res_(resources),
      frontend_(frontend),
      config_(resources.topology->endpoints.at(resources.self)),
      max_payload_(resources.topology->fabric.max_payload()),
      frame_limit_(config_.frame_limit()),
      untagged_limit_(config_.mtu ? frame_limit_ - static_cast<std::uint32_t>(kVlanTagBytes) : frame_limit_),
      stall_timeout_ns_(std::uint64_t{resources.topology->fabric.stall_timeout_ms} * 1'000'000),
      table_(table_config(*resources.topology)),
      forwarder_(Forwarder::Config{static_cast<PortId>(resources.self), config_.mac, config_.port_security}, table_),
      staging_(max_payload_),
      vlan_aware_(config_.vlan_aware()),
      untagged_vlan_(config_.vlan.value_or(0)),
      egress_(max_payload_ + kVlanTagBytes),
      counters_(initial),
      hold_ns_(std::min(kHoldNs, stall_timeout_ns_)),
      poll_(std::uint64_t{config_.poll_us} * 1000, std::uint64_t{config_.poll_max_us} * 1000),
      coalescing_(std::uint64_t{config_.coalesce_us} * 1000),
      events_dropped_base_(initial.loop.events_dropped),
      captured_base_(initial.loop.captured),
      capture_dropped_base_(initial.loop.capture_dropped),
      events_("vswitch[" + config_.name + "]: ") {
  forwarder_.drops() = initial.drops;
  table_.restore_counters(initial.mac);
  // A gauge: this process follows the slice's word from its first pass (follow_link).
  predecessor_link_down_ = initial.loop.link_down != 0;
  counters_.loop.link_down = 0;
  const auto& eps = res_.topology->endpoints;
  vlans_.resize(eps.size());
  macs_.resize(eps.size());
  relabelled_.assign(eps.size(), false);
  for (std::size_t i = 0; i < eps.size(); ++i) {
    vlans_[i] = vlan_set(eps[i]);
    macs_[i] = eps[i].mac;
  }
  choose_read_into_channel();
  // Every MAC declared in the topology is static, in each VLAN its port carries: learning
  // can never move it.
  for (std::size_t i = 0; i < eps.size(); ++i)
    if (macs_[i])
      for (std::size_t v = 0; v < kVlanIds; ++v)
        if (vlans_[i].test(v)) table_.add_static(*macs_[i], static_cast<PortId>(i), static_cast<std::uint16_t>(v));
  peer_index_.assign(eps.size(), kNoPeer);
  peers_.reserve(eps.size());
  for (std::size_t i = 0; i < eps.size(); ++i) {
    if (i == res_.self) continue;
    const shm::Channel* out = res_.fabric->channel(res_.self, i);
    const shm::Channel* in = res_.fabric->channel(i, res_.self);
    if (out == nullptr || in == nullptr) continue;  // fabric not mapped for this pair
    peer_index_[i] = peers_.size();
    // The producer rings the peer's doorbell when it sleeps on our data; the consumer
    // rings the peer's doorbell when it waits for room we free.
    peers_.push_back(Peer{static_cast<PortId>(i), out->producer(res_.doorbells[i]), in->consumer(res_.doorbells[i])});
    // Set either way: a predecessor (before a reload) may have coalesced.
    peers_.back().in.set_wake_on_full(coalescing_.coalesce_ns() != 0);
  }
  for (auto& p : peers_) counters_.peers[p.port].stalled = 0;
  // Turned on by a reload: its frontend waits for its peers to be told (poll_once).
  announced_ = !res_.fresh || res_.stats == nullptr;
  started_ns_ = now_ns();
  // And its channels hold what peers sent before they saw it go off.
  if (res_.fresh) {
    if (const std::uint64_t n = discard_inbound(); n != 0)
      log("enabled: dropped " + std::to_string(n) +
          " frame(s) sent to this port while it was disabled (port_disabled)");
  }
  // Deliveries the frontend journals: channel space goes back only at a commit, after
  // the guest can see what came out of it (commit_deliveries); what the predecessor
  // committed last waits for the guest's receive queue to start (settle_deliveries).
  if (frontend_.journals_deliveries() && frontend_.may_defer_delivery() && res_.stats != nullptr) {
    journal_.emplace(res_.stats->journal_words());
    // A fresh start has no predecessor: the journal is what an earlier, stopped run left.
    if (!res_.fresh) predecessor_mark_ = journal_->read();
    for (auto& p : peers_) p.in.set_defer_release(true);
  }
  epoll_ = sys::Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) fatal_ = sys::SysError{"epoll_create1", errno}.message();
  auto add = [&](int fd, std::uint32_t events) {
    if (fd < 0 || !fatal_.empty()) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      fatal_ = sys::SysError{"epoll_ctl(ADD)", errno}.message();
  };
  add(res_.doorbell_fd, EPOLLIN);
  add(res_.stop_fd, EPOLLIN);
  add(frontend_.fd(), EPOLLIN);
  // A timer's expiry may be put off by the thread's timer slack (50 us by default) so the
  // kernel can batch wake-ups; with coalescing that would add up to 50 us to every timed
  // sleep. The loop runs on the thread that builds it (vswitchd's endpoint process builds
  // it before its syscall filter, which does not allow prctl, is installed).
  if (coalescing_.coalesce_ns() != 0) (void)::prctl(PR_SET_TIMERSLACK, kCoalesceTimerSlackNs, 0, 0, 0);
}

std::uint64_t EndpointLoop::now_ns() const noexcept { return sys::monotonic_ns(); }

EndpointLoop::Peer* EndpointLoop::peer_for(PortId port) noexcept {
  if (port >= peer_index_.size() || peer_index_[port] == kNoPeer) return nullptr;
  return &peers_[peer_index_[port]];
}

void EndpointLoop::log(const std::string& message) { events_.post(message); }

void EndpointLoop::peer_up(Peer& p) {
  if (!p.stalled) return;
  p.stalled = false;
  p.full_since_ns = 0;
  counters_.peers[p.port].stalled = 0;
  log(port_label(p.port) + " consumes again: forwarding to it");
}

void EndpointLoop::stall(Peer& p) {
  p.stalled = true;
  counters_.peers[p.port].stalled = 1;
  log(port_label(p.port) + " has had no room for " +
      std::to_string(stall_timeout_ns_ / 1'000'000) + " ms: counted as stalled, its frames are dropped");
}

// Hysteresis: one record consumed is no proof the peer consumes again (a receiver that
// frees one record now and then would flip between stalled and not on every record, and
// every flip would cost a hold). Half its channel free is: it has drained most of what
// we gave it. has_free() re-reads the tail ([A2]) only when the cached one says no.
bool EndpointLoop::readmit(Peer& p) {
  if (!p.out.has_free(p.out.area().capacity() / 2)) return false;
  peer_up(p);
  return true;
}

void EndpointLoop::committed(Peer& p, std::size_t record_bytes) {
  ++counters_.peers[p.port].out_frames;
  counters_.peers[p.port].out_bytes += record_bytes;
  p.full_since_ns = 0;  // the channel took a frame: it is not stuck
}

bool EndpointLoop::send_copy(Peer& p, std::span<const std::byte> record) {
  const auto len = static_cast<std::uint32_t>(record.size());
  shm::Reservation r = p.out.try_reserve(len);
  switch (r.status) {
    case shm::Reserve::kReserved:
      std::memcpy(r.payload.data(), record.data(), record.size());
      p.out.commit(len);
      committed(p, record.size());
      return true;
    case shm::Reserve::kTooLarge:  // cannot happen: records are bounded by max_payload_
      drop(DropReason::kFrameTooLarge);
      return true;
    case shm::Reserve::kFull:
      break;
  }
  return false;
}

namespace {
// The frame's first kEthernetHeaderBytes copied into `head`, or the frame itself when it
// is shorter (a runt: refused on its length, nothing delivered).
std::span<const std::byte> head_copy(std::span<const std::byte> frame,
                                     std::array<std::byte, kEthernetHeaderBytes>& head) noexcept {
  if (frame.size() < head.size()) return frame;
  std::memcpy(head.data(), frame.data(), head.size());
  return head;
}
}  // namespace

bool EndpointLoop::deliver_record(Peer& p, std::span<const std::byte> record) {
  // The frame's addresses and type, read once: the source is checked on this copy and
  // the frontend delivers these addresses, whatever the peer writes into its channel later
  // (else a peer could pass the check and then give the frame another port's static MAC).
  std::array<std::byte, kEthernetHeaderBytes> head{};
  bool shed = false;  // refused past the wait: dropped, and the frontend still counts as full
  auto header = virtio::parse(record);  // copies the 12 bytes once, validates against the frame
  const auto frame = record.subspan(std::min(record.size(), virtio::kNetHeaderBytes));
  // The frame's VLAN, as the sender's port classified it: this port must carry it.
  const std::uint16_t vlan = header ? header.value()->num_buffers : 0;
  std::optional<Egress> tagged;  // the frame with its VLAN's tag, for a trunk
  DropReason refused = DropReason::kCount;
  // (A port this endpoint believes off never gets here: drain_from_disabled.)
  if (link_down_) [[unlikely]] {
    drop(DropReason::kLinkDown);  // nothing learned from it either
  } else if (!header) {
    drop(DropReason::kBadNetHeader);
  } else if (frame.size() > untagged_limit_ &&
             exceeds_mtu(frame, header.value()->gso_type, header.value()->gso_size, header.value()->csum_start,
                         frame_limit_)) [[unlikely]] {
    drop(DropReason::kMtuExceeded);  // this port's MTU, on the way out (see pump_frontend)
  } else if (vlan >= kVlanIds || !vlans_[res_.self].test(vlan) || !vlans_[p.port].test(vlan)) [[unlikely]] {
    // A VLAN this port does not carry, or one the sending port is not in: the sender's
    // word is not taken (nothing is learned from the frame either).
    drop(DropReason::kVlanNotAllowed);
  } else if (forwarder_.from_peer(head_copy(frame, head), p.port, now_ms_, vlan)) {
    // dropped: counted by the forwarder
  } else if (vlan != 0 ? !(tagged = vlan == untagged_vlan_ ? untagged_copy(header.value(), frame, refused)
                                                            : tag_for_trunk(header.value(), frame, vlan, refused))
                       : frame.size() > untagged_limit_ && mtu_depends_on_tag(header.value(), frame.size()) &&
                             !(tagged = mtu_checked_copy(header.value(), frame, refused))) {
    drop(refused);
  } else {
    // The peer is trusted with no claim about its frame: DATA_VALID (checksum verified) and
    // RSC_INFO (coalesced) never reach the frontend from a channel, or a sender could have
    // a receiver take a corrupted frame as verified. Cleared, not dropped: the frame and
    // its other offload metadata are still good.
    const virtio::CheckedNetHeader checked = (tagged ? tagged->header : header.value()).without_receive_only_flags();
    const std::span<const std::byte> delivered = tagged ? tagged->frame : frame;
    switch (frontend_.deliver(checked, delivered, FrameAddresses(head.data(), 12), p.port, p.resume)) {
      case Frontend::Delivery::kRetryLater:
        if (!delivery_deferred_) {
          delivery_deferred_ = true;
          deferred_since_ns_ = pass_ns_;
        }
        // The channels wait for the frontend's room (a VM's backpressure toward its
        // senders), but not forever: a guest that posts no buffer for the stall timeout
        // loses its frames, not its senders' and not the other channels' progress.
        if (delivery_waiting(pass_ns_)) return false;  // not consumed, not counted: later
        drop(DropReason::kGuestNotReady);
        shed = true;
        if (!delivery_shedding_) {
          delivery_shedding_ = true;
          log("frontend has taken no frame for " + std::to_string(stall_timeout_ns_ / 1'000'000) +
              " ms: dropping what it cannot take");
        }
        break;
      case Frontend::Delivery::kDelivered:
        ++counters_.traffic.tx_frames;
        counters_.traffic.tx_bytes += delivered.size();
        // The frame as delivered, read again from the peer's channel: a peer that changed
        // it meanwhile changes only what the capture shows of its own frame.
        if ((capture_directions_ & kCaptureTx) != 0 && res_.capture->wants(kCaptureTx, pass_ns_)) [[unlikely]]
          res_.capture->copy(kCaptureTx, delivered);
        break;
      case Frontend::Delivery::kRefused:
        ++counters_.traffic.frontend_errors;
        drop(DropReason::kFrontendError);
        break;
      case Frontend::Delivery::kNoGuest:
        drop(DropReason::kGuestNotReady);
        break;
      case Frontend::Delivery::kTooLarge:
        drop(DropReason::kGuestBufferTooSmall);
        break;
      case Frontend::Delivery::kUnsupported:
        drop(DropReason::kOffloadUnsupported);
        break;
      case Frontend::Delivery::kMtuExceeded:
        drop(DropReason::kMtuExceeded);
        break;
    }
  }
  if (!shed) delivery_deferred_ = delivery_shedding_ = false;
  // Consumed, however it ended (delivered, dropped here, or a header the peer changed
  // since the last try): the next record starts without a note.
  p.resume = 0;
  ++counters_.peers[p.port].in_frames;
  counters_.peers[p.port].in_bytes += record.size();
  return true;
}

bool EndpointLoop::drain_inbound() {
  bool work = false;
  const std::size_t n = peers_.size();
  const bool may_defer = frontend_.may_defer_delivery();
  bool waiting = false;
  for (std::size_t k = 0; k < n; ++k) {
    Peer& p = peers_[(next_inbound_ + k) % n];
    if (port_disabled(p.port)) [[unlikely]] {
      work |= drain_from_disabled(p);
      continue;
    }
    const std::uint64_t resyncs = p.in.counters().resyncs;
    std::size_t got = 0;
    if (!may_defer) {
      got = p.in.consume_burst(kInboundBudget, [&](std::span<const std::byte> rec) { deliver_record(p, rec); });
    } else {
      // Peek, deliver, and consume only what the frontend took.
      while (got < kInboundBudget) {
        const std::uint64_t resyncs_before = p.in.counters().resyncs;
        const shm::PopResult r = p.in.peek();
        // A resynchronised channel skipped the record the frontend's note was about.
        if (p.in.counters().resyncs != resyncs_before) p.resume = 0;
        if (r.status != shm::Pop::kRecord) break;
        if (!deliver_record(p, r.payload)) {
          waiting = true;
          break;
        }
        p.in.consume();
        ++got;
        // Where the ring would have given an eighth of itself back on its own: the sender
        // waits for that room, so commit now rather than at the end of the pass.
        if (journal_ && p.in.release_due()) commit_deliveries();
      }
      if (!journal_) p.in.release();
    }
    if (got != 0) work = true;
    if (const std::uint64_t bad = p.in.counters().resyncs - resyncs; bad != 0) {
      drop(DropReason::kRingCorrupt, bad);  // at least one record lost per resync
      counters_.forwarding.ring_errors += bad;
      log("corrupt channel from " + port_label(p.port) + ": resynchronised");
      work = true;
    }
    if (waiting) break;  // no room in the frontend: the other channels wait too
  }
  // A refusal within the wait sets `waiting`, one past it sheds. Neither here: nothing
  // was refused in this pass, so the record refused last, if any, is no longer at the head
  // of its channel: it was taken (which ended the wait already) or its channel
  // resynchronised past it. Its wait ends with it; kept, a refusal much later would count
  // as having waited since deferred_since_ns_ and lose its frame at once. Shedding goes
  // on: it ends only when the frontend takes a frame, however quiet the channels are.
  if (may_defer && !waiting && !delivery_shedding_) delivery_deferred_ = false;
  if (n != 0) next_inbound_ = (next_inbound_ + 1) % n;
  return work;
}

void EndpointLoop::release_hold(Peer& p) {
  p.out.disarm();  // sleep() may have armed free-send for this frame
  p.held_bytes = 0;
  --held_count_;
}

bool EndpointLoop::flush_held(Peer& p) {
  if (p.held_bytes == 0) return true;
  if (!send_copy(p, std::span<const std::byte>(p.held.data(), p.held_bytes))) return false;
  release_hold(p);
  return true;
}

void EndpointLoop::hold(Peer& p, std::span<const std::byte> record) {
  if (p.full_since_ns == 0) {
    p.full_since_ns = pass_ns_;
  } else if (pass_ns_ - p.full_since_ns >= stall_timeout_ns_) {
    // No frame of ours has fitted for the stall timeout: no more holds, no more tries.
    stall(p);
    drop(DropReason::kPeerStalled);
    return;
  }
  if (p.held.empty()) p.held.resize(max_payload_);  // once per peer, on its first hold
  std::memcpy(p.held.data(), record.data(), record.size());
  p.held_bytes = record.size();
  p.held_since_ns = pass_ns_;
  ++held_count_;
  ++counters_.forwarding.backpressure_waits;
  p.found_full = true;
}

// Held frames: send those that fit now; drop those whose hold ran out (counted as
// peer_stalled once the peer has had no room for the stall timeout, else peer_full).
bool EndpointLoop::retry_held() {
  if (held_count_ == 0) return false;
  bool work = false;
  for (Peer& p : peers_) {
    if (p.held_bytes == 0) continue;
    if (flush_held(p)) {
      work = true;
      continue;
    }
    if (pass_ns_ - p.held_since_ns < hold_ns_) continue;
    release_hold(p);
    work = true;
    if (pass_ns_ - p.full_since_ns >= stall_timeout_ns_) {
      stall(p);
      drop(DropReason::kPeerStalled);
    } else {
      drop(DropReason::kPeerFull);
    }
  }
  return work;
}

bool EndpointLoop::pump_frontend() {
  bool work = false;
  for (std::size_t i = 0; i < kFrontendBudget; ++i) {
    // Read straight into a record of the channel the last unicast frame took: for a flow
    // to one peer the frame is then never copied by us at all. Only where that peer is
    // the one port this port can reach (read_into_channel_): the peer maps its channel's
    // records and can read, and write, a reservation that is never committed to it. Anything else goes to
    // staging_ and is copied into its channel(s). The reservation is simply not committed
    // when the frame goes elsewhere. Never a peer with a held frame: the new frame would
    // go before the held one.
    Target target{last_unicast_, false};
    std::span<std::byte> buf(staging_);
    if (read_into_channel_ && target.peer != nullptr && !target.peer->stalled && target.peer->held_bytes == 0) {
      shm::Reservation r = target.peer->out.try_reserve(max_payload_);
      if (r.status == shm::Reserve::kReserved) {
        buf = r.payload;
        target.reserved = true;
      }
    }
    const Frontend::RxResult rx = frontend_.receive(buf, now_ns());
    if (rx.status == Frontend::Rx::kNone) break;
    work = true;
    if (rx.status == Frontend::Rx::kError) {
      ++counters_.traffic.frontend_errors;
      drop(DropReason::kFrontendError);
      continue;
    }
    // A frame longer than the largest record is never forwarded, whole or cut; a count
    // beyond the buffer (whatever the frontend says) is treated the same way.
    if (rx.status == Frontend::Rx::kTooLarge || rx.bytes > buf.size()) {
      drop(DropReason::kFrameTooLarge);
      continue;
    }
    if (rx.bytes < virtio::kNetHeaderBytes) {
      drop(DropReason::kBadNetHeader);
      continue;
    }
    if (link_down_) [[unlikely]] {
      drop(DropReason::kLinkDown);  // read all the same: a frontend never fills up with stale frames
      continue;
    }
    std::span<std::byte> read(buf.data(), rx.bytes);
    const std::span<const std::byte> as_read = std::span<const std::byte>(read).subspan(virtio::kNetHeaderBytes);
    ++counters_.traffic.rx_frames;
    counters_.traffic.rx_bytes += as_read.size();
    // Every frame read, whatever the forwarder then decides (a capture shows what the
    // port sent, drops included).
    if ((capture_directions_ & kCaptureRx) != 0 && res_.capture->wants(kCaptureRx, pass_ns_)) [[unlikely]]
      res_.capture->copy(kCaptureRx, as_read);
    // The port's MTU, as the Linux bridge applies a device's (a frame longer than mtu plus
    // an Ethernet header and a VLAN tag, unless it is GSO: its segments are cut to
    // gso_size, which the sender's own MTU set). gso_type is read once, whether `buf` is
    // staging_ or a reservation in a peer's channel.
    if (as_read.size() > untagged_limit_ && mtu_exceeded_on_read(read)) [[unlikely]] {
      drop(DropReason::kMtuExceeded);
      continue;
    }
    // Between ports, num_buffers carries the frame's VLAN (see egress): always written
    // here, whatever the frontend left there.
    std::uint16_t vlan = 0;
    if (vlan_aware_) [[unlikely]] {
      const auto v = ingress_vlan(read);  // may take the tag out of `read`
      if (!v) {
        drop(v.error());
        continue;
      }
      vlan = v.value();
    }
    read[virtio::kNetHeaderBytes - 2] = static_cast<std::byte>(vlan & 0xff);
    read[virtio::kNetHeaderBytes - 1] = static_cast<std::byte>(vlan >> 8);
    const std::span<const std::byte> record = read;
    const auto frame = record.subspan(virtio::kNetHeaderBytes);
    const Decision d = forwarder_.from_frontend(frame, now_ms_, vlan);
    switch (d.kind) {
      case Decision::Kind::kDrop:
        break;  // counted by the forwarder
      case Decision::Kind::kUnicast:
        unicast(d.port, record, target, vlan);  // never waits: the frontend is read on
        break;
      case Decision::Kind::kFlood:
        flood(record, target, vlan);
        break;
    }
  }
  return work;
}

void EndpointLoop::unicast(PortId port, std::span<const std::byte> record, const Target& target, std::uint16_t vlan) {
  ++counters_.forwarding.unicast;
  Peer* p = peer_for(port);
  if (p == nullptr) {
    drop(DropReason::kPeerStalled);  // not mapped: cannot happen with a full fabric
    return;
  }
  // The table learns an address in a VLAN only behind ports of that VLAN, and a static
  // address is in its port's VLANs only: this holds unless the table is wrong.
  if (!vlans_[port].test(vlan)) [[unlikely]] {
    drop(DropReason::kVlanNotAllowed);
    return;
  }
  // Only a static address can still lead here (follow_peers forgot the learned ones).
  if (port_disabled(port)) [[unlikely]] {
    drop(DropReason::kPortDisabled);
    return;
  }
  if (p == target.peer && target.reserved) {  // never a stalled peer or one with a held frame
    p->out.commit(static_cast<std::uint32_t>(record.size()));
    committed(*p, record.size());
    return;
  }
  if (p->stalled && !readmit(*p)) {
    drop(DropReason::kPeerStalled);
    return;
  }
  // A frame for p is already waiting: this one may not pass it (no reordering) and may
  // not queue behind it (the backlog for one peer stays bounded): it is dropped.
  if (!flush_held(*p)) {
    drop(DropReason::kPeerFull);
    return;
  }
  if (send_copy(*p, record)) {
    last_unicast_ = p;
    return;
  }
  // Backpressure: hold this frame for p alone; the frontend is read on for the others.
  hold(*p, record);
}

void EndpointLoop::flood(std::span<const std::byte> record, const Target& target, std::uint16_t vlan) {
  ++counters_.forwarding.flooded;
  bool target_in_vlan = false;
  for (Peer& p : peers_) {
    if (!vlans_[p.port].test(vlan)) continue;  // a flood stays in its VLAN
    if (port_disabled(p.port)) [[unlikely]] continue;  // and goes to running ports only
    if (&p == target.peer && target.reserved) {
      target_in_vlan = true;
      continue;  // committed last, below
    }
    if (p.stalled && !readmit(p)) {
      drop(DropReason::kPeerStalled);
      continue;
    }
    // A held unicast frame goes first; a copy that finds no room is dropped, never held.
    if (!flush_held(p) || !send_copy(p, record)) {
      drop(DropReason::kFloodPeerFull);
      p.found_full = true;
    }
  }
  // The record lies in this reservation: the other copies came from it first. A
  // reservation in a port of another VLAN is simply not committed.
  if (target.reserved && target_in_vlan) {
    target.peer->out.commit(static_cast<std::uint32_t>(record.size()));
    committed(*target.peer, record.size());
  }
}

bool EndpointLoop::mtu_exceeded_on_read(std::span<const std::byte> record) const noexcept {
  namespace virtio = endpoints::virtio;
  // The header's fields read once (the record may lie in a peer's channel).
  std::array<std::uint8_t, 8> h{};
  std::memcpy(h.data(), record.data(), h.size());
  const auto gso_size = static_cast<std::uint16_t>(h[4] | (h[5] << 8));
  const auto csum_start = static_cast<std::uint16_t>(h[6] | (h[7] << 8));
  return exceeds_mtu(record.subspan(virtio::kNetHeaderBytes), h[virtio::kNetHeaderGsoTypeOffset], gso_size,
                     csum_start, frame_limit_);
}

sys::Result<std::uint16_t, DropReason> EndpointLoop::ingress_vlan(std::span<std::byte>& record) noexcept {
  namespace virtio = endpoints::virtio;
  const auto frame = record.subspan(virtio::kNetHeaderBytes);
  const std::optional<std::uint16_t> tag = vlan_tag(frame);
  if (!tag) {
    if (untagged_vlan_ == 0) return sys::Unexpected(DropReason::kVlanNotAllowed);  // a trunk without a native VLAN
    return untagged_vlan_;
  }
  // A priority tag (VID 0) carries a priority only: IEEE 802.1Q classifies the frame as
  // untagged, into the port's untagged VLAN (refused where there is none, as an untagged
  // frame is). A frame tagged with the port's untagged VLAN is taken (and leaves other
  // ports of it as that VLAN's frames do). Any other VID the port does not carry: refused.
  // Either way the tag comes out (its priority is not kept).
  const std::uint16_t vid = *tag == 0 ? untagged_vlan_ : *tag;
  if (vid == 0 || !vlans_[res_.self].test(vid)) return sys::Unexpected(DropReason::kVlanNotAllowed);
  // In a channel the frame goes untagged: the tag comes out here, the header's offsets
  // move with the bytes after it. The record is this endpoint's to write (staging_, or a
  // reservation not yet committed); its header is checked as a receiver would first.
  auto header = virtio::parse(record);
  if (!header) return sys::Unexpected(DropReason::kBadNetHeader);
  virtio::NetHeader h = header.value().get();
  if ((h.flags & virtio::kNetHdrFlagNeedsCsum) != 0) {
    if (h.csum_start < kEthernetHeaderBytes + kVlanTagBytes) return sys::Unexpected(DropReason::kBadNetHeader);
    h.csum_start = static_cast<std::uint16_t>(h.csum_start - kVlanTagBytes);
  }
  // hdr_len is a hint (virtio 1.x 5.1.6.2); it moves with the headers it counts.
  if (h.hdr_len >= kEthernetHeaderBytes + kVlanTagBytes) h.hdr_len = static_cast<std::uint16_t>(h.hdr_len - kVlanTagBytes);
  virtio::write(h, record.first<virtio::kNetHeaderBytes>());  // num_buffers: the caller writes the VLAN
  std::byte* f = record.data() + virtio::kNetHeaderBytes;
  std::memmove(f + 12, f + 12 + kVlanTagBytes, frame.size() - 12 - kVlanTagBytes);
  record = record.first(record.size() - kVlanTagBytes);
  // Another tag inside: it would be taken for its own VLAN wherever this frame leaves
  // untagged (VLAN hopping by double tagging). Refused.
  if (starts_with_tag(record.subspan(virtio::kNetHeaderBytes))) return sys::Unexpected(DropReason::kVlanNotAllowed);
  return vid;
}

std::optional<EndpointLoop::Egress> EndpointLoop::untagged_copy(const endpoints::virtio::CheckedNetHeader& header,
                                                                 std::span<const std::byte> frame,
                                                                 DropReason& refused) noexcept {
  // The peer can write its channel at any time: the bytes checked here must be the bytes
  // delivered, so the frame is read once (with the MTU check made again on the copy) and
  // checked and delivered from there. (A check on the channel's bytes would pass a frame
  // the peer gives a tag after.)
  auto copy = mtu_checked_copy(header, frame, refused);
  if (!copy) return std::nullopt;
  // Another tag inside a frame that leaves untagged: taken for that tag's VLAN beyond
  // this port (VLAN hopping by double tagging).
  refused = DropReason::kVlanNotAllowed;
  if (starts_with_tag(copy->frame)) return std::nullopt;
  return copy;
}

bool EndpointLoop::mtu_depends_on_tag(const endpoints::virtio::CheckedNetHeader& header,
                                     std::size_t frame_bytes) const noexcept {
  // Without an mtu both limits are max_frame's: the tag decides nothing.
  const std::uint64_t size = endpoints::virtio::is_gso(header->gso_type)
                                 ? std::uint64_t{header->gso_size} + header->csum_start + 20  // a segment, as exceeds_mtu
                                 : frame_bytes;
  return size > untagged_limit_ && size <= frame_limit_;
}

std::optional<EndpointLoop::Egress> EndpointLoop::mtu_checked_copy(const endpoints::virtio::CheckedNetHeader& header,
                                                                   std::span<const std::byte> frame,
                                                                   DropReason& refused) noexcept {
  // The MTU check before read the channel, where a tag (4 bytes of slack) may have been
  // and the peer may take out before the frontend reads the bytes: the frame is read
  // once, into egress_, held to the MTU again there, and delivered from there.
  refused = DropReason::kFrameTooLarge;
  if (frame.size() > egress_.size()) return std::nullopt;
  std::memcpy(egress_.data(), frame.data(), frame.size());
  const std::span<const std::byte> copy(egress_.data(), frame.size());
  refused = DropReason::kMtuExceeded;
  if (copy.size() > untagged_limit_ &&
      exceeds_mtu(copy, header->gso_type, header->gso_size, header->csum_start, frame_limit_))
    return std::nullopt;
  return Egress{header, copy};  // the header: a private copy, checked against this length
}

std::optional<EndpointLoop::Egress> EndpointLoop::tag_for_trunk(const endpoints::virtio::CheckedNetHeader& header,
                                                                 std::span<const std::byte> frame, std::uint16_t vlan,
                                                                 DropReason& refused) noexcept {
  namespace virtio = endpoints::virtio;
  // A VLAN this port carries tagged: the tag goes in, in a private copy (the channel is
  // the peer's to write; the tag this port sends is its own).
  refused = DropReason::kRuntFrame;
  if (frame.size() < kEthernetHeaderBytes) return std::nullopt;
  const std::size_t bytes = virtio::kNetHeaderBytes + frame.size() + kVlanTagBytes;
  refused = DropReason::kFrameTooLarge;
  if (bytes > egress_.size()) return std::nullopt;
  virtio::NetHeader h = header.get();
  // Offsets at or past the Ethernet type move with the bytes the tag pushes on; one that
  // would no longer fit 16 bits is refused.
  refused = DropReason::kBadNetHeader;
  if ((h.flags & virtio::kNetHdrFlagNeedsCsum) != 0 && h.csum_start >= 12) {
    if (h.csum_start > 0xffff - kVlanTagBytes) return std::nullopt;
    h.csum_start = static_cast<std::uint16_t>(h.csum_start + kVlanTagBytes);
  }
  if (h.hdr_len >= 12) h.hdr_len = static_cast<std::uint16_t>(std::min<std::size_t>(0xffff, h.hdr_len + kVlanTagBytes));
  h.num_buffers = 0;
  std::byte* out = egress_.data();
  virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(out, virtio::kNetHeaderBytes));
  std::byte* f = out + virtio::kNetHeaderBytes;
  std::memcpy(f, frame.data(), frame.size());  // the peer's bytes, read once
  // A frame of a VLAN travels untagged between ports (ingress takes its tag out): one
  // with a tag inside would leave with two, taken for the inner tag's VLAN where the
  // outer one comes off (VLAN hopping), and 4 bytes over the MTU the check before allowed
  // for one tag.
  refused = DropReason::kVlanNotAllowed;
  if (starts_with_tag(std::span<const std::byte>(f, frame.size()))) return std::nullopt;
  std::memmove(f + 12 + kVlanTagBytes, f + 12, frame.size() - 12);
  // IEEE 802.1Q tag: TPID 0x8100, then PCP 0, DEI 0 and the 12-bit VID.
  f[12] = std::byte{0x81};
  f[13] = std::byte{0x00};
  f[14] = static_cast<std::byte>((vlan >> 8) & 0x0f);
  f[15] = static_cast<std::byte>(vlan & 0xff);
  const std::span<const std::byte> record(out, bytes);
  auto checked = virtio::parse(record);  // the moved offsets, checked against the new frame
  refused = DropReason::kBadNetHeader;
  if (!checked) return std::nullopt;
  // The MTU check before read the channel, where a tag (4 bytes of slack) may have been
  // and is no more: the tagged copy is held to it again.
  const auto tagged = record.subspan(virtio::kNetHeaderBytes);
  refused = DropReason::kMtuExceeded;
  if (tagged.size() > untagged_limit_ &&
      exceeds_mtu(tagged, checked.value()->gso_type, checked.value()->gso_size, checked.value()->csum_start,
                  frame_limit_))
    return std::nullopt;
  return Egress{checked.value(), tagged};
}

bool EndpointLoop::poll_once() {
  const std::uint64_t t = now_ns();
  pass_ns_ = t;
  now_ms_ = t / 1'000'000;
  // A capture asked for after this load starts with the next pass's frames.
  capture_directions_ = res_.capture != nullptr ? res_.capture->requested() : 0;
  if (res_.stats != nullptr) {
    if (!link_known_ || res_.stats->admin_down() != link_down_) [[unlikely]]
      follow_link();
    // One acquire load per pass ([R-FENCE] in stats.cpp): vswitchd bumps fence_seq after
    // every store of the mask and of stale_to words, so while it stands still neither moved.
    if (const std::uint64_t fence = res_.stats->fence_seq(); fence != fence_seq_ || !peers_known_) [[unlikely]] {
      const bool first = !peers_known_;
      // A VLAN table caught being rewritten: the count is taken again next pass (the
      // writer bumps it once more when it is done, and whatever else it announced is
      // idempotent: the mask compares, the fences drop nothing twice).
      if (follow_ports()) fence_seq_ = fence;
      // An acquire load too ([R-OFF]): a mask newer than the count just seen brings the
      // stale_to words written before it.
      const std::uint64_t mask = res_.stats->peers_disabled();
      const std::uint64_t self_bit = std::uint64_t{1} << res_.self;
      // This port's own bit: on a port just turned on, that its peers are not all told
      // yet (vswitchd clears it in this slice last: Daemon::publish_disabled); on a
      // running one, that it is being turned off (it still forwards until stopped).
      if ((mask & self_bit) == 0) announced_ = true;
      mask_fence_ = fence;  // the count this mask is at least as new as (drain_from_disabled)
      const std::uint64_t disabled = mask & ~self_bit;
      if (disabled != peers_disabled_ || first) follow_peers(disabled);
      // Every running peer's stale_to, whatever the mask did meanwhile (follow_peers on the
      // first pass has marked them all already).
      if (!first)
        for (const Peer& p : peers_)
          if (!port_disabled(p.port)) peers_to_fence_ |= std::uint64_t{1} << p.port;
    }
  }
  frontend_.begin_pass();
  if (predecessor_mark_) [[unlikely]] settle_deliveries();
  // After the guest's queue settled (the journal skips what the guest has first).
  if ((peers_to_discard_ | peers_to_fence_) != 0 && !predecessor_mark_) [[unlikely]] settle_peers();
  bool work = retry_held();
  work |= drain_inbound();
  // A port just turned on reads nothing from its frontend until every peer has been told
  // it is on (frames it sent sooner would be dropped as port_disabled by peers that had
  // not looked yet); its frontend's frames wait where they are (a TAP's queue, a guest's
  // ring), and run() sleeps on its doorbell meanwhile (wait_until_announced). Bounded:
  // were vswitchd never to say so, it forwards after announce_wait_ns.
  if (announced_ || t - started_ns_ >= res_.announce_wait_ns) [[likely]] work |= pump_frontend();
  if (journal_) commit_deliveries();  // before flush(), which would publish the mark unjournaled
  frontend_.flush();
  for (Peer& p : peers_) {
    p.out.publish();  // one index store per channel per pass
    // A full channel ends its receiver's coalescing sleep: it frees the room a held frame
    // waits for well within the hold, and a channel smaller than what a flow brings in
    // one coalescing period does not cap the flow. After publish(): the receiver wakes to
    // the records that filled it.
    if (p.found_full) [[unlikely]] {
      p.found_full = false;
      (void)p.out.ring_if_consumer_wakes_on_full();
    }
  }
  if (res_.capture != nullptr) res_.capture->publish();  // nothing unless this pass copied a frame
  if (now_ms_ - last_sweep_ms_ >= kSweepPeriodMs) {
    last_sweep_ms_ = now_ms_;
    table_.sweep(now_ms_);
  }
  if (work) {
    ++counters_.loop.loops;
    if (t - last_stats_ns_ >= kStatsPeriodNs) publish_stats();
  }
  return work;
}

bool EndpointLoop::unreleased() const noexcept {
  // Consumed records, pads and resynchronised stretches alike: whatever moved a tail.
  for (const Peer& p : peers_)
    if (p.in.consumed_to() != p.in.released_to()) return true;
  return false;
}

void EndpointLoop::commit_deliveries() {
  if (!unreleased()) return;
  // The predecessor's last commit is still the journal's until the guest's receive queue
  // runs (settle_deliveries): no guest, nothing delivered, so nothing to journal; the
  // space goes straight back (records a guest had are skipped at settling, those taken
  // since are past the mark's tails already).
  if (!predecessor_mark_) {
    journal_->begin(frontend_.delivery_mark());  // 1: the mark and the consumed tails
    for (const Peer& p : peers_) journal_->tail(p.port, p.in.consumed_to());
    journal_->end();
    frontend_.commit_deliveries();  // 2: the guest sees them ([VR], a release store)
  }
  for (Peer& p : peers_) p.in.release();  // 3: the senders get the space back ([R2])
}

void EndpointLoop::settle_deliveries() {
  const std::optional<std::uint16_t> start = frontend_.take_delivery_restart();
  if (!start) return;  // no guest queue yet: the channels wait (or drop) as for any guest
  const DeliveryMark mark = *predecessor_mark_;
  predecessor_mark_.reset();
  // Started anywhere but at the mark: the predecessor's last commit never reached the
  // guest, whose queue restarts before those deliveries; they are made again from the
  // released tails, where the channels stand.
  if (mark.used != start) return journal_settled(*start);
  std::uint64_t channels = 0;
  for (Peer& p : peers_) {
    const std::uint64_t to = mark.tails[p.port];
    if (to <= p.in.consumed_to()) continue;  // released already (or taken since)
    if (p.in.skip_to(to)) {
      ++channels;
      ++counters_.loop.restart_skips;
    } else {
      log("delivery journal: the channel from " + port_label(p.port) +
          " cannot be moved to where the predecessor left it (" + std::to_string(to) +
          "); its records from " + std::to_string(p.in.consumed_to()) + " on are delivered");
    }
  }
  if (channels != 0)
    log("the predecessor had delivered records from " + std::to_string(channels) +
        " channel(s) the guest has (its receive queue restarts past them) without releasing them: skipped, "
        "not delivered twice");
  journal_settled(*start);
}

void EndpointLoop::journal_settled(std::uint16_t start) {
  // The journal's own from here on: where the queue starts and the channels stand (all
  // released), before anything this process publishes outside a commit (the guest's
  // empty chains given back, segments of a frame cut in software) can move the index onto
  // a mark the predecessor journaled and never published.
  journal_->begin(start);
  for (const Peer& p : peers_) journal_->tail(p.port, p.in.released_to());
  journal_->end();
}

void EndpointLoop::follow_peers(std::uint64_t disabled) {
  const bool first = !peers_known_;
  peers_known_ = true;
  // The first pass looks at every peer: a restarted endpoint may have missed changes.
  const std::uint64_t changed = first ? ~std::uint64_t{0} : disabled ^ peers_disabled_;
  peers_disabled_ = disabled;
  const auto& eps = res_.topology->endpoints;
  for (std::size_t i = 0; i < eps.size() && i < 64; ++i) {
    if (((changed >> i) & 1) == 0 || i == res_.self) continue;
    const auto port = static_cast<PortId>(i);
    const std::uint64_t bit = std::uint64_t{1} << i;
    if (!port_disabled(port)) {
      // What its earlier run left in its channel goes before its new run's (settle_peers).
      peers_to_fence_ |= bit;
      peers_to_discard_ &= ~bit;
      if (!first) log(port_label(i) + " enabled: forwarding to it");
      continue;
    }
    const std::size_t forgot = table_.forget_port(port);
    if (Peer* p = peer_for(port)) {
      if (p->held_bytes != 0) {
        drop(DropReason::kPortDisabled);
        release_hold(*p);
      }
      // Whatever it was when it went off, it starts afresh when it comes back.
      p->stalled = false;
      p->full_since_ns = 0;
      counters_.peers[port].stalled = 0;
      if (last_unicast_ == p) last_unicast_ = nullptr;
    }
    // What it sent and this port has not taken goes too (settle_peers).
    peers_to_discard_ |= bit;
    peers_to_fence_ &= ~bit;
    // The ports declared off are said once in vswitchd's log, not by every endpoint at start.
    if (!first)
      log(port_label(i) + " disabled: sending it nothing (forgot " + std::to_string(forgot) +
          " address(es) learned behind it)");
  }
}

bool EndpointLoop::follow_ports() {
  const auto& eps = res_.topology->endpoints;
  std::vector<PortInfo> now;
  // Acquire (the table's seqlock, ordering at write_port_table in stats.cpp).
  switch (res_.stats->read_port_table(now, eps.size())) {
    case PortTableRead::kNone: return true;  // never written (a test's slice): the topology's stand
    case PortTableRead::kTorn: return false;
    case PortTableRead::kRead: break;
  }
  // The ports whose entry changed. This port's own entry is its topology's: a reload that
  // changes it restarts it.
  std::vector<std::size_t> moved;
  for (std::size_t i = 0; i < eps.size() && i < now.size(); ++i)
    if (i != res_.self && (now[i].vlans != vlans_[i] || now[i].mac != macs_[i])) moved.push_back(i);
  // Every old static entry goes before any new one is made: an address that moved from
  // one port to another in this change must end up static behind the new one, whichever
  // port comes first (remove_static takes only the entry behind the port it names).
  std::vector<std::size_t> forgot(moved.size(), 0);
  for (std::size_t k = 0; k < moved.size(); ++k) {
    const std::size_t i = moved[k];
    const auto port = static_cast<PortId>(i);
    // A port that was spare, or becomes spare (in no VLAN at all): another endpoint than the
    // one this process's topology names holds it, or will. Counts of what went to and
    // came from the port start afresh with its new endpoint (vswitchctl and Prometheus
    // show them under the new name).
    if (now[i].vlans.none() || vlans_[i].none()) relabelled_[i] = true;
    if (vlans_[i].none() && !now[i].vlans.none()) counters_.peers[i] = PeerCounters{};
    // Addresses learned behind it in a VLAN it has left (or behind the endpoint that held
    // it before) must not draw frames to it; all go (those it keeps are learned again from
    // its next frames). First: room in the table for its static address.
    forgot[k] = table_.forget_port(port);
    if (macs_[i])
      for (std::size_t v = 0; v < kVlanIds; ++v)
        if (vlans_[i].test(v)) (void)table_.remove_static(*macs_[i], static_cast<std::uint16_t>(v), port);
  }
  for (std::size_t k = 0; k < moved.size(); ++k) {
    const std::size_t i = moved[k];
    const auto port = static_cast<PortId>(i);
    // Its declared address is static in each VLAN it carries, and in those alone
    // (add_static makes room by evicting a learned entry when the table is full).
    if (now[i].mac)
      for (std::size_t v = 0; v < kVlanIds; ++v)
        if (now[i].vlans.test(v) && !table_.add_static(*now[i].mac, port, static_cast<std::uint16_t>(v)))
          log(port_label(i) + "'s address " + now[i].mac->str() + " could not be made static in VLAN " +
              std::to_string(v));
    if (Peer* p = peer_for(port)) {
      // A frame held for it in a VLAN it has left is not handed to it (its receiver would
      // drop it, but its process would have seen it).
      if (p->held_bytes != 0) {
        const auto header = virtio::parse(std::span<const std::byte>(p->held.data(), p->held_bytes));
        const std::uint16_t vid = header ? header.value()->num_buffers : 0;
        if (!header || vid >= kVlanIds || !now[i].vlans.test(vid)) {
          drop(DropReason::kVlanNotAllowed);
          release_hold(*p);
        }
      }
      // Nor are frontend frames read into its channel any more on the strength of a
      // unicast that went to it while it shared a VLAN with this port (pump_frontend).
      if (last_unicast_ == p) last_unicast_ = nullptr;
    }
    vlans_[i] = now[i].vlans;
    macs_[i] = now[i].mac;
    log(port_label(i) + " changed (VLANs or address): following it (forgot " + std::to_string(forgot[k]) +
        " address(es) learned behind it)");
  }
  const bool changed = !moved.empty();
  if (changed) choose_read_into_channel();
  return true;
}

std::string EndpointLoop::port_label(std::size_t i) const {
  const auto& e = res_.topology->endpoints[i];
  std::string label = relabelled_[i] || e.spare ? "port " : "peer ";
  label += relabelled_[i] || e.spare ? std::to_string(i) : e.name;
  return label;
}

void EndpointLoop::choose_read_into_channel() {
  // A frame read into a reservation in a peer's channel lies in memory that peer reads
  // and writes, committed or not: only where no other peer could be its destination (a
  // frame for another port would show it, and the peer could change it before it is
  // copied on). Chosen between passes: no reservation is outstanding then.
  std::size_t reachable = 0;
  for (std::size_t i = 0; i < vlans_.size(); ++i)
    if (i != res_.self && (vlans_[i] & vlans_[res_.self]).any()) ++reachable;
  read_into_channel_ = reachable <= 1;
}

void EndpointLoop::settle_peers() {
  const auto& eps = res_.topology->endpoints;
  for (std::size_t i = 0; i < eps.size() && i < 64; ++i) {
    const std::uint64_t bit = std::uint64_t{1} << i;
    if (((peers_to_discard_ | peers_to_fence_) & bit) == 0) continue;
    Peer* p = peer_for(static_cast<PortId>(i));
    if (p == nullptr) continue;
    // Turned off: everything it sent and this port has not taken, from a run that is over
    // (were this port stopped, or waiting for its guest, until the peer came back, those
    // frames would otherwise arrive after the peer's next start). Turned on (or found on
    // by a restarted endpoint): what is left of its earlier run, up to where vswitchd saw
    // that run's channel end; its new run's frames stay.
    const bool off = (peers_to_discard_ & bit) != 0;
    // stale_to: published by the acquire loads in poll_once ([R-OFF], [R-FENCE]).
    const std::uint64_t n = discard_from(*p, off ? ~std::uint64_t{0} : res_.stats->stale_to(i));
    if (n != 0)
      log("dropped " + std::to_string(n) + " frame(s) " + port_label(i) + " had sent before it was " +
          (off ? "turned off" : "turned off and on again") + " (port_disabled)");
  }
  peers_to_discard_ = 0;
  peers_to_fence_ = 0;
}

std::uint64_t EndpointLoop::discard_inbound() {
  std::uint64_t n = 0;
  for (Peer& p : peers_) n += discard_from(p, ~std::uint64_t{0});
  // Outside a pass (a port stopping): the channels' space goes back now, through a commit
  // for a journaling frontend (delivery_journal.hpp: the tails journaled first).
  if (journal_) commit_deliveries();
  return n;
}

bool EndpointLoop::drain_from_disabled(Peer& p) {
  bool work = false;
  std::uint64_t n = 0;
  const std::uint64_t resyncs = p.in.counters().resyncs;
  for (std::size_t k = 0; k < kInboundBudget; ++k) {
    const shm::PopResult r = p.in.peek();  // the head: an acquire load ([A1] in frame_ring.hpp)
    if (r.status != shm::Pop::kRecord) break;
    work = true;
    // The port may have been turned on since this pass began, and this be its new run's
    // first frame. Acquire ([R-FENCE] in stats.cpp), after the head's: if vswitchd had
    // told this slice before the port sent it (it tells the port last), the count has
    // moved. Then the record stays for the next pass, which takes the change first
    // (follow_peers, and settle_peers' fence drops what precedes the new run).
    if (res_.stats != nullptr && res_.stats->fence_seq() != mask_fence_) break;
    // Sent before that port saw itself turned off: neither delivered nor learned (an
    // address learned behind a port that is gone would keep its frames from flooding).
    ++counters_.peers[p.port].in_frames;
    counters_.peers[p.port].in_bytes += r.payload.size();
    p.in.consume();
    ++n;
  }
  if (n != 0 || p.in.counters().resyncs != resyncs) p.resume = 0;  // the note's record is gone
  // A journaling frontend's channels give space back only at a commit (this pass's).
  if (!journal_) p.in.release();
  if (const std::uint64_t bad = p.in.counters().resyncs - resyncs; bad != 0) {
    drop(DropReason::kRingCorrupt, bad);
    counters_.forwarding.ring_errors += bad;
    log("corrupt channel from " + port_label(p.port) + ": resynchronised");
    work = true;
  }
  drop(DropReason::kPortDisabled, n);
  return work;
}

bool EndpointLoop::wait_until_announced() {
  while (!announced_) {
    const bool work = poll_once();  // all but the frontend: the slice, the channels, held frames
    if (announced_ || !fatal_.empty()) break;
    const std::uint64_t now = now_ns();
    if (now - started_ns_ >= res_.announce_wait_ns) {
      log("turned on: vswitchd did not say within " + std::to_string(res_.announce_wait_ns / 1'000'000) +
          " ms that every peer knows; forwarding anyway");
      break;
    }
    if (work) continue;  // more of it first (bounded too: nothing sends to a port believed off)
    // Not on the frontend, which stays readable while it is left unread: on the doorbell,
    // which vswitchd rings once it has told every peer (Daemon::publish_disabled), and on
    // the stop descriptor; at most until the bound.
    const auto left_ms = static_cast<int>((started_ns_ + res_.announce_wait_ns - now + 999'999) / 1'000'000);
    pollfd fds[2] = {{res_.doorbell_fd, static_cast<short>(POLLIN), 0}, {res_.stop_fd, static_cast<short>(POLLIN), 0}};
    const int n = ::poll(fds, 2, left_ms);
    if (n < 0 && errno != EINTR) {
      fatal_ = sys::SysError{"poll (waiting to be announced)", errno}.message();
      return false;
    }
    // Any event counts, as in sleep(): the stop descriptor's stops; the doorbell's is read
    // (a doorbell that hung up is then fatal, not a wait until the bound).
    if (n > 0 && fds[1].revents != 0) return false;
    if (n > 0 && fds[0].revents != 0)
      if (auto d = shm::drain_doorbell(res_.doorbell_fd); !d) {
        fatal_ = "doorbell: " + d.error().message();
        return false;
      }
  }
  return fatal_.empty();
}

std::uint64_t EndpointLoop::discard_from(Peer& p, std::uint64_t up_to) {
  std::uint64_t n = 0;
  const std::uint64_t resyncs = p.in.counters().resyncs;
  // Bounded by what the channel can hold: a producer that keeps adding (one that has not
  // seen the change yet) cannot keep this loop going.
  const std::uint64_t most = p.in.area().capacity() / shm::record_bytes(0);
  for (std::uint64_t k = 0; k < most && p.in.consumed_to() < up_to; ++k) {
    const shm::PopResult r = p.in.peek();
    if (r.status != shm::Pop::kRecord) break;  // empty, or corrupt: resynchronised to the head
    // peek() skips a pad by itself: the record it found may start at or past `up_to` (the
    // earlier run ended on a pad and the new run's first record follows it).
    if (p.in.consumed_to() >= up_to) break;
    // Counted in as every record taken from a channel is, so the sender's out and this
    // port's in still agree; and dropped.
    ++counters_.peers[p.port].in_frames;
    counters_.peers[p.port].in_bytes += r.payload.size();
    p.in.consume();
    ++n;
  }
  // The frontend's note is about the record at the head: kept unless that record is gone
  // (a frame delivered in parts must not start again).
  if (n != 0 || p.in.counters().resyncs != resyncs) p.resume = 0;
  // A journaling frontend's channels give space back only at a commit, which journals
  // these tails with the rest (this pass's, or discard_inbound's).
  if (!journal_) p.in.release();
  if (const std::uint64_t bad = p.in.counters().resyncs - resyncs; bad != 0) {
    drop(DropReason::kRingCorrupt, bad);
    counters_.forwarding.ring_errors += bad;
  }
  drop(DropReason::kPortDisabled, n);
  return n;
}

void EndpointLoop::follow_link() {
  const bool first = !link_known_;
  link_known_ = true;
  link_down_ = res_.stats->admin_down();
  counters_.loop.link_down = link_down_ ? 1 : 0;
  // Told on the first pass whatever the word says: what the frontend shows (a TAP's
  // carrier, which belongs to the device vswitchd holds) may be what a predecessor left.
  const std::string error = frontend_.set_link(!link_down_);
  if (link_down_) {
    // Frames held for a full peer were read before the link went down: they go no further.
    for (Peer& p : peers_)
      if (p.held_bytes != 0) {
        drop(DropReason::kLinkDown);
        release_hold(p);
      }
  }
  if (!first || link_down_ || predecessor_link_down_ || !error.empty())
    log(std::string(link_down_ ? "link set down (vswitchctl link): frames from and for this port are dropped as "
                                 "link_down"
                               : "link set up (vswitchctl link)") +
        (error.empty() ? "" : "; the frontend could not show it: " + error));
  publish_stats();  // vswitchctl link waits for the gauge to follow
}

void EndpointLoop::sync_counters() {
  frontend_.store_counters(counters_.frontend);
  counters_.loop.events_dropped = events_dropped_base_ + events_.dropped();
  counters_.drops = forwarder_.drops();
  counters_.mac = table_.counters();
  if (res_.capture != nullptr) {
    counters_.loop.captured = captured_base_ + res_.capture->captured_total();
    counters_.loop.capture_dropped = capture_dropped_base_ + res_.capture->dropped_total();
  }
}

void EndpointLoop::publish_stats(bool force_fdb) {
  sync_counters();
  const std::uint64_t t = now_ns();
  last_stats_ns_ = t;
  if (res_.stats == nullptr) return;
  res_.stats->write_counters(counters_);
  // Every entry added, removed or moved is published with the next counters; the period
  // refreshes the ages (and hides entries aged but not yet removed) while nothing changes.
  const std::uint64_t version = table_.changes();
  if (force_fdb || version != fdb_version_ || t - fdb_published_ns_ >= kFdbPeriodNs) {
    const auto entries = table_.entries(now_ms_);
    res_.stats->write_fdb(entries, table_.size());
    fdb_version_ = version;
    fdb_published_ns_ = t;
  }
}

// Returns false when stop_fd fired.
bool EndpointLoop::sleep(bool timed) {
  // Arm, then re-check: peek_or_arm() and reserve_or_arm() fence after setting their flag
  // and look once more, so a record or room that arrived just before the flag was seen
  // by the peer (or is seen here) and the sleep below cannot miss it.
  bool ready = false;
  const std::uint64_t now = now_ns();
  // While the frontend has no room (and its wait has not run out), inbound records are
  // not work: arming the channels would wake us for frames we cannot deliver. The
  // frontend's arm() wakes us for room; the timeout below for the end of the wait.
  // A timed sleep arms nothing for frames: the timer wakes us for whatever comes, and a
  // record that came since the last pass waits for it, which is the point.
  const bool waiting = delivery_waiting(now);
  if (!waiting && !timed)
    for (Peer& p : peers_)
      if (p.in.peek_or_arm().status != shm::Pop::kEmpty) ready = true;
  // A journaling endpoint releases only at a commit: a pad or a corrupt stretch the
  // arming peeks just skipped would keep its space from the sender while we sleep.
  if (journal_ && !ready && unreleased()) ready = true;
  // Free-send for every held frame: the peer rings our doorbell when it frees room.
  if (held_count_ != 0)
    for (Peer& p : peers_) {
      if (ready) break;
      if (p.held_bytes == 0) continue;
      shm::Reservation r = p.out.reserve_or_arm(static_cast<std::uint32_t>(p.held_bytes));
      if (r.status != shm::Reserve::kFull) ready = true;  // not committed: retry_held() copies it
    }
  // Free-send above is armed whatever the kind of sleep: room for a held frame is not a
  // frame to batch, and a hold has its own deadline. A timed sleep does not call the
  // frontend's arm() (a guest's kicks, room in its RX ring) but quiet(): the guest is
  // asked not to kick, and its frames are taken on the timer too.
  if (!ready && !timed && !frontend_.arm()) ready = true;
  if (!ready && timed) frontend_.quiet();
  if (ready) {
    for (Peer& p : peers_) p.in.disarm();
    return true;
  }
  std::int64_t timeout_ns = -1;
  auto due_by = [&](std::uint64_t deadline) {
    const auto left = deadline > now ? static_cast<std::int64_t>(deadline - now) : 0;
    if (timeout_ns < 0 || left < timeout_ns) timeout_ns = left;
  };
  if (auto due = frontend_.next_due_ns()) due_by(*due);
  if (held_count_ != 0)
    for (const Peer& p : peers_)
      if (p.held_bytes != 0) due_by(p.held_since_ns + hold_ns_);
  if (waiting) due_by(deferred_since_ns_ + stall_timeout_ns_);
  if (timed) {
    due_by(now + coalescing_.coalesce_ns());
    coalescing_.slept_timed();
    ++counters_.loop.timed_sleeps;
  }
  publish_stats();
  ++counters_.loop.sleeps;
  epoll_event events[4];
  int timeout_ms = -1;
  if (timeout_ns >= 0) timeout_ms = static_cast<int>((timeout_ns + 999'999) / 1'000'000);
  // The heartbeat vswitchd's watchdog reads is this loop's passes and sleeps. An idle
  // endpoint sleeps until woken: the watchdog rings its doorbell after half a timeout
  // without a move (Daemon::watch), and the pass that wakes it moves the heartbeat.
  int n;
  const std::uint64_t slept_from = now_ns();
  do {
    if (timed && precise_timeouts_) {
      // A timed sleep is tens of microseconds: epoll_wait's milliseconds would make it 1 ms.
      const timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
                        static_cast<long>(timeout_ns % 1'000'000'000)};
      n = ::epoll_pwait2(epoll_.get(), events, 4, &ts, nullptr);
      // A kernel before 5.11 (ENOSYS), or a container's filter that refuses the call
      // (EPERM): sleep on milliseconds from now on (coalescing still batches, over a
      // millisecond at least).
      if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
        precise_timeouts_ = false;
        n = -1;
        errno = EINTR;
      }
    } else {
      n = ::epoll_wait(epoll_.get(), events, 4, timeout_ms);
    }
  } while (n < 0 && errno == EINTR);
  // A timed sleep's length says nothing about how soon a wake-up would have come.
  if (!timed) poll_.slept(now_ns() - slept_from);
  // A failing epoll_wait would fail again at once: stop rather than spin.
  if (n < 0) fatal_ = sys::SysError{timed && precise_timeouts_ ? "epoll_pwait2" : "epoll_wait", errno}.message();
  bool stop = !fatal_.empty();
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == res_.doorbell_fd) {
      // Only this endpoint reads its doorbell (its peers hold only the write end), and
      // epoll said readable: the read returns at once. A doorbell that cannot be read
      // would wake us forever: stop.
      if (auto d = shm::drain_doorbell(res_.doorbell_fd); !d) {
        fatal_ = "doorbell: " + d.error().message();
        stop = true;
      }
    }
    if (events[i].data.fd == res_.stop_fd) stop = true;
  }
  for (Peer& p : peers_) p.in.disarm();
  return !stop;
}

sys::Status<std::string> EndpointLoop::run() {
  std::uint64_t idle_since = 0;  // when the current spin began
  std::uint64_t ran_out = 0;     // when the loop last ran out of work (spins and sleeps since)
  std::uint64_t last_stop_check = 0;
  if (!fatal_.empty()) return sys::Unexpected(fatal_);  // the constructor could not set up
  publish_stats(true);
  bool stopped = !wait_until_announced();
  for (; !stopped;) {
    if (poll_once()) {
      idle_since = 0;
      if (ran_out != 0) {
        coalescing_.worked(now_ns() - ran_out);
        ran_out = 0;
      }
      // A loop that never runs out of work (a generator at full rate) never sleeps in
      // epoll: look at the stop descriptor every 10 ms instead.
      if (const std::uint64_t t = now_ns(); t - last_stop_check >= kStatsPeriodNs) {
        last_stop_check = t;
        pollfd pfd{res_.stop_fd, static_cast<short>(POLLIN), 0};
        if (res_.stop_fd >= 0 && ::poll(&pfd, 1, 0) > 0) break;
      }
      continue;
    }
    if (ran_out == 0 && coalescing_.coalesce_ns() != 0) ran_out = now_ns();
    // A dense flow: take the next batch on the timer, without spinning for it.
    const bool timed = coalescing_.timed();
    if (const std::uint64_t poll_ns = poll_.window_ns(); poll_ns != 0 && !timed) {  // stay awake a little after the last work
      const std::uint64_t t = now_ns();
      if (idle_since == 0) idle_since = t;
      if (t - idle_since < poll_ns) continue;
    }
    idle_since = 0;
    if (!sleep(timed)) break;
  }
  for (Peer& p : peers_) {  // read from the frontend, never delivered: say so
    if (p.held_bytes == 0) continue;
    release_hold(p);
    drop(DropReason::kEndpointStopped);
  }
  for (Peer& p : peers_) p.out.publish();
  publish_stats(true);
  if (!fatal_.empty()) return sys::Unexpected(fatal_);
  return {};
}

}  // namespace vswitch
