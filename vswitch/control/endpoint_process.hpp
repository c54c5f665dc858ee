// The endpoint program: what vswitchd runs, once per endpoint, as a fresh program (fork,
// then exec of its own executable with --endpoint-process). The new program starts with
// nothing of the daemon's memory (its own address-space layout, no copy of the daemon's
// heap) and only the descriptors the daemon handed it across exec:
//   --topology-fd  a sealed memfd holding the topology text vswitchd runs (the file may
//                  have changed since; the daemon's copy is the one in force)
//   --ready-fd     the pipe it writes one byte to once it is up
//   --doorbells    the read end of its own doorbell and the write ends of its peers', one
//                  per endpoint in topology order (its own index: the read end)
//   --frontend-fd  its TAP device or its vhost-user listening socket (-1: a generator)
// and the numbers it needs to attach to its own shared memory and no other
// (--generation, which the daemon's objects carry) and to continue its predecessor
// (--restarts; --fresh 1 when a reload has just turned the port on, so there is none). It attaches its 2(N-1) channels and its own stats slice by name while it
// still runs as root, then gives up everything (its own uid, no capability, NoNewPrivs,
// the system call filter) before it touches a frame.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vswitch {


struct EndpointProcessArgs {
  std::size_t index = 0;
  std::string config_path;  // only for messages
  int topology_fd = -1;
  int ready_fd = -1;
  std::vector<int> doorbells;
  int frontend_fd = -1;
  std::uint64_t generation = 0;
  std::uint64_t restarts = 0;  // processes of this endpoint started before this one (any cause, reloads too)
  long daemon_pid = 0;
  // The port was disabled until now (a reload turned it on): no predecessor to continue.
  bool fresh = false;
};

// The command line vswitchd execs for an endpoint (argv[0] included).
[[nodiscard]] std::vector<std::string> endpoint_process_argv(const EndpointProcessArgs& a);
// Parses argv after "--endpoint-process"; an error names the argument.
[[nodiscard]] bool parse_endpoint_process_args(int argc, char** argv, EndpointProcessArgs& out, std::string& error);

// Runs endpoint `a.index` until it is stopped; never returns (exit status 0 after a stop,
// 1 when it cannot start or its loop fails: the daemon restarts it).
[[noreturn]] void run_endpoint_process(const EndpointProcessArgs& a);

}  // namespace vswitch
