// Endpoint: one switch port's run loop. One process (or, in tests, one thread) per
// endpoint, pinned to its core. It owns its frontend, its MAC table and its side of every
// channel it touches: the producer side of self -> peer, the consumer side of peer -> self.
//
// One pass of the loop:
//   1. frames held back by backpressure (at most one per peer) are retried first; one
//      that has waited longer than the hold (a few ms) is dropped and counted;
//   2. inbound: each peer's channel is drained up to kInboundBudget records, starting at a
//      different peer each pass (round robin: no peer starves another); every record's
//      virtio-net header is validated, its source learned, and the frame delivered to the
//      frontend. A frontend that cannot take a frame now (kRetryLater: a guest with no RX
//      buffer) leaves it in its channel and the channels wait, but only for the stall
//      timeout: past it, what the frontend refuses is dropped and counted until it takes a
//      frame again, so its channels keep moving;
//   3. outbound: up to kFrontendBudget frames are read from the frontend and forwarded.
//      A unicast frame whose channel is full is held for that peer alone, and the frontend
//      is read on: frames for other peers keep flowing. Later frames for a peer whose frame
//      is still held are dropped and counted (peer_full), never queued behind it, so one
//      peer's flow is never reordered and its backlog is bounded by its channel plus one
//      frame. A held frame that finds no room within the hold is dropped too. A peer whose
//      channel has had no room for any frame of ours for the stall timeout counts as
//      stalled: everything for it is dropped without trying until it has freed half its
//      channel. A flooded copy to a full channel is dropped and counted; flooding never
//      holds anything;
//   4. nothing done: spin for the poll window (poll_us, or longer while recent sleeps
//      were short: vswitch/dataplane/poll_window.hpp), then arm every inbound channel
//      (peek_or_arm re-checks after its fence) and the channel of every held frame
//      (reserve_or_arm, free-send), and sleep in epoll on the doorbell, the frontend's
//      descriptor and the stop descriptor, with a timeout only when something is due
//      (generator pacing, a hold running out, the end of a frontend's wait). While a
//      flow is dense and coalesce_us is set, the loop instead sleeps coalesce_us on a
//      timer without spinning or arming for frames (vswitch/dataplane/wake_coalescing.hpp).
// An idle endpoint therefore makes no system calls at all.
//
// Every frame read from the frontend (rx) and delivered to it (tx) is also copied to the
// endpoint's capture ring while `vswitchctl capture` asks for it; while nobody does, that
// costs one load per pass and a test per frame (vswitch/observability/capture.hpp).
#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "endpoints/virtio/net_header.hpp"
#include "shm/doorbell.hpp"
#include "shm/fabric.hpp"
#include "shm/frame_ring.hpp"
#include "shm/sys/fd.hpp"
#include "vswitch/observability/capture.hpp"
#include "vswitch/observability/event_log.hpp"
#include "vswitch/dataplane/delivery_journal.hpp"
#include "vswitch/dataplane/forwarding.hpp"
#include "vswitch/dataplane/mac_table.hpp"
#include "vswitch/dataplane/poll_window.hpp"
#include "vswitch/dataplane/wake_coalescing.hpp"
#include "vswitch/observability/stats.hpp"
#include "vswitch/config/topology.hpp"

namespace vswitch {

// A frame's first 12 bytes, its destination and source addresses, in a private copy.
using FrameAddresses = std::span<const std::byte, 12>;

// What the run loop needs from a frontend (TAP, vhost-user VM, generator).
class Frontend {
 public:
  virtual ~Frontend() = default;

  enum class Rx : std::uint8_t {
    kFrame,
    kNone,
    kError,
    kTooLarge,  // a frame longer than `buf` was taken and thrown away (the loop counts it)
  };
  struct RxResult {
    Rx status;
    std::size_t bytes = 0;  // kFrame: record bytes (12-byte virtio-net header + frame), <= buf.size()
  };
  // A descriptor that is readable when receive() may have frames, or -1.
  [[nodiscard]] virtual int fd() const noexcept = 0;
  // One frame with its virtio-net header into `buf` (which holds the largest record).
  virtual RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept = 0;
  // When receive() next has a frame without fd() becoming readable (pacing), if ever.
  [[nodiscard]] virtual std::optional<std::uint64_t> next_due_ns() const noexcept { return std::nullopt; }
  enum class Delivery : std::uint8_t {
    kDelivered,
    kRefused,     // dropped: the frontend failed (the loop counts it as frontend_error)
    kRetryLater,  // cannot take it now (a guest with no RX buffer): leave it in the channel
    kNoGuest,     // dropped: no guest attached / its receive queue is not running
    kTooLarge,    // dropped: the guest's receive buffers can never hold this frame
    kUnsupported, // dropped: an offload the receiver lacks that cannot be done in software
    kMtuExceeded, // dropped: longer than the MTU the frontend's own side set (a guest's
                  // VIRTIO_NET_F_MTU), and not GSO
  };
  // Delivers a frame from peer `from` with its validated header; `frame` lies in shared
  // memory and may change under us: read it once. `addresses` are its first 12 bytes
  // (destination, source) as the loop read and checked them (a source refused for a port
  // is refused on these): the frontend delivers these in their place, never the
  // channel's, which the peer may have rewritten since. `resume` is the frontend's own note of
  // how far it got with this frame: 0 before the first try; the loop keeps it with the
  // record while the record waits (kRetryLater) and hands it back on every retry, so a
  // frontend that delivers a frame in parts never repeats one.
  virtual Delivery deliver(const endpoints::virtio::CheckedNetHeader& header, std::span<const std::byte> frame,
                           FrameAddresses addresses, PortId from, std::uint64_t& resume) noexcept = 0;
  // Whether deliver() may answer kRetryLater (the loop then peeks before it consumes).
  [[nodiscard]] virtual bool may_defer_delivery() const noexcept { return false; }
  // Once per loop pass, after receiving and delivering: publish batched completions and
  // notify the other side (a VM's interrupt), if the frontend batches them.
  virtual void flush() noexcept {}
  // Before the loop publishes its counters (every 10 ms while busy, before each sleep):
  // store the frontend's own counter block (vswitch/observability/endpoint_counters.hpp) in its area.
  // Off the per-pass path. A frontend that keeps no counters leaves the area as it is.
  virtual void store_counters(FrontendCounterArea& area) const noexcept { (void)area; }
  // Just before the loop sleeps: re-arm the frontend's own notifications (with the
  // fence-and-recheck), including "room to deliver again" after a kRetryLater. Returns
  // false when work (or room) arrived meanwhile: do not sleep.
  virtual bool arm() noexcept { return true; }
  // Just before the loop sleeps on its coalescing timer instead (arm() is not called):
  // ask the other side not to notify for new frames, where it notifies unless told not
  // to (a guest without VIRTIO_F_EVENT_IDX kicks for every batch until told otherwise);
  // the next arm() asks again.
  virtual void quiet() noexcept {}
  // Once at the start of every loop pass, before anything else touches the frontend: a
  // frontend that looks at its control side once per pass does it here (a vhost-user
  // device: its front-end's messages and kicks), so that what it learns there (a guest's
  // queue starting) never happens in the middle of a pass.
  virtual void begin_pass() noexcept {}
  // Deliveries a crash must neither lose nor repeat (vswitch/dataplane/delivery_journal.hpp).
  // Whether deliver() stages frames behind a commit point the frontend publishes (a
  // guest's used index, which its front-end restarts from after a reconnect); if so, the
  // loop keeps its channels' space until that point is published.
  [[nodiscard]] virtual bool journals_deliveries() const noexcept { return false; }
  // The commit point as the next commit_deliveries() will publish it (nothing while no
  // guest queue runs).
  [[nodiscard]] virtual std::optional<std::uint16_t> delivery_mark() noexcept { return std::nullopt; }
  // Publishes what deliver() has staged, nothing else (flush() still notifies).
  virtual void commit_deliveries() noexcept {}
  // Once after each (re)start of the guest's receive queue, in the pass that begins after
  // it: the commit point it starts from.
  virtual std::optional<std::uint16_t> take_delivery_restart() noexcept { return std::nullopt; }
  // The port's administrative link state (vswitchctl link), when it changes, and once at
  // start when it is down: the frontend shows it to its own side (a TAP's carrier, a VM's
  // link) and, while down, takes nothing in (whatever it still hands over is dropped as
  // link_down). An error for the log ("" when done or nothing to do).
  virtual std::string set_link(bool up) noexcept {
    (void)up;
    return {};
  }
};

struct EndpointResources {
  const Topology* topology = nullptr;
  std::size_t self = 0;
  const shm::Fabric* fabric = nullptr;        // maps at least this endpoint's channels
  std::span<shm::Doorbell* const> doorbells;  // one per endpoint, index = endpoint
  int doorbell_fd = -1;                       // the read end of this endpoint's own doorbell
  StatsSlice* stats = nullptr;                // optional: this endpoint's own stats slice
  CaptureWriter* capture = nullptr;           // optional: its capture object ([capture] off: none)
  int stop_fd = -1;                           // readable: leave run() (e.g. a signalfd)
  // The port was disabled until this start (a reload set enabled = true): what its
  // channels hold was sent to it while it was off (dropped as port_disabled), and there
  // is no predecessor to continue (no delivery journal to settle).
  bool fresh = false;
  // How long a fresh port waits, at most, for vswitchd to say every peer knows it is on
  // before it reads its frontend anyway (EndpointLoop::wait_until_announced).
  std::uint64_t announce_wait_ns = 200'000'000;
};

inline constexpr std::size_t kInboundBudget = 64;    // records per peer per pass
inline constexpr std::size_t kFrontendBudget = 64;   // frontend frames per pass
// The timer slack of a loop that coalesces wake-ups (prctl PR_SET_TIMERSLACK).
inline constexpr unsigned long kCoalesceTimerSlackNs = 1'000;

class EndpointLoop {
 public:
  // The loop's, the forwarder's and the MAC table's counters start from `initial` (a
  // restarted endpoint continues its predecessor's totals); the frontend was given its
  // own block when it was made.
  EndpointLoop(const EndpointResources& resources, Frontend& frontend, const EndpointCounters& initial = {});
  EndpointLoop(const EndpointLoop&) = delete;
  EndpointLoop& operator=(const EndpointLoop&) = delete;

  // Runs until stop_fd is readable; returns an error message if the loop cannot go on
  // (its epoll set or its doorbell failed; the daemon restarts the endpoint).
  [[nodiscard]] sys::Status<std::string> run();
  // One pass without sleeping (tests). Returns whether it did any work.
  bool poll_once();

  [[nodiscard]] const MacTable& mac_table() const noexcept { return table_; }
  [[nodiscard]] EventLog& events() noexcept { return events_; }
  [[nodiscard]] const PollWindow& poll_window() const noexcept { return poll_; }
  [[nodiscard]] const WakeCoalescing& wake_coalescing() const noexcept { return coalescing_; }
  // Copies counters (and the FDB when it changed) to its stats slice, if any.
  void publish_stats(bool force_fdb = false);
  // Drops (as port_disabled) every record waiting in the inbound channels now, and gives
  // the space back: a port turned off (its own bit in peers_disabled) does this as it
  // stops, and again when it is turned on (EndpointResources::fresh). Returns how many.
  std::uint64_t discard_inbound();

 private:
  struct Peer {
    PortId port;
    shm::FrameProducer out;  // self -> port
    shm::FrameConsumer in;   // port -> self
    bool stalled = false;
    std::uint64_t resume = 0;  // the frontend's note on the record waiting at the head of `in`
    // A unicast frame waiting for room in `out` (held_bytes 0: none). Sized on first use.
    std::vector<std::byte> held{};
    std::size_t held_bytes = 0;
    std::uint64_t held_since_ns = 0;
    // When `out` was first found full with nothing committed to it since (0: not full).
    std::uint64_t full_since_ns = 0;
    // `out` was found full this pass: after publishing, ring the peer if it sleeps on a
    // coalescing timer (it asked for that in the ring: wake_on_full).
    bool found_full = false;
  };

  // Where pump_frontend() read a frame: into a reservation in `peer`'s channel (the peer
  // the last unicast frame went to), or into staging_.
  struct Target {
    Peer* peer = nullptr;
    bool reserved = false;
  };
  bool drain_inbound();
  bool pump_frontend();
  // The delivery journal (journal_ set: the frontend journals its deliveries). Commit:
  // journal the mark and every channel's consumed tail, have the frontend publish the
  // mark, release the channels (delivery_journal.hpp, steps 1-3).
  void commit_deliveries();
  // At the start of a pass: the guest's receive queue (re)started; if it starts where the
  // predecessor's last journaled commit put it, the channels skip to that commit's tails.
  void settle_deliveries();
  void journal_settled(std::uint16_t start);
  // Some channel's tail moved (records, pads, a resync) and was not released yet.
  [[nodiscard]] bool unreleased() const noexcept;
  // Sends a frontend record to one peer; a full channel holds it or drops it (counted).
  void unicast(PortId port, std::span<const std::byte> record, const Target& target, std::uint16_t vlan);
  // Copies a frontend record to every peer; a full channel drops its copy (counted).
  void flood(std::span<const std::byte> record, const Target& target, std::uint16_t vlan);
  // The VLAN of a frame a VLAN-aware port's frontend sent (see EndpointConfig): its
  // tag's VID (the tag then taken out of the record in place, the header's offsets moved
  // to match) or the port's untagged VLAN. Nothing when the port does not carry that
  // VLAN (or the header cannot be moved): the caller drops the frame with the reason
  // given. (A VLAN-unaware port's frames are in VLAN 0, untouched.)
  [[nodiscard]] sys::Result<std::uint16_t, DropReason> ingress_vlan(std::span<std::byte>& record) noexcept;
  // Whether a record the frontend handed over breaks the port's MTU (see exceeds_mtu in
  // endpoint.cpp); its header is read once.
  [[nodiscard]] bool mtu_exceeded_on_read(std::span<const std::byte> record) const noexcept;
  // A peer's frame of a VLAN this port carries tagged, with the VLAN's tag put in: built
  // in egress_ with the header's offsets moved and checked again. Nothing (`refused`
  // says why) when it cannot be. Only the frames of VLAN 0 (VLAN-unaware ports) go as
  // they lie in the channel.
  struct Egress {
    endpoints::virtio::CheckedNetHeader header;
    std::span<const std::byte> frame;
  };
  // A peer's frame of this port's untagged VLAN (VLAN-aware ports only), copied into
  // egress_ (mtu_checked_copy) and checked there for a tag inside. Nothing (`refused`
  // says why) when it has one or breaks the MTU.
  [[nodiscard]] std::optional<Egress> untagged_copy(const endpoints::virtio::CheckedNetHeader& header,
                                                    std::span<const std::byte> frame, DropReason& refused) noexcept;
  // Whether this port's MTU check on a VLAN-unaware frame turned on the tag in it (the
  // frame, or its GSO segment, is longer than an untagged one may be but no longer than a
  // tagged one): the check must then be made again on a private copy.
  [[nodiscard]] bool mtu_depends_on_tag(const endpoints::virtio::CheckedNetHeader& header,
                                        std::size_t frame_bytes) const noexcept;
  // A frame copied into egress_, held to the MTU there, and delivered from the copy.
  // Nothing (`refused` says why) when the copy breaks the MTU.
  [[nodiscard]] std::optional<Egress> mtu_checked_copy(const endpoints::virtio::CheckedNetHeader& header,
                                                       std::span<const std::byte> frame, DropReason& refused) noexcept;
  [[nodiscard]] std::optional<Egress> tag_for_trunk(const endpoints::virtio::CheckedNetHeader& header,
                                                    std::span<const std::byte> frame, std::uint16_t vlan,
                                                    DropReason& refused) noexcept;
  // Takes the administrative link state asked for in the stats slice: on the first pass,
  // then whenever it changed; tells the frontend (and logs a change). While down, every
  // frame read from the frontend, held for a peer, or for it is dropped as link_down.
  void follow_link();
  // Takes the disabled ports (StatsSliceHeader::peers_disabled) when they changed: a port
  // turned off gets nothing from here on (no flood copy; unicast to it, a frame held for
  // it, and what it still sends are dropped as port_disabled), and what was learned
  // behind it is forgotten; one turned on is a peer again.
  void follow_peers(std::uint64_t disabled);
  // Takes the VLANs and address of each peer from the slice (StatsSlice::read_port_table),
  // which vswitchd rewrites when a reload changes a port's vlan, trunk or mac, or gives a
  // port to an endpoint added or takes it from one removed: a peer's new VLANs decide from
  // then on what is sent to it and taken from it; what was learned behind it is forgotten
  // and its static address moves to its new VLANs (or is replaced). False when the table
  // was being rewritten as it was read (nothing taken: the caller tries again next pass).
  [[nodiscard]] bool follow_ports();
  // "peer NAME" for a log line; "port N" once the port may be held by another endpoint
  // than this process's topology names (it was, or became, spare).
  [[nodiscard]] std::string port_label(std::size_t i) const;
  // Whether frontend frames may be read straight into a peer's reservation: only while
  // this port can reach one peer at most (vlans_).
  void choose_read_into_channel();
  [[nodiscard]] bool port_disabled(PortId port) const noexcept { return ((peers_disabled_ >> port) & 1) != 0; }
  // What a port this endpoint believes off still has in its channel: dropped
  // (port_disabled), but for a record that may be the first of the port's new run (the
  // port was turned on since this pass began), which waits for the next pass. True when
  // the channel held anything.
  bool drain_from_disabled(Peer& p);
  // A port turned on (EndpointResources::fresh), before run()'s loop: passes that read no
  // frontend, sleeping on the doorbell and the stop descriptor in between, until its own
  // bit is clear in its slice (announced_) or announce_wait_ns has passed. False: stopped
  // (or failed: fatal_) meanwhile.
  bool wait_until_announced();
  // Drops (port_disabled) the records of p's channel from its tail up to position
  // `up_to` (~0: every record in it now); returns how many.
  std::uint64_t discard_from(Peer& p, std::uint64_t up_to);
  // The channels of peers follow_peers saw turned off or on: what they hold from a run
  // that is over is dropped (discard_from). At the start of a pass, once the delivery
  // journal has settled.
  void settle_peers();
  // Retries every held frame; drops those whose hold ran out.
  bool retry_held();
  // Sends p's held frame if there is room now; true when nothing is held any more.
  bool flush_held(Peer& p);
  // Keeps a record for p, whose channel is full (or finds p stalled and drops it).
  void hold(Peer& p, std::span<const std::byte> record);
  void release_hold(Peer& p);
  // A stalled peer is taken back once half its channel is free; false while it is not.
  bool readmit(Peer& p);
  void stall(Peer& p);
  // Returns false when the frontend said kRetryLater: the record stays in its channel.
  bool deliver_record(Peer& p, std::span<const std::byte> record);
  // Copies a record into p's channel; false when the channel is full.
  bool send_copy(Peer& p, std::span<const std::byte> record);
  void committed(Peer& p, std::size_t record_bytes);
  void peer_up(Peer& p);
  void drop(DropReason r, std::uint64_t n = 1) noexcept { forwarder_.drops().count(r, n); }
  Peer* peer_for(PortId port) noexcept;
  [[nodiscard]] std::uint64_t now_ns() const noexcept;
  void sync_counters();
  // Sleeps until woken (every inbound channel and the frontend armed) or, `timed`, for
  // the coalescing period without asking anyone to wake it for frames.
  bool sleep(bool timed);
  void log(const std::string& message);

  EndpointResources res_;
  Frontend& frontend_;
  const EndpointConfig& config_;
  std::uint32_t max_payload_;
  std::uint32_t frame_limit_;     // the port's MTU as a tagged frame's length (EndpointConfig::frame_limit())
  std::uint32_t untagged_limit_;  // ... and as an untagged frame's (4 bytes less); no mtu: no limit
  std::uint64_t stall_timeout_ns_;
  MacTable table_;
  Forwarder forwarder_;
  std::vector<Peer> peers_;
  std::vector<std::size_t> peer_index_;  // endpoint index -> peers_ index (or npos)
  std::vector<std::byte> staging_;       // a frontend frame that has no ring record
  // VLANs. In a channel a frame of a VLAN is untagged, its VID in the record header's
  // num_buffers field (which only a device writes, on its way to a driver); VLAN 0 is the
  // VLAN-unaware ports' domain, whose frames pass as they are.
  static constexpr std::size_t kVlanIds = kVlanIdCount;
  bool vlan_aware_;
  std::uint16_t untagged_vlan_;  // 0: none (a trunk without a native VLAN)
  std::vector<VlanSet> vlans_;   // by port: the VLANs it carries (bit 0: unaware; vlan_set)
  std::vector<std::optional<MacAddress>> macs_;  // by port: its declared address (static here)
  std::vector<bool> relabelled_;  // by port: held by another endpoint than the topology's (port_label)
  std::vector<std::byte> egress_;             // a peer's frame with its VLAN's tag put in
  bool read_into_channel_ = false;  // frontend frames may be read into a peer's reservation (pump_frontend)
  EndpointCounters counters_{};  // traffic, forwarding, loop, peers kept here; the rest copied in
  std::size_t next_inbound_ = 0;
  Peer* last_unicast_ = nullptr;
  // How long a held frame waits for room before it is dropped: a few ms (a switch port's
  // queue drains in that time or not at all), never longer than the stall timeout.
  std::uint64_t hold_ns_;
  std::size_t held_count_ = 0;  // peers with a held frame
  std::uint64_t pass_ns_ = 0;   // the clock at the start of this pass
  std::uint64_t now_ms_ = 0;
  std::uint32_t capture_directions_ = 0;  // what a capture asked for at the start of this pass
  bool link_down_ = false;  // the administrative link state the frontend was last told (follow_link)
  bool link_known_ = false;  // follow_link ran (on the first pass, whatever the word says)
  bool predecessor_link_down_ = false;  // the restarted endpoint's predecessor had its link down
  std::uint64_t peers_disabled_ = 0;  // bit i: port i is disabled (follow_peers); never this port's own bit
  bool peers_known_ = false;          // follow_peers ran (on the first pass)
  std::uint64_t peers_to_discard_ = 0;  // settle_peers: turned off, drop everything of theirs
  std::uint64_t peers_to_fence_ = 0;    // settle_peers: on, drop what precedes their stale_to
  std::uint64_t fence_seq_ = 0;         // the slice's fence_seq when last seen
  // A port turned on (EndpointResources::fresh) reads its frontend once its own bit is
  // clear in its slice (every peer told), or after announce_wait_ns whatever the bit says.
  bool announced_ = true;
  std::uint64_t started_ns_ = 0;
  std::uint64_t mask_fence_ = 0;  // the fence_seq the peers_disabled_ in force was loaded after
  std::uint64_t last_stats_ns_ = 0;
  std::uint64_t last_sweep_ms_ = 0;
  std::uint64_t fdb_version_ = ~std::uint64_t{0};  // table_.changes() at the last FDB publish
  std::uint64_t fdb_published_ns_ = 0;
  sys::Fd epoll_;
  std::string fatal_;  // a system call the loop cannot go on without failed: run() returns it
  // The frontend could not take the frame at the head of a channel (since
  // deferred_since_ns_): inbound channels are neither drained nor armed until it has room
  // (its arm() asks to be woken for that), or until the stall timeout has passed: from
  // then on what it refuses is dropped (guest_not_ready), until it takes a frame again.
  // The wait also ends with a pass that refuses nothing: the refused record is gone (its
  // channel resynchronised past it), and the next refusal starts a wait of its own.
  bool delivery_deferred_ = false;
  std::uint64_t deferred_since_ns_ = 0;
  bool delivery_shedding_ = false;  // past the wait: logged once, until a frame is taken
  // Deferred, and still within the stall timeout: the channels wait for the frontend.
  [[nodiscard]] bool delivery_waiting(std::uint64_t now) const noexcept {
    return delivery_deferred_ && now - deferred_since_ns_ < stall_timeout_ns_;
  }
  std::optional<DeliveryJournal> journal_;        // in the stats slice; only for a journaling frontend
  std::optional<DeliveryMark> predecessor_mark_;  // the last commit the predecessor journaled, until settled
  PollWindow poll_;
  WakeCoalescing coalescing_;
  bool precise_timeouts_ = true;  // epoll_pwait2 (Linux 5.11) works here
  std::uint64_t events_dropped_base_;  // event log messages lost by earlier incarnations
  std::uint64_t captured_base_;        // frames earlier incarnations copied to a capture
  std::uint64_t capture_dropped_base_;
  EventLog events_;  // last: its writer thread starts after everything it could report on
};

}  // namespace vswitch
