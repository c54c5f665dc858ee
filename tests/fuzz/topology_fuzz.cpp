// Fuzz target: the TOML topology loader, as a file and as a text vswitchd handed on (its
// [slots] table read). Any input either loads or yields errors that each name the file;
// nothing crashes, nothing hangs. A topology that loads is laid out on ports as vswitchd
// would run it, and after itself, and that text loads again to the same ports.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vswitch/config/topology.hpp"
#include "vswitch/config/topology_diff.hpp"

namespace {

void check_errors(const vswitch::TopologyErrors& errors) {
  if (errors.empty()) std::abort();
  for (const auto& e : errors)
    if (e.file != "fuzz.toml" || e.problem.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const bool running : {false, true}) {
    auto t = vswitch::load_topology_string(text, "fuzz.toml", running);
    if (!t) {
      check_errors(t.error());
      continue;
    }
    if (t->endpoints.size() < 2 || t->endpoints.size() > vswitch::kMaxPorts) std::abort();
    (void)vswitch::check_cores(*t, 2);
    if (running) continue;
    auto placed = vswitch::place_in_slots(nullptr, *t);
    if (!placed) std::abort();  // at start every endpoint has a port
    auto again = vswitch::place_in_slots(&placed.value(), *t);
    if (!again || again->endpoints.size() != placed->endpoints.size()) std::abort();
    if (!vswitch::topology_changes(placed.value(), again.value()).empty()) std::abort();
  }
  return 0;
}
