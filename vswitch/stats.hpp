// Stats region: where every endpoint publishes its state, counters and MAC table, and
// where vswitchctl reads them without stopping or slowing anything. One shm region per
// switch, "/vswitch.<name>.stats", created by vswitchd.
//
//   StatsHeader                    endpoint count, FDB capacity per endpoint
//   EndpointSlot[endpoints]        one per endpoint: daemon-owned state + endpoint counters
//   FdbSnapshot[endpoints]         one per endpoint: seqlock + entries
//
// Every word is a 64-bit integer accessed through std::atomic_ref with relaxed order:
// counters are independent monotonic values, and a reader that sees one a little older
// than another is fine. The one place that needs a consistent set, the FDB snapshot, is
// a seqlock (ordering at StatsRegion::write_fdb / read_fdb).
//
// Writers: vswitchd writes only DaemonState; the endpoint process writes only its own
// Counters and FdbSnapshot. The region is ours, but a reader still bounds every count it
// reads by the sizes it validated at attach.
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
#include "endpoints/virtio/net_queues.hpp"
#include "vswitch/forwarding.hpp"
#include "vswitch/mac_table.hpp"

namespace vswitch {

inline constexpr std::size_t kMaxEndpoints = 64;
// The FDB snapshot holds at most this many entries per endpoint (larger tables show their
// first entries and the true size).
inline constexpr std::uint32_t kMaxFdbSnapshot = 65536;
// Room for drop reasons added later without changing the layout.
inline constexpr std::size_t kDropSlots = 16;
static_assert(static_cast<std::size_t>(DropReason::kCount) <= kDropSlots);
inline constexpr std::size_t kChainErrorSlots = 16;
inline constexpr std::size_t kNetErrorSlots = 8;
static_assert(static_cast<std::size_t>(endpoints::virtio::ChainError::kCount) <= kChainErrorSlots);
static_assert(static_cast<std::size_t>(endpoints::virtio::TxError::kCount) <= kNetErrorSlots);
static_assert(static_cast<std::size_t>(endpoints::virtio::RxDrop::kCount) <= kNetErrorSlots);

enum class EndpointState : std::uint64_t { kDown = 0, kStarting = 1, kUp = 2, kStopped = 3 };
std::string_view to_string(EndpointState s);

// Written by vswitchd.
struct DaemonState {
  std::uint64_t state;        // EndpointState
  std::uint64_t pid;
  std::uint64_t restarts;     // times the endpoint was started again after dying
  std::uint64_t core;         // pinned core, or ~0 when not pinned
  std::uint64_t last_exit;    // wait status of the last exit (0 if none)
  std::uint64_t started_unix_ms;
  std::uint64_t reserved[2];
};

// Written by the endpoint. Totals survive the endpoint's restarts: a new process starts
// from the values its predecessor published.
struct Counters {
  // The frontend (TAP, VM, generator).
  std::uint64_t rx_frames;    // frames read from the frontend
  std::uint64_t rx_bytes;
  std::uint64_t tx_frames;    // frames delivered to the frontend
  std::uint64_t tx_bytes;
  std::uint64_t unicast;      // frontend frames sent to one peer
  std::uint64_t flooded;      // frontend frames flooded (copies counted in per-peer out)
  std::uint64_t frontend_errors;  // frontend reads/writes that failed (also a drop reason)
  std::uint64_t drops[kDropSlots];  // by DropReason
  // MAC table.
  std::uint64_t mac_entries;
  std::uint64_t mac_learned;
  std::uint64_t mac_moved;
  std::uint64_t mac_move_damped;
  std::uint64_t mac_aged;
  std::uint64_t mac_refused_multicast;
  std::uint64_t mac_refused_static;
  std::uint64_t mac_refused_full;
  // Run loop.
  std::uint64_t loops;        // iterations that did work
  std::uint64_t sleeps;       // times the loop blocked in epoll
  std::uint64_t backpressure_waits;  // unicast frame waited for room in a peer's channel
  std::uint64_t ring_errors;  // corrupt records/indices seen on inbound channels
  // Generator frontend (zero for others).
  std::uint64_t gen_sent;
  std::uint64_t gen_received;
  std::uint64_t gen_lost;
  std::uint64_t gen_out_of_order;
  std::uint64_t gen_bad;       // failed the frame check (corrupt)
  std::uint64_t gen_foreign;   // not a test frame (e.g. a namespace's ARP)
  // vhost-user frontend (zero for others).
  std::uint64_t vu_connections;     // front-ends that connected
  std::uint64_t vu_protocol_errors; // connections closed for a protocol violation
  std::uint64_t vu_bad_chains;      // descriptor chains returned with length 0 (all reasons)
  std::uint64_t vu_rx_no_buffers;   // times a frame waited for the guest to post RX buffers
  std::uint64_t vu_interrupts;      // call eventfd signals
  std::uint64_t vu_segments_made;   // TCP segments cut in software for a guest without GUEST_TSO
  std::uint64_t vu_csum_completed;  // checksums filled in for a guest without GUEST_CSUM
  std::uint64_t vu_chain_errors[kChainErrorSlots];  // bad chains by endpoints::virtio::ChainError
  std::uint64_t vu_tx_errors[kNetErrorSlots];       // bad TX chains by endpoints::virtio::TxError
  std::uint64_t vu_rx_drops[kNetErrorSlots];        // RX chains returned unused by RxDrop
  std::uint64_t events_dropped;     // event log messages lost to a full queue
  // Per peer (index = endpoint index).
  std::array<std::uint64_t, kMaxEndpoints> out_frames;   // records sent to peer
  std::array<std::uint64_t, kMaxEndpoints> out_bytes;
  std::array<std::uint64_t, kMaxEndpoints> in_frames;    // records received from peer
  std::array<std::uint64_t, kMaxEndpoints> in_bytes;
  std::array<std::uint64_t, kMaxEndpoints> peer_stalled; // 1 while the peer counts as stalled
};

struct EndpointSlot {
  DaemonState daemon;
  Counters counters;
};
static_assert(sizeof(EndpointSlot) % 8 == 0 && std::is_trivially_copyable_v<EndpointSlot>);

struct StatsHeader {
  std::uint64_t endpoints;
  std::uint64_t fdb_capacity;  // entries per FdbSnapshot
  std::uint64_t daemon_pid;
  std::uint64_t reserved[5];
};

// One entry: mac (48 bits) | port (bits 48-63 hold port, bit 63 clear) in word 0, flags and
// last-seen in word 1.
struct FdbWord {
  std::uint64_t mac_port;   // mac bytes in bits 0-47, port in bits 48-62
  std::uint64_t seen_ms;    // last seen (monotonic ms); bit 63: static
};

struct FdbView {
  std::vector<MacEntry> entries;
  std::uint64_t table_size = 0;  // entries in the table (may exceed entries.size())
};

class StatsRegion {
 public:
  [[nodiscard]] static std::string region_name(const std::string& switch_name);
  [[nodiscard]] static std::uint64_t bytes_for(std::size_t endpoints, std::uint32_t fdb_capacity);

  [[nodiscard]] static sys::Result<StatsRegion, std::string> create(const std::string& switch_name,
                                                                    std::size_t endpoints,
                                                                    std::uint32_t fdb_capacity,
                                                                    std::uint64_t generation);
  [[nodiscard]] static sys::Result<StatsRegion, std::string> attach(const std::string& switch_name);

  [[nodiscard]] std::size_t endpoints() const noexcept { return endpoints_; }
  [[nodiscard]] std::uint32_t fdb_capacity() const noexcept { return fdb_capacity_; }
  [[nodiscard]] std::uint64_t daemon_pid() const noexcept;
  void set_daemon_pid(std::uint64_t pid) noexcept;

  // Word-by-word relaxed copies in and out of shared memory.
  void write_daemon(std::size_t endpoint, const DaemonState& d) noexcept;
  [[nodiscard]] DaemonState read_daemon(std::size_t endpoint) const noexcept;
  void write_counters(std::size_t endpoint, const Counters& c) noexcept;
  [[nodiscard]] Counters read_counters(std::size_t endpoint) const noexcept;

  // Replaces the endpoint's FDB snapshot (seqlock writer; one writer per endpoint).
  void write_fdb(std::size_t endpoint, std::span<const MacEntry> entries, std::uint64_t table_size) noexcept;
  // A consistent copy, or nullopt when the writer kept changing it (retries a while first).
  [[nodiscard]] std::optional<FdbView> read_fdb(std::size_t endpoint) const;

  [[nodiscard]] const shm::Region& region() const noexcept { return region_; }

 private:
  StatsRegion(shm::Region region, std::size_t endpoints, std::uint32_t fdb_capacity);
  [[nodiscard]] std::uint64_t* slot_words(std::size_t endpoint) const noexcept;
  [[nodiscard]] std::uint64_t* fdb_words(std::size_t endpoint) const noexcept;  // seq, size, count, entries

  shm::Region region_;
  std::size_t endpoints_;
  std::uint32_t fdb_capacity_;
};

}  // namespace vswitch
