#include "vswitch/observability/metrics.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <system_error>

#include "vswitch/observability/counter_report.hpp"

namespace vswitch {
namespace {

bool valid_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Values through to_chars: locale-independent (never a decimal comma), the shortest form
// that reads back the same.
template <typename T>
std::string number(T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

// The text format's escapes: backslash and newline in help text, and the double quote too
// in a label value.
std::string PrometheusText::escape(std::string_view v, bool quote) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"' && quote) out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void PrometheusText::add(std::string_view name, Type type, std::string_view help, const Labels& labels, std::uint64_t value) {
  add_text(name, type, help, labels, number(value));
}

void PrometheusText::add_real(std::string_view name, Type type, std::string_view help, const Labels& labels, double value) {
  add_text(name, type, help, labels, number(value));
}

void PrometheusText::add_text(std::string_view name, Type type, std::string_view help, const Labels& labels,
                              const std::string& value) {
  if (!valid_name(name)) std::abort();
  auto [it, added] = index_.try_emplace(std::string(name), families_.size());
  if (added) families_.push_back(Family{std::string(name), type, escape_help(help), {}});
  Family* f = &families_[it->second];
  std::string line(name);
  if (!labels.empty()) {
    line += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (!valid_name(labels[i].first)) std::abort();
      if (i != 0) line += ',';
      line += labels[i].first;
      line += "=\"";
      line += escape_label_value(labels[i].second);
      line += '"';
    }
    line += '}';
  }
  line += ' ';
  line += value;
  line += '\n';
  f->samples += line;
}

std::string PrometheusText::str() const {
  std::string out;
  for (const Family& f : families_) {
    out += "# HELP " + f.name + " " + f.help + "\n";
    out += "# TYPE " + f.name + (f.type == Type::kCounter ? " counter\n" : " gauge\n");
    out += f.samples;
  }
  return out;
}

std::string render_metrics(const std::vector<EndpointMetrics>& endpoints, const std::vector<ChannelMetrics>& channels,
                           const ServerMetrics* server, const DaemonMetrics* daemon) {
  using T = PrometheusText::Type;
  PrometheusText p;
  constexpr EndpointState kStates[] = {EndpointState::kDown, EndpointState::kStarting, EndpointState::kUp,
                                       EndpointState::kStopped, EndpointState::kDisabled};
  for (const EndpointMetrics& e : endpoints) {
    const std::string_view ep = e.name;
    const std::string_view fe = to_string(e.frontend);
    p.add("vswitch_endpoint_up", T::kGauge, "1 while the endpoint's process is up and forwarding",
          {{"endpoint", ep}, {"frontend", fe}},
          std::uint64_t{static_cast<EndpointState>(e.state.state) == EndpointState::kUp});
    for (const EndpointState s : kStates)
      p.add("vswitch_endpoint_state", T::kGauge, "1 for the endpoint's current state (down, starting, up, stopped, disabled)",
            {{"endpoint", ep}, {"state", to_string(s)}}, std::uint64_t{static_cast<EndpointState>(e.state.state) == s});
    p.add("vswitch_endpoint_restarts_total", T::kCounter, "times the endpoint was started again after its process ended",
          {{"endpoint", ep}}, e.state.restarts);
    p.add("vswitch_endpoint_hung_restarts_total", T::kCounter, "of the restarts: times the watchdog killed the endpoint as hung",
          {{"endpoint", ep}}, e.state.hung);
    if (e.cpu_seconds)
      p.add_real("vswitch_endpoint_cpu_seconds_total", T::kCounter, "CPU time (user and system) of the endpoint's current process",
            {{"endpoint", ep}}, *e.cpu_seconds);
    if (!e.counters) continue;
    for (const CounterGroup& g : counter_report(*e.counters, e.frontend)) {
      if (g.by_reason) {
        // One family per group: vswitch_drops_total{reason=...}, vswitch_vu_bad_chain_reasons_total{...}.
        const std::string family = "vswitch_" + std::string(g.json_key) + "_total";
        const std::string help = std::string(g.title) + " by reason";
        for (const auto& [reason, value] : g.values)
          p.add(family, T::kCounter, help, {{"endpoint", ep}, {"reason", reason}}, value);
        continue;
      }
      for (std::size_t k = 0; k < g.values.size(); ++k) {
        const std::string key = std::string(g.json_key) + std::string(g.values[k].first);
        const bool gauge = g.gauges[k];  // a level (entries in a table), not a count of events
        p.add("vswitch_" + key + (gauge ? "" : "_total"), gauge ? T::kGauge : T::kCounter, g.helps[k], {{"endpoint", ep}},
              g.values[k].second);
      }
    }
    for (std::size_t j = 0; j < endpoints.size() && j < kMaxEndpoints; ++j) {
      if (&endpoints[j] == &e) continue;
      if (endpoints[j].port >= kMaxEndpoints) continue;
      const PeerCounters& pc = e.counters->peers[endpoints[j].port];
      const auto v = sys::counter_values(pc);
      for (std::size_t k = 0; k < v.size(); ++k) {
        const std::string_view n = PeerCounters::kNames[k].name;
        const bool gauge = PeerCounters::kNames[k].gauge;
        p.add("vswitch_peer_" + std::string(n) + (gauge ? "" : "_total"), gauge ? T::kGauge : T::kCounter,
              PeerCounters::kNames[k].help, {{"endpoint", ep}, {"peer", endpoints[j].name}}, v[k]);
      }
    }
  }
  for (const ChannelMetrics& c : channels) {
    p.add("vswitch_channel_used_bytes", T::kGauge, "bytes of records in the channel not yet consumed",
          {{"from", c.from}, {"to", c.to}}, c.used_bytes);
    p.add("vswitch_channel_capacity_bytes", T::kGauge, "the channel's ring capacity in bytes",
          {{"from", c.from}, {"to", c.to}}, c.capacity_bytes);
  }
  if (daemon != nullptr)
    for (const auto& [outcome, n] : daemon->reloads)
      p.add("vswitch_reloads_total", T::kCounter,
            "reloads of the topology file ended (SIGHUP, vswitchctl reload), by outcome: unchanged, applied, "
            "invalid, refused (a change needs a restart), failed",
            {{"outcome", outcome}}, n);
  if (server != nullptr) {
    p.add("vswitch_metrics_scrapes_total", T::kCounter, "GET /metrics requests answered", {}, server->scrapes);
    for (const auto& [reason, n] : server->closed)
      p.add("vswitch_metrics_connections_closed_total", T::kCounter,
            "connections to /metrics ended before a normal close (or refused at accept), by why", {{"reason", reason}}, n);
  }
  return p.str();
}

std::optional<double> process_cpu_seconds(std::uint64_t pid) {
  if (pid == 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return std::nullopt;
  const std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ..." where comm may hold spaces and parentheses: fields are
  // counted from the last ')'. utime and stime are fields 14 and 15.
  const auto close = s.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::size_t field = 2;  // the ')' ends field 2
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  std::size_t at = close + 1;
  while (at < s.size() && field < 15) {
    while (at < s.size() && s[at] == ' ') ++at;
    const std::size_t end = s.find(' ', at);
    const std::size_t stop = end == std::string::npos ? s.size() : end;
    ++field;
    if (field == 14 || field == 15) {
      std::uint64_t v = 0;
      const auto r = std::from_chars(s.data() + at, s.data() + stop, v);
      if (r.ec != std::errc{} || r.ptr != s.data() + stop) return std::nullopt;
      (field == 14 ? utime : stime) = v;
    }
    at = stop;
  }
  if (field < 15) return std::nullopt;
  const long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0) return std::nullopt;
  return static_cast<double>(utime + stime) / static_cast<double>(hz);
}

}  // namespace vswitch
