// Prometheus metrics: the switch's state in the Prometheus text exposition format 0.0.4
// (Content-Type "text/plain; version=0.0.4"), which vswitchd serves at /metrics when the
// topology says [metrics] listen (vswitch/control/metrics_server.hpp).
//
// Every name starts with vswitch_. Each counter of an endpoint's counter report
// (vswitch/observability/counter_report.hpp) is one family labelled by endpoint:
//   vswitch_rx_frames_total{endpoint="ns1"} 1234
// counts by reason are one family per group with a reason label:
//   vswitch_drops_total{endpoint="ns1",reason="peer_full"} 3
// per-peer counters carry the peer:
//   vswitch_peer_out_frames_total{endpoint="ns1",peer="ns2"} 600
// and the gauges: vswitch_endpoint_up, vswitch_endpoint_state (one series per state,
// 1 for the current one), vswitch_mac_entries, vswitch_peer_stalled, the channels'
// occupancy (vswitch_channel_used_bytes{from,to}, vswitch_channel_capacity_bytes) and each
// endpoint process's CPU time (vswitch_endpoint_cpu_seconds_total, from /proc); the
// daemon's reloads by outcome (vswitch_reloads_total{outcome}).
//
// The format's rules that matter here: all samples of one name form one block after its
// HELP and TYPE lines; label values escape \ " and newline, HELP text \ and newline; lines
// end in \n only; no timestamps (Prometheus stamps the scrape).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "vswitch/config/topology.hpp"
#include "vswitch/observability/endpoint_counters.hpp"
#include "vswitch/observability/stats.hpp"

namespace vswitch {

// Builds a text exposition: samples may be added in any order; each family is written as
// one block, families in the order they were first used.
class PrometheusText {
 public:
  enum class Type : std::uint8_t { kCounter, kGauge };
  using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

  // `name` must match [a-zA-Z_][a-zA-Z0-9_]* (a programming error otherwise: aborts).
  // Counts go in exactly (a double would round them above 2^53); other values through
  // add_real, in the shortest form that reads back the same.
  void add(std::string_view name, Type type, std::string_view help, const Labels& labels, std::uint64_t value);
  void add_real(std::string_view name, Type type, std::string_view help, const Labels& labels, double value);
  [[nodiscard]] std::string str() const;

  [[nodiscard]] static std::string escape_label_value(std::string_view v) { return escape(v, true); }
  [[nodiscard]] static std::string escape_help(std::string_view v) { return escape(v, false); }

 private:
  [[nodiscard]] static std::string escape(std::string_view v, bool quote);
  void add_text(std::string_view name, Type type, std::string_view help, const Labels& labels, const std::string& value);
  struct Family {
    std::string name;
    Type type;
    std::string help;
    std::string samples;
  };
  std::vector<Family> families_;
  std::unordered_map<std::string, std::size_t> index_;  // name -> families_ position
};

// One endpoint as the daemon sees it at a scrape.
struct EndpointMetrics {
  std::string name;
  // Its port: the index of its peer counters in every other endpoint's (the list may leave
  // spare ports out, so a position in it is not a port).
  std::size_t port = 0;
  FrontendKind frontend = FrontendKind::kTap;
  DaemonState state{};
  std::optional<EndpointCounters> counters;  // none: its stats slice could not be read
  std::optional<double> cpu_seconds;         // none: no process, or /proc could not say
};

// One channel's occupancy, from its control words (read once each; a value a hostile
// endpoint scribbled is clamped to the capacity, never trusted further).
struct ChannelMetrics {
  std::string from;
  std::string to;
  std::uint64_t used_bytes = 0;
  std::uint64_t capacity_bytes = 0;
};

// The metrics endpoint's own figures: scrapes answered, connections ended early by why.
struct ServerMetrics {
  std::uint64_t scrapes = 0;
  std::vector<std::pair<std::string, std::uint64_t>> closed;  // reason, count
};

// The daemon's own figures: reloads (SIGHUP, vswitchctl reload) ended, by outcome.
struct DaemonMetrics {
  std::vector<std::pair<std::string, std::uint64_t>> reloads;  // outcome, count
};

// The whole exposition. `peers` of endpoint i are the other endpoints, by index.
[[nodiscard]] std::string render_metrics(const std::vector<EndpointMetrics>& endpoints,
                                         const std::vector<ChannelMetrics>& channels,
                                         const ServerMetrics* server = nullptr,
                                         const DaemonMetrics* daemon = nullptr);

// CPU time (user + system) of a process from /proc/PID/stat, in seconds; none when the
// process is gone or the file is not as expected.
[[nodiscard]] std::optional<double> process_cpu_seconds(std::uint64_t pid);

}  // namespace vswitch
