#include "vswitch/observability/running_topology.hpp"

#include <cstdio>
#include <cstring>
#include <random>
#include <utility>

#include "shm/fabric.hpp"
#include "vswitch/config/topology.hpp"

namespace vswitch {
namespace {

constexpr std::uint64_t kLengthBytes = 8;

std::string object(const std::string& switch_name) { return shm::object_name(switch_name, "topology"); }

}  // namespace

sys::Result<shm::Region, std::string> publish_running_topology(const std::string& switch_name,
                                                               std::string_view text, std::uint64_t generation) {
  if (text.size() > kMaxTopologyBytes)
    return sys::Unexpected("running topology: " + std::to_string(text.size()) + " bytes, more than a topology may have");
  const std::string final_name = object(switch_name);
  // No channel, slice or capture object can have these names: theirs have a '-' between
  // two endpoint names or start with "stats" or "capture". The temporary name is new each
  // time: /dev/shm is anyone's to create files in, and a name known in advance could be
  // taken first to make the creation below fail. One left by a vswitchd killed between the
  // two steps is removed with the switch's other leftovers at the next start.
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".next.%08x%08x", rd(), rd());
  const std::string next_name = final_name + suffix;
  auto r = shm::Region::create(next_name, shm::RegionKind::kTopology, kLengthBytes + text.size(), generation);
  if (!r) return sys::Unexpected("running topology: " + r.error().detail);
  const std::span<std::byte> payload = r.value().payload();
  const std::uint64_t length = text.size();
  std::memcpy(payload.data(), &length, kLengthBytes);
  if (!text.empty()) std::memcpy(payload.data() + kLengthBytes, text.data(), text.size());
  r.value().publish_ready();  // [R0] (shm/region.hpp): the text before the magic
  // On failure the region, still owning the temporary name, removes it as it goes.
  if (auto st = r.value().rename_to(final_name); !st) return sys::Unexpected("running topology: " + st.error());
  return std::move(r.value());
}

sys::Result<RunningTopologyText, RunningTopologyError> read_running_topology(const std::string& switch_name) {
  auto r = shm::Region::attach(object(switch_name), shm::RegionKind::kTopology, 0, shm::Access::kReadOnly);
  if (!r) return sys::Unexpected(RunningTopologyError{r.error().code == shm::AttachError::kNotFound, r.error().detail});
  const std::span<const std::byte> payload = r.value().payload();
  std::uint64_t length = 0;
  if (payload.size() < kLengthBytes)
    return sys::Unexpected(RunningTopologyError{false, r.value().name() + ": no room for its length word"});
  std::memcpy(&length, payload.data(), kLengthBytes);  // read once
  if (length > payload.size() - kLengthBytes || length > kMaxTopologyBytes)
    return sys::Unexpected(RunningTopologyError{false, r.value().name() + ": says " + std::to_string(length) +
                                                           " bytes of text, holds " +
                                                           std::to_string(payload.size() - kLengthBytes)});
  RunningTopologyText out;
  out.text.assign(reinterpret_cast<const char*>(payload.data() + kLengthBytes),  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast): bytes as chars
                  static_cast<std::size_t>(length));
  out.generation = r.value().generation();
  return out;
}

}  // namespace vswitch
