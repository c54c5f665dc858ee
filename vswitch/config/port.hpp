// A port: an endpoint of the switch, numbered by its place in the topology.
#pragma once

#include <cstdint>

namespace vswitch {

using PortId = std::uint16_t;

}  // namespace vswitch
