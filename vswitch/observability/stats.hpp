// Stats region: where every endpoint publishes its state, counters and MAC table, and
// where vswitchctl reads them without stopping or slowing anything. One shm region per
// switch, "/vswitch.<name>.stats", created by vswitchd.
//
//   StatsHeader                    endpoint count, FDB capacity per endpoint
//   EndpointSlot[endpoints]        one per endpoint: daemon-owned state + EndpointCounters
//   FdbSnapshot[endpoints]         one per endpoint: seqlock + entries
//
// Every word is a 64-bit integer accessed through std::atomic_ref with relaxed order:
// counters are independent monotonic values, and a reader that sees one a little older
// than another is fine. The one place that needs a consistent set, the FDB snapshot, is
// a seqlock (ordering at StatsRegion::write_fdb / read_fdb).
//
// Writers: vswitchd writes only DaemonState; the endpoint process writes only its own
// EndpointCounters and FdbSnapshot. The region is ours, but a reader still bounds every count it
// reads by the sizes it validated at attach.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "shm/region.hpp"
#include "shm/sys/result.hpp"
#include "vswitch/observability/endpoint_counters.hpp"
#include "vswitch/observability/mac_table_counters.hpp"

namespace vswitch {

// The FDB snapshot holds at most this many entries per endpoint (larger tables show their
// first entries and the true size).
inline constexpr std::uint32_t kMaxFdbSnapshot = 65536;

enum class EndpointState : std::uint64_t { kDown = 0, kStarting = 1, kUp = 2, kStopped = 3 };
std::string_view to_string(EndpointState s);

// Written by vswitchd.
struct DaemonState {
  std::uint64_t state;        // EndpointState
  std::uint64_t pid;
  std::uint64_t restarts;     // times the endpoint was started again after dying
  std::uint64_t core;         // pinned core, or ~0 when not pinned
  std::uint64_t last_exit;    // wait status of the last exit (0 if none)
  std::uint64_t started_unix_ms;
  std::uint64_t hung;         // of the restarts: times the watchdog killed it as hung
  std::uint64_t reserved;
};

struct EndpointSlot {
  DaemonState daemon;
  EndpointCounters counters;  // written by the endpoint (vswitch/observability/endpoint_counters.hpp)
};
static_assert(sizeof(EndpointSlot) % 8 == 0 && std::is_trivially_copyable_v<EndpointSlot>);

struct StatsHeader {
  std::uint64_t endpoints;
  std::uint64_t fdb_capacity;  // entries per FdbSnapshot
  std::uint64_t daemon_pid;
  std::uint64_t reserved[5];
};

struct FdbView {
  std::vector<MacEntry> entries;
  std::uint64_t table_size = 0;  // entries in the table (may exceed entries.size())
};

class StatsRegion {
 public:
  [[nodiscard]] static std::string region_name(const std::string& switch_name);
  [[nodiscard]] static std::uint64_t bytes_for(std::size_t endpoints, std::uint32_t fdb_capacity);

  [[nodiscard]] static sys::Result<StatsRegion, std::string> create(const std::string& switch_name,
                                                                    std::size_t endpoints,
                                                                    std::uint32_t fdb_capacity,
                                                                    std::uint64_t generation);
  // An observer (vswitchctl) attaches with shm::Access::kReadOnly and keeps the result
  // const: only the read_* calls, which never store (the seqlock reader only loads).
  [[nodiscard]] static sys::Result<StatsRegion, std::string> attach(const std::string& switch_name,
                                                                    shm::Access access = shm::Access::kReadWrite);

  [[nodiscard]] std::size_t endpoints() const noexcept { return endpoints_; }
  [[nodiscard]] std::uint32_t fdb_capacity() const noexcept { return fdb_capacity_; }
  [[nodiscard]] std::uint64_t daemon_pid() const noexcept;
  void set_daemon_pid(std::uint64_t pid) noexcept;

  // Word-by-word relaxed copies in and out of shared memory.
  void write_daemon(std::size_t endpoint, const DaemonState& d) noexcept;
  [[nodiscard]] DaemonState read_daemon(std::size_t endpoint) const noexcept;
  void write_counters(std::size_t endpoint, const EndpointCounters& c) noexcept;
  [[nodiscard]] EndpointCounters read_counters(std::size_t endpoint) const noexcept;

  // Replaces the endpoint's FDB snapshot (seqlock writer; one writer per endpoint).
  void write_fdb(std::size_t endpoint, std::span<const MacEntry> entries, std::uint64_t table_size) noexcept;
  // A consistent copy, or nullopt when the writer kept changing it (retries a while first).
  [[nodiscard]] std::optional<FdbView> read_fdb(std::size_t endpoint) const;

  [[nodiscard]] const shm::Region& region() const noexcept { return region_; }

 private:
  StatsRegion(shm::Region region, std::size_t endpoints, std::uint32_t fdb_capacity);
  [[nodiscard]] std::uint64_t* slot_words(std::size_t endpoint) const noexcept;
  [[nodiscard]] std::uint64_t* fdb_words(std::size_t endpoint) const noexcept;  // seq, size, count, entries

  shm::Region region_;
  std::size_t endpoints_;
  std::uint32_t fdb_capacity_;
};

}  // namespace vswitch
