// Stats: where vswitchd publishes each endpoint's state, where every endpoint publishes its
// counters and MAC table, and where vswitchctl reads them without stopping or slowing
// anything. One shm object per writer, all created by vswitchd:
//
//   "/vswitch.<switch>.stats"             the daemon's object (RegionKind::kStats)
//     StatsHeader                         endpoint count, FDB capacity, daemon pid
//     DaemonState[endpoints]              one per endpoint: state, pid, restarts...
//   "/vswitch.<switch>.stats.<endpoint>"  one slice per endpoint (RegionKind::kStatsSlice)
//     StatsSliceHeader                    slice magic and version, endpoint index, FDB capacity
//     EndpointCounters                    its counters (their loop words are the watchdog's heartbeat)
//     FDB snapshot                        seqlock, table size, entry count, entries
//
// Endpoints are hostile to each other and to the daemon: an endpoint process maps only its
// own slice (StatsSlice::attach in the endpoint program; StatsRegion::keep_only in a
// process that inherited the whole region by fork), so it can write its own
// counters, heartbeat and FDB, and nothing of another endpoint's or of the daemon's. Every
// object's region header carries the switch's generation, so a reader never pairs the
// daemon's object with a slice of another run.
//
// Every word is a 64-bit integer accessed through std::atomic_ref with relaxed order:
// counters are independent monotonic values, and a reader that sees one a little older
// than another is fine. The one place that needs a consistent set, the FDB snapshot, is
// a seqlock (ordering at StatsSlice::write_fdb / read_fdb). Each object becomes visible
// with its region's magic ([R0] in shm/region.cpp, acquired by [A0] at attach), and the
// daemon publishes its own object after every slice, so a reader that finds the daemon's
// object finds every slice ready.
//
// Writers: vswitchd writes only the daemon's object; an endpoint process writes only its
// own slice. A reader treats every slice as hostile (its endpoint may write anything
// into it, its headers included): attach validates the slice's headers and size once,
// and every count read later is bounded by what attach validated.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "shm/region.hpp"
#include "shm/sys/result.hpp"
#include "vswitch/config/topology.hpp"
#include "vswitch/observability/endpoint_counters.hpp"
#include "vswitch/observability/mac_table_counters.hpp"

namespace vswitch {

// The FDB snapshot holds at most this many entries per endpoint (larger tables show their
// first entries and the true size).
inline constexpr std::uint32_t kMaxFdbSnapshot = 65536;

// kDisabled: the topology says enabled = false: no process, no TAP or socket, and the
// other ports send it nothing (StatsSliceHeader::peers_disabled).
enum class EndpointState : std::uint64_t { kDown = 0, kStarting = 1, kUp = 2, kStopped = 3, kDisabled = 4 };
std::string_view to_string(EndpointState s);

// Written by vswitchd.
struct DaemonState {
  std::uint64_t state;        // EndpointState
  std::uint64_t pid;
  std::uint64_t restarts;     // times the endpoint was started again after dying
  std::uint64_t core;         // pinned core, or ~0 when not pinned
  std::uint64_t last_exit;    // wait status of the last exit (0 if none)
  std::uint64_t started_unix_ms;
  std::uint64_t hung;         // of the restarts: times the watchdog killed it as hung
  // Times a reload gave the port to an endpoint added: a capture that began before the
  // count moved is on another endpoint's port (vswitchctl capture stops).
  std::uint64_t holder;
};
static_assert(sizeof(DaemonState) % 8 == 0 && std::is_trivially_copyable_v<DaemonState>);

// The start of the daemon's object.
struct StatsHeader {
  std::uint64_t endpoints;
  std::uint64_t fdb_capacity;  // entries per FDB snapshot, the same in every slice
  std::uint64_t daemon_pid;
  std::uint64_t reloads;            // reloads begun (SIGHUP, vswitchctl reload), whatever came of them
  std::uint64_t reload_outcome;     // ReloadOutcome of the last one (kRunning until it ends)
  std::uint64_t reload_restarted;   // the last one's restarted endpoints, bit i: endpoint i
  std::uint64_t reload_changes;     // the last one's changes (applied or refused)
  std::uint64_t reload_seq;         // the seqlock over the report's words (see publish_reload)
  std::uint64_t reload_turned_on;   // the last one's ports turned on (enabled), bit i: endpoint i
  std::uint64_t reload_turned_off;  // ... and turned off
};

enum class ReloadOutcome : std::uint64_t {
  kNone = 0,       // no reload yet
  kUnchanged = 1,  // the file says what runs
  kApplied = 2,    // endpoint settings changed: those endpoints restarted on the new file
  kInvalid = 3,    // the file does not load: nothing applied
  kRefused = 4,    // a change needs a restart of vswitchd: nothing applied
  kFailed = 5,     // applying failed (said in the log): nothing applied
  kRunning = 6,    // begun, not ended: the words of its outcome come with the same count
};
struct ReloadReport {
  std::uint64_t reloads = 0;
  ReloadOutcome outcome = ReloadOutcome::kNone;
  std::uint64_t restarted = 0;   // endpoints restarted on new settings or turned on, bit i: endpoint i
  std::uint64_t changes = 0;
  std::uint64_t turned_on = 0;   // of `restarted`: the ports it turned on
  std::uint64_t turned_off = 0;  // the ports it turned off (stopped, not restarted)
};
static_assert(sizeof(StatsHeader) % 8 == 0);

inline constexpr std::uint64_t kStatsSliceMagic = 0x3143494c53535356ULL;  // "VSSSLIC1" little-endian
// 2: the loop block counts captures; 3: 32 drop slots; 4: the link word, the loop's link_down; 5: timed_sleeps;
// 6: the vhost-user block's reconnect_waits and attached; 7: the delivery journal; 8: peers_disabled, stale_to;
// 9: the ports' VLANs; 10: the ports' addresses; 11: the MAC block's evicted_for_static
inline constexpr std::uint64_t kStatsSliceVersion = 11;

// The port table in a slice, after the stale_to words: a seqlock word, then for each
// possible port its VlanSet as kVlanWords words (bit v of word v / 64: VID v), then one
// word per possible port for its address (kPortMacPresent | MacAddress::bits; 0: none).
inline constexpr std::size_t kVlanWords = kVlanIdCount / 64;
inline constexpr std::size_t kPortTableWords = 1 + kMaxEndpoints * kVlanWords + kMaxEndpoints;
inline constexpr std::uint64_t kPortMacPresent = std::uint64_t{1} << 63;

enum class PortTableRead : std::uint8_t {
  kNone,  // vswitchd never wrote the table (only a test's slice): the topology's VLANs stand
  kTorn,  // a write overlapped the read: nothing taken
  kRead,
};

// Words at the end of each slice that the endpoint keeps its delivery journal in
// (vswitch/dataplane/delivery_journal.hpp): two slots of a sequence word, a mark word and
// one word per possible peer.
inline constexpr std::size_t kDeliveryJournalWords = 2 * (2 + kMaxEndpoints);

// The start of an endpoint's slice. Written once by vswitchd before the slice is
// published; validated by every reader that attaches (the endpoint could have changed it).
// Except admin_link: the port's administrative link state, written by `vswitchctl link`
// (root: the slice is vswitchd's, mode 0600) and read by the endpoint once per loop pass.
// It lives as long as the slice, so a restarted endpoint finds it; vswitchd makes it 0 (up).
// And peers_disabled: bit i set while endpoint i is disabled (enabled = false, applied by
// a reload), written by vswitchd into every slice before it starts or after it stops
// anything, read by the endpoint once per loop pass: it sends a disabled port nothing.
struct StatsSliceHeader {
  std::uint64_t magic;           // kStatsSliceMagic
  std::uint64_t version;         // kStatsSliceVersion
  std::uint64_t endpoint;        // the endpoint's index in the topology
  std::uint64_t fdb_capacity;    // entries in the FDB snapshot after the counters
  std::uint64_t admin_link;      // kAdminLinkUp or kAdminLinkDown
  std::uint64_t peers_disabled;  // bit i: endpoint i is disabled (kMaxEndpoints <= 64)
  std::uint64_t fence_seq;       // bumped by vswitchd after it wrote stale_to words (StatsSlice::stale_to)
  std::uint64_t reserved[1];
};
static_assert(kMaxEndpoints <= 64, "peers_disabled holds one bit per endpoint");
inline constexpr std::uint64_t kAdminLinkUp = 0;
inline constexpr std::uint64_t kAdminLinkDown = 1;
static_assert(sizeof(StatsSliceHeader) % 8 == 0);

struct FdbView {
  std::vector<MacEntry> entries;
  std::uint64_t table_size = 0;  // entries in the table (may exceed entries.size())
};

// One endpoint's slice: its counters and its FDB snapshot. An endpoint process holds only
// this (StatsSlice::attach); vswitchd and vswitchctl hold every slice in a StatsRegion.
class StatsSlice {
 public:
  // "/vswitch.<switch>.stats.<endpoint>"
  [[nodiscard]] static std::string object_name(const std::string& switch_name, const std::string& endpoint_name);
  [[nodiscard]] static std::uint64_t bytes_for(std::uint32_t fdb_capacity);

  // Creates and publishes endpoint `endpoint`'s slice, zeroed; this object owns the name
  // (unlinks it when destroyed) until disown().
  [[nodiscard]] static sys::Result<StatsSlice, std::string> create(const std::string& switch_name,
                                                                   const std::string& endpoint_name,
                                                                   std::size_t endpoint, std::uint32_t fdb_capacity,
                                                                   std::uint64_t generation);
  // Attaches a slice after validating its region header (kind, generation) and its slice
  // header against what the caller expects: the endpoint's index, the FDB capacity the
  // daemon's object names, and the size those imply. Fails with a message naming the
  // object and what is wrong.
  [[nodiscard]] static sys::Result<StatsSlice, std::string> attach(const std::string& switch_name,
                                                                   const std::string& endpoint_name,
                                                                   std::size_t endpoint, std::uint32_t fdb_capacity,
                                                                   std::uint64_t generation,
                                                                   shm::Access access = shm::Access::kReadWrite);

  // The endpoint program's own slice, by its size alone (shm::Region::attach_sized): the
  // endpoint writes its headers itself, and headers a compromised or broken predecessor
  // scribbled on must not keep its restarted successor from attaching.
  [[nodiscard]] static sys::Result<StatsSlice, std::string> attach_sized(const std::string& switch_name,
                                                                         const std::string& endpoint_name,
                                                                         std::size_t endpoint, std::uint32_t fdb_capacity,
                                                                         std::uint64_t generation);

  [[nodiscard]] std::size_t endpoint() const noexcept { return endpoint_; }
  [[nodiscard]] std::uint32_t fdb_capacity() const noexcept { return fdb_capacity_; }

  // Word-by-word relaxed copies in and out of shared memory.
  void write_counters(const EndpointCounters& c) noexcept;
  [[nodiscard]] EndpointCounters read_counters() const noexcept;

  // The administrative link state (StatsSliceHeader::admin_link): true while asked to be
  // down. The word carries nothing else, so relaxed loads and stores: a change is seen
  // within a pass or two of the store, and the endpoint then acts on it alone. Whoever
  // maps the slice writable can set it; the endpoint itself could (it is its own link).
  [[nodiscard]] bool admin_down() const noexcept;
  void set_admin_down(bool down) noexcept;

  // The disabled ports (StatsSliceHeader::peers_disabled): bit i, endpoint i. The
  // endpoint acts on a change alone at the start of a pass. A release store and an
  // acquire load (ordering at [R-OFF] in stats.cpp): the stale_to words are published by
  // the mask that turns their peer on. Whoever maps the slice writable can set it; the endpoint
  // itself could, and would only stop sending to ports it could already refuse to serve.
  // Setting it bumps fence_seq after it (below): the endpoint loads the mask only when
  // that count moved.
  [[nodiscard]] std::uint64_t peers_disabled() const noexcept;
  void set_peers_disabled(std::uint64_t mask) noexcept;
  // Where the channel from `peer` to this endpoint stood when that peer's last run ended
  // (turned off): its records before this position are from that run, and this endpoint
  // drops them (port_disabled) rather than deliver them after the peer is turned on
  // again. Written by vswitchd before it turns the peer on, read by the endpoint when it
  // sees the peer come back (and on its first pass); one word per possible peer after the
  // delivery journal; relaxed, ordered by the peers_disabled word that turns the peer on
  // ([R-OFF] in stats.cpp). The receiver walks the records up to it and stops at whatever
  // is there, so a position a hostile writer chose drops at most what the channel holds.
  [[nodiscard]] std::uint64_t stale_to(std::size_t peer) const noexcept;
  void set_stale_to(std::size_t peer, std::uint64_t position) noexcept;
  // A count vswitchd bumps after it wrote stale_to words or the mask into this slice
  // (release; the endpoint's acquire load of it pairs: [R-FENCE] in stats.cpp), the one
  // word an endpoint loads each pass. An endpoint that sees it change reloads the mask and
  // applies every running peer's stale_to, so a fence reaches it even when the
  // peers_disabled word it last saw is the same again (it did no pass while a port went
  // off and came back).
  [[nodiscard]] std::uint64_t fence_seq() const noexcept;
  void bump_fence_seq() noexcept;
  // The VLANs each port carries and its declared address (port_info of its topology
  // entry), written by vswitchd at start and again when a reload changes a port's vlan,
  // trunk or mac, or gives a port to another endpoint, before it bumps fence_seq; read by
  // the endpoint when it sees fence_seq move. A seqlock (vswitchd the one writer; ordering
  // at write_port_table in stats.cpp); the reader takes one try and fills `out` with
  // `ports` entries only on kRead. Whoever maps the slice writable can write it: the
  // endpoint could, and would only change which VLANs it believes its peers are in (which
  // its own frames' VLAN already lets it choose) and where it sends frames it could
  // already send anywhere.
  void write_port_table(std::span<const PortInfo> ports) noexcept;
  [[nodiscard]] PortTableRead read_port_table(std::vector<PortInfo>& out, std::size_t ports) const;

  // vswitchd's, for a port a reload gives to an endpoint added, while no process holds the
  // slice (the last holder's has exited): what that holder left (or scribbled) is not the
  // new endpoint's: the region's and slice's headers written again, counters, FDB
  // snapshot and delivery journal zeroed, link up, no stale_to word, and the mask
  // `peers_disabled` (its fence_seq bumped).
  void reset_for_new_endpoint(std::uint64_t peers_disabled) noexcept;

  // Replaces the FDB snapshot (seqlock writer; the endpoint is the one writer).
  void write_fdb(std::span<const MacEntry> entries, std::uint64_t table_size) noexcept;
  // A consistent copy, or nullopt when the writer kept changing it (retries a while first).
  [[nodiscard]] std::optional<FdbView> read_fdb() const;

  // The words of the endpoint's delivery journal (kDeliveryJournalWords), which outlive
  // the endpoint process with the slice: only the endpoint writes them, and its successor
  // reads what it left.
  [[nodiscard]] std::span<std::uint64_t, kDeliveryJournalWords> journal_words() const noexcept;

  // This object will never unlink the name (see shm::Region::disown).
  void disown() noexcept { region_.disown(); }
  [[nodiscard]] const shm::Region& region() const noexcept { return region_; }

 private:
  StatsSlice(shm::Region region, std::size_t endpoint, std::uint32_t fdb_capacity);
  [[nodiscard]] std::uint64_t* counter_words() const noexcept;
  [[nodiscard]] std::uint64_t* fdb_words() const noexcept;  // seq, size, count, reserved, entries

  shm::Region region_;
  std::size_t endpoint_;
  std::uint32_t fdb_capacity_;
};

// StatsRegion::attach's error: what is wrong, and when the daemon's object names another
// number of endpoints than the caller (most likely reading another topology file), that
// number.
struct StatsAttachError {
  std::string detail;
  std::size_t running_endpoints = 0;  // 0: not that kind of error
};

// The whole view: the daemon's object and every endpoint's slice. vswitchd creates it;
// vswitchctl attaches it read-only; an endpoint process keeps only its own slice
// (keep_only). A call about something this object does not map (what keep_only dropped,
// or a slice attach refused) aborts the process, saying what was asked: never a silent
// read or write of nothing.
class StatsRegion {
 public:
  [[nodiscard]] static std::string region_name(const std::string& switch_name);
  [[nodiscard]] static std::string slice_name(const std::string& switch_name, const std::string& endpoint_name) {
    return StatsSlice::object_name(switch_name, endpoint_name);
  }
  [[nodiscard]] static std::uint64_t bytes_for(std::size_t endpoints);

  // Creates one slice per name in `endpoint_names` (index i: endpoint i), then the
  // daemon's object, published last. On failure what was made so far is removed.
  [[nodiscard]] static sys::Result<StatsRegion, std::string> create(const std::string& switch_name,
                                                                    std::span<const std::string> endpoint_names,
                                                                    std::uint32_t fdb_capacity,
                                                                    std::uint64_t generation);
  // Attaches the daemon's object, then every endpoint's slice with the daemon's object's
  // generation. Fails when the daemon's object is missing or invalid or names another
  // number of endpoints. A slice that cannot be attached (missing, corrupt, stale) does
  // not fail the whole: that endpoint's slice is left unmapped, slice_error(i) says why,
  // and the other endpoints stay readable (one endpoint cannot blind the observer).
  // An observer (vswitchctl) attaches with shm::Access::kReadOnly and keeps the result
  // const: only the read_* calls, which never store (the seqlock reader only loads).
  [[nodiscard]] static sys::Result<StatsRegion, StatsAttachError> attach(
      const std::string& switch_name, std::span<const std::string> endpoint_names,
      shm::Access access = shm::Access::kReadWrite);

  StatsRegion(StatsRegion&&) noexcept = default;
  StatsRegion& operator=(StatsRegion&&) noexcept = default;

  [[nodiscard]] std::size_t endpoints() const noexcept { return endpoints_; }
  [[nodiscard]] std::uint32_t fdb_capacity() const noexcept { return fdb_capacity_; }
  [[nodiscard]] std::uint64_t daemon_pid() const noexcept;
  void set_daemon_pid(std::uint64_t pid) noexcept;
  // The last reload's report (StatsHeader), under a seqlock on its own sequence word
  // (the daemon the one writer; ordering at publish_reload in stats.cpp). A report that cannot be read
  // consistently (a daemon that died writing it) reads as outcome kNone.
  void publish_reload(const ReloadReport& r) noexcept;
  [[nodiscard]] ReloadReport read_reload() const noexcept;

  // Word-by-word relaxed copies in and out of shared memory: the daemon's state blocks,
  // and (through slice(endpoint)) the endpoint's counters.
  void write_daemon(std::size_t endpoint, const DaemonState& d) noexcept;
  [[nodiscard]] DaemonState read_daemon(std::size_t endpoint) const noexcept;
  void write_counters(std::size_t endpoint, const EndpointCounters& c) noexcept;
  [[nodiscard]] EndpointCounters read_counters(std::size_t endpoint) const noexcept;

  // The endpoint's FDB snapshot (StatsSlice::write_fdb, read_fdb).
  void write_fdb(std::size_t endpoint, std::span<const MacEntry> entries, std::uint64_t table_size) noexcept;
  [[nodiscard]] std::optional<FdbView> read_fdb(std::size_t endpoint) const;

  // Endpoint `endpoint`'s slice, or null when this object does not map it.
  [[nodiscard]] StatsSlice* slice(std::size_t endpoint) noexcept;
  [[nodiscard]] const StatsSlice* slice(std::size_t endpoint) const noexcept;
  // Why attach() left the slice unmapped ("" when it is mapped or was never attached).
  [[nodiscard]] const std::string& slice_error(std::size_t endpoint) const noexcept;

  // For a process that inherited the creator's StatsRegion by fork() and is endpoint
  // `self`: disowns every object (this process never unlinks one), unmaps the daemon's
  // object and every other endpoint's slice, and returns its own slice, still at the
  // address it had. This object then maps nothing: slice() returns null, and every call
  // that would read or write shared memory through it aborts.
  [[nodiscard]] StatsSlice keep_only(std::size_t self) noexcept;

  // The daemon's object (aborts after keep_only).
  [[nodiscard]] const shm::Region& region() const noexcept;

 private:
  StatsRegion(shm::Region daemon, std::vector<std::optional<StatsSlice>> slices, std::size_t endpoints,
              std::uint32_t fdb_capacity);
  [[nodiscard]] std::uint64_t* header_words() const noexcept;
  [[nodiscard]] std::uint64_t* daemon_words(std::size_t endpoint) const noexcept;
  [[nodiscard]] const StatsSlice& mapped_slice(std::size_t endpoint, const char* what) const noexcept;
  [[nodiscard]] StatsSlice& mapped_slice(std::size_t endpoint, const char* what) noexcept;

  std::optional<shm::Region> daemon_;  // empty after keep_only
  std::vector<std::optional<StatsSlice>> slices_;
  std::vector<std::string> slice_errors_;
  std::size_t endpoints_;
  std::uint32_t fdb_capacity_;
};

}  // namespace vswitch
