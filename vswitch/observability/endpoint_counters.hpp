// What one endpoint publishes in its stats slice, block by block, each block kept by the
// part of the endpoint that counts it:
//   traffic, forwarding, loop, peers   the run loop (vswitch/dataplane/endpoint.hpp)
//   drops                              the forwarder, by DropReason (drop_reason.hpp)
//   mac                                the MAC table (mac_table_counters.hpp)
//   frontend                           the frontend: the block of its kind
//                                      (GeneratorCounters in frontend_counters.hpp,
//                                      NetDeviceCounters in endpoints/vhost_user/
//                                      net_device_counters.hpp; a TAP keeps none)
// The blocks are described here and in the headers named, below the data plane, so that
// vswitchctl reads them without linking it. Names and help text come from each block's
// table (shm/sys/counters.hpp). Totals survive the endpoint's restarts: every owner of a
// new process starts from the block its predecessor published.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shm/sys/counters.hpp"
#include "vswitch/observability/drop_reason.hpp"
#include "vswitch/observability/mac_table_counters.hpp"

namespace vswitch {

inline constexpr std::size_t kMaxEndpoints = 64;

#define VSWITCH_TRAFFIC_COUNTERS(X)                                                   \
  X(rx_frames, "frames read from the frontend")                                      \
  X(rx_bytes, "bytes of the frames read from the frontend")                          \
  X(tx_frames, "frames delivered to the frontend")                                   \
  X(tx_bytes, "bytes of the frames delivered to the frontend")                       \
  X(frontend_errors, "frontend reads or writes that failed (a failed write is also " \
                     "the drop frontend_error)")
struct TrafficCounters {
  VSWITCH_TRAFFIC_COUNTERS(VSWITCH_COUNTER_FIELD)
  static constexpr sys::CounterName kNames[] = {VSWITCH_TRAFFIC_COUNTERS(VSWITCH_COUNTER_NAME)};
};

#define VSWITCH_FORWARDING_COUNTERS(X)                                                           \
  X(unicast, "frontend frames sent to one peer")                                                \
  X(flooded, "frontend frames flooded to every peer (each copy counts in that peer's out_frames)") \
  X(backpressure_waits, "unicast frames that waited for room in a peer's channel")             \
  X(ring_errors, "corrupt records or indices seen on inbound channels")
struct ForwardingCounters {
  VSWITCH_FORWARDING_COUNTERS(VSWITCH_COUNTER_FIELD)
  static constexpr sys::CounterName kNames[] = {VSWITCH_FORWARDING_COUNTERS(VSWITCH_COUNTER_NAME)};
};

#define VSWITCH_LOOP_COUNTERS(X, G)                                         \
  X(loops, "run loop passes that did work")                                \
  X(sleeps, "times the run loop slept in epoll")                           \
  X(timed_sleeps, "sleeps on the coalescing timer (coalesce_us) rather than until woken") \
  X(events_dropped, "event log messages lost to a full queue")             \
  X(captured, "frames copied to an attached capture (vswitchctl capture)") \
  X(capture_dropped, "frames an attached capture missed for lack of room in its ring (forwarded all the same)") \
  X(restart_skips, "channels a restarted endpoint moved past records its killed predecessor had delivered (delivery journal)") \
  G(link_down, "1 while the endpoint holds its link administratively down (vswitchctl link)")
struct LoopCounters {
  VSWITCH_LOOP_COUNTERS(VSWITCH_COUNTER_FIELD, VSWITCH_COUNTER_FIELD)
  static constexpr sys::CounterName kNames[] = {VSWITCH_LOOP_COUNTERS(VSWITCH_COUNTER_NAME, VSWITCH_GAUGE_NAME)};
};

#define VSWITCH_PEER_COUNTERS(X, G)                                \
  X(out_frames, "records sent into the channel to the peer")      \
  X(out_bytes, "bytes of the records sent to the peer")           \
  X(in_frames, "records received from the peer's channel")        \
  X(in_bytes, "bytes of the records received from the peer")     \
  G(stalled, "1 while the peer counts as stalled (it has not made room for the stall timeout)")
struct PeerCounters {
  VSWITCH_PEER_COUNTERS(VSWITCH_COUNTER_FIELD, VSWITCH_COUNTER_FIELD)
  static constexpr sys::CounterName kNames[] = {VSWITCH_PEER_COUNTERS(VSWITCH_COUNTER_NAME, VSWITCH_GAUGE_NAME)};
};

// Words for the frontend's block (the largest today, vhost-user's, takes 43).
inline constexpr std::size_t kFrontendCounterWords = 64;
using FrontendCounterArea = std::array<std::uint64_t, kFrontendCounterWords>;

struct EndpointCounters {
  TrafficCounters traffic;
  ForwardingCounters forwarding;
  LoopCounters loop;
  DropCounters drops;
  MacTableCounters mac;
  FrontendCounterArea frontend{};
  std::array<PeerCounters, kMaxEndpoints> peers{};  // index: the peer's endpoint index
};
static_assert(std::is_trivially_copyable_v<EndpointCounters> && sizeof(EndpointCounters) % 8 == 0);

}  // namespace vswitch
