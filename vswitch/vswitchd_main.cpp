// vswitchd --config FILE: runs the topology in FILE until SIGINT/SIGTERM.
#include <cstdio>
#include <cstring>
#include <string>

#include "vswitch/daemon.hpp"

int main(int argc, char** argv) {
  vswitch::DaemonOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc) {
      o.config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      o.config_path = a.substr(9);
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: vswitchd --config FILE\n  runs the topology in FILE (see configs/) until SIGINT or SIGTERM\n");
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
