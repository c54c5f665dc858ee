// Fabric: every ordered pair (a, b) of a topology's endpoints gets its own channel a -> b,
// so every ring is single-producer/single-consumer and a pair's memory is mapped only by
// the two endpoints of that pair. Memory grows as N * (N - 1) * ring size; create()
// checks that against what the machine can give before it creates anything.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/channel.hpp"
#include "shm/sys/memory_info.hpp"

namespace vswitch::shm {

// A fabric or endpoint name: 1-64 of [A-Za-z0-9_-], so it can be part of a shm object name.
[[nodiscard]] bool valid_name_component(std::string_view s) noexcept;

// Every shared-memory object of switch `switch_name` is named "/vswitch.<switch_name>.<what>"
// (POSIX shm names: one leading slash, then the file name under /dev/shm): its channels
// ("<from>-<to>"), its stats object ("stats") and each endpoint's stats slice
// ("stats.<endpoint>": the dot keeps it apart from every channel name).
[[nodiscard]] std::string object_name(const std::string& switch_name, const std::string& what);

struct FabricSpec {
  std::string name;                     // [A-Za-z0-9_-]+, prefixes every object name
  std::vector<std::string> endpoints;   // names, [A-Za-z0-9_-]+, unique
  std::uint64_t ring_bytes = 0;         // per channel
  std::uint32_t max_payload = kDefaultMaxPayload;
  std::uint64_t generation = 0;

  [[nodiscard]] std::string channel_name(std::size_t from, std::size_t to) const;
  [[nodiscard]] std::uint64_t total_bytes() const noexcept;
};

class Fabric {
 public:
  // Creates every channel. Fails, creating nothing, when the spec is invalid or the
  // total exceeds `memory` (defaults to what this machine has now).
  [[nodiscard]] static sys::Result<Fabric, std::string> create(
      const FabricSpec& spec, std::optional<sys::MemoryInfo> memory = std::nullopt);
  // Attaches the channels that touch endpoint `self` (in and out), nothing else.
  [[nodiscard]] static sys::Result<Fabric, std::string> attach(const FabricSpec& spec,
                                                               std::size_t self);

  // The same for endpoint `self` as vswitchd starts it: every channel by its size only
  // (Channel::attach_sized), so that a peer that corrupted a channel's headers cannot keep
  // a restarted endpoint from attaching (the ring's contents are validated as they are read).
  [[nodiscard]] static sys::Result<Fabric, std::string> attach_sized(const FabricSpec& spec, std::size_t self);

  // For a process that inherited the creator's fabric by fork() and is endpoint `self`:
  // disowns every channel (this process never unlinks one, whatever it drops) and unmaps
  // every channel that does not touch `self`, leaving the 2 * (N - 1) that attach(spec,
  // self) would map, at the addresses they had. The other endpoints' channels are then
  // no longer in this process's address space.
  void keep_only(std::size_t self) noexcept;

  // The channel from -> to, or null when this fabric object did not map it.
  [[nodiscard]] const Channel* channel(std::size_t from, std::size_t to) const noexcept;
  [[nodiscard]] const FabricSpec& spec() const noexcept { return spec_; }

 private:
  explicit Fabric(FabricSpec spec);
  // attach() and attach_sized(): the 2(N-1) channels of `self`, each by attach_channel.
  template <typename AttachChannel>
  static sys::Result<Fabric, std::string> attach_with(const FabricSpec& spec, std::size_t self,
                                                      AttachChannel attach_channel);
  FabricSpec spec_;
  std::vector<std::optional<Channel>> channels_;  // from * n + to
};

}  // namespace vswitch::shm
