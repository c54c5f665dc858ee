// What a MAC table publishes: its counters (kept by vswitch/dataplane/mac_table) and the
// entries of its forwarding database, as the stats region stores them.
#pragma once

#include <cstdint>

#include "shm/sys/counters.hpp"
#include "vswitch/config/mac_address.hpp"
#include "vswitch/config/port.hpp"

namespace vswitch {

#define VSWITCH_MAC_TABLE_COUNTERS(X, G)                                                     \
  G(entries, "entries in the table now (static and learned)")                                \
  X(learned, "source addresses learned")                                                     \
  X(moved, "learned addresses that moved to another port")                                   \
  X(move_damped, "moves refused: the address moved too recently (flapping)")                 \
  X(aged, "learned addresses aged out")                                                      \
  X(refused_multicast,                                                                       \
    "group or zero source addresses, never learned (frames with a group "                    \
    "source are dropped before: drop group_source_mac)")                                     \
  X(refused_static, "sources claiming another port's static address (the frame is dropped)") \
  X(refused_full, "addresses not learned because the table was full")                        \
  X(refused_port_limit,                                                                      \
    "addresses not learned (or not moved) because their port already "                       \
    "had switch.max_macs_per_port learned addresses")                                        \
  X(evicted_for_static,                                                                      \
    "learned addresses removed from a full table to make room for a "                        \
    "static one (learned again from their next frame)")
struct MacTableCounters {
  VSWITCH_MAC_TABLE_COUNTERS(VSWITCH_COUNTER_FIELD, VSWITCH_COUNTER_FIELD)
  static constexpr sys::CounterName kNames[] = {VSWITCH_MAC_TABLE_COUNTERS(VSWITCH_COUNTER_NAME, VSWITCH_GAUGE_NAME)};
};

struct MacEntry {
  MacAddress mac;
  PortId port = 0;
  std::uint16_t vlan = 0;  // the 802.1Q VID it was learned in (0: the VLAN-unaware ports)
  bool is_static = false;
  std::uint64_t last_seen_ms = 0;
};

}  // namespace vswitch
