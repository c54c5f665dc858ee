// The generator frontend: makes and checks test traffic. Its counter block is described
// in vswitch/observability/frontend_counters.hpp (vswitchctl reads it there).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "endpoints/generator/test_frame.hpp"
#include "vswitch/config/mac_address.hpp"
#include "vswitch/dataplane/endpoint.hpp"
#include "vswitch/observability/frontend_counters.hpp"

namespace vswitch {

// Sends sequence-numbered, checksummed test frames (endpoints/generator/test_frame) at a
// fixed rate (0: as fast as the switch takes them) cycling through a size list, and checks
// every frame it receives: per sending stream, gaps count as lost and steps back as out
// of order; a frame that fails its check counts as bad; anything else as foreign.
class GeneratorFrontend final : public Frontend {
 public:
  struct Config {
    std::uint32_t stream = 0;  // this sender's stream id (unique per endpoint and incarnation)
    MacAddress source;
    MacAddress destination;    // the peer's MAC, or broadcast
    std::vector<std::uint32_t> sizes{64};
    std::uint64_t rate_fps = 0;
    std::uint64_t first_sequence = 0;
    std::uint64_t count = 0;  // frames to send, then stop (0: no limit)
    bool send = true;         // false: only receive and check
    // This receiver restarted: a stream seen for the first time is joined where it is
    // (frames lost while we were down were counted as drops by their senders).
    bool join_streams_midway = false;
  };
  // Counts on from `initial` (a restarted endpoint's predecessor's totals).
  explicit GeneratorFrontend(const Config& config, const GeneratorCounters& initial = {});
  // `config` that sends nothing: only checks what arrives.
  [[nodiscard]] static Config receive_only(MacAddress source);

  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override;
  [[nodiscard]] std::optional<std::uint64_t> next_due_ns() const noexcept override;
  Delivery deliver(const endpoints::virtio::CheckedNetHeader& header, std::span<const std::byte> frame,
                   FrameAddresses addresses, PortId from, std::uint64_t& resume) noexcept override;

  void store_counters(FrontendCounterArea& area) const noexcept override { sys::store_block(counters_, area); }
  [[nodiscard]] const GeneratorCounters& counters() const noexcept { return counters_; }
  // Sending stops (receive() has nothing) while paused; checking goes on.
  void set_paused(bool paused) noexcept { paused_ = paused; }
  // A link down pauses sending (what arrives meanwhile is dropped before it gets here).
  std::string set_link(bool up) noexcept override {
    set_paused(!up);
    return {};
  }
  [[nodiscard]] std::uint64_t next_sequence() const noexcept { return sequence_; }

 private:
  struct Stream {
    bool seen = false;
    std::uint32_t id = 0;
    endpoints::generator::SequenceTracker tracker;
  };
  Config config_;
  GeneratorCounters counters_;
  std::uint64_t sequence_;
  std::uint64_t period_ns_ = 0;
  std::uint64_t next_due_ns_ = 0;
  std::size_t size_index_ = 0;
  bool paused_ = false;
  std::array<Stream, kMaxEndpoints> streams_{};  // by sending port
  std::uint64_t retired_lost_ = 0;               // losses of streams that were replaced
  std::uint64_t retired_out_of_order_ = 0;
};

}  // namespace vswitch
