#include "vswitch/observability/stats.hpp"

#include "shm/fabric.hpp"

#include <atomic>
#include <bit>
#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vswitch {
namespace {

constexpr std::size_t kWords = sizeof(std::uint64_t);
constexpr std::size_t kSliceHeaderWords = sizeof(StatsSliceHeader) / kWords;
constexpr std::size_t kCounterWords = sizeof(EndpointCounters) / kWords;
constexpr std::size_t kFdbHeaderWords = 4;  // seq, table size, entry count, reserved

constexpr unsigned kFdbVlanShift = 51;
constexpr std::uint64_t kFdbTimeMask = (std::uint64_t{1} << kFdbVlanShift) - 1;
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

std::uint64_t* words_of(const shm::Region& r) noexcept { return reinterpret_cast<std::uint64_t*>(r.payload().data()); }

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

}  // namespace

std::string_view to_string(EndpointState s) {
  switch (s) {
    case EndpointState::kDown: return "down";
    case EndpointState::kStarting: return "starting";
    case EndpointState::kUp: return "up";
    case EndpointState::kStopped: return "stopped";
    case EndpointState::kDisabled: return "disabled";
  }
  return "unknown";
}

// ---- StatsSlice ---------------------------------------------------------------------

std::string StatsSlice::object_name(const std::string& switch_name, const std::string& endpoint_name) {
  return shm::object_name(switch_name, "stats." + endpoint_name);
}

std::uint64_t StatsSlice::bytes_for(std::uint32_t fdb_capacity) {
  return sizeof(StatsSliceHeader) + sizeof(EndpointCounters) + fdb_words_for(fdb_capacity) * kWords +
         kDeliveryJournalWords * kWords + kMaxEndpoints * kWords + kPortTableWords * kWords;
}

StatsSlice::StatsSlice(shm::Region region, std::size_t endpoint, std::uint32_t fdb_capacity)
    : region_(std::move(region)), endpoint_(endpoint), fdb_capacity_(fdb_capacity) {}

sys::Result<StatsSlice, std::string> StatsSlice::create(const std::string& switch_name,
                                                        const std::string& endpoint_name, std::size_t endpoint,
                                                        std::uint32_t fdb_capacity, std::uint64_t generation) {
  if (!shm::valid_name_component(endpoint_name))
    return sys::Unexpected("stats: endpoint name \"" + endpoint_name + "\" must be 1-64 of [A-Za-z0-9_-]");
  if (fdb_capacity > kMaxFdbSnapshot) fdb_capacity = kMaxFdbSnapshot;
  auto r = shm::Region::create(object_name(switch_name, endpoint_name), shm::RegionKind::kStatsSlice,
                               bytes_for(fdb_capacity), generation);
  if (!r) return sys::Unexpected("stats: " + r.error().detail);
  StatsSlice s(std::move(r.value()), endpoint, fdb_capacity);
  std::uint64_t* h = words_of(s.region_);
  h[0] = kStatsSliceMagic;
  h[1] = kStatsSliceVersion;
  h[2] = endpoint;
  h[3] = fdb_capacity;
  s.region_.publish_ready();  // [R0]: the slice header and the zeroed counters before the magic
  return s;
}

sys::Result<StatsSlice, std::string> StatsSlice::attach(const std::string& switch_name,
                                                        const std::string& endpoint_name, std::size_t endpoint,
                                                        std::uint32_t fdb_capacity, std::uint64_t generation,
                                                        shm::Access access) {
  if (!shm::valid_name_component(endpoint_name))
    return sys::Unexpected("stats: endpoint name \"" + endpoint_name + "\" must be 1-64 of [A-Za-z0-9_-]");
  const std::string name = object_name(switch_name, endpoint_name);
  // The region header: magic, layout version, kind, size and generation ([A0] inside).
  auto r = shm::Region::attach(name, shm::RegionKind::kStatsSlice, generation, access);
  if (!r) return sys::Unexpected(r.error().detail);
  const auto payload = r.value().payload();
  const std::string what = "stats slice " + name + ": ";
  if (payload.size() < sizeof(StatsSliceHeader))
    return sys::Unexpected(what + std::to_string(payload.size()) + " bytes, smaller than its header (" +
                           std::to_string(sizeof(StatsSliceHeader)) + ")");
  // The endpoint may write its slice header at any time: each word is read once, and
  // only these copies are used from here on.
  const std::uint64_t* h = words_of(r.value());
  const std::uint64_t magic = load(h);
  const std::uint64_t version = load(h + 1);
  const std::uint64_t index = load(h + 2);
  const std::uint64_t fdb = load(h + 3);
  if (magic != kStatsSliceMagic)
    return sys::Unexpected(what + "bad slice magic " + hex(magic) + ", expected " + hex(kStatsSliceMagic));
  if (version != kStatsSliceVersion)
    return sys::Unexpected(what + "unsupported slice version " + std::to_string(version) + ", expected " +
                           std::to_string(kStatsSliceVersion));
  if (index != endpoint)
    return sys::Unexpected(what + "made for endpoint #" + std::to_string(index) + ", expected #" +
                           std::to_string(endpoint));
  if (fdb != fdb_capacity)
    return sys::Unexpected(what + "FDB capacity " + std::to_string(fdb) + ", the switch's is " +
                           std::to_string(fdb_capacity));
  if (payload.size() != bytes_for(fdb_capacity))
    return sys::Unexpected(what + std::to_string(payload.size()) + " bytes, expected " +
                           std::to_string(bytes_for(fdb_capacity)) + " for an FDB of " +
                           std::to_string(fdb_capacity) + " entries");
  return StatsSlice(std::move(r.value()), endpoint, fdb_capacity);
}

sys::Result<StatsSlice, std::string> StatsSlice::attach_sized(const std::string& switch_name,
                                                              const std::string& endpoint_name, std::size_t endpoint,
                                                              std::uint32_t fdb_capacity, std::uint64_t generation) {
  if (!shm::valid_name_component(endpoint_name))
    return sys::Unexpected("stats: endpoint name \"" + endpoint_name + "\" must be 1-64 of [A-Za-z0-9_-]");
  auto r = shm::Region::attach_sized(object_name(switch_name, endpoint_name),
                                     shm::Region::payload_offset() + bytes_for(fdb_capacity), generation);
  if (!r) return sys::Unexpected(r.error().detail);
  return StatsSlice(std::move(r.value()), endpoint, fdb_capacity);
}

std::uint64_t* StatsSlice::counter_words() const noexcept { return words_of(region_) + kSliceHeaderWords; }

bool StatsSlice::admin_down() const noexcept {
  return load(words_of(region_) + offsetof(StatsSliceHeader, admin_link) / kWords) == kAdminLinkDown;
}

void StatsSlice::set_admin_down(bool down) noexcept {
  store(words_of(region_) + offsetof(StatsSliceHeader, admin_link) / kWords, down ? kAdminLinkDown : kAdminLinkUp);
}

// [R-OFF]: vswitchd stores a peer's stale_to (Daemon::apply), later the mask that turns
// the peer on with a release store (Daemon::publish_disabled); the endpoint's acquire load
// of the mask (EndpointLoop::poll_once) pairs with it, so an endpoint that sees the peer on
// reads the stale_to written before (and never an older one, which would let frames of
// the peer's earlier run through). [R-FENCE] publishes the same words to an endpoint that
// never saw the mask change. The endpoint loads the mask only after it saw fence_seq move,
// which every mask store is followed by (set_peers_disabled): one acquire load per pass.
std::uint64_t StatsSlice::peers_disabled() const noexcept {
  return std::atomic_ref<std::uint64_t>(words_of(region_)[offsetof(StatsSliceHeader, peers_disabled) / kWords])
      .load(std::memory_order_acquire);  // [R-OFF]
}

void StatsSlice::set_peers_disabled(std::uint64_t mask) noexcept {
  std::atomic_ref<std::uint64_t>(words_of(region_)[offsetof(StatsSliceHeader, peers_disabled) / kWords])
      .store(mask, std::memory_order_release);  // [R-OFF]
  // Then the count the endpoint watches each pass: it reloads the mask once it sees the
  // count move ([R-FENCE], the same release/acquire pair).
  bump_fence_seq();
}

std::uint64_t* StatsSlice::fdb_words() const noexcept { return counter_words() + kCounterWords; }

// [R-FENCE]: vswitchd stores stale_to words (relaxed) or the mask (set_peers_disabled),
// then bumps fence_seq with a release store; the endpoint's acquire load of fence_seq
// (EndpointLoop::poll_once) pairs with it, so the mask it loads next and the stale_to words
// settle_peers reads after it are at least the ones written before.
std::uint64_t StatsSlice::fence_seq() const noexcept {
  return std::atomic_ref<std::uint64_t>(words_of(region_)[offsetof(StatsSliceHeader, fence_seq) / kWords])
      .load(std::memory_order_acquire);  // [R-FENCE]
}

void StatsSlice::bump_fence_seq() noexcept {
  std::atomic_ref<std::uint64_t> seq(words_of(region_)[offsetof(StatsSliceHeader, fence_seq) / kWords]);
  seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // [R-FENCE]
}

std::uint64_t StatsSlice::stale_to(std::size_t peer) const noexcept {
  return peer < kMaxEndpoints ? load(journal_words().data() + kDeliveryJournalWords + peer) : 0;
}

void StatsSlice::set_stale_to(std::size_t peer, std::uint64_t position) noexcept {
  if (peer < kMaxEndpoints) store(journal_words().data() + kDeliveryJournalWords + peer, position);
}

// The same seqlock as write_fdb / read_fdb ([S1], [S2] below; that pattern is checked with
// its mutants in tests/model/genmc/stats_seqlock.c), over the port table words after the
// stale_to words. vswitchd then bumps fence_seq ([R-FENCE]), which is what
// tells the endpoint to read them.
void StatsSlice::write_port_table(std::span<const PortInfo> ports) noexcept {
  std::uint64_t* w = journal_words().data() + kDeliveryJournalWords + kMaxEndpoints;
  std::atomic_ref<std::uint64_t> seq(w[0]);
  const std::uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store(s | 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // [S1] release side
  std::uint64_t* macs = w + 1 + kMaxEndpoints * kVlanWords;
  for (std::size_t p = 0; p < kMaxEndpoints; ++p) {
    for (std::size_t k = 0; k < kVlanWords; ++k) {
      std::uint64_t word = 0;
      if (p < ports.size())
        for (std::size_t b = 0; b < 64; ++b)
          if (ports[p].vlans.test(k * 64 + b)) word |= std::uint64_t{1} << b;
      store(w + 1 + p * kVlanWords + k, word);
    }
    store(macs + p, p < ports.size() && ports[p].mac ? kPortMacPresent | ports[p].mac->bits() : 0);
  }
  seq.store((s | 1) + 1, std::memory_order_release);  // [S2] release: the words before the even value
}

PortTableRead StatsSlice::read_port_table(std::vector<PortInfo>& out, std::size_t ports) const {
  const std::uint64_t* w = journal_words().data() + kDeliveryJournalWords + kMaxEndpoints;
  std::atomic_ref<std::uint64_t> seq(*const_cast<std::uint64_t*>(w));
  const std::uint64_t s1 = seq.load(std::memory_order_acquire);  // [S2] acquire
  if (s1 == 0) return PortTableRead::kNone;
  if ((s1 & 1) != 0) return PortTableRead::kTorn;
  if (ports > kMaxEndpoints) ports = kMaxEndpoints;
  std::array<std::uint64_t, kMaxEndpoints * kVlanWords> copy{};
  std::array<std::uint64_t, kMaxEndpoints> macs{};
  for (std::size_t i = 0; i < ports * kVlanWords; ++i) copy[i] = load(w + 1 + i);
  for (std::size_t p = 0; p < ports; ++p) macs[p] = load(w + 1 + kMaxEndpoints * kVlanWords + p);
  std::atomic_thread_fence(std::memory_order_acquire);  // [S1] acquire side
  if (seq.load(std::memory_order_relaxed) != s1) return PortTableRead::kTorn;
  out.assign(ports, PortInfo{});
  for (std::size_t p = 0; p < ports; ++p) {
    for (std::size_t k = 0; k < kVlanWords; ++k)
      for (std::uint64_t word = copy[p * kVlanWords + k]; word != 0; word &= word - 1)
        out[p].vlans.set(k * 64 + static_cast<std::size_t>(std::countr_zero(word)));
    // Bits 48..62 are the writer's to leave clear; whatever is there, the address read is
    // the low 48 bits (from_bits), and a multicast or zero one (no port's own: the loader
    // refuses them) is none.
    if ((macs[p] & kPortMacPresent) != 0)
      if (const MacAddress m = MacAddress::from_bits(macs[p]); !m.is_multicast() && !m.is_zero())
        out[p].mac = m;
  }
  return PortTableRead::kRead;
}

std::span<std::uint64_t, kDeliveryJournalWords> StatsSlice::journal_words() const noexcept {
  return std::span<std::uint64_t, kDeliveryJournalWords>(fdb_words() + fdb_words_for(fdb_capacity_),
                                                         kDeliveryJournalWords);
}

void StatsSlice::write_counters(const EndpointCounters& c) noexcept { copy_out(counter_words(), c); }

void StatsSlice::reset_for_new_endpoint(std::uint64_t peers_disabled) noexcept {
  // The headers as create() wrote them: the last endpoint mapped them writable too.
  std::uint64_t* h = words_of(region_);
  store(h + 1, kStatsSliceVersion);
  store(h + 2, endpoint_);
  store(h + 3, fdb_capacity_);
  store(h, kStatsSliceMagic);
  region_.restamp(shm::RegionKind::kStatsSlice);
  write_counters(EndpointCounters{});
  write_fdb({}, 0);
  set_admin_down(false);
  for (std::uint64_t& w : journal_words()) store(&w, 0);
  for (std::size_t p = 0; p < kMaxEndpoints; ++p) set_stale_to(p, 0);
  // No endpoint reads these yet: the new one is started after this (fork and exec order
  // every store here before its first load); a vswitchctl reading meanwhile sees some
  // words reset and some not, as it would see any endpoint's between two publications.
  set_peers_disabled(peers_disabled);
}

EndpointCounters StatsSlice::read_counters() const noexcept { return copy_in<EndpointCounters>(counter_words()); }

// Seqlock writer. The sequence is odd while entries change:
//   seq.store(odd, relaxed); fence(release)   -> orders the odd mark before the entry stores,
//                                                pairs with the reader's fence(acquire) [S1]
//   entry stores (relaxed)
//   seq.store(even, release)                  -> publishes the entries, pairs with the
//                                                reader's seq.load(acquire) [S2]
void StatsSlice::write_fdb(std::span<const MacEntry> entries, std::uint64_t table_size) noexcept {
  std::uint64_t* w = fdb_words();
  std::atomic_ref<std::uint64_t> seq(w[0]);
  const std::uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store(s | 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // [S1] release side
  const std::size_t n = entries.size() < fdb_capacity_ ? entries.size() : fdb_capacity_;
  store(w + 1, table_size);
  store(w + 2, n);
  for (std::size_t i = 0; i < n; ++i) {
    const MacEntry& e = entries[i];
    store(w + kFdbHeaderWords + 2 * i, e.mac.bits() | (std::uint64_t{e.port} << 48));
    // Second word: last seen (51 bits of milliseconds), the VLAN (12 bits), static (1).
    store(w + kFdbHeaderWords + 2 * i + 1, (e.last_seen_ms & kFdbTimeMask) |
                                               (std::uint64_t{e.vlan & 0xfffu} << kFdbVlanShift) |
                                               (e.is_static ? std::uint64_t{1} << 63 : 0));
  }
  seq.store((s | 1) + 1, std::memory_order_release);  // [S2] release: entries before the even value
}

// Seqlock reader: seq.load(acquire) [S2], copy, fence(acquire) [S1], seq again; equal and
// even means no write overlapped the copy. The entry count comes from the slice (its
// endpoint may write anything there): it is bounded by the capacity attach validated.
std::optional<FdbView> StatsSlice::read_fdb() const {
  const std::uint64_t* w = fdb_words();
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
      e.vlan = static_cast<std::uint16_t>((b >> kFdbVlanShift) & 0xfffu);
      e.last_seen_ms = b & kFdbTimeMask;
      v.entries.push_back(e);
    }
    std::atomic_thread_fence(std::memory_order_acquire);  // [S1] acquire side
    if (seq.load(std::memory_order_relaxed) == s1) return v;
  }
  return std::nullopt;
}

// ---- StatsRegion --------------------------------------------------------------------

std::string StatsRegion::region_name(const std::string& switch_name) { return shm::object_name(switch_name, "stats"); }

std::uint64_t StatsRegion::bytes_for(std::size_t endpoints) {
  return sizeof(StatsHeader) + endpoints * sizeof(DaemonState);
}

StatsRegion::StatsRegion(shm::Region daemon, std::vector<std::optional<StatsSlice>> slices, std::size_t endpoints,
                         std::uint32_t fdb_capacity)
    : daemon_(std::move(daemon)), slices_(std::move(slices)), slice_errors_(endpoints), endpoints_(endpoints),
      fdb_capacity_(fdb_capacity) {}

sys::Result<StatsRegion, std::string> StatsRegion::create(const std::string& switch_name,
                                                          std::span<const std::string> endpoint_names,
                                                          std::uint32_t fdb_capacity, std::uint64_t generation) {
  const std::size_t endpoints = endpoint_names.size();
  if (endpoints == 0 || endpoints > kMaxEndpoints)
    return sys::Unexpected("stats: " + std::to_string(endpoints) + " endpoints (1.." +
                           std::to_string(kMaxEndpoints) + " supported)");
  if (fdb_capacity > kMaxFdbSnapshot) fdb_capacity = kMaxFdbSnapshot;
  std::vector<std::optional<StatsSlice>> slices(endpoints);
  for (std::size_t i = 0; i < endpoints; ++i) {
    auto s = StatsSlice::create(switch_name, endpoint_names[i], i, fdb_capacity, generation);
    if (!s) return sys::Unexpected(s.error());  // the slices made so far are unlinked by ~StatsSlice
    slices[i].emplace(std::move(s.value()));
  }
  auto r = shm::Region::create(region_name(switch_name), shm::RegionKind::kStats, bytes_for(endpoints), generation);
  if (!r) return sys::Unexpected("stats: " + r.error().detail);
  StatsRegion s(std::move(r.value()), std::move(slices), endpoints, fdb_capacity);
  std::uint64_t* h = s.header_words();
  h[0] = endpoints;
  h[1] = fdb_capacity;
  // [R0]: the header and the zeroed state blocks before the magic; and, as every slice's
  // own [R0] came earlier in this thread, every slice before it too: a reader that
  // acquires this magic ([A0]) and then opens the slices finds each of them published.
  s.daemon_->publish_ready();
  return s;
}

sys::Result<StatsRegion, StatsAttachError> StatsRegion::attach(const std::string& switch_name,
                                                               std::span<const std::string> endpoint_names,
                                                               shm::Access access) {
  using sys::Unexpected;
  auto r = shm::Region::attach(region_name(switch_name), shm::RegionKind::kStats, 0, access);
  if (!r) return Unexpected(StatsAttachError{r.error().detail});
  const auto payload = r.value().payload();
  if (payload.size() < sizeof(StatsHeader)) return Unexpected(StatsAttachError{"stats: region too small"});
  const std::uint64_t* h = words_of(r.value());
  const std::uint64_t endpoints = load(h);
  const std::uint64_t fdb = load(h + 1);
  if (endpoints == 0 || endpoints > kMaxEndpoints || fdb > kMaxFdbSnapshot || bytes_for(endpoints) != payload.size())
    return Unexpected(StatsAttachError{"stats: header (" + std::to_string(endpoints) + " endpoints, fdb " +
                                       std::to_string(fdb) + ") does not match the region's size " +
                                       std::to_string(payload.size())});
  if (endpoints != endpoint_names.size())
    return Unexpected(StatsAttachError{"stats: " + region_name(switch_name) + " holds " + std::to_string(endpoints) +
                                           " endpoints, " + std::to_string(endpoint_names.size()) + " named",
                                       endpoints});
  const std::uint64_t generation = r.value().generation();
  std::vector<std::optional<StatsSlice>> slices(endpoints);
  std::vector<std::string> errors(endpoints);
  for (std::size_t i = 0; i < endpoints; ++i) {
    auto s = StatsSlice::attach(switch_name, endpoint_names[i], i, static_cast<std::uint32_t>(fdb), generation, access);
    if (s) slices[i].emplace(std::move(s.value()));
    else errors[i] = s.error();
  }
  StatsRegion out(std::move(r.value()), std::move(slices), endpoints, static_cast<std::uint32_t>(fdb));
  out.slice_errors_ = std::move(errors);
  return out;
}

namespace {
// A call about an object this process does not map: never a silent read or write of
// nothing (or of someone else's memory).
[[noreturn]] void not_mapped(const char* what, std::size_t endpoint) noexcept {
  std::fprintf(stderr, "vswitch: stats: %s of endpoint #%zu: not mapped in this process (an endpoint process keeps "
                       "only its own slice; an observer lacks the slices attach refused)\n",
               what, endpoint);
  std::abort();
}
[[noreturn]] void daemon_not_mapped(const char* what) noexcept {
  std::fprintf(stderr, "vswitch: stats: %s: the daemon's stats object is not mapped in this process (an endpoint "
                       "process keeps only its own slice)\n",
               what);
  std::abort();
}
}  // namespace

std::uint64_t* StatsRegion::header_words() const noexcept {
  if (!daemon_) daemon_not_mapped("the header");
  return words_of(*daemon_);
}

std::uint64_t* StatsRegion::daemon_words(std::size_t endpoint) const noexcept {
  if (!daemon_) daemon_not_mapped("an endpoint's state");
  if (endpoint >= endpoints_) not_mapped("the state", endpoint);
  return header_words() + sizeof(StatsHeader) / kWords + endpoint * (sizeof(DaemonState) / kWords);
}

const StatsSlice& StatsRegion::mapped_slice(std::size_t endpoint, const char* what) const noexcept {
  if (endpoint >= slices_.size() || !slices_[endpoint]) not_mapped(what, endpoint);
  return *slices_[endpoint];
}
StatsSlice& StatsRegion::mapped_slice(std::size_t endpoint, const char* what) noexcept {
  if (endpoint >= slices_.size() || !slices_[endpoint]) not_mapped(what, endpoint);
  return *slices_[endpoint];
}

StatsSlice* StatsRegion::slice(std::size_t endpoint) noexcept {
  return endpoint < slices_.size() && slices_[endpoint] ? &*slices_[endpoint] : nullptr;
}
const StatsSlice* StatsRegion::slice(std::size_t endpoint) const noexcept {
  return endpoint < slices_.size() && slices_[endpoint] ? &*slices_[endpoint] : nullptr;
}

const std::string& StatsRegion::slice_error(std::size_t endpoint) const noexcept {
  static const std::string none;
  return endpoint < slice_errors_.size() ? slice_errors_[endpoint] : none;
}

std::uint64_t StatsRegion::daemon_pid() const noexcept { return load(header_words() + 2); }
void StatsRegion::set_daemon_pid(std::uint64_t pid) noexcept { store(header_words() + 2, pid); }

// A seqlock over the report's six words (StatsHeader reloads .. reload_changes, and
// reload_turned_on, reload_turned_off after the sequence word) on its
// own sequence word, which only grows: odd while a report is written (a reload publishes
// twice, begun and ended; the daemon is the one writer). The same pairing as write_fdb /
// read_fdb:
//   seq.store(odd, relaxed); fence(release)   [S1-RELOAD], pairs with the reader's fence(acquire)
//   the report's words (relaxed)
//   seq.store(even, release)                  [S2-RELOAD], pairs with the reader's seq.load(acquire)
void StatsRegion::publish_reload(const ReloadReport& r) noexcept {
  std::uint64_t* h = header_words();
  std::atomic_ref<std::uint64_t> seq(h[7]);
  const std::uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // [S1-RELOAD]
  store(h + 3, r.reloads);
  store(h + 4, static_cast<std::uint64_t>(r.outcome));
  store(h + 5, r.restarted);
  store(h + 6, r.changes);
  store(h + 8, r.turned_on);
  store(h + 9, r.turned_off);
  seq.store(s + 2, std::memory_order_release);  // [S2-RELOAD]
}

ReloadReport StatsRegion::read_reload() const noexcept {
  const std::uint64_t* h = header_words();
  std::atomic_ref<std::uint64_t> seq(*const_cast<std::uint64_t*>(h + 7));
  // Bounded: a daemon that died while writing leaves the sequence odd for good.
  for (int tries = 0; tries < 100000; ++tries) {
    const std::uint64_t before = seq.load(std::memory_order_acquire);  // [S2-RELOAD]
    ReloadReport r;
    r.reloads = load(h + 3);
    r.outcome = static_cast<ReloadOutcome>(load(h + 4));
    r.restarted = load(h + 5);
    r.changes = load(h + 6);
    r.turned_on = load(h + 8);
    r.turned_off = load(h + 9);
    std::atomic_thread_fence(std::memory_order_acquire);  // [S1-RELOAD]: the words before the second look
    if ((before & 1) == 0 && seq.load(std::memory_order_relaxed) == before) return r;
  }
  return ReloadReport{};  // outcome kNone: no report could be read
}

void StatsRegion::write_daemon(std::size_t endpoint, const DaemonState& d) noexcept {
  copy_out(daemon_words(endpoint), d);
}
DaemonState StatsRegion::read_daemon(std::size_t endpoint) const noexcept {
  return copy_in<DaemonState>(daemon_words(endpoint));
}
void StatsRegion::write_counters(std::size_t endpoint, const EndpointCounters& c) noexcept {
  mapped_slice(endpoint, "write_counters").write_counters(c);
}
EndpointCounters StatsRegion::read_counters(std::size_t endpoint) const noexcept {
  return mapped_slice(endpoint, "read_counters").read_counters();
}
void StatsRegion::write_fdb(std::size_t endpoint, std::span<const MacEntry> entries, std::uint64_t table_size) noexcept {
  mapped_slice(endpoint, "write_fdb").write_fdb(entries, table_size);
}
std::optional<FdbView> StatsRegion::read_fdb(std::size_t endpoint) const {
  return mapped_slice(endpoint, "read_fdb").read_fdb();
}

const shm::Region& StatsRegion::region() const noexcept {
  if (!daemon_) daemon_not_mapped("region()");
  return *daemon_;
}

StatsSlice StatsRegion::keep_only(std::size_t self) noexcept {
  StatsSlice& own = mapped_slice(self, "keep_only");
  own.disown();
  StatsSlice kept = std::move(own);
  if (daemon_) {
    daemon_->disown();
    daemon_.reset();  // unmaps; the name stays for its owner
  }
  for (auto& s : slices_) {
    if (s) s->disown();
    s.reset();  // unmaps every other slice (and the moved-from own one, which maps nothing)
  }
  return kept;
}

}  // namespace vswitch
