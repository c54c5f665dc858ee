// vswitchctl --config FILE ports|fdb|stats [--json]: reads a running switch's state from
// its stats objects (the daemon's, one slice per endpoint) and channels: it only reads,
// through read-only mappings (shm::Access::kReadOnly: a store would fault), so nothing it
// does can change the switch's state; nothing is stopped or slowed. An endpoint's slice
// that does not pass validation is left out, said on standard error, and the rest shown.
// Three commands act, and say so: capture (writes the capture object's reader line),
// link (writes the endpoint's link word in its slice) and reload (signals vswitchd).
// FILE names the switch; the topology every command but reload goes by is the one vswitchd
// runs (running_topology.hpp), which an edited file does not change until it is reloaded.
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/channel.hpp"
#include "shm/sys/clock.hpp"
#include "shm/fabric.hpp"
#include "vswitch/control/capture_command.hpp"
#include "vswitch/observability/counter_report.hpp"
#include "vswitch/observability/frontend_counters.hpp"
#include "vswitch/observability/running_topology.hpp"
#include "vswitch/observability/stats.hpp"
#include "vswitch/config/topology.hpp"

namespace vswitch {
namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}


std::string attachment(const EndpointConfig& e) {
  if (const auto* t = std::get_if<TapOptions>(&e.options))
    return t->ifname + (t->netns.empty() ? "" : " (netns " + t->netns + ")");
  if (const auto* v = std::get_if<VhostUserOptions>(&e.options)) return v->socket;
  if (const auto* g = std::get_if<GeneratorOptions>(&e.options))
    return (g->rate_fps ? std::to_string(g->rate_fps) + " fps" : std::string("max rate")) + " to " +
           (g->peer.empty() ? std::string("broadcast") : g->peer);
  return "";
}

std::string core_text(const DaemonState& d) { return d.core == ~std::uint64_t{0} ? "-" : std::to_string(d.core); }

// A port's administrative link: what vswitchctl link asked for (the slice's word) and
// whether the endpoint has taken it (its link_down gauge); "down*" / "up*" until it has
// (an endpoint that is not running takes it when it starts).
struct LinkView {
  bool known = false;  // the slice is mapped
  bool down = false;
  bool pending = false;
  [[nodiscard]] std::string text() const {
    if (!known) return "?";
    return std::string(down ? "down" : "up") + (pending ? "*" : "");
  }
};
LinkView link_of(const StatsSlice* s) {
  if (s == nullptr) return {};
  const bool down = s->admin_down();
  return {true, down, down != (s->read_counters().loop.link_down != 0)};
}

// `vswitchctl counters`: every key `stats --json` prints, its group and what it counts,
// from the same tables.
void describe_counters(bool json) {
  bool first = true;
  auto line = [&](std::string_view group, const std::string& key, std::string_view help) {
    if (json)
      std::printf("%s\n  {\"group\": %s, \"key\": %s, \"help\": %s}", first ? "" : ",",
                  json_string(std::string(group)).c_str(), json_string(key).c_str(),
                  json_string(std::string(help)).c_str());
    else
      std::printf("%-12s %-34s %s\n", std::string(group).c_str(), key.c_str(), std::string(help).c_str());
    first = false;
  };
  auto block = [&]<sys::CounterBlock Block>(std::string_view group, std::string_view prefix, const Block&) {
    for (const auto& n : Block::kNames) line(group, std::string(prefix) + std::string(n.name), n.help);
  };
  auto reasons = [&]<typename Reason, std::size_t Slots>(std::string_view group, std::string_view key,
                                                          const sys::ReasonCounts<Reason, Slots>& r, std::string_view help) {
    r.for_each([&](std::string_view name, std::uint64_t) {
      line(group, std::string(key) + "." + std::string(name), help);
    });
  };
  if (json) std::printf("{\"counters\": [");
  block("frontend", "", TrafficCounters{});
  block("forwarding", "", ForwardingCounters{});
  block("loop", "", LoopCounters{});
  block("mac", "mac_", MacTableCounters{});
  line("drops", "drops_total", "frames dropped, every reason");
  reasons("drops", "drops", DropCounters{}, "frames dropped for this reason");
  block("generator", "gen_", GeneratorCounters{});
  block("vhost-user", "vu_", endpoints::vhost_user::NetDeviceTotals{});
  const endpoints::vhost_user::NetDeviceCounters vu{};
  line("bad chains", "vu_bad_chain_reasons_total", "descriptor chains returned with length 0, every reason");
  reasons("bad chains", "vu_bad_chain_reasons", vu.chain_errors, "malformed descriptor chains, by what was wrong");
  reasons("bad chains", "vu_bad_chain_reasons", vu.tx_errors, "TX chains refused, by what was wrong");
  reasons("bad chains", "vu_bad_chain_reasons", vu.rx_drops, "RX chains given back unused, by why");
  block("peers", "peers.PEER.", PeerCounters{});
  if (json) std::printf("\n]}\n");
}

struct Ctl {
  const Topology& topo;
  const StatsRegion& stats;
  bool json;

  // The endpoint's slice, or null (said on standard error) when attach refused it.
  const StatsSlice* slice(std::size_t i) const {
    const StatsSlice* s = stats.slice(i);
    if (s == nullptr)
      std::fprintf(stderr, "vswitchctl: endpoint %s: its counters and MAC table are left out: %s\n",
                   topo.endpoints[i].name.c_str(), stats.slice_error(i).c_str());
    return s;
  }

  std::string port_name(PortId p) const {
    return p < topo.endpoints.size() && !topo.endpoints[p].spare ? topo.endpoints[p].name : "port" + std::to_string(p);
  }

  // A port's VLANs as `ports` shows them: "-" (VLAN-unaware), "10" (access), "trunk:10,20",
  // or "10+trunk:20,30" (a trunk with a native VLAN).
  static std::string vlans_text(const EndpointConfig& e) {
    if (!e.vlan_aware()) return "-";
    // Appended piece by piece, as in ports(): GCC 12 at -O3 warns (-Wrestrict, a false
    // positive) on "literal" + std::string temporaries.
    std::string t = e.vlan ? std::to_string(*e.vlan) : "";
    if (!e.trunk.empty()) {
      t += e.vlan ? "+trunk:" : "trunk:";
      for (std::size_t k = 0; k < e.trunk.size(); ++k) {
        if (k != 0) t += ',';
        t += std::to_string(e.trunk[k]);
      }
    }
    return t;
  }
  static std::string trunk_json(const EndpointConfig& e) {
    std::string t = "[";
    for (std::size_t k = 0; k < e.trunk.size(); ++k) {
      if (k != 0) t += ", ";
      t += std::to_string(e.trunk[k]);
    }
    t += ']';
    return t;
  }

  void ports() const {
    if (json) {
      std::printf("{\"switch\": %s, \"ports\": [", json_string(topo.switch_config.name).c_str());
      bool first = true;
      for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
        const auto& e = topo.endpoints[i];
        if (e.spare) continue;  // a spare port: no endpoint
        const DaemonState d = stats.read_daemon(i);
        const LinkView link = link_of(stats.slice(i));
        std::printf("%s\n  {\"name\": %s, \"frontend\": %s, \"core\": %s, \"state\": %s, \"pid\": %" PRIu64
                    ", \"restarts\": %" PRIu64 ", \"hung\": %" PRIu64 ", \"mtu\": %s, \"link\": %s, "
                    "\"link_pending\": %s, \"vlan\": %s, \"trunk\": %s, \"attachment\": %s}",
                    first ? "" : ",", json_string(e.name).c_str(), json_string(std::string(to_string(e.frontend))).c_str(),
                    d.core == ~std::uint64_t{0} ? "null" : std::to_string(d.core).c_str(),
                    json_string(std::string(to_string(static_cast<EndpointState>(d.state)))).c_str(), d.pid,
                    d.restarts, d.hung, e.mtu ? std::to_string(*e.mtu).c_str() : "null",
                    link.known ? (link.down ? "\"down\"" : "\"up\"") : "null", link.pending ? "true" : "false",
                    e.vlan ? std::to_string(*e.vlan).c_str() : "null", trunk_json(e).c_str(),
                    json_string(attachment(e)).c_str());
        first = false;
      }
      std::printf("\n]}\n");
      return;
    }
    std::printf("%-16s %-10s %-5s %-8s %-8s %-8s %-6s %-5s %-12s %s\n", "ENDPOINT", "FRONTEND", "CORE", "STATE", "PID",
                "RESTARTS", "MTU", "LINK", "VLAN", "ATTACHMENT");
    for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
      const auto& e = topo.endpoints[i];
      if (e.spare) continue;
      const DaemonState d = stats.read_daemon(i);
      // RESTARTS: "3" or, when the watchdog killed some of them as hung, "3/1hung".
      // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on
      // "literal" + std::string temporaries here.
      std::string restarts = std::to_string(d.restarts);
      if (d.hung != 0) {
        restarts += '/';
        restarts += std::to_string(d.hung);
        restarts += "hung";
      }
      // MTU: the topology's for the port, "-" where it sets none.
      const std::string mtu = e.mtu ? std::to_string(*e.mtu) : "-";
      std::printf("%-16s %-10s %-5s %-8s %-8" PRIu64 " %-8s %-6s %-5s %-12s %s\n", e.name.c_str(),
                  std::string(to_string(e.frontend)).c_str(), core_text(d).c_str(),
                  std::string(to_string(static_cast<EndpointState>(d.state))).c_str(), d.pid, restarts.c_str(),
                  mtu.c_str(), link_of(stats.slice(i)).text().c_str(), vlans_text(e).c_str(), attachment(e).c_str());
    }
  }

  void fdb() const {
    const std::uint64_t now = sys::monotonic_ms();
    const std::uint64_t aging_ms = std::uint64_t{topo.switch_config.aging_s} * 1000;
    if (json) std::printf("{\"switch\": %s, \"fdb\": [", json_string(topo.switch_config.name).c_str());
    else std::printf("%-16s %-18s %-5s %-16s %-8s %s\n", "ENDPOINT", "MAC", "VLAN", "PORT", "TYPE", "AGE_S");
    bool first = true;
    for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
      if (topo.endpoints[i].spare) continue;
      const StatsSlice* s = slice(i);
      if (s == nullptr) continue;
      auto v = s->read_fdb();
      if (!v) {
        std::fprintf(stderr, "vswitchctl: endpoint %s: FDB changed too fast to read a consistent copy\n",
                     topo.endpoints[i].name.c_str());
        continue;
      }
      for (const auto& e : v->entries) {
        const std::uint64_t age = now > e.last_seen_ms ? now - e.last_seen_ms : 0;
        if (!e.is_static && aging_ms != 0 && age >= aging_ms) continue;  // aged since the snapshot
        if (json) {
          std::printf("%s\n  {\"endpoint\": %s, \"mac\": \"%s\", \"vlan\": %s, \"port\": %s, \"static\": %s, "
                      "\"age_ms\": %s}",
                      first ? "" : ",", json_string(topo.endpoints[i].name).c_str(), e.mac.str().c_str(),
                      e.vlan == 0 ? "null" : std::to_string(e.vlan).c_str(), json_string(port_name(e.port)).c_str(),
                      e.is_static ? "true" : "false", e.is_static ? "null" : std::to_string(age).c_str());
        } else {
          char age_text[32];
          std::snprintf(age_text, sizeof age_text, "%.1f", static_cast<double>(age) / 1000.0);
          // VLAN: the 802.1Q VID the entry was learned in, "-" for the VLAN-unaware ports.
          const std::string vlan = e.vlan == 0 ? "-" : std::to_string(e.vlan);
          std::printf("%-16s %-18s %-5s %-16s %-8s %s\n", topo.endpoints[i].name.c_str(), e.mac.str().c_str(),
                      vlan.c_str(), port_name(e.port).c_str(), e.is_static ? "static" : "learned",
                      e.is_static ? "-" : age_text);
        }
        first = false;
      }
      if (!json && v->table_size > v->entries.size())
        std::printf("%-16s ... %" PRIu64 " entries in the table, %zu shown\n", topo.endpoints[i].name.c_str(),
                    v->table_size, v->entries.size());
    }
    if (json) std::printf("\n]}\n");
  }

  void stats_cmd() const {
    if (json) std::printf("{\"switch\": %s, \"endpoints\": [", json_string(topo.switch_config.name).c_str());
    bool first_endpoint = true;
    for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
      const auto& e = topo.endpoints[i];
      if (e.spare) continue;
      const StatsSlice* s = slice(i);
      if (s == nullptr) continue;
      const DaemonState d = stats.read_daemon(i);
      const EndpointCounters c = s->read_counters();
      const std::string state(to_string(static_cast<EndpointState>(d.state)));
      const auto groups = counter_report(c, e.frontend);
      if (json) {
        std::printf("%s\n  {\"name\": %s, \"frontend\": %s, \"state\": %s, \"pid\": %" PRIu64
                    ", \"restarts\": %" PRIu64 ", \"hung\": %" PRIu64,
                    first_endpoint ? "" : ",", json_string(e.name).c_str(),
                    json_string(std::string(to_string(e.frontend))).c_str(), json_string(state).c_str(), d.pid,
                    d.restarts, d.hung);
        first_endpoint = false;
        for (const auto& g : groups) render_json(g);
        std::printf(", \"peers\": {");
        bool first = true;
        for (std::size_t p = 0; p < topo.endpoints.size(); ++p) {
          if (p == i || topo.endpoints[p].spare) continue;
          std::printf("%s%s: {", first ? "" : ", ", json_string(topo.endpoints[p].name).c_str());
          const auto v = sys::counter_values(c.peers[p]);
          for (std::size_t k = 0; k < v.size(); ++k)
            std::printf("%s\"%s\": %" PRIu64, k ? ", " : "", std::string(PeerCounters::kNames[k].name).c_str(), v[k]);
          std::printf("}");
          first = false;
        }
        std::printf("}}");
        continue;
      }
      std::string hung;
      if (d.hung != 0) {
        hung = ", of them hung ";
        hung += std::to_string(d.hung);
      }
      std::printf("%s (%s, %s, pid %" PRIu64 ", restarts %" PRIu64 "%s)\n", e.name.c_str(),
                  std::string(to_string(e.frontend)).c_str(), state.c_str(), d.pid, d.restarts, hung.c_str());
      for (const auto& g : groups) render_text(g);
      for (std::size_t p = 0; p < topo.endpoints.size(); ++p) {
        if (p == i || topo.endpoints[p].spare) continue;
        std::printf("  -> %-12s", topo.endpoints[p].name.c_str());
        const auto v = sys::counter_values(c.peers[p]);
        for (std::size_t k = 0; k < v.size(); ++k)
          std::printf("  %s %" PRIu64, std::string(PeerCounters::kNames[k].name).c_str(), v[k]);
        std::printf("%s\n", c.peers[p].stalled ? "   STALLED" : "");
      }
    }
    if (json) std::printf("\n]}\n");
  }

  // Text: one line per group; a by-reason group shows its total and the reasons that
  // are not 0.
  static void render_text(const CounterGroup& g) {
    std::printf("  %-11s", std::string(g.title).c_str());
    if (g.by_reason) std::printf("  total %" PRIu64, g.total());
    for (const auto& [name, value] : g.values)
      if (!g.by_reason || value != 0) std::printf("  %s%s%" PRIu64, std::string(name).c_str(), g.by_reason ? "=" : " ", value);
    std::printf("\n");
  }
  // JSON: flat keys (prefix + name); a by-reason group as "<key>_total" and a "<key>" object.
  static void render_json(const CounterGroup& g) {
    if (g.by_reason) {
      std::printf(", \"%s_total\": %" PRIu64 ", \"%s\": {", std::string(g.json_key).c_str(), g.total(),
                  std::string(g.json_key).c_str());
      bool first = true;
      for (const auto& [name, value] : g.values) {
        std::printf("%s\"%s\": %" PRIu64, first ? "" : ", ", std::string(name).c_str(), value);
        first = false;
      }
      std::printf("}");
      return;
    }
    for (const auto& [name, value] : g.values)
      std::printf(", \"%s%s\": %" PRIu64, std::string(g.json_key).c_str(), std::string(name).c_str(), value);
  }
};

// Every channel's control words, read from the running switch (only read, through a mapping of
// each channel). A channel whose `used` stays non-zero while its consumer is waiting is a
// lost wakeup; one that stays full is a stalled consumer. WAKE_FULL: the consumer
// coalesces its wake-ups (coalesce_us) and asks senders that find the channel full to
// ring it anyway.
void channels(const Topology& topo, bool json) {
  const shm::FabricSpec spec = topo.fabric_spec();
  if (json) std::printf("{\"switch\": %s, \"channels\": [", json_string(spec.name).c_str());
  else std::printf("%-24s %12s %14s %14s %9s %14s %9s\n", "CHANNEL", "CAPACITY", "HEAD", "TAIL", "C_WAITING",
                   "P_WANTS", "WAKE_FULL");
  bool first = true;
  for (std::size_t a = 0; a < spec.endpoints.size(); ++a)
    for (std::size_t b = 0; b < spec.endpoints.size(); ++b) {
      if (a == b || topo.endpoints[a].spare || topo.endpoints[b].spare) continue;
      const std::string& from = topo.endpoints[a].name;
      const std::string& to = topo.endpoints[b].name;
      const std::string label = from + " -> " + to;
      auto ch = shm::Channel::attach(spec.channel_name(a, b), 0, shm::Access::kReadOnly);
      if (!ch) {
        std::fprintf(stderr, "vswitchctl: %s: %s\n", label.c_str(), ch.error().c_str());
        continue;
      }
      const shm::RingSnapshot s = ch.value().area().snapshot();
      const std::uint64_t cap = ch.value().area().capacity();
      if (json) {
        std::printf("%s\n  {\"from\": %s, \"to\": %s, \"capacity\": %" PRIu64 ", \"head\": %" PRIu64
                    ", \"tail\": %" PRIu64 ", \"used\": %" PRIu64 ", \"consumer_waiting\": %u, \"producer_wants\": %" PRIu64
                    ", \"wake_on_full\": %u}",
                    first ? "" : ",", json_string(from).c_str(), json_string(to).c_str(),
                    cap, s.head, s.tail, s.head - s.tail, s.consumer_waiting, s.producer_wants, s.wake_on_full);
      } else {
        std::printf("%-24s %12" PRIu64 " %14" PRIu64 " %14" PRIu64 " %9u %14" PRIu64 " %9u   used %" PRIu64 "\n",
                    label.c_str(), cap, s.head, s.tail, s.consumer_waiting, s.producer_wants, s.wake_on_full,
                    s.head - s.tail);
      }
      first = false;
    }
  if (json) std::printf("\n]}\n");
}

// Whether `pid` is a running vswitchd, the only process vswitchctl signals: the stats
// objects of a vswitchd that was killed outlive it, and its pid may be another
// process's by now.
bool is_vswitchd(pid_t pid) {
  if (pid <= 0) return false;
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/comm").c_str(), "re");
  if (f == nullptr) return false;
  char comm[32] = {};
  const bool got = std::fgets(comm, sizeof comm, f) != nullptr;
  std::fclose(f);
  return got && std::string_view(comm) == "vswitchd\n";
}

// `vswitchctl link ENDPOINT up|down`: writes the endpoint's link word (the one command
// besides capture that writes), wakes the endpoints through vswitchd (SIGUSR1: every
// doorbell rung) and waits up to 5 s for the endpoint's gauge to follow.
int run_link(const Topology& topo, const StatsRegion& stats, const std::string& endpoint, bool down) {
  const auto found = topo.find(endpoint);
  if (!found) {
    std::fprintf(stderr, "vswitchctl: link: no endpoint \"%s\" in %s\n", endpoint.c_str(), topo.file.c_str());
    return 2;
  }
  const std::size_t i = *found;
  const auto daemon = static_cast<pid_t>(stats.daemon_pid());
  if (!is_vswitchd(daemon)) {
    std::fprintf(stderr, "vswitchctl: link: vswitchd (pid %d) is not running; nothing changed\n", daemon);
    return 1;
  }
  auto slice = StatsSlice::attach(topo.switch_config.name, topo.endpoints[i].key, i, stats.fdb_capacity(),
                                  stats.region().generation(), shm::Access::kReadWrite);
  if (!slice) {
    std::fprintf(stderr, "vswitchctl: link: cannot write endpoint %s's stats slice: %s\n", endpoint.c_str(),
                 slice.error().c_str());
    return 1;
  }
  slice.value().set_admin_down(down);
  if (::kill(daemon, SIGUSR1) != 0)
    std::fprintf(stderr, "vswitchctl: link: could not wake the endpoints through vswitchd (pid %d): %s; an idle "
                 "endpoint takes the change at its next heartbeat\n", daemon, std::strerror(errno));
  const char* state = down ? "down" : "up";
  const std::uint64_t deadline = sys::monotonic_ms() + 5000;
  for (;;) {
    if ((slice.value().read_counters().loop.link_down != 0) == down) {
      std::printf("%s: link %s\n", endpoint.c_str(), state);
      return 0;
    }
    if (static_cast<EndpointState>(stats.read_daemon(i).state) != EndpointState::kUp) {
      std::printf("%s: link %s when it runs (the endpoint is %s now)\n", endpoint.c_str(), state,
                  std::string(to_string(static_cast<EndpointState>(stats.read_daemon(i).state))).c_str());
      return 0;
    }
    if (sys::monotonic_ms() > deadline) {
      std::fprintf(stderr, "vswitchctl: link: endpoint %s has not taken the link %s within 5 s (asked for; "
                   "vswitchctl ports shows it as %s*)\n", endpoint.c_str(), state, state);
      return 1;
    }
    const timespec pause{0, 10'000'000};  // polling a gauge another process sets: no event to wait on
    ::nanosleep(&pause, nullptr);
  }
}

// `vswitchctl reload`: SIGHUP to vswitchd, then its report (StatsRegion::read_reload),
// waited for 10 s at most, then (applied) each restarted endpoint back up, 15 s at most.
// vswitchd re-reads the file it runs; the changes themselves, each with its file and line,
// are in its log.
int run_reload(const Topology& topo, const StatsRegion& stats) {
  const auto daemon = static_cast<pid_t>(stats.daemon_pid());
  // Ours is the reload after the last one begun (one running now may have read the file
  // before the edit this command follows). A later one (another SIGHUP meanwhile) is
  // taken as ours too: it read the file after ours was sent.
  const std::uint64_t ours = stats.read_reload().reloads + 1;
  std::vector<std::uint64_t> pids;
  for (std::size_t i = 0; i < topo.endpoints.size(); ++i) pids.push_back(stats.read_daemon(i).pid);
  if (!is_vswitchd(daemon)) {
    std::fprintf(stderr, "vswitchctl: reload: vswitchd (pid %d) is not running; nothing sent\n", daemon);
    return 1;
  }
  if (::kill(daemon, SIGHUP) != 0) {
    std::fprintf(stderr, "vswitchctl: reload: cannot signal vswitchd (pid %d): %s\n", daemon, std::strerror(errno));
    return 1;
  }
  const std::uint64_t deadline = sys::monotonic_ms() + 10'000;
  ReloadReport r = stats.read_reload();
  while (r.reloads < ours || r.outcome == ReloadOutcome::kRunning) {
    if (sys::monotonic_ms() > deadline) {
      std::fprintf(stderr, "vswitchctl: reload: vswitchd (pid %d) has not reported within 10 s\n", daemon);
      return 1;
    }
    const timespec pause{0, 10'000'000};  // polling a word another process sets: no event to wait on
    ::nanosleep(&pause, nullptr);
    r = stats.read_reload();
  }
  switch (r.outcome) {
    case ReloadOutcome::kUnchanged:
      std::printf("reload: unchanged\n");
      return 0;
    case ReloadOutcome::kApplied: {
      // Applied is said once every endpoint restarted or turned on for it is up (a new
      // process), and every one it turned off has stopped, as vswitchd's report says.
      std::string names, on, off, added, removed, late;
      // The ports' endpoints now: an endpoint added holds a port that was spare before.
      std::optional<Topology> after;
      if (auto text = read_running_topology(topo.switch_config.name))
        if (auto t = load_topology_string(text.value().text, topo.file, true);
            t && t.value().endpoints.size() == topo.endpoints.size())
          after.emplace(std::move(t.value()));
      const auto endpoint_now = [&](std::size_t i) -> const EndpointConfig& {
        return after ? after->endpoints[i] : topo.endpoints[i];
      };
      const std::uint64_t up_by = sys::monotonic_ms() + 15'000;
      const auto wait_for = [&](std::size_t i, auto done) {
        for (;;) {
          if (done(stats.read_daemon(i))) return;
          if (sys::monotonic_ms() > up_by) {
            late += (late.empty() ? "" : ", ") + (endpoint_now(i).spare ? topo.endpoints[i].name : endpoint_now(i).name);
            return;
          }
          const timespec pause{0, 10'000'000};  // polling a state another process sets
          ::nanosleep(&pause, nullptr);
        }
      };
      for (std::size_t i = 0; i < topo.endpoints.size() && i < 64; ++i) {
        const bool was_spare = topo.endpoints[i].spare;
        const bool is_spare = endpoint_now(i).spare;
        const std::string& name = is_spare ? topo.endpoints[i].name : endpoint_now(i).name;
        const std::uint64_t bit = std::uint64_t{1} << i;
        if ((r.turned_off & bit) != 0) {
          std::string& list = is_spare && !was_spare ? removed : off;
          list += (list.empty() ? "" : ", ") + name;
          wait_for(i, [](const DaemonState& d) { return static_cast<EndpointState>(d.state) == EndpointState::kDisabled; });
          continue;
        }
        if (is_spare && !was_spare) removed += (removed.empty() ? "" : ", ") + name;  // it was not running
        if ((r.restarted & bit) == 0) {
          if (was_spare && !is_spare) added += (added.empty() ? "" : ", ") + name;  // added disabled
          continue;
        }
        std::string& list = was_spare && !is_spare ? added : (r.turned_on & bit) != 0 ? on : names;
        list += (list.empty() ? "" : ", ") + name;
        wait_for(i, [&](const DaemonState& d) {
          return static_cast<EndpointState>(d.state) == EndpointState::kUp && d.pid != pids[i];
        });
      }
      if (!late.empty()) {
        std::fprintf(stderr, "vswitchctl: reload applied, but not up (or, turned off, not stopped) within 15 s: %s "
                     "(see vswitchd's log)\n", late.c_str());
        return 1;
      }
      std::string done;
      if (!names.empty()) done += "; restarted on the new settings and up: " + names;
      if (!on.empty()) done += "; turned on and up: " + on;
      if (!off.empty()) done += "; turned off and stopped: " + off;
      if (!added.empty()) done += "; added: " + added;
      if (!removed.empty()) done += "; removed: " + removed;
      if (done.empty()) done = "; no endpoint restarted";  // only vswitchd's own settings (metrics.listen)
      std::printf("reload: applied %" PRIu64 " change(s)%s (each change in vswitchd's log)\n", r.changes, done.c_str());
      return 0;
    }
    case ReloadOutcome::kInvalid:
      std::fprintf(stderr, "vswitchctl: reload refused: vswitchd's file is invalid (%" PRIu64 " error(s) in its "
                   "log); nothing applied\n", r.changes);
      return 1;
    case ReloadOutcome::kRefused:
      std::fprintf(stderr, "vswitchctl: reload refused: a change needs a restart of vswitchd (each change, "
                   "with its line, in vswitchd's log); nothing applied\n");
      return 1;
    case ReloadOutcome::kFailed:
      std::fprintf(stderr, "vswitchctl: reload failed (why in vswitchd's log); nothing applied\n");
      return 1;
    case ReloadOutcome::kNone:
    case ReloadOutcome::kRunning:
      break;
  }
  std::fprintf(stderr, "vswitchctl: reload: vswitchd's report could not be read\n");
  return 1;
}

int usage(FILE* f) {
  std::fputs(
      "usage: vswitchctl --config FILE COMMAND [--json]\n"
      "       vswitchctl --config FILE capture ENDPOINT [--direction rx|tx|both] [--count N]\n"
      "                  [--snaplen BYTES] -w FILE|-\n"
      "       vswitchctl --config FILE link ENDPOINT up|down\n"
      "       vswitchctl --config FILE reload\n"
      "       vswitchctl counters [--json]\n"
      "       vswitchctl --help\n"
      "\n"
      "Reads the state of the vswitchd running topology FILE from its stats objects\n"
      "(/dev/shm/vswitch.NAME.stats and /dev/shm/vswitch.NAME.stats.ENDPOINT, NAME being\n"
      "FILE's switch.name), only read: nothing is stopped or slowed. FILE names the switch;\n"
      "the rest is taken from the topology vswitchd runs (/dev/shm/vswitch.NAME.topology:\n"
      "what it loaded at start or at the last reload it applied), which an edited FILE\n"
      "does not change until it is reloaded (a note on standard error says it differs).\n"
      "\n"
      "commands:\n"
      "  ports     endpoints: frontend, core, state (starting, up, down, stopped), pid,\n"
      "            restarts, MTU, link (up or down; \"down*\": asked for, not taken yet),\n"
      "            VLANs (\"-\": VLAN-unaware; \"10\", \"trunk:10,20\", \"10+trunk:20\"),\n"
      "            attachment (TAP, socket or generator)\n"
      "  fdb       every endpoint's MAC table (static / learned, age)\n"
      "  stats     all counters, every drop reason, per-peer traffic\n"
      "  channels  every channel's head, tail and wake flags (diagnosing a stall)\n"
      "  topology  the topology text vswitchd runs, as it loaded it\n"
      "  counters  what every counter of stats means (FILE not needed)\n"
      "  capture   copies ENDPOINT's frames as pcapng to FILE, or to standard output with\n"
      "            -w - (| tshark -r -): rx = what the port sent into the switch, tx = what\n"
      "            the switch delivered to it (default both); returns after --count N frames\n"
      "            or on SIGINT/SIGTERM, and says on standard error how many frames the\n"
      "            endpoint could not copy for lack of room in its capture ring. The only\n"
      "            command that writes: it needs write access to the capture object\n"
      "            (/dev/shm/vswitch.NAME.capture.KEY, vswitchd's, mode 0600; KEY: the\n"
      "            endpoint's name, or the spare port's key it took), and\n"
      "            one capture per endpoint runs at a time. Forwarding never waits for it.\n"
      "  reload    has vswitchd read its file again (the one it runs; FILE names the\n"
      "            switch), as SIGHUP does, and says what came of it.\n"
      "            An endpoint's own settings (core, poll_us, poll_max_us, coalesce_us,\n"
      "            port_security, generator.*, a TAP's or generator's mtu, vlan, trunk)\n"
      "            are applied by restarting that endpoint alone (the others follow a\n"
      "            port's new VLANs without a restart), and said once it is up again;\n"
      "            an endpoint's enabled turns that port on or off alone (said once it\n"
      "            is up, or stopped), and while a port is off its TAP, socket and a\n"
      "            vhost-user port's mtu, queue_size, max_guest_memory_gib may change;\n"
      "            metrics.listen by vswitchd itself (no endpoint restarted); with\n"
      "            fabric.spare_ports, endpoints added (each takes a spare port) or\n"
      "            removed (its port spare again) alone; any other change (endpoints\n"
      "            added without a spare port, switch.*, fabric.*, capture, a running\n"
      "            port's mac, TAP, socket, a vhost-user port's mtu,\n"
      "            queue_size, max_guest_memory_gib) needs\n"
      "            a restart of vswitchd, and then nothing is applied. Each change, with\n"
      "            its line, is in vswitchd's log. Sends a signal: root.\n"
      "  link      sets ENDPOINT's link administratively up or down and waits (5 s at\n"
      "            most) until the endpoint has taken it. Down: a TAP loses its carrier\n"
      "            (NO-CARRIER in its namespace); a vhost-user front-end is disconnected\n"
      "            and refused until up (QEMU's guest sees its link go down; with\n"
      "            reconnect=N it is back within N s of up); a generator stops sending.\n"
      "            Frames from and for the port are dropped as link_down meanwhile. The\n"
      "            state outlives a restart of the endpoint, not one of vswitchd. Writes\n"
      "            the endpoint's stats slice (vswitchd's, mode 0600: root).\n"
      "\n"
      "options:\n"
      "  -c, --config FILE   the topology (also --config=FILE); required\n"
      "  --json              the same as one JSON document\n"
      "  -h, --help          this text\n"
      "\n"
      "exit status:\n"
      "  0  printed (a warning on standard error when vswitchd is gone: its last figures,\n"
      "     or when an endpoint's stats slice is invalid: its counters and MAC table left out)\n"
      "  1  no vswitchd runs FILE's switch (topology: or it publishes no topology), the\n"
      "     topology it publishes cannot be read, or it restarted while vswitchctl read it;\n"
      "     capture: it could not start (no capture object, another capture runs) or its\n"
      "     output failed (a reader that closed its pipe ends a capture with 0);\n"
      "     link: the slice could not be written, or a running endpoint did not take it;\n"
      "     reload: refused or failed (nothing applied), vswitchd did not report, or\n"
      "     an endpoint restarted for it is not up again within 15 s\n"
      "  2  usage error or an invalid FILE\n"
      "\n"
      "See also: vswitchd(8).\n",
      f);
  return f == stdout ? 0 : 2;
}

int run(int argc, char** argv) {
  std::string config, command;
  bool json = false;
  std::vector<std::string> capture_args;  // what follows "capture", but --config
  std::vector<std::string> link_args;     // what follows "link"
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc) config = argv[++i];
    else if (a.rfind("--config=", 0) == 0) config = a.substr(9);
    else if (a == "--help" || a == "-h") return usage(stdout);
    else if (command == "capture") capture_args.push_back(a);
    else if (command == "link") link_args.push_back(a);
    else if (a == "--json") json = true;
    else if (command.empty() && (a == "ports" || a == "fdb" || a == "stats" || a == "channels" ||
                                    a == "counters" || a == "capture" || a == "link" || a == "reload" ||
                                    a == "topology"))
      command = a;
    else {
      std::fprintf(stderr, "vswitchctl: unknown argument \"%s\"\n", argv[i]);
      return usage(stderr);
    }
  }
  if (command == "counters") {
    describe_counters(json);
    return 0;
  }
  CaptureOptions capture;
  if (command == "capture") {
    std::string error;
    if (json || !parse_capture_args(capture_args, capture, error)) {
      std::fprintf(stderr, "vswitchctl: capture: %s\n", json ? "--json does not apply (the output is pcapng)" : error.c_str());
      return usage(stderr);
    }
  }
  if (command == "link" && (json || link_args.size() != 2 || (link_args[1] != "up" && link_args[1] != "down"))) {
    std::fprintf(stderr, "vswitchctl: link: expected ENDPOINT up|down%s\n", json ? " (no --json)" : "");
    return usage(stderr);
  }
  if (config.empty() || command.empty()) return usage(stderr);
  auto file = load_topology_file(config);
  if (!file) {
    std::fprintf(stderr, "%s\n", format_errors(file.error()).c_str());
    return 2;
  }
  // The file names the switch; what runs is vswitchd's copy (running_topology.hpp): the
  // file may hold edits not applied, or not applicable without a restart (ring and
  // capture sizes, endpoints added), which every command but reload must not go by.
  const std::string name = file.value().switch_config.name;
  std::optional<std::uint64_t> running_generation;
  std::optional<Topology> running;
  auto text = read_running_topology(name);
  if (!text && !text.error().absent && command != "reload") {
    std::fprintf(stderr, "vswitchctl: the topology vswitchd runs cannot be read: %s\n", text.error().detail.c_str());
    return 1;
  }
  if (text) {
    auto t = load_topology_string(text.value().text, config + " (as vswitchd runs it)", true);
    if (!t && command != "reload") {
      std::fprintf(stderr, "vswitchctl: the topology vswitchd runs cannot be read back:\n%s\n",
                   format_errors(t.error()).c_str());
      return 1;
    }
    if (t) {
      running_generation = text.value().generation;
      if (t.value().file_text() != file.value().source && command != "reload")
        std::fprintf(stderr, "vswitchctl: note: %s has changed since vswitchd loaded it; shown: what runs "
                     "(`vswitchctl reload` applies the file)\n", config.c_str());
      running.emplace(std::move(t.value()));
    }
  }
  // No running copy (no vswitchd, or one from before it published it; for reload, also
  // one that cannot be read: reload goes by the file): the file.
  const Topology& topo_in_force = running ? *running : file.value();
  std::vector<std::string> names;
  for (const auto& e : topo_in_force.endpoints) names.push_back(e.key);
  const auto stats = StatsRegion::attach(name, names, shm::Access::kReadOnly);
  const std::size_t running_count = stats ? stats.value().endpoints() : stats.error().running_endpoints;
  // With spare ports, vswitchd lays the file's endpoints out on its ports and says what
  // it cannot.
  if (command == "reload" && running_count != 0 && running_count != file.value().endpoints.size() &&
      !(running && running->slotted) && file.value().fabric.spare_ports == 0) {
    std::fprintf(stderr, "vswitchctl: reload refused: %s declares %zu endpoints, the running switch \"%s\" has %zu: "
                 "adding or removing endpoints needs a restart of vswitchd; nothing sent\n",
                 config.c_str(), file.value().endpoints.size(), name.c_str(), running_count);
    return 1;
  }
  if (stats && running_generation && *running_generation != stats.value().region().generation()) {
    std::fprintf(stderr, "vswitchctl: vswitchd for \"%s\" restarted while vswitchctl read it; try again\n",
                 name.c_str());
    return 1;
  }
  if (!stats && stats.error().running_endpoints != 0) {
    std::fprintf(stderr, "vswitchctl: the running switch \"%s\" has %zu endpoints, %s declares %zu: wrong file?\n",
                 name.c_str(), stats.error().running_endpoints, config.c_str(), topo_in_force.endpoints.size());
    return 1;
  }
  if (!stats) {
    std::fprintf(stderr, "vswitchctl: no running vswitchd for topology \"%s\" (%s)\n", name.c_str(),
                 stats.error().detail.c_str());
    return 1;
  }
  const auto pid = static_cast<pid_t>(stats.value().daemon_pid());
  if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH)
    std::fprintf(stderr, "vswitchctl: warning: vswitchd (pid %d) is gone; these are its last figures\n", pid);
  if (command == "topology") {
    if (json || !running) {
      std::fprintf(stderr, "vswitchctl: topology: %s\n",
                   json ? "--json does not apply (the output is the topology's text)"
                        : "vswitchd publishes no topology (one older than this vswitchctl)");
      return json ? usage(stderr) : 1;
    }
    std::fwrite(running->source.data(), 1, running->source.size(), stdout);
    return std::fflush(stdout) == 0 && std::ferror(stdout) == 0 ? 0 : 1;
  }
  if (command == "capture") return run_capture(topo_in_force, stats.value(), capture);
  if (command == "reload") return json ? usage(stderr) : run_reload(topo_in_force, stats.value());
  if (command == "link") return run_link(topo_in_force, stats.value(), link_args[0], link_args[1] == "down");
  Ctl ctl{topo_in_force, stats.value(), json};
  if (command == "ports") ctl.ports();
  else if (command == "fdb") ctl.fdb();
  else if (command == "channels") channels(topo_in_force, json);
  else ctl.stats_cmd();
  return 0;
}

}  // namespace
}  // namespace vswitch

int main(int argc, char** argv) {
  // Out of memory (or a string past its maximum) is the only way out by exception: a clear
  // line and exit status 1, not std::terminate's abort.
  try {
    return vswitch::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vswitchctl: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "vswitchctl: unexpected exception\n");
  }
  return 1;
}
