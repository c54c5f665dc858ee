#include "vswitch/config/topology_diff.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <type_traits>

namespace vswitch {
namespace {

// "TEXT", built by appending: GCC 12 warns (-Wrestrict, a false positive that -Werror
// makes fatal in some cross builds) on a literal + an rvalue std::string.
std::string quoted(std::string_view v) {
  std::string out;
  out.reserve(v.size() + 2);
  out += '"';
  out += v;
  out += '"';
  return out;
}

template <typename T>
std::string show(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) return quoted(v);
  else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, MacAddress>) return v.str();
  else if constexpr (std::is_same_v<T, std::vector<std::uint32_t>> || std::is_same_v<T, std::vector<std::uint16_t>>) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
    return out + "]";
  } else return std::to_string(v);
}
template <typename T>
std::string show(const std::optional<T>& v) {
  return v ? show(*v) : std::string("(unset)");
}

// The lines of `next`'s keys, from its source (the loader keeps only some).
class Lines {
 public:
  explicit Lines(const std::string& source) {
    try {
      doc_ = toml::parse(source);
    } catch (const toml::parse_error&) {
      // `next` was loaded from this text, so it parses; if not, no line is known.
    }
  }
  // The line of `table.key` (in the [[endpoint]] that begins at line `endpoint` when
  // given), else of its table, else 0.
  [[nodiscard]] std::uint32_t of(const std::string& table, const std::string& key,
                                 std::optional<std::uint32_t> endpoint = std::nullopt) const {
    const toml::table* t = nullptr;
    if (endpoint) {
      const toml::array* eps = doc_["endpoint"].as_array();
      if (eps == nullptr) return 0;
      for (const auto& e : *eps)
        if (e.is_table() && e.source().begin.line == *endpoint) t = e.as_table();
      if (t == nullptr) return 0;
      if (t != nullptr && !table.empty()) {
        const toml::table* sub = (*t)[table].as_table();
        if (sub == nullptr) return t->source().begin.line;
        t = sub;
      }
    } else {
      t = doc_[table].as_table();
    }
    if (t == nullptr) return 0;
    if (const toml::node* n = t->get(key)) return n->source().begin.line;
    return t->source().begin.line;
  }

 private:
  toml::table doc_;
};

class Collector {
 public:
  Collector(std::vector<TopologyChange>& out, const Lines& lines) : out_(out), lines_(lines) {}
  // A key of a top-level table (global).
  template <typename T>
  void global(const std::string& table, const std::string& key, const T& was, const T& now) {
    if (was == now) return;
    out_.push_back(TopologyChange{table + "." + key, show(was), show(now), lines_.of(table, key), std::nullopt});
  }
  // A key only vswitchd reads: it applies the change itself.
  template <typename T>
  void daemon(const std::string& table, const std::string& key, const T& was, const T& now) {
    if (was == now) return;
    TopologyChange c{table + "." + key, show(was), show(now), lines_.of(table, key), std::nullopt};
    c.daemon = true;
    out_.push_back(std::move(c));
  }
  // A key of endpoint `j` (its index in `next`), in its sub-table `table` ("" for the
  // endpoint's own): `local` when only that endpoint reads it.
  template <typename T>
  void endpoint(const std::string& name, std::size_t j, std::uint32_t line, const std::string& table,
                const std::string& key, const T& was, const T& now, bool local) {
    if (was == now) return;
    out_.push_back(TopologyChange{"endpoint " + name + ": " + (table.empty() ? key : table + "." + key), show(was),
                                  show(now), lines_.of(table, key, line),
                                  local ? std::optional<std::size_t>(j) : std::nullopt});
  }
  void add(TopologyChange c) { out_.push_back(std::move(c)); }

 private:
  std::vector<TopologyChange>& out_;
  const Lines& lines_;
};


}  // namespace

std::string TopologyChange::describe(const std::string& file) const {
  // Appended piece by piece (see quoted()).
  std::string out = file;
  if (line != 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  out += key;
  if (!was.empty() || !now.empty()) {
    out += ": ";
    out += was;
    out += " -> ";
    out += now;
  }
  return out;
}

// Every field is compared below. A field added to one of these structs must be compared
// too (and classed: an endpoint's own, or needing a restart): these sizes (LP64,
// libstdc++) stop the build until the new field is seen here and the size updated.
#if defined(__GLIBCXX__) && __SIZEOF_POINTER__ == 8
static_assert(sizeof(EndpointConfig) == 224, "EndpointConfig changed: compare the new field in topology_changes");
static_assert(sizeof(SwitchConfig) == 88 && sizeof(FabricConfig) == 24 && sizeof(MetricsConfig) == 72 &&
                  sizeof(CaptureConfig) == 8,
              "a topology table changed: compare the new field in topology_changes");
static_assert(sizeof(TapOptions) == 64 && sizeof(VhostUserOptions) == 64 && sizeof(GeneratorOptions) == 64,
              "a frontend's options changed: compare the new field in topology_changes");
#endif

std::vector<TopologyChange> topology_changes(const Topology& a, const Topology& b) {
  std::vector<TopologyChange> out;
  const Lines lines(b.source);
  Collector c(out, lines);
  const auto& s = a.switch_config;
  const auto& z = b.switch_config;
  c.global("switch", "name", s.name, z.name);
  c.global("switch", "mac_table_size", s.mac_table_size, z.mac_table_size);
  c.global("switch", "aging_s", s.aging_s, z.aging_s);
  c.global("switch", "max_macs_per_port", s.macs_per_port(), z.macs_per_port());
  c.global("switch", "watchdog_ms", s.watchdog_ms, z.watchdog_ms);
  c.global("switch", "endpoint_uid_base", s.endpoint_uid_base, z.endpoint_uid_base);
  c.global("switch", "seccomp", s.seccomp, z.seccomp);
  c.global("fabric", "ring_bytes", a.fabric.ring_bytes, b.fabric.ring_bytes);
  c.global("fabric", "max_frame", a.fabric.max_frame, b.fabric.max_frame);
  c.global("fabric", "stall_timeout_ms", a.fabric.stall_timeout_ms, b.fabric.stall_timeout_ms);
  const auto listen = [](const MetricsConfig& m) {  // "" is off: said as unset
    return m.enabled() ? std::optional<std::string>(m.listen) : std::nullopt;
  };
  c.daemon("metrics", "listen", listen(a.metrics), listen(b.metrics));
  c.global("capture", "ring_bytes", a.capture.ring_bytes, b.capture.ring_bytes);
  c.global("fabric", "spare_ports", a.fabric.spare_ports, b.fabric.spare_ports);
  // Both laid out on the same ports (place_in_slots): an endpoint keeps its port, one added
  // takes a spare port and one removed gives its port back, each applied by starting or
  // stopping that port alone. Otherwise the ports are the endpoints, made at start.
  const bool slots = a.slotted && b.slotted && a.endpoints.size() == b.endpoints.size();
  for (std::size_t i = 0; i < a.endpoints.size(); ++i) {
    const auto& x = a.endpoints[i];
    if (x.spare) {
      if (slots && !b.endpoints[i].spare)
        c.add(TopologyChange{"endpoint " + b.endpoints[i].name + ": added (" +
                                 std::string(to_string(b.endpoints[i].frontend)) + ", port " + std::to_string(i) + ")",
                             "", "", b.endpoints[i].line, i});
      continue;
    }
    const auto j = slots ? (b.endpoints[i].spare ? std::nullopt : std::optional<std::size_t>(i)) : b.find(x.name);
    if (!j) {
      c.add(TopologyChange{"endpoint " + x.name + ": removed", "", "", 0,
                           slots ? std::optional<std::size_t>(i) : std::nullopt});
      continue;
    }
    const auto& y = b.endpoints[*j];
    const std::string& n = x.name;
    if (*j != i)
      c.add(TopologyChange{"endpoint " + n + ": position (port number)", std::to_string(i), std::to_string(*j), y.line,
                           std::nullopt});
    if (x.frontend != y.frontend) {
      c.add(TopologyChange{"endpoint " + n + ": frontend", quoted(to_string(x.frontend)), quoted(to_string(y.frontend)),
                           lines.of("", "frontend", y.line), std::nullopt});
      continue;
    }
    // A port's address: static in every MAC table, which vswitchd rewrites through the
    // slices (StatsSlice::write_port_table). But a running TAP's device, a running guest
    // and any generator aimed at the port were given it when they started: only a port
    // that is off, and no generator's peer, may change it without a restart of vswitchd.
    const bool aimed_at = std::any_of(b.endpoints.begin(), b.endpoints.end(), [&](const EndpointConfig& e) {
      const auto* g = std::get_if<GeneratorOptions>(&e.options);
      return g != nullptr && g->peer == n;
    });
    c.endpoint(n, *j, y.line, "", "mac", x.mac, y.mac, !x.enabled && !aimed_at);
    // A port's VLANs: its own process is restarted on them, and every other endpoint is
    // told by vswitchd through its slice (StatsSlice::write_port_table), not its copy of
    // the file.
    c.endpoint(n, *j, y.line, "", "vlan", x.vlan, y.vlan, true);
    c.endpoint(n, *j, y.line, "", "trunk", x.trunk, y.trunk, true);
    c.endpoint(n, *j, y.line, "", "core", x.core, y.core, true);
    c.endpoint(n, *j, y.line, "", "poll_us", x.poll_us, y.poll_us, true);
    c.endpoint(n, *j, y.line, "", "poll_max_us", x.poll_max_us, y.poll_max_us, true);
    c.endpoint(n, *j, y.line, "", "coalesce_us", x.coalesce_us, y.coalesce_us, true);
    c.endpoint(n, *j, y.line, "", "port_security", x.port_security, y.port_security, true);
    // Turning a port on or off starts or stops it alone (the others follow the daemon's
    // word in their slices, not their copy of the file).
    c.endpoint(n, *j, y.line, "", "enabled", x.enabled, y.enabled, true);
    // A port disabled in the running topology holds no TAP, socket or VMM: what only its
    // TAP, its socket or its VMM's start depend on is free to change before it runs.
    const bool idle = !x.enabled;
    // A VM's MTU, ring size and memory are its VMM's, fixed when it started: a vhost-user
    // port restarted with a smaller limit would refuse its VMM's reconnect (cutting the VM
    // off), and a larger one changes nothing for the running guest.
    const bool vm = x.frontend == FrontendKind::kVhostUser;
    c.endpoint(n, *j, y.line, "", "mtu", x.mtu, y.mtu, !vm || idle);
    if (const auto* t = std::get_if<TapOptions>(&x.options)) {
      const auto& u = std::get<TapOptions>(y.options);
      c.endpoint(n, *j, y.line, "tap", "ifname", t->ifname, u.ifname, idle);
      c.endpoint(n, *j, y.line, "tap", "netns", t->netns, u.netns, idle);
    } else if (const auto* v = std::get_if<VhostUserOptions>(&x.options)) {
      const auto& w = std::get<VhostUserOptions>(y.options);
      c.endpoint(n, *j, y.line, "vhost_user", "socket", v->socket, w.socket, idle);
      c.endpoint(n, *j, y.line, "vhost_user", "socket_owner", v->socket_owner, w.socket_owner, idle);
      c.endpoint(n, *j, y.line, "vhost_user", "socket_group", v->socket_group, w.socket_group, idle);
      c.endpoint(n, *j, y.line, "vhost_user", "socket_mode", v->socket_mode, w.socket_mode, idle);
      c.endpoint(n, *j, y.line, "vhost_user", "queue_size", v->queue_size, w.queue_size, idle);
      c.endpoint(n, *j, y.line, "vhost_user", "max_guest_memory_gib", v->max_guest_memory_gib, w.max_guest_memory_gib, idle);
    } else if (const auto* g = std::get_if<GeneratorOptions>(&x.options)) {
      const auto& h = std::get<GeneratorOptions>(y.options);
      c.endpoint(n, *j, y.line, "generator", "rate_fps", g->rate_fps, h.rate_fps, true);
      c.endpoint(n, *j, y.line, "generator", "sizes", g->sizes, h.sizes, true);
      c.endpoint(n, *j, y.line, "generator", "peer", g->peer, h.peer, true);
    }
  }
  for (std::size_t j = 0; j < b.endpoints.size(); ++j)
    if (!slots && !b.endpoints[j].spare && !a.find(b.endpoints[j].name))
      c.add(TopologyChange{"endpoint " + b.endpoints[j].name + ": added (" +
                               std::string(to_string(b.endpoints[j].frontend)) + ")",
                           "", "", b.endpoints[j].line, std::nullopt});
  return out;
}

}  // namespace vswitch
