// vswitchd: runs one topology. Validates it, takes the topology's lock (a second vswitchd
// on the same switch name refuses to start), removes shared-memory objects a crashed
// predecessor left, creates the fabric and the stats objects, opens the TAP devices, and
// starts each endpoint as a process of its own pinned to its core. It restarts an endpoint
// that dies (the new process re-attaches to its channels and continues its counters; the
// other endpoints keep forwarding throughout, counting frames to the dead one as
// peer_stalled), and on SIGINT/SIGTERM stops the endpoints and removes everything it made.
#pragma once

#include <string>

namespace vswitch {

struct DaemonOptions {
  std::string config_path;
};

// Returns the process exit status: 0 after a clean shutdown, 1 on a runtime failure,
// 2 on a configuration error.
int run_daemon(const DaemonOptions& options);

// The lock file that makes one topology one daemon, in a directory only this user can
// enter: /run/vswitch/lock for root; otherwise $XDG_RUNTIME_DIR/vswitch, or $HOME/.vswitch
// without it ("" when neither is set).
[[nodiscard]] std::string lock_dir();
[[nodiscard]] std::string lock_path(const std::string& switch_name);

}  // namespace vswitch
