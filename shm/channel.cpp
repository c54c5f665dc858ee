#include "shm/channel.hpp"

namespace vswitch::shm {

sys::Result<Channel, std::string> Channel::create(const ChannelSpec& spec) {
  using sys::Unexpected;
  auto region = Region::create(spec.name, RegionKind::kChannel, RingArea::bytes_for(spec.ring_bytes),
                               spec.generation);
  if (!region) return Unexpected{region.error().detail};
  auto area = RingArea::init(region->payload(), spec.ring_bytes, spec.max_payload);
  if (!area)
    return Unexpected{"channel " + spec.name + ": " + std::string(to_string(area.error()))};
  region->publish_ready();
  return Channel(std::move(region).value(), area.value());
}

sys::Result<Channel, std::string> Channel::attach(const std::string& name,
                                                  std::uint64_t expected_generation, Access access) {
  using sys::Unexpected;
  auto region = Region::attach(name, RegionKind::kChannel, expected_generation, access);
  if (!region) return Unexpected{region.error().detail};
  auto area = RingArea::attach(region->payload());
  if (!area) return Unexpected{"channel " + name + ": " + std::string(to_string(area.error()))};
  return Channel(std::move(region).value(), area.value());
}

sys::Result<Channel, std::string> Channel::attach_sized(const ChannelSpec& spec) {
  using sys::Unexpected;
  auto region = Region::attach_sized(spec.name, spec.region_bytes(), spec.generation);
  if (!region) return Unexpected{region.error().detail};
  auto area = RingArea::adopt(region->payload(), spec.ring_bytes, spec.max_payload);
  if (!area) return Unexpected{"channel " + spec.name + ": " + std::string(to_string(area.error()))};
  return Channel(std::move(region).value(), area.value());
}

}  // namespace vswitch::shm
