// The topology vswitchd runs, for vswitchctl: one object, "/vswitch.<switch>.topology"
// (RegionKind::kTopology), holding the text vswitchd loaded last (at start, then at each
// reload it applied). The file may have changed since, or have been edited with a change
// that needs a restart; what vswitchctl shows and attaches to (channels sized by
// fabric.ring_bytes, capture rings by capture.ring_bytes, a port's MTU, the endpoints'
// names) is what runs.
//
// Payload: text_bytes (8 bytes), then the text. vswitchd writes a new object under a
// temporary name and renames it over the old one (shm::Region::rename_to), so a reader
// opens a complete object, the old text or the new, never a half-written one; a reader
// that mapped the old object keeps reading it whole. The object is vswitchd's (mode 0600);
// the reader validates the region's header and the length word (read once) and then
// parses the text as any topology file, so a corrupt object is an error, never a read
// outside the mapping.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shm/region.hpp"
#include "shm/sys/result.hpp"

namespace vswitch {

struct RunningTopologyText {
  std::string text;
  std::uint64_t generation = 0;  // the daemon's objects' (StatsRegion's region().generation())
};

// vswitchd: publishes `text` as the running topology, replacing the one published before
// in one step. The returned region owns the name: disown() the previous one before it is
// dropped (its name is this one's now).
[[nodiscard]] sys::Result<shm::Region, std::string> publish_running_topology(const std::string& switch_name,
                                                                           std::string_view text,
                                                                           std::uint64_t generation);

struct RunningTopologyError {
  bool absent = false;  // no such object: no vswitchd, or one from before this object existed
  std::string detail;
};

// vswitchctl: the running topology's text and generation; an error when there is none or
// it is invalid (corrupt, of another kind, not readable).
[[nodiscard]] sys::Result<RunningTopologyText, RunningTopologyError> read_running_topology(
    const std::string& switch_name);

}  // namespace vswitch
