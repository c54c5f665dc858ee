// `vswitchctl --config FILE capture ENDPOINT ...`: attaches to the endpoint's capture
// object (vswitch/observability/capture.hpp) and writes what it copies as pcapng, to a
// file or to standard output for `| tshark -r -`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vswitch/config/topology.hpp"
#include "vswitch/observability/stats.hpp"

namespace vswitch {

struct CaptureOptions {
  std::string endpoint;
  std::uint32_t directions = 3;  // kCaptureRx | kCaptureTx
  std::uint64_t count = 0;       // frames to write before returning; 0: until SIGINT/SIGTERM
  std::uint32_t snaplen = 0;     // bytes per frame; 0: whole frames
  std::string output;            // a path, or "-": standard output
};

// Parses the capture command's own arguments; an error says which one is wrong.
[[nodiscard]] bool parse_capture_args(const std::vector<std::string>& args, CaptureOptions& out, std::string& error);

// Runs the capture against the switch whose stats object is `stats`; returns vswitchctl's
// exit status: 0 done, 1 the capture could not start, its output failed or a reload
// removed the endpoint, 2 a usage error.
[[nodiscard]] int run_capture(const Topology& topology, const StatsRegion& stats, const CaptureOptions& options);

}  // namespace vswitch
