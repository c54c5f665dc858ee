// MacTable: one endpoint's forwarding database. Maps a MAC address in a VLAN to the
// endpoint (port) it lives behind: one address in two VLANs is two entries (IEEE 802.1Q
// independent VLAN learning). VLAN 0 is the VLAN-unaware ports' domain. Owned by one
// endpoint's run loop: single-threaded, no locks.
//
// Invariants:
// - at most capacity() entries, ever; no allocation after construction (a MAC flood can
//   neither grow memory nor evict what is already known: new addresses are refused and
//   counted while the table is full);
// - at most max_per_port learned (dynamic) entries behind any one port: a port that sends
//   a flood of new source addresses fills its own share, never the room the other ports'
//   addresses need (further addresses from it are refused and counted; its frames are
//   still forwarded). Static entries do not count against the share;
// - a static entry (declared in the topology) is never replaced or aged; a frame that
//   claims a static MAC from another port is refused (the caller drops and counts it);
// - multicast, broadcast and zero source addresses are never learned;
// - a dynamic entry moves to a new port at most once per move_damping_ms (flapping
//   between two ports is damped and counted);
// - a dynamic entry not refreshed for aging_ms is gone: lookups treat it as absent and
//   sweep() removes it, counting each as aged.
// Time is passed in (milliseconds, any monotonic origin), so tests control it.
//
// Open addressing with linear probing at <= 50% load and backward-shift deletion; the hash
// is keyed with a per-table random seed so a peer cannot pick colliding addresses.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "vswitch/config/mac_address.hpp"
#include "vswitch/config/port.hpp"
#include "vswitch/observability/mac_table_counters.hpp"

namespace vswitch {

enum class Learn : std::uint8_t {
  kLearned,          // new entry
  kRefreshed,        // known, same port: last-seen updated
  kMoved,            // dynamic entry moved to this port
  kMoveDamped,       // would have moved, but moved too recently: kept on its old port
  kRefusedMulticast, // group or zero source address
  kRefusedStatic,    // static entry of another port: the frame should be dropped
  kRefusedFull,      // table full: not learned (the frame is still forwarded)
  kRefusedPortLimit, // the port already has max_per_port learned entries: not learned
                     // (a new address) or not moved (a known one); the frame is still forwarded
};

class MacTable {
 public:
  struct Config {
    std::uint32_t capacity = 4096;
    std::uint64_t aging_ms = 300'000;      // 0: dynamic entries never age
    std::uint64_t move_damping_ms = 1000;  // minimum time between two moves of one MAC
    std::uint64_t seed = 0;                // 0: a random seed
    std::uint32_t max_per_port = 0;        // learned entries per port; 0: capacity / 4 (at least 1)
    std::uint32_t ports = 64;              // ports 0..ports-1 may learn (the topology's endpoints)
  };
  explicit MacTable(const Config& config);

  // Adds or replaces a static entry. A full table makes room by evicting a learned entry
  // (learning gives way to what the topology declares). Fails (false) when the address is
  // a group/zero address, or the table is full of static entries.
  bool add_static(const MacAddress& mac, PortId port, std::uint16_t vlan = 0);
  // Removes the static entry of `mac` in `vlan` behind `port` (the port left that VLAN, or
  // the address left the port); false when there is none there (a learned entry of the
  // address stays, and so does a static one behind another port: the address moved there).
  bool remove_static(const MacAddress& mac, std::uint16_t vlan, PortId port);
  // Learns `mac` (a frame's source address) in `vlan` behind `port`.
  Learn learn(const MacAddress& mac, PortId port, std::uint64_t now_ms, std::uint16_t vlan = 0);
  // The port behind `mac` in `vlan`, if known and not aged.
  [[nodiscard]] std::optional<PortId> lookup(const MacAddress& mac, std::uint64_t now_ms, std::uint16_t vlan = 0);
  // Removes every aged dynamic entry; returns how many. O(slots): the run loop calls it
  // periodically (lookups already ignore aged entries; a full table sweeps itself at most
  // once a second).
  std::size_t sweep(std::uint64_t now_ms);
  // Removes every learned (dynamic) entry behind `port`, in every VLAN; returns how many.
  // Static entries stay: a port that is turned off keeps its declared addresses, which no
  // other port may then claim. O(slots), off the per-frame path (a port disabled).
  std::size_t forget_port(PortId port);

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint32_t max_per_port() const noexcept { return max_per_port_; }
  // Learned (dynamic) entries behind `port` now, aged ones not yet removed included.
  [[nodiscard]] std::uint32_t learned_on(PortId port) const noexcept {
    return port < per_port_.size() ? per_port_[port] : 0;
  }
  // Totals (entries: the current size).
  [[nodiscard]] MacTableCounters counters() const noexcept {
    MacTableCounters c = counters_;
    c.entries = size_;
    return c;
  }
  // Continues totals an earlier incarnation of the endpoint counted (entries is ignored).
  void restore_counters(const MacTableCounters& c) noexcept {
    counters_ = c;
    counters_.entries = 0;
  }
  // How many times an entry was added, removed, or given another port or kind
  // (static/learned), since construction: what a published copy of entries() compares to
  // know it is stale. A refresh (last_seen_ms only) does not count; ageing does only once
  // the aged entry is removed (lookup, learn or sweep), as entries() already hides it.
  [[nodiscard]] std::uint64_t changes() const noexcept { return changes_; }
  // Every live entry (for vswitchctl fdb), in table order.
  [[nodiscard]] std::vector<MacEntry> entries(std::uint64_t now_ms) const;

 private:
  struct Slot {
    MacEntry entry;
    std::uint64_t key = 0;  // key(entry.mac, entry.vlan): what a probe compares
    std::uint64_t last_move_ms = 0;
    bool used = false;
  };
  // The key hashed and compared: the 48-bit address, the VLAN above it.
  [[nodiscard]] static std::uint64_t key(const MacAddress& mac, std::uint16_t vlan) noexcept {
    return mac.bits() | (std::uint64_t{vlan} << 48);
  }
  [[nodiscard]] std::size_t home(std::uint64_t key) const noexcept;
  [[nodiscard]] std::optional<std::size_t> find(const MacAddress& mac, std::uint16_t vlan) const noexcept;
  [[nodiscard]] bool expired(const Slot& s, std::uint64_t now_ms) const noexcept;
  void erase_at(std::size_t i) noexcept;
  // Whether `port` may hold one more learned entry.
  [[nodiscard]] bool port_has_room(PortId port) const noexcept {
    return port < per_port_.size() && per_port_[port] < max_per_port_;
  }
  // Removes aged entries, at most once a second (a flood of new addresses must not turn
  // every frame into a walk over the whole table).
  void reclaim(std::uint64_t now_ms);
  std::size_t insert(const MacEntry& e);  // precondition: absent, size_ < capacity_

  std::vector<Slot> slots_;
  std::size_t mask_;
  std::size_t capacity_;
  std::size_t size_ = 0;
  std::uint64_t aging_ms_;
  std::uint64_t move_damping_ms_;
  std::uint64_t seed_;
  std::uint64_t last_full_sweep_ms_ = 0;
  std::uint32_t max_per_port_;
  std::vector<std::uint32_t> per_port_;  // learned entries by port
  MacTableCounters counters_;
  std::uint64_t changes_ = 0;
};

}  // namespace vswitch
