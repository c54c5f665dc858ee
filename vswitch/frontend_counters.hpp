// The counter blocks of the frontends that keep counters (vswitch/frontends.hpp): each is
// stored in its endpoint's frontend area of the stats slot (vswitch/endpoint_counters.hpp)
// and read back by vswitchctl, which needs these tables and nothing else of a frontend.
#pragma once

#include <cstdint>

#include "endpoints/virtio/net_queues.hpp"
#include "vswitch/counters.hpp"
#include "vswitch/endpoint_counters.hpp"

namespace vswitch {

// GeneratorFrontend.
#define VSWITCH_GENERATOR_COUNTERS(X)                                                    \
  X(sent, "test frames sent")                                                           \
  X(received, "test frames received")                                                   \
  X(lost, "gaps in a sender's sequence (frames that never arrived)")                    \
  X(out_of_order, "frames that arrived after a later one of the same sender")           \
  X(bad, "test frames that failed their check (corrupt)")                               \
  X(foreign, "frames that are not test frames (e.g. a namespace's ARP)")
struct GeneratorCounters {
  VSWITCH_GENERATOR_COUNTERS(VSWITCH_COUNTER_FIELD)
  static constexpr CounterName kNames[] = {VSWITCH_GENERATOR_COUNTERS(VSWITCH_COUNTER_NAME)};
};

// VhostUserFrontend.
#define VSWITCH_VHOST_USER_COUNTERS(X)                                                       \
  X(connections, "front-ends that connected")                                               \
  X(protocol_errors, "connections closed for a protocol violation")                         \
  X(bad_chains, "descriptor chains returned with length 0, every reason (below)")           \
  X(rx_no_buffers, "times a frame waited for the guest to post receive buffers")            \
  X(interrupts, "call eventfd signals")                                                     \
  X(segments_made, "TCP segments cut in software for a guest without GUEST_TSO")            \
  X(csum_completed, "checksums filled in for a guest without GUEST_CSUM")
struct VhostUserTotals {
  VSWITCH_VHOST_USER_COUNTERS(VSWITCH_COUNTER_FIELD)
  static constexpr CounterName kNames[] = {VSWITCH_VHOST_USER_COUNTERS(VSWITCH_COUNTER_NAME)};
};
// The vhost-user frontend's block: totals, and the reasons behind bad_chains (and RX
// chains given back unused), with room for reasons added later.
struct VhostUserCounters {
  VhostUserTotals totals;
  ReasonCounts<endpoints::virtio::ChainError, 16> chain_errors;
  ReasonCounts<endpoints::virtio::TxError, 8> tx_errors;
  ReasonCounts<endpoints::virtio::RxDrop, 8> rx_drops;
};
static_assert(sizeof(VhostUserCounters) <= sizeof(FrontendCounterArea));

}  // namespace vswitch
