// What /proc/self/maps says about this process's own mappings, for tests that check
// how shared memory is mapped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace vswitch::test_support {

// The permissions column of /proc/self/maps for the mapping that holds `p` ("" if none).
inline std::string permissions_at(const void* p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  while (std::getline(maps, line)) {
    unsigned long lo = 0;
    unsigned long hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && addr >= lo && addr < hi)
      return line.substr(line.find(' ') + 1, 4);
  }
  return "";
}

}  // namespace vswitch::test_support
