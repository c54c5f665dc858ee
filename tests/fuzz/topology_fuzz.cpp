// Fuzz target: the TOML topology loader. Any input either loads or yields errors that each
// name the file; nothing crashes, nothing hangs.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vswitch/config/topology.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = vswitch::load_topology_string(text, "fuzz.toml");
  if (!t) {
    if (t.error().empty()) std::abort();
    for (const auto& e : t.error())
      if (e.file != "fuzz.toml" || e.problem.empty()) std::abort();
  } else if (t->endpoints.size() < 2) {
    std::abort();
  } else {
    (void)vswitch::check_cores(*t, 2);
  }
  return 0;
}
