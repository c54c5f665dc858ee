#include "shm/fabric.hpp"

#include <cstdio>

namespace vswitch::shm {

bool valid_name_component(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

std::string mib(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string check_spec(const FabricSpec& spec) {
  if (!valid_name_component(spec.name)) return "fabric name \"" + spec.name + "\" must be 1-64 of [A-Za-z0-9_-]";
  if (spec.endpoints.size() < 2) return "fabric " + spec.name + ": needs at least two endpoints";
  for (std::size_t i = 0; i < spec.endpoints.size(); ++i) {
    if (!valid_name_component(spec.endpoints[i]))
      return "fabric " + spec.name + ": endpoint name \"" + spec.endpoints[i] +
             "\" must be 1-64 of [A-Za-z0-9_-]";
    for (std::size_t j = 0; j < i; ++j)
      if (spec.endpoints[i] == spec.endpoints[j])
        return "fabric " + spec.name + ": duplicate endpoint \"" + spec.endpoints[i] + "\"";
  }
  return {};
}

}  // namespace

std::string object_name(const std::string& switch_name, const std::string& what) {
  return "/vswitch." + switch_name + "." + what;
}

std::string FabricSpec::channel_name(std::size_t from, std::size_t to) const {
  return object_name(name, endpoints[from] + "-" + endpoints[to]);
}

std::uint64_t FabricSpec::total_bytes() const noexcept {
  const std::uint64_t n = endpoints.size();
  const ChannelSpec one{"", ring_bytes, max_payload, generation};
  return n * (n - 1) * one.region_bytes();
}

Fabric::Fabric(FabricSpec spec) : spec_(std::move(spec)) {
  channels_.resize(spec_.endpoints.size() * spec_.endpoints.size());
}

sys::Result<Fabric, std::string> Fabric::create(const FabricSpec& spec,
                                                 std::optional<sys::MemoryInfo> memory) {
  using sys::Unexpected;
  if (auto e = check_spec(spec); !e.empty()) return Unexpected{e};
  const sys::MemoryInfo mem = memory ? *memory : sys::read_memory_info();
  const std::uint64_t n = spec.endpoints.size();
  const std::uint64_t need = spec.total_bytes();
  if (need > mem.usable_bytes()) {
    return Unexpected{"fabric " + spec.name + ": " + std::to_string(n) + " endpoints need " +
                      std::to_string(n * (n - 1)) + " channels of " +
                      mib(need / (n * (n - 1))) + " = " + mib(need) +
                      " of shared memory, but only " + mib(mem.usable_bytes()) +
                      " is available (MemAvailable " + mib(mem.mem_available_bytes) +
                      ", /dev/shm free " + mib(mem.shm_free_bytes) + "); lower ring_bytes"};
  }
  Fabric f(spec);
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) {
      if (a == b) continue;
      auto ch = Channel::create(ChannelSpec{spec.channel_name(a, b), spec.ring_bytes,
                                            spec.max_payload, spec.generation});
      if (!ch) return Unexpected{ch.error()};  // channels made so far are unlinked by ~Fabric
      f.channels_[a * n + b].emplace(std::move(ch).value());
    }
  }
  return f;
}

template <typename AttachChannel>
sys::Result<Fabric, std::string> Fabric::attach_with(const FabricSpec& spec, std::size_t self, AttachChannel attach_channel) {
  using sys::Unexpected;
  if (auto e = check_spec(spec); !e.empty()) return Unexpected{e};
  const std::size_t n = spec.endpoints.size();
  if (self >= n) return Unexpected{"fabric " + spec.name + ": no endpoint #" + std::to_string(self)};
  Fabric f(spec);
  for (std::size_t other = 0; other < n; ++other) {
    if (other == self) continue;
    for (auto [a, b] : {std::pair{self, other}, std::pair{other, self}}) {
      auto ch = attach_channel(ChannelSpec{spec.channel_name(a, b), spec.ring_bytes, spec.max_payload, spec.generation});
      if (!ch) return Unexpected{ch.error()};
      f.channels_[a * n + b].emplace(std::move(ch).value());
    }
  }
  return f;
}

sys::Result<Fabric, std::string> Fabric::attach(const FabricSpec& spec, std::size_t self) {
  return attach_with(spec, self, [](const ChannelSpec& c) { return Channel::attach(c.name, c.generation); });
}

sys::Result<Fabric, std::string> Fabric::attach_sized(const FabricSpec& spec, std::size_t self) {
  return attach_with(spec, self, [](const ChannelSpec& c) { return Channel::attach_sized(c); });
}

void Fabric::keep_only(std::size_t self) noexcept {
  const std::size_t n = spec_.endpoints.size();
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) {
      auto& c = channels_[a * n + b];
      if (!c) continue;
      c->disown();
      if (a != self && b != self) c.reset();  // unmaps; the name stays for its owner
    }
  }
}

const Channel* Fabric::channel(std::size_t from, std::size_t to) const noexcept {
  const std::size_t n = spec_.endpoints.size();
  if (from >= n || to >= n || from == to) return nullptr;
  const auto& c = channels_[from * n + to];
  return c ? &*c : nullptr;
}

}  // namespace vswitch::shm
