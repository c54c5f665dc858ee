// The counter report: one endpoint's counters as groups of (name, value), taken from the
// counter blocks' tables (shm/sys/counters.hpp), in one order. vswitchctl's text and JSON
// and vswitchd's Prometheus metrics (vswitch/observability/metrics.hpp) all walk this one
// model, so a counter added to a block appears in each of them.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/sys/counters.hpp"
#include "vswitch/config/topology.hpp"
#include "vswitch/observability/endpoint_counters.hpp"
#include "vswitch/observability/frontend_counters.hpp"

namespace vswitch {

// One group of an endpoint's counters.
struct CounterGroup {
  std::string_view title;     // text: the line's label
  std::string_view json_key;  // JSON: the flat keys' prefix, or a by-reason group's key
  bool by_reason = false;     // counts by reason (drops, bad chains): a total and an object
  std::vector<std::pair<std::string_view, std::uint64_t>> values;
  std::vector<std::string_view> helps;  // per value: its table's help ("" for a reason)
  std::vector<bool> gauges;             // per value: a level, not a count (its table says)

  [[nodiscard]] std::uint64_t total() const noexcept {
    std::uint64_t n = 0;
    for (const auto& v : values) n += v.second;
    return n;
  }
  template <sys::CounterBlock Block>
  CounterGroup& add(const Block& b) {
    const auto v = sys::counter_values(b);
    for (std::size_t k = 0; k < v.size(); ++k) {
      values.emplace_back(Block::kNames[k].name, v[k]);
      helps.push_back(Block::kNames[k].help);
      gauges.push_back(Block::kNames[k].gauge);
    }
    return *this;
  }
  template <typename Reason, std::size_t Slots>
  CounterGroup& add(const sys::ReasonCounts<Reason, Slots>& r) {
    r.for_each([this](std::string_view name, std::uint64_t value) {
      values.emplace_back(name, value);
      helps.emplace_back();
      gauges.push_back(false);
    });
    return *this;
  }
};

inline std::vector<CounterGroup> counter_report(const EndpointCounters& c, FrontendKind kind) {
  std::vector<CounterGroup> g;
  g.push_back(CounterGroup{"frontend", "", false, {}, {}, {}}.add(c.traffic));
  g.push_back(CounterGroup{"forwarding", "", false, {}, {}, {}}.add(c.forwarding));
  g.push_back(CounterGroup{"loop", "", false, {}, {}, {}}.add(c.loop));
  g.push_back(CounterGroup{"mac", "mac_", false, {}, {}, {}}.add(c.mac));
  g.push_back(CounterGroup{"drops", "drops", true, {}, {}, {}}.add(c.drops));
  switch (kind) {
    case FrontendKind::kGenerator:
      g.push_back(CounterGroup{"generator", "gen_", false, {}, {}, {}}.add(sys::load_block<GeneratorCounters>(c.frontend)));
      break;
    case FrontendKind::kVhostUser: {
      const auto vu = sys::load_block<endpoints::vhost_user::NetDeviceCounters>(c.frontend);
      g.push_back(CounterGroup{"vhost-user", "vu_", false, {}, {}, {}}.add(vu.totals));
      g.push_back(CounterGroup{"bad chains", "vu_bad_chain_reasons", true, {}, {}, {}}
                      .add(vu.chain_errors)
                      .add(vu.tx_errors)
                      .add(vu.rx_drops));
      break;
    }
    case FrontendKind::kTap:
      break;
  }
  return g;
}

}  // namespace vswitch
