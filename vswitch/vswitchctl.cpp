// vswitchctl --config FILE ports|fdb|stats [--json]: reads a running switch's state from
// its stats region (read-only; nothing is stopped or slowed).
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "shm/channel.hpp"
#include "shm/sys/clock.hpp"
#include "shm/fabric.hpp"
#include "vswitch/stats.hpp"
#include "vswitch/topology.hpp"

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

struct Ctl {
  const Topology& topo;
  const StatsRegion& stats;
  bool json;

  std::string port_name(PortId p) const {
    return p < topo.endpoints.size() ? topo.endpoints[p].name : "port" + std::to_string(p);
  }

  void ports() const {
    if (json) {
      std::printf("{\"switch\": %s, \"ports\": [", json_string(topo.switch_config.name).c_str());
      for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
        const auto& e = topo.endpoints[i];
        const DaemonState d = stats.read_daemon(i);
        std::printf("%s\n  {\"name\": %s, \"frontend\": %s, \"core\": %s, \"state\": %s, \"pid\": %" PRIu64
                    ", \"restarts\": %" PRIu64 ", \"attachment\": %s}",
                    i ? "," : "", json_string(e.name).c_str(), json_string(std::string(to_string(e.frontend))).c_str(),
                    d.core == ~std::uint64_t{0} ? "null" : std::to_string(d.core).c_str(),
                    json_string(std::string(to_string(static_cast<EndpointState>(d.state)))).c_str(), d.pid,
                    d.restarts, json_string(attachment(e)).c_str());
      }
      std::printf("\n]}\n");
      return;
    }
    std::printf("%-16s %-10s %-5s %-8s %-8s %-8s %s\n", "ENDPOINT", "FRONTEND", "CORE", "STATE", "PID", "RESTARTS",
                "ATTACHMENT");
    for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
      const auto& e = topo.endpoints[i];
      const DaemonState d = stats.read_daemon(i);
      std::printf("%-16s %-10s %-5s %-8s %-8" PRIu64 " %-8" PRIu64 " %s\n", e.name.c_str(),
                  std::string(to_string(e.frontend)).c_str(), core_text(d).c_str(),
                  std::string(to_string(static_cast<EndpointState>(d.state))).c_str(), d.pid, d.restarts,
                  attachment(e).c_str());
    }
  }

  void fdb() const {
    const std::uint64_t now = sys::monotonic_ms();
    const std::uint64_t aging_ms = std::uint64_t{topo.switch_config.aging_s} * 1000;
    if (json) std::printf("{\"switch\": %s, \"fdb\": [", json_string(topo.switch_config.name).c_str());
    else std::printf("%-16s %-18s %-16s %-8s %s\n", "ENDPOINT", "MAC", "PORT", "TYPE", "AGE_S");
    bool first = true;
    for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
      auto v = stats.read_fdb(i);
      if (!v) {
        std::fprintf(stderr, "vswitchctl: endpoint %s: FDB changed too fast to read a consistent copy\n",
                     topo.endpoints[i].name.c_str());
        continue;
      }
      for (const auto& e : v->entries) {
        const std::uint64_t age = now > e.last_seen_ms ? now - e.last_seen_ms : 0;
        if (!e.is_static && aging_ms != 0 && age >= aging_ms) continue;  // aged since the snapshot
        if (json) {
          std::printf("%s\n  {\"endpoint\": %s, \"mac\": \"%s\", \"port\": %s, \"static\": %s, \"age_ms\": %s}",
                      first ? "" : ",", json_string(topo.endpoints[i].name).c_str(), e.mac.str().c_str(),
                      json_string(port_name(e.port)).c_str(), e.is_static ? "true" : "false",
                      e.is_static ? "null" : std::to_string(age).c_str());
        } else {
          char age_text[32];
          std::snprintf(age_text, sizeof age_text, "%.1f", static_cast<double>(age) / 1000.0);
          std::printf("%-16s %-18s %-16s %-8s %s\n", topo.endpoints[i].name.c_str(), e.mac.str().c_str(),
                      port_name(e.port).c_str(), e.is_static ? "static" : "learned", e.is_static ? "-" : age_text);
        }
        first = false;
      }
      if (!json && v->table_size > v->entries.size())
        std::printf("%-16s ... %" PRIu64 " entries in the table, %zu shown\n", topo.endpoints[i].name.c_str(),
                    v->table_size, v->entries.size());
    }
    if (json) std::printf("\n]}\n");
  }

  struct Field {
    const char* name;
    std::uint64_t value;
  };
  static std::vector<Field> fields(const Counters& c) {
    return {{"rx_frames", c.rx_frames},
            {"rx_bytes", c.rx_bytes},
            {"tx_frames", c.tx_frames},
            {"tx_bytes", c.tx_bytes},
            {"unicast", c.unicast},
            {"flooded", c.flooded},
            {"frontend_errors", c.frontend_errors},
            {"mac_entries", c.mac_entries},
            {"mac_learned", c.mac_learned},
            {"mac_moved", c.mac_moved},
            {"mac_move_damped", c.mac_move_damped},
            {"mac_aged", c.mac_aged},
            {"mac_refused_multicast", c.mac_refused_multicast},
            {"mac_refused_static", c.mac_refused_static},
            {"mac_refused_full", c.mac_refused_full},
            {"loops", c.loops},
            {"sleeps", c.sleeps},
            {"backpressure_waits", c.backpressure_waits},
            {"ring_errors", c.ring_errors},
            {"gen_sent", c.gen_sent},
            {"gen_received", c.gen_received},
            {"gen_lost", c.gen_lost},
            {"gen_out_of_order", c.gen_out_of_order},
            {"gen_bad", c.gen_bad},
            {"gen_foreign", c.gen_foreign},
            {"vu_connections", c.vu_connections},
            {"vu_protocol_errors", c.vu_protocol_errors},
            {"vu_bad_chains", c.vu_bad_chains},
            {"vu_rx_no_buffers", c.vu_rx_no_buffers},
            {"vu_interrupts", c.vu_interrupts},
            {"vu_segments_made", c.vu_segments_made},
            {"vu_csum_completed", c.vu_csum_completed},
            {"events_dropped", c.events_dropped}};
  }

  // The reasons behind vu_bad_chains (and RX chains given back unused), by name.
  static std::vector<Field> bad_chain_reasons(const Counters& c) {
    namespace virtio = endpoints::virtio;
    std::vector<Field> out;
    // to_string() returns string literals: data() is NUL-terminated.
    for (std::size_t i = 0; i < static_cast<std::size_t>(virtio::ChainError::kCount); ++i)
      out.push_back({virtio::to_string(static_cast<virtio::ChainError>(i)).data(), c.vu_chain_errors[i]});
    for (std::size_t i = 0; i < static_cast<std::size_t>(virtio::TxError::kCount); ++i)
      out.push_back({virtio::to_string(static_cast<virtio::TxError>(i)).data(), c.vu_tx_errors[i]});
    for (std::size_t i = 0; i < static_cast<std::size_t>(virtio::RxDrop::kCount); ++i)
      out.push_back({virtio::to_string(static_cast<virtio::RxDrop>(i)).data(), c.vu_rx_drops[i]});
    return out;
  }

  void stats_cmd() const {
    if (json) std::printf("{\"switch\": %s, \"endpoints\": [", json_string(topo.switch_config.name).c_str());
    for (std::size_t i = 0; i < topo.endpoints.size(); ++i) {
      const auto& e = topo.endpoints[i];
      const DaemonState d = stats.read_daemon(i);
      const Counters c = stats.read_counters(i);
      std::uint64_t drops_total = 0;
      for (std::size_t r = 0; r < static_cast<std::size_t>(DropReason::kCount); ++r) drops_total += c.drops[r];
      if (json) {
        std::printf("%s\n  {\"name\": %s, \"state\": %s, \"pid\": %" PRIu64 ", \"restarts\": %" PRIu64, i ? "," : "",
                    json_string(e.name).c_str(),
                    json_string(std::string(to_string(static_cast<EndpointState>(d.state)))).c_str(), d.pid,
                    d.restarts);
        for (const auto& f : fields(c)) std::printf(", \"%s\": %" PRIu64, f.name, f.value);
        std::printf(", \"drops_total\": %" PRIu64 ", \"drops\": {", drops_total);
        for (std::size_t r = 0; r < static_cast<std::size_t>(DropReason::kCount); ++r)
          std::printf("%s\"%s\": %" PRIu64, r ? ", " : "", std::string(to_string(static_cast<DropReason>(r))).c_str(),
                      c.drops[r]);
        std::printf("}, \"vu_bad_chain_reasons\": {");
        {
          bool first_reason = true;
          for (const auto& f : bad_chain_reasons(c)) {
            std::printf("%s\"%s\": %" PRIu64, first_reason ? "" : ", ", f.name, f.value);
            first_reason = false;
          }
        }
        std::printf("}, \"peers\": {");
        bool first = true;
        for (std::size_t p = 0; p < topo.endpoints.size(); ++p) {
          if (p == i) continue;
          std::printf("%s%s: {\"out_frames\": %" PRIu64 ", \"out_bytes\": %" PRIu64 ", \"in_frames\": %" PRIu64
                      ", \"in_bytes\": %" PRIu64 ", \"stalled\": %s}",
                      first ? "" : ", ", json_string(topo.endpoints[p].name).c_str(), c.out_frames[p], c.out_bytes[p],
                      c.in_frames[p], c.in_bytes[p], c.peer_stalled[p] ? "true" : "false");
          first = false;
        }
        std::printf("}}");
        continue;
      }
      std::printf("%s (%s, %s, pid %" PRIu64 ", restarts %" PRIu64 ")\n", e.name.c_str(),
                  std::string(to_string(e.frontend)).c_str(),
                  std::string(to_string(static_cast<EndpointState>(d.state))).c_str(), d.pid, d.restarts);
      std::printf("  frontend   rx %" PRIu64 " frames %" PRIu64 " bytes   tx %" PRIu64 " frames %" PRIu64
                  " bytes   errors %" PRIu64 "\n",
                  c.rx_frames, c.rx_bytes, c.tx_frames, c.tx_bytes, c.frontend_errors);
      std::printf("  forwarding unicast %" PRIu64 "  flooded %" PRIu64 "  backpressure_waits %" PRIu64
                  "  sleeps %" PRIu64 "  ring_errors %" PRIu64 "\n",
                  c.unicast, c.flooded, c.backpressure_waits, c.sleeps, c.ring_errors);
      std::printf("  mac        entries %" PRIu64 "  learned %" PRIu64 "  moved %" PRIu64 "  damped %" PRIu64
                  "  aged %" PRIu64 "  refused multicast/static/full %" PRIu64 "/%" PRIu64 "/%" PRIu64 "\n",
                  c.mac_entries, c.mac_learned, c.mac_moved, c.mac_move_damped, c.mac_aged, c.mac_refused_multicast,
                  c.mac_refused_static, c.mac_refused_full);
      std::printf("  drops      %" PRIu64, drops_total);
      for (std::size_t r = 0; r < static_cast<std::size_t>(DropReason::kCount); ++r)
        if (c.drops[r] != 0)
          std::printf("  %s=%" PRIu64, std::string(to_string(static_cast<DropReason>(r))).c_str(), c.drops[r]);
      std::printf("\n");
      if (e.frontend == FrontendKind::kGenerator)
        std::printf("  generator  sent %" PRIu64 "  received %" PRIu64 "  lost %" PRIu64 "  out_of_order %" PRIu64
                    "  bad %" PRIu64 "  foreign %" PRIu64 "\n",
                    c.gen_sent, c.gen_received, c.gen_lost, c.gen_out_of_order, c.gen_bad, c.gen_foreign);
      if (e.frontend == FrontendKind::kVhostUser)
        std::printf("  vhost-user connections %" PRIu64 "  protocol_errors %" PRIu64 "  bad_chains %" PRIu64
                    "  rx_no_buffers %" PRIu64 "  interrupts %" PRIu64 "\n",
                    c.vu_connections, c.vu_protocol_errors, c.vu_bad_chains, c.vu_rx_no_buffers, c.vu_interrupts);
      if (e.frontend == FrontendKind::kVhostUser) {
        std::printf("  offloads   segments_made %" PRIu64 "  csum_completed %" PRIu64 "\n", c.vu_segments_made,
                    c.vu_csum_completed);
        bool any = false;
        for (const auto& f : bad_chain_reasons(c))
          if (f.value != 0) {
            std::printf("%s  %s=%" PRIu64, any ? "" : "  bad chains", f.name, f.value);
            any = true;
          }
        if (any) std::printf("\n");
      }
      if (c.events_dropped != 0) std::printf("  event log  %" PRIu64 " messages dropped\n", c.events_dropped);
      for (std::size_t p = 0; p < topo.endpoints.size(); ++p) {
        if (p == i) continue;
        std::printf("  -> %-12s out %" PRIu64 " frames %" PRIu64 " bytes   in %" PRIu64 " frames %" PRIu64 " bytes%s\n",
                    topo.endpoints[p].name.c_str(), c.out_frames[p], c.out_bytes[p], c.in_frames[p], c.in_bytes[p],
                    c.peer_stalled[p] ? "   STALLED" : "");
      }
    }
    if (json) std::printf("\n]}\n");
  }
};

// Every channel's control words, read from the running switch (read-only mapping of
// each channel). A channel whose `used` stays non-zero while its consumer is waiting is a
// lost wakeup; one that stays full is a stalled consumer.
void channels(const Topology& topo, bool json) {
  shm::FabricSpec spec;
  spec.name = topo.switch_config.name;
  for (const auto& e : topo.endpoints) spec.endpoints.push_back(e.name);
  if (json) std::printf("{\"switch\": %s, \"channels\": [", json_string(spec.name).c_str());
  else std::printf("%-24s %12s %14s %14s %9s %14s\n", "CHANNEL", "CAPACITY", "HEAD", "TAIL", "C_WAITING",
                   "P_WANTS");
  bool first = true;
  for (std::size_t a = 0; a < spec.endpoints.size(); ++a)
    for (std::size_t b = 0; b < spec.endpoints.size(); ++b) {
      if (a == b) continue;
      const std::string label = spec.endpoints[a] + " -> " + spec.endpoints[b];
      auto ch = shm::Channel::attach(spec.channel_name(a, b));
      if (!ch) {
        std::fprintf(stderr, "vswitchctl: %s: %s\n", label.c_str(), ch.error().c_str());
        continue;
      }
      const shm::RingSnapshot s = ch.value().area().snapshot();
      const std::uint64_t cap = ch.value().area().capacity();
      if (json) {
        std::printf("%s\n  {\"from\": %s, \"to\": %s, \"capacity\": %" PRIu64 ", \"head\": %" PRIu64
                    ", \"tail\": %" PRIu64 ", \"used\": %" PRIu64 ", \"consumer_waiting\": %u, \"producer_wants\": %" PRIu64 "}",
                    first ? "" : ",", json_string(spec.endpoints[a]).c_str(), json_string(spec.endpoints[b]).c_str(),
                    cap, s.head, s.tail, s.head - s.tail, s.consumer_waiting, s.producer_wants);
      } else {
        std::printf("%-24s %12" PRIu64 " %14" PRIu64 " %14" PRIu64 " %9u %14" PRIu64 "   used %" PRIu64 "\n",
                    label.c_str(), cap, s.head, s.tail, s.consumer_waiting, s.producer_wants, s.head - s.tail);
      }
      first = false;
    }
  if (json) std::printf("\n]}\n");
}

int usage(FILE* f) {
  std::fputs(
      "usage: vswitchctl --config FILE COMMAND [--json]\n"
      "       vswitchctl --help\n"
      "\n"
      "Reads the state of the vswitchd running topology FILE from its stats region\n"
      "(/dev/shm/vswitch.NAME.stats, NAME being FILE's switch.name), read-only: nothing is\n"
      "stopped or slowed. FILE must be the file vswitchd runs (the same endpoints).\n"
      "\n"
      "commands:\n"
      "  ports     endpoints: frontend, core, state (starting, up, down, stopped), pid,\n"
      "            restarts, attachment (TAP, socket or generator)\n"
      "  fdb       every endpoint's MAC table (static / learned, age)\n"
      "  stats     all counters, every drop reason, per-peer traffic\n"
      "  channels  every channel's head, tail and wake flags (diagnosing a stall)\n"
      "\n"
      "options:\n"
      "  -c, --config FILE   the topology (also --config=FILE); required\n"
      "  --json              the same as one JSON document\n"
      "  -h, --help          this text\n"
      "\n"
      "exit status:\n"
      "  0  printed (a warning on standard error when vswitchd is gone: its last figures)\n"
      "  1  no vswitchd runs FILE's switch, or it runs a different number of endpoints\n"
      "  2  usage error or an invalid FILE\n"
      "\n"
      "See also: vswitchd(8).\n",
      f);
  return f == stdout ? 0 : 2;
}

}  // namespace
}  // namespace vswitch

int main(int argc, char** argv) {
  using namespace vswitch;
  std::string config, command;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc) config = argv[++i];
    else if (a.rfind("--config=", 0) == 0) config = a.substr(9);
    else if (a == "--json") json = true;
    else if (a == "--help" || a == "-h") return usage(stdout);
    else if (command.empty() && (a == "ports" || a == "fdb" || a == "stats" || a == "channels")) command = a;
    else {
      std::fprintf(stderr, "vswitchctl: unknown argument \"%s\"\n", argv[i]);
      return usage(stderr);
    }
  }
  if (config.empty() || command.empty()) return usage(stderr);
  auto topo = load_topology_file(config);
  if (!topo) {
    std::fprintf(stderr, "%s\n", format_errors(topo.error()).c_str());
    return 2;
  }
  const std::string& name = topo.value().switch_config.name;
  auto stats = StatsRegion::attach(name);
  if (!stats) {
    std::fprintf(stderr, "vswitchctl: no running vswitchd for topology \"%s\" (%s)\n", name.c_str(),
                 stats.error().c_str());
    return 1;
  }
  if (stats.value().endpoints() != topo.value().endpoints.size()) {
    std::fprintf(stderr, "vswitchctl: the running switch \"%s\" has %zu endpoints, %s declares %zu: wrong file?\n",
                 name.c_str(), stats.value().endpoints(), config.c_str(), topo.value().endpoints.size());
    return 1;
  }
  const auto pid = static_cast<pid_t>(stats.value().daemon_pid());
  if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH)
    std::fprintf(stderr, "vswitchctl: warning: vswitchd (pid %d) is gone; these are its last figures\n", pid);
  Ctl ctl{topo.value(), stats.value(), json};
  if (command == "ports") ctl.ports();
  else if (command == "fdb") ctl.fdb();
  else if (command == "channels") channels(topo.value(), json);
  else ctl.stats_cmd();
  return 0;
}
