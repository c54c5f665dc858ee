// The counter block of a vhost-user virtio-net device (endpoints/vhost_user/net_device):
// kept by the device, stored by its endpoint in the stats region and read back by
// vswitchctl, which needs this table and nothing else of the device.
#pragma once

#include <cstdint>

#include "endpoints/virtio/net_queues.hpp"
#include "shm/sys/counters.hpp"

namespace vswitch::endpoints::vhost_user {

#define VSWITCH_VHOST_USER_COUNTERS(X, G)                                                    \
  X(connections, "front-ends that connected")                                               \
  X(protocol_errors, "connections closed for a protocol violation")                         \
  X(bad_chains, "descriptor chains returned with length 0, every reason (below)")           \
  X(rx_no_buffers, "times a frame waited for the guest to post receive buffers")            \
  X(interrupts, "call eventfd signals")                                                     \
  X(segments_made, "TCP segments cut in software for a guest without GUEST_TSO")            \
  X(csum_completed, "checksums filled in for a guest without GUEST_CSUM")                   \
  X(connections_refused, "connections closed at once: another front-end was connected, or the link was down") \
  X(guest_memory_lost, "connections closed: guest memory truncated under the mapping (SIGBUS)") \
  X(reconnect_waits, "restarts that began by waiting for the predecessor's guest to come back (its frames kept in their channels meanwhile)") \
  G(attached, "1 while a guest's receive queue runs, or while a restarted endpoint waits for its predecessor's guest to come back")
struct NetDeviceTotals {
  VSWITCH_VHOST_USER_COUNTERS(VSWITCH_COUNTER_FIELD, VSWITCH_COUNTER_FIELD)
  static constexpr sys::CounterName kNames[] = {VSWITCH_VHOST_USER_COUNTERS(VSWITCH_COUNTER_NAME, VSWITCH_GAUGE_NAME)};
};

// Totals, and the reasons behind bad_chains (and RX chains given back unused), with room
// for reasons added later without moving what follows.
struct NetDeviceCounters {
  NetDeviceTotals totals;
  sys::ReasonCounts<virtio::ChainError, 16> chain_errors;
  sys::ReasonCounts<virtio::TxError, 8> tx_errors;
  sys::ReasonCounts<virtio::RxDrop, 8> rx_drops;
};

}  // namespace vswitch::endpoints::vhost_user
