// What differs between the topology a switch runs and the one its file holds now (a
// reload: SIGHUP or `vswitchctl reload`), one change per key, and whether the change can
// be applied to the running switch.
//
// An endpoint's own settings (core, poll_us, poll_max_us, coalesce_us, port_security, the generator's,
// and a TAP or generator port's mtu) are read only by that endpoint's process (and its
// TAP's MTU is the daemon's to set): a change is applied by restarting that one endpoint
// on the new topology. An endpoint's vlan and trunk are applied the same way, and
// vswitchd tells every other endpoint the port's new VLANs through its stats slice.
// metrics.listen is vswitchd's own:
// it moves its listener. Everything else is read by every endpoint, sizes the shared
// objects, or is a VMM's to agree to (switch.*, fabric.*, capture, an endpoint's
// position, frontend, a running port's mac, TAP or socket; a vhost-user port's
// mtu, queue_size and max_guest_memory_gib, which its VMM fixed when it started) and needs
// a restart of vswitchd. An endpoint's `enabled` is its own too: vswitchd starts or stops
// that port alone. While a port is disabled in the running topology it holds no TAP,
// socket or VMM, so its mac, its TAP's and socket's settings and a vhost-user port's mtu,
// queue_size and max_guest_memory_gib may change with it.
//
// Endpoints added or removed: with fabric.spare_ports, vswitchd lays the file out on the
// ports it runs (place_in_slots in topology.hpp), and an endpoint added to the file takes
// a spare port (started alone, as a port turned on) while one removed is stopped and its
// port becomes spare; the others forward on. Without spare ports, or with none left,
// adding needs a restart of vswitchd.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vswitch/config/topology.hpp"

namespace vswitch {

struct TopologyChange {
  std::string key;  // "fabric.ring_bytes", "endpoint c: mtu", "endpoint d: added"
  std::string was;  // as written in a topology ("(unset)" for a key not set)
  std::string now;
  std::uint32_t line = 0;  // in the new file: the key's line, else its table's (0: none)
  // The endpoint (index in both topologies) whose own setting this is: applied by
  // restarting it. None: needs a restart of vswitchd, unless `daemon`.
  std::optional<std::size_t> endpoint;
  // A setting only vswitchd itself reads (metrics.listen): applied by vswitchd, no
  // endpoint restarted.
  bool daemon = false;

  [[nodiscard]] bool applicable() const noexcept { return endpoint.has_value() || daemon; }

  // "FILE:LINE: KEY: WAS -> NOW" (the line left out when there is none).
  [[nodiscard]] std::string describe(const std::string& file) const;
};

// Every change from `running` to `next`, in the order of the file (switch, fabric,
// metrics, capture, then each endpoint); empty when nothing differs but comments,
// spacing and line numbers.
[[nodiscard]] std::vector<TopologyChange> topology_changes(const Topology& running, const Topology& next);

}  // namespace vswitch
