#include "shm/sys/memory_info.hpp"

#include <sys/statvfs.h>

#include <fstream>
#include <limits>
#include <sstream>

namespace vswitch::sys {

MemoryInfo read_memory_info() {
  MemoryInfo info{std::numeric_limits<std::uint64_t>::max(),
                  std::numeric_limits<std::uint64_t>::max()};
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream in(line.substr(13));
      std::uint64_t kib = 0;
      if (in >> kib) info.mem_available_bytes = kib * 1024;
      break;
    }
  }
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) == 0) {
    info.shm_free_bytes = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  }
  return info;
}

}  // namespace vswitch::sys
