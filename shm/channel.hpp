// Channel: one direction a -> b. A region of kind kChannel holding one FrameRing; only a
// produces into it and only b consumes from it.
#pragma once

#include <cstdint>
#include <string>

#include "shm/frame_ring.hpp"
#include "shm/region.hpp"

namespace vswitch::shm {

struct ChannelSpec {
  std::string name;                 // shm object name, starts with '/'
  std::uint64_t ring_bytes = 0;     // ring data capacity, a power of two
  std::uint32_t max_payload = kDefaultMaxPayload;
  std::uint64_t generation = 0;

  [[nodiscard]] std::uint64_t region_bytes() const noexcept {
    return Region::payload_offset() + RingArea::bytes_for(ring_bytes);
  }
};

class Channel {
 public:
  // Creates the region and lays out an empty ring; the creator unlinks it on destruction.
  [[nodiscard]] static sys::Result<Channel, std::string> create(const ChannelSpec& spec);
  // Attaches to an existing channel; validates region header and ring header. An observer
  // attaches with Access::kReadOnly and only reads area().snapshot(): producer() and
  // consumer() store into the ring and would fault on a read-only mapping.
  [[nodiscard]] static sys::Result<Channel, std::string> attach(const std::string& name,
                                                                std::uint64_t expected_generation = 0,
                                                                Access access = Access::kReadWrite);

  // The switch's own endpoint program: maps the channel `spec` names, checking only its size
  // (Region::attach_sized, RingArea::adopt): its headers are the peer's to write too.
  [[nodiscard]] static sys::Result<Channel, std::string> attach_sized(const ChannelSpec& spec);

  [[nodiscard]] FrameProducer producer(Doorbell* consumer_doorbell) const noexcept {
    return FrameProducer(area_, consumer_doorbell);
  }
  [[nodiscard]] FrameConsumer consumer(Doorbell* producer_doorbell) const noexcept {
    return FrameConsumer(area_, producer_doorbell);
  }
  // See Region::disown(): dropping this object will only unmap it.
  void disown() noexcept { region_.disown(); }
  [[nodiscard]] const Region& region() const noexcept { return region_; }
  [[nodiscard]] const RingArea& area() const noexcept { return area_; }

 private:
  Channel(Region region, RingArea area) : region_(std::move(region)), area_(area) {}
  Region region_;
  RingArea area_;
};

}  // namespace vswitch::shm
