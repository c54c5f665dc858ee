// vswitchd --config FILE: runs the topology in FILE until SIGINT/SIGTERM (SIGHUP re-reads it).
#include <cstdio>
#include <cstring>
#include <string>

#include "vswitch/control/daemon.hpp"
#include "vswitch/control/endpoint_process.hpp"

namespace {
const char* const kHelp =
    "usage: vswitchd --config FILE\n"
    "       vswitchd --help\n"
    "\n"
    "Runs the switch the topology FILE (TOML) describes, in the foreground, until SIGINT or\n"
    "SIGTERM: validates it and the cores against this machine, takes the topology's lock,\n"
    "removes shared memory a crashed vswitchd left, creates the channels and the stats\n"
    "objects, opens the TAP devices, creates missing vhost-user socket directories, and\n"
    "starts one process per endpoint pinned to its core (vswitchd executes itself as the\n"
    "endpoint program, --endpoint-process: not for interactive use), restarting any that\n"
    "dies (100 ms, doubling to 5 s). Messages go to standard error. Examples:\n"
    "share/vswitch/configs/.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   the topology to run (also --config=FILE); required\n"
    "  -h, --help          this text\n"
    "\n"
    "signals:\n"
    "  SIGINT, SIGTERM     stop: each endpoint gets SIGTERM (SIGKILL after 3 s), then the\n"
    "                      TAP devices vswitchd created, the vhost-user sockets, the shared\n"
    "                      memory and the lock are removed; exit status 0\n"
    "  SIGHUP              re-read and validate FILE without stopping anything: logs\n"
    "                      \"unchanged\", every difference (applying them needs a restart:\n"
    "                      live reconfiguration is not supported), or the file's errors as\n"
    "                      FILE:LINE: KEY: PROBLEM; the running topology stays in force\n"
    "\n"
    "service manager (systemd Type=notify): when NOTIFY_SOCKET is set, vswitchd sends\n"
    "  READY=1 once every endpoint process has started and reported up, RELOADING=1 and\n"
    "  READY=1 around a SIGHUP, STOPPING=1 on shutdown, and STATUS= lines (endpoints up,\n"
    "  reload outcome). Endpoint processes do not inherit NOTIFY_SOCKET.\n"
    "\n"
    "files:\n"
    "  FILE                            the topology (e.g. /etc/vswitch/NAME.toml)\n"
    "  /run/vswitch/lock/NAME.lock     one vswitchd per switch name; holds its pid. The\n"
    "                                  directory is 0700 and must be the user's own\n"
    "                                  (not root: $XDG_RUNTIME_DIR/vswitch/NAME.lock, or\n"
    "                                  $HOME/.vswitch/NAME.lock without it)\n"
    "  /dev/shm/vswitch.NAME.*         channels, the stats object (.stats) and one stats\n"
    "                                  slice per endpoint (.stats.ENDPOINT), mode 0600,\n"
    "                                  which vswitchctl reads; removed on a clean stop\n"
    "  vhost-user socket paths         from FILE (mode 0600, bound by each endpoint); a\n"
    "                                  missing directory is created with mode 0755; one\n"
    "                                  writable by group or others, or owned by another\n"
    "                                  user (as root: by anyone but root), is refused\n"
    "\n"
    "exit status:\n"
    "  0  stopped by SIGINT or SIGTERM, everything removed\n"
    "  1  runtime failure: the topology is run by another vswitchd, a socket directory is\n"
    "     refused or cannot be created, shared memory, a TAP device or a signal descriptor\n"
    "     cannot be set up\n"
    "  2  usage or configuration error: unknown option, no --config, an invalid topology,\n"
    "     a core this machine does not have\n"
    "\n"
    "See also: vswitchctl(1), vswitchd(8).\n";
}  // namespace

int main(int argc, char** argv) {
  // vswitchd execs itself once per endpoint with --endpoint-process and the descriptors
  // it hands over (vswitch/control/endpoint_process.hpp); not for interactive use.
  if (argc >= 2 && std::strcmp(argv[1], "--endpoint-process") == 0) {
    vswitch::EndpointProcessArgs a;
    std::string error;
    if (!vswitch::parse_endpoint_process_args(argc - 2, argv + 2, a, error)) {
      std::fprintf(stderr, "vswitchd --endpoint-process: %s (only vswitchd itself runs this)\n", error.c_str());
      return 2;
    }
    vswitch::run_endpoint_process(a);
  }
  vswitch::DaemonOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc) {
      o.config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      o.config_path = a.substr(9);
    } else if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "vswitchd: unknown argument \"%s\" (usage: vswitchd --config FILE)\n", argv[i]);
      return 2;
    }
  }
  if (o.config_path.empty()) {
    std::fprintf(stderr, "vswitchd: --config FILE is required\n");
    return 2;
  }
  return vswitch::run_daemon(o);
}
