#include "vswitch/observability/stats.hpp"

#include "shm/fabric.hpp"

#include <atomic>
#include <cstring>

namespace vswitch {
namespace {

constexpr std::size_t kWords = sizeof(std::uint64_t);
constexpr std::size_t kSlotWords = sizeof(EndpointSlot) / kWords;
constexpr std::size_t kFdbHeaderWords = 4;  // seq, table size, entry count, reserved

std::size_t fdb_words_for(std::uint32_t capacity) { return kFdbHeaderWords + 2 * std::size_t{capacity}; }

std::uint64_t load(const std::uint64_t* w) noexcept {
  return std::atomic_ref<std::uint64_t>(*const_cast<std::uint64_t*>(w)).load(std::memory_order_relaxed);
}
void store(std::uint64_t* w, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(*w).store(v, std::memory_order_relaxed);
}

template <typename T>
void copy_out(std::uint64_t* dst, const T& src) noexcept {
  static_assert(sizeof(T) % kWords == 0 && std::is_trivially_copyable_v<T>);
  std::uint64_t words[sizeof(T) / kWords];
  std::memcpy(words, &src, sizeof(T));
  for (std::size_t i = 0; i < sizeof(T) / kWords; ++i) store(dst + i, words[i]);
}
template <typename T>
T copy_in(const std::uint64_t* src) noexcept {
  std::uint64_t words[sizeof(T) / kWords];
  for (std::size_t i = 0; i < sizeof(T) / kWords; ++i) words[i] = load(src + i);
  T out;
  std::memcpy(&out, words, sizeof(T));
  return out;
}

}  // namespace

std::string_view to_string(EndpointState s) {
  switch (s) {
    case EndpointState::kDown: return "down";
    case EndpointState::kStarting: return "starting";
    case EndpointState::kUp: return "up";
    case EndpointState::kStopped: return "stopped";
  }
  return "unknown";
}

std::string StatsRegion::region_name(const std::string& switch_name) { return shm::object_name(switch_name, "stats"); }

std::uint64_t StatsRegion::bytes_for(std::size_t endpoints, std::uint32_t fdb_capacity) {
  return sizeof(StatsHeader) + endpoints * (sizeof(EndpointSlot) + fdb_words_for(fdb_capacity) * kWords);
}

StatsRegion::StatsRegion(shm::Region region, std::size_t endpoints, std::uint32_t fdb_capacity)
    : region_(std::move(region)), endpoints_(endpoints), fdb_capacity_(fdb_capacity) {}

sys::Result<StatsRegion, std::string> StatsRegion::create(const std::string& switch_name, std::size_t endpoints,
                                                          std::uint32_t fdb_capacity, std::uint64_t generation) {
  if (endpoints == 0 || endpoints > kMaxEndpoints)
    return sys::Unexpected("stats: " + std::to_string(endpoints) + " endpoints (1.." +
                           std::to_string(kMaxEndpoints) + " supported)");
  if (fdb_capacity > kMaxFdbSnapshot) fdb_capacity = kMaxFdbSnapshot;
  auto r = shm::Region::create(region_name(switch_name), shm::RegionKind::kStats, bytes_for(endpoints, fdb_capacity),
                               generation);
  if (!r) return sys::Unexpected("stats: " + r.error().detail);
  StatsRegion s(std::move(r.value()), endpoints, fdb_capacity);
  auto* h = reinterpret_cast<std::uint64_t*>(s.region_.payload().data());
  h[0] = endpoints;
  h[1] = fdb_capacity;
  s.region_.publish_ready();  // [R0]: the header and the zeroed slots before the magic
  return s;
}

sys::Result<StatsRegion, std::string> StatsRegion::attach(const std::string& switch_name, shm::Access access) {
  auto r = shm::Region::attach(region_name(switch_name), shm::RegionKind::kStats, 0, access);
  if (!r) return sys::Unexpected(r.error().detail);
  const auto payload = r.value().payload();
  if (payload.size() < sizeof(StatsHeader)) return sys::Unexpected(std::string("stats: region too small"));
  const auto* h = reinterpret_cast<const std::uint64_t*>(payload.data());
  const std::uint64_t endpoints = load(h);
  const std::uint64_t fdb = load(h + 1);
  if (endpoints == 0 || endpoints > kMaxEndpoints || fdb > kMaxFdbSnapshot ||
      bytes_for(endpoints, static_cast<std::uint32_t>(fdb)) != payload.size())
    return sys::Unexpected("stats: header (" + std::to_string(endpoints) + " endpoints, fdb " + std::to_string(fdb) +
                           ") does not match the region's size " + std::to_string(payload.size()));
  return StatsRegion(std::move(r.value()), endpoints, static_cast<std::uint32_t>(fdb));
}

std::uint64_t* StatsRegion::slot_words(std::size_t endpoint) const noexcept {
  auto* base = reinterpret_cast<std::uint64_t*>(region_.payload().data()) + sizeof(StatsHeader) / kWords;
  return base + endpoint * kSlotWords;
}

std::uint64_t* StatsRegion::fdb_words(std::size_t endpoint) const noexcept {
  return slot_words(endpoints_) + endpoint * fdb_words_for(fdb_capacity_);
}

std::uint64_t StatsRegion::daemon_pid() const noexcept {
  return load(reinterpret_cast<const std::uint64_t*>(region_.payload().data()) + 2);
}
void StatsRegion::set_daemon_pid(std::uint64_t pid) noexcept {
  store(reinterpret_cast<std::uint64_t*>(region_.payload().data()) + 2, pid);
}

void StatsRegion::write_daemon(std::size_t endpoint, const DaemonState& d) noexcept {
  copy_out(slot_words(endpoint), d);
}
DaemonState StatsRegion::read_daemon(std::size_t endpoint) const noexcept {
  return copy_in<DaemonState>(slot_words(endpoint));
}
void StatsRegion::write_counters(std::size_t endpoint, const EndpointCounters& c) noexcept {
  copy_out(slot_words(endpoint) + sizeof(DaemonState) / kWords, c);
}
EndpointCounters StatsRegion::read_counters(std::size_t endpoint) const noexcept {
  return copy_in<EndpointCounters>(slot_words(endpoint) + sizeof(DaemonState) / kWords);
}

// Seqlock writer. The sequence is odd while entries change:
//   seq.store(odd, relaxed); fence(release)   -> orders the odd mark before the entry stores,
//                                                pairs with the reader's fence(acquire) [S1]
//   entry stores (relaxed)
//   seq.store(even, release)                  -> publishes the entries, pairs with the
//                                                reader's seq.load(acquire) [S2]
void StatsRegion::write_fdb(std::size_t endpoint, std::span<const MacEntry> entries, std::uint64_t table_size) noexcept {
  std::uint64_t* w = fdb_words(endpoint);
  std::atomic_ref<std::uint64_t> seq(w[0]);
  const std::uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store(s | 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // [S1] release side
  const std::size_t n = entries.size() < fdb_capacity_? entries.size() : fdb_capacity_;
  store(w + 1, table_size);
  store(w + 2, n);
  for (std::size_t i = 0; i < n; ++i) {
    const MacEntry& e = entries[i];
    store(w + kFdbHeaderWords + 2 * i, e.mac.bits() | (std::uint64_t{e.port} << 48));
    store(w + kFdbHeaderWords + 2 * i + 1, (e.last_seen_ms & ~(std::uint64_t{1} << 63)) |
                                               (e.is_static ? std::uint64_t{1} << 63 : 0));
  }
  seq.store((s | 1) + 1, std::memory_order_release);  // [S2] release: entries before the even value
}

// Seqlock reader: seq.load(acquire) [S2], copy, fence(acquire) [S1], seq again; equal and
// even means no write overlapped the copy.
std::optional<FdbView> StatsRegion::read_fdb(std::size_t endpoint) const {
  const std::uint64_t* w = fdb_words(endpoint);
  std::atomic_ref<std::uint64_t> seq(*const_cast<std::uint64_t*>(w));
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const std::uint64_t s1 = seq.load(std::memory_order_acquire);  // [S2] acquire
    if (s1 & 1) continue;
    FdbView v;
    v.table_size = load(w + 1);
    std::uint64_t n = load(w + 2);
    if (n > fdb_capacity_) n = fdb_capacity_;  // bounded by what attach validated
    v.entries.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t a = load(w + kFdbHeaderWords + 2 * i);
      const std::uint64_t b = load(w + kFdbHeaderWords + 2 * i + 1);
      MacEntry e;
      e.mac = MacAddress::from_bits(a);
      e.port = static_cast<PortId>((a >> 48) & 0x7fff);
      e.is_static = (b >> 63) != 0;
      e.last_seen_ms = b & ~(std::uint64_t{1} << 63);
      v.entries.push_back(e);
    }
    std::atomic_thread_fence(std::memory_order_acquire);  // [S1] acquire side
    if (seq.load(std::memory_order_relaxed) == s1) return v;
  }
  return std::nullopt;
}

}  // namespace vswitch
