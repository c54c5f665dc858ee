// The counter blocks of the frontends that keep counters (vswitch/frontends/): each is
// stored in its endpoint's frontend area of its stats slice (endpoint_counters.hpp) and
// read back by vswitchctl, which needs these tables and nothing else of a frontend.
#pragma once

#include <cstdint>

#include "endpoints/vhost_user/net_device_counters.hpp"
#include "shm/sys/counters.hpp"
#include "vswitch/observability/endpoint_counters.hpp"

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
  static constexpr sys::CounterName kNames[] = {VSWITCH_GENERATOR_COUNTERS(VSWITCH_COUNTER_NAME)};
};

// VhostUserFrontend: the block its device keeps.
static_assert(sizeof(endpoints::vhost_user::NetDeviceCounters) <= sizeof(FrontendCounterArea));

}  // namespace vswitch
