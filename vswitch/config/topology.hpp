// Topology: what a TOML file (configs/*.toml) declares: switch settings, fabric settings
// and the endpoints. load_topology() validates everything it reads and reports each
// problem with file, line and key:
//
//   configs/demo.toml:14: endpoint[1].mac: "02:00:00:00:00:01" is already used by endpoint "ns1"
//
// Schema (every key optional unless marked):
//   [switch]   name = "vswitch" (names the shm objects), mac_table_size = 4096, aging_s = 300,
//              max_macs_per_port = mac_table_size / 4 (at least 1; at most mac_table_size):
//              learned addresses one port may hold in a MAC table, so a flood of source
//              addresses from one port cannot fill the table for the others,
//              watchdog_ms = 10000 (0 or 100..3600000; 0: off): an endpoint that makes no
//              progress for this long (vswitchd rings an idle one after half of it) is
//              hung: vswitchd kills and restarts it; an endpoint's poll_us must stay
//              below a quarter of it,
//              endpoint_uid_base = 60600 (0 or 1..2147483583; 0: off): when vswitchd runs
//              as root, endpoint i runs as uid and gid endpoint_uid_base + i, ids no
//              user or group of the system may have (checked at start) and no other
//              switch on the machine may share; 0 leaves them root without capabilities,
//              seccomp = "enforce" ("enforce" | "log" | "off"): the system call
//              allow-list of a running endpoint; "log" lets a call outside it run and has
//              the kernel log it
//   [fabric]   ring_bytes = 1048576 (power of two, >= one max frame record),
//              max_frame = 65536 (bytes, 64..65536; TAPs get TSO only at 65536, and a
//              longer frame read from a TAP is dropped as frame_too_large), stall_timeout_ms = 2000,
//              spare_ports = 0 (0..64 - endpoints): room made at start for this many more
//              ports, so that a reload can add endpoints to the running switch (an
//              endpoint added takes a spare port's channels and stats; one removed gives
//              its port back); with 0, adding or removing an endpoint needs a restart
//   [metrics]  listen = "ADDR:PORT" (off when absent): vswitchd serves Prometheus text at
//              http://ADDR:PORT/metrics; ADDR is a numeric IPv4 address or a bracketed
//              IPv6 one ("127.0.0.1:9464", "[::1]:9464"); anyone who can connect reads
//              every endpoint's counters, so bind a loopback or management address
//   [capture]  ring_bytes = 4194304 (0: off; else a power of two, at most 1 GiB, that holds
//              four of the largest capture records: max_frame + 32 bytes each): each
//              endpoint's capture ring for `vswitchctl capture`, one /dev/shm object per
//              endpoint whose pages are used only while a capture runs
//   [[endpoint]] name (required, [A-Za-z0-9_-]), frontend (required: "tap" | "vhost-user" |
//              "generator"), core, mac, poll_us = 0, poll_max_us = 50 (the adaptive
//              poll window's ceiling; 0: off), coalesce_us = 0 (0..10000: while frames
//              come this close, sleep this long on a timer rather than be woken for each;
//              0: off),
//              port_security = true if mac is set, else false (true needs mac; a port
//              with a mac but other sources behind it says port_security = false),
//              mtu (68..fabric.max_frame - 18; default: none): set on the endpoint's TAP,
//              the most a VMM may give its guest (VIRTIO_NET_F_MTU), and enforced both ways
//              (frames of mtu + 14 bytes at most, mtu + 18 with an 802.1Q tag; a GSO
//              frame by its segments; dropped as mtu_exceeded),
//              vlan (1..4094: the VLAN of the port's untagged frames), trunk (a list of
//              VLANs 1..4094 the port carries tagged; not vlan), neither: VLAN-unaware
//              (its frames pass as they are, to and from VLAN-unaware ports only),
//              enabled = true (false: the port is declared but not running: no process,
//              no TAP or socket, the other ports send it nothing; a reload that changes
//              it adds or removes the port while the others forward on),
//              and one table named after the frontend:
//     [endpoint.tap]         ifname (required), netns
//     [endpoint.vhost_user]  socket (required), queue_size = 32768 (power of two, <= 32768:
//                            the largest ring the VMM may set; QEMU's rx_queue_size and
//                            tx_queue_size go up to 1024),
//                            socket_owner / socket_group (a name, resolved at load, or an
//                            id; default: the daemon's), socket_mode = "0600" (octal string,
//                            never writable by others: anyone who can connect is the VM's VMM),
//                            max_guest_memory_gib = 64 (1..4096: the most of a front-end's
//                            memory the endpoint maps; a larger SET_MEM_TABLE is refused)
//     [endpoint.generator]   rate_fps = 0 (0: as fast as possible), sizes = [64],
//                            peer = endpoint name (default: broadcast)
#pragma once

#include <algorithm>
#include <bitset>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "endpoints/virtio/net_header.hpp"
#include "shm/fabric.hpp"
#include "shm/sys/result.hpp"
#include "vswitch/config/mac_address.hpp"

namespace vswitch {

struct TopologyError {
  std::string file;
  std::uint32_t line = 0;  // 0 when the problem has no single place (e.g. a missing table)
  std::string key;         // dotted path, e.g. "endpoint[2].core"
  std::string problem;
  [[nodiscard]] std::string message() const;  // "file:line: key: problem"
};

struct SwitchConfig {
  std::string name = "vswitch";
  std::uint32_t mac_table_size = 4096;
  std::uint32_t aging_s = 300;
  std::uint32_t max_macs_per_port = 0;  // 0: not set, mac_table_size / 4 (see macs_per_port())
  std::uint32_t watchdog_ms = 10000;    // 0: no watchdog
  // Endpoint i runs as uid = gid = endpoint_uid_base + i (when vswitchd is root); 0: off.
  // 60600 onwards: a block no distribution or systemd allocates (systemd's dynamic users
  // start at 61184, its homed users end at 60513).
  std::uint32_t endpoint_uid_base = 60600;
  std::uint32_t endpoint_uid_base_line = 0;  // where the file set it (0: the default)
  std::string seccomp = "enforce";           // "enforce" | "log" | "off"

  // Learned addresses one port may hold in a MAC table.
  [[nodiscard]] std::uint32_t macs_per_port() const noexcept {
    if (max_macs_per_port != 0) return max_macs_per_port;
    return mac_table_size / 4 != 0 ? mac_table_size / 4 : 1;
  }
};

struct FabricConfig {
  std::uint64_t ring_bytes = 1 << 20;
  std::uint32_t max_frame = 65536;
  std::uint32_t stall_timeout_ms = 2000;
  // Ports made at start beyond the file's endpoints, for endpoints a reload adds.
  std::uint32_t spare_ports = 0;
  std::uint32_t spare_ports_line = 0;  // where the file sets it (0: not set)

  // A channel record's payload: the virtio-net header, then the frame. Between ports the
  // header's num_buffers field (a device's to fill in, on its way to a driver) carries
  // the frame's VLAN, and a frame of a VLAN travels untagged (vswitch/dataplane/endpoint.hpp).
  [[nodiscard]] std::uint32_t max_payload() const noexcept {
    return max_frame + static_cast<std::uint32_t>(endpoints::virtio::kNetHeaderBytes);
  }
};

// [metrics]: the Prometheus endpoint vswitchd serves (vswitch/control/metrics_server.hpp).
struct MetricsConfig {
  std::string listen;         // as written, "ADDR:PORT"; empty: no metrics endpoint
  std::string address;        // the numeric IPv4 or IPv6 address (no brackets)
  std::uint16_t port = 0;
  std::uint32_t line = 0;     // where listen is set
  [[nodiscard]] bool enabled() const noexcept { return !listen.empty(); }
};

// [capture]: the ring each endpoint copies frames into while `vswitchctl capture` runs
// (vswitch/observability/capture.hpp).
struct CaptureConfig {
  static constexpr std::uint64_t kDefaultRingBytes = std::uint64_t{4} << 20;
  static constexpr std::uint64_t kMaxRingBytes = std::uint64_t{1} << 30;
  static constexpr std::uint32_t kRecordHeaderBytes = 24;  // in front of each captured frame
  std::uint64_t ring_bytes = kDefaultRingBytes;  // 0: no capture objects, capture refused
  [[nodiscard]] bool enabled() const noexcept { return ring_bytes != 0; }
};

enum class FrontendKind : std::uint8_t { kTap, kVhostUser, kGenerator };
std::string_view to_string(FrontendKind k);

struct TapOptions {
  std::string ifname;
  std::string netns;  // empty: the daemon's own namespace
};
struct VhostUserOptions {
  std::string socket;
  std::uint32_t queue_size = 32768;  // every split ring the spec allows
  std::optional<std::uint32_t> socket_owner;  // uid; none: the daemon's
  std::optional<std::uint32_t> socket_group;  // gid; none: the daemon's
  std::uint32_t socket_mode = 0600;
  std::uint32_t max_guest_memory_gib = 64;
};
struct GeneratorOptions {
  std::uint64_t rate_fps = 0;
  std::vector<std::uint32_t> sizes{64};
  std::string peer;  // empty: broadcast
};

// How long, at most, an endpoint spins after work when its recent sleeps were that
// short (the adaptive poll window). A ping between two TAP endpoints on this project's
// 2-vCPU VMs crosses in 100-300 us with a wake-up per hop; within 50 us come the frames of
// a flow and the replies of the local stack.
inline constexpr std::uint32_t kDefaultPollMaxUs = 50;
// Wake-up coalescing's ceiling: a frame of a dense flow may wait this long for its
// endpoint's timer; longer would only add delay (10 ms is a TCP stream's whole window on
// a fast link).
inline constexpr std::int64_t kMaxCoalesceUs = 10000;

// An MTU's bounds: IPv4's smallest (RFC 791: "Every internet module must be able to
// forward a datagram of 68 octets without further fragmentation"), and a 16-bit length.
inline constexpr std::int64_t kMinMtu = 68;
inline constexpr std::int64_t kMaxMtu = 65535;
// What a frame of a full MTU adds: an Ethernet header (14 bytes) and one 802.1Q tag (4).
inline constexpr std::uint32_t kMtuOverheadBytes = 18;
// The most ports a switch has: the file's endpoints and its spare ports (a 64-bit mask
// carries one bit per port).
inline constexpr std::size_t kMaxPorts = 64;

// 802.1Q VIDs a port may name: 0 (priority tag only) and 4095 are reserved.
inline constexpr std::int64_t kMinVlan = 1;
inline constexpr std::int64_t kMaxVlan = 4094;

struct EndpointConfig {
  std::string name;
  FrontendKind frontend = FrontendKind::kTap;
  std::optional<std::uint32_t> core;
  std::optional<MacAddress> mac;
  std::uint32_t poll_us = 0;
  // The adaptive poll window's ceiling (vswitch/dataplane/poll_window.hpp): the loop
  // spins up to this long after work while its recent sleeps were this short. 0: off.
  std::uint32_t poll_max_us = kDefaultPollMaxUs;
  // Wake-up coalescing (vswitch/dataplane/wake_coalescing.hpp): while frames come within
  // this long of each other, the loop sleeps this long on a timer instead of being woken
  // for each. 0: off.
  std::uint32_t coalesce_us = 0;
  // Drop frames from the frontend whose source is not `mac`. The loader turns it on for
  // every endpoint with a mac unless the file says port_security = false.
  bool port_security = false;
  // false: declared but not running (no process, no TAP or socket; the other ports send it
  // nothing); a reload that turns it on or off starts or stops the port alone. Its
  // channels and stats slice exist either way: the shared memory is sized at start.
  bool enabled = true;
  // What names the port's shared-memory objects (its channels, stats slice and capture
  // ring): its own name, unless it took a spare port's (fabric.spare_ports), whose objects
  // keep the key they were made with.
  std::string key;
  // A spare port: no endpoint holds it (its name is empty; its key names its objects). It
  // is disabled and in no VLAN at all, so no frame reaches it or comes from it.
  bool spare = false;
  // The port's MTU (68..max_frame - 18): applied to its TAP, the most a VMM may set for
  // its guest (VIRTIO_NET_F_MTU), and enforced on both directions (see frame_limit()).
  // None: the kernel's or the guest's own, and only max_frame enforced.
  std::optional<std::uint32_t> mtu;
  // IEEE 802.1Q VLANs (VIDs 1..4094). `vlan`: the VLAN of the port's untagged frames (an
  // access port; on a trunk, its native VLAN). `trunk`: the VLANs its frames carry tagged.
  // Neither: the port is VLAN-unaware, as every port was before VLANs: its frames pass as
  // they are, tags and all, to and from the other VLAN-unaware ports only.
  std::optional<std::uint16_t> vlan;
  std::vector<std::uint16_t> trunk;
  std::variant<TapOptions, VhostUserOptions, GeneratorOptions> options;
  std::uint32_t line = 0;       // where the [[endpoint]] starts
  std::uint32_t core_line = 0;  // where its core is set

  // The longest tagged frame (Ethernet header and 802.1Q tag included, virtio-net header
  // not) this port takes from its frontend or hands to it: mtu + 18; an untagged one may
  // be 4 bytes shorter, and a GSO frame is held to it by its segments (the endpoint
  // loop's exceeds_mtu). No mtu: no limit below the fabric's max_frame.
  [[nodiscard]] std::uint32_t frame_limit() const noexcept {
    return mtu ? *mtu + kMtuOverheadBytes : std::numeric_limits<std::uint32_t>::max();
  }
  [[nodiscard]] bool vlan_aware() const noexcept { return vlan.has_value() || !trunk.empty(); }
  // Whether the port's frames may be in VLAN `vid` (0: the VLAN-unaware ports' domain).
  [[nodiscard]] bool member(std::uint16_t vid) const noexcept {
    if (spare) return false;
    if (vid == 0) return !vlan_aware();
    return (vlan && *vlan == vid) || std::find(trunk.begin(), trunk.end(), vid) != trunk.end();
  }
};

// The VLANs a port carries, one bit per VID: its `vlan` and its `trunk`, or bit 0 alone
// for a VLAN-unaware port (the unaware ports' own domain). What every endpoint holds for
// every port, and what vswitchd tells them when a reload changes a port's (StatsSlice::
// write_port_table).
inline constexpr std::size_t kVlanIdCount = 4096;
using VlanSet = std::bitset<kVlanIdCount>;
[[nodiscard]] inline VlanSet vlan_set(const EndpointConfig& e) {
  VlanSet s;
  if (e.spare) return s;
  if (!e.vlan_aware()) s.set(0);
  if (e.vlan) s.set(*e.vlan);
  for (const std::uint16_t v : e.trunk) s.set(v);
  return s;
}

// What every endpoint holds for every port and vswitchd tells them when a reload changes
// it (StatsSlice::write_port_table): the port's VLANs and its declared address (static in
// every MAC table, in each of those VLANs).
struct PortInfo {
  VlanSet vlans;
  std::optional<MacAddress> mac;
  friend bool operator==(const PortInfo&, const PortInfo&) = default;
};
[[nodiscard]] inline PortInfo port_info(const EndpointConfig& e) { return PortInfo{vlan_set(e), e.mac}; }

struct Topology {
  std::string file;
  std::string source;  // the text it was loaded from (vswitchd hands it to its endpoint programs)
  SwitchConfig switch_config;
  FabricConfig fabric;
  MetricsConfig metrics;
  CaptureConfig capture;
  // One per port, in port order: the file's endpoints, and with fabric.spare_ports the
  // spare ports (EndpointConfig::spare) too. vswitchd keeps each endpoint on its port
  // across reloads: the port layout it runs is a [slots] table it appends to the text it
  // hands on (place_in_slots), which a file of the user's may not hold.
  std::vector<EndpointConfig> endpoints;
  bool slotted = false;  // `source` ends with vswitchd's [slots] table

  // The channels this topology asks for (vswitchd creates them, vswitchctl reads them).
  [[nodiscard]] shm::FabricSpec fabric_spec(std::uint64_t generation = 0) const;
  // The text as the file held it: `source` without vswitchd's [slots] table.
  [[nodiscard]] std::string_view file_text() const noexcept;
  // The port of the endpoint named `name` (never a spare port's), if any.
  [[nodiscard]] std::optional<std::size_t> find(std::string_view name) const noexcept;
};

// What begins the [slots] table vswitchd appends (place_in_slots).
inline constexpr std::string_view kSlotsIntro =
    "\n# Appended by vswitchd: the port each endpoint holds (fabric.spare_ports); not part of the file.\n";

using TopologyErrors = std::vector<TopologyError>;

// The largest topology file (and sealed copy handed to the endpoints) taken.
inline constexpr std::size_t kMaxTopologyBytes = std::size_t{16} << 20;

// Parses and validates; on failure returns every problem found (at least one).
[[nodiscard]] sys::Result<Topology, TopologyErrors> load_topology_file(const std::string& path);
// Same, from text; `file` is the name used in messages. `running`: a text vswitchd
// handed on, whose [slots] table (its own) is read; in any other text it is an error.
[[nodiscard]] sys::Result<Topology, TopologyErrors> load_topology_string(std::string_view text,
                                                                         const std::string& file,
                                                                         bool running = false);
// The topology vswitchd runs `file` as: without fabric.spare_ports in either, `file` as it
// is. Otherwise each endpoint keeps the port it holds in `running` (none at start: the
// file's order, then the spare ports), an endpoint new to the file takes the first spare
// port `running` has free, and a port whose endpoint left the file becomes spare; the
// layout is appended to the text as a [slots] table, and the result loaded from that text.
// Fails (naming the endpoint's line) when no spare port is left for an endpoint added
// (`busy`: bit i, spare port i is not free yet: its last endpoint is still stopping), and
// at start when the endpoints and spare ports are more than kMaxPorts. When the two differ
// in fabric.spare_ports, `file` as it is (that change needs a restart).
[[nodiscard]] sys::Result<Topology, TopologyErrors> place_in_slots(const Topology* running, const Topology& file,
                                                                   std::uint64_t busy = 0);
// Checks endpoint cores against the machine (cpus = number of CPUs it has).
[[nodiscard]] TopologyErrors check_cores(const Topology& t, unsigned cpus);
// Checks that no user and no group of this system has an id endpoints would run as
// (switch.endpoint_uid_base .. + endpoints - 1): an endpoint must share its files and
// processes with nobody.
[[nodiscard]] TopologyErrors check_endpoint_ids(const Topology& t);
// All messages joined by newlines.
[[nodiscard]] std::string format_errors(const TopologyErrors& errors);

}  // namespace vswitch
