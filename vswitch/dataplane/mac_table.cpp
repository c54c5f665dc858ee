#include "vswitch/dataplane/mac_table.hpp"

#include <random>

namespace vswitch {

namespace {

std::size_t table_slots(std::uint32_t capacity) {
  std::size_t n = 16;
  while (n < std::size_t{capacity} * 2) n <<= 1;
  return n;
}

}  // namespace

MacTable::MacTable(const Config& config)
    : slots_(table_slots(config.capacity == 0 ? 1 : config.capacity)),
      mask_(slots_.size() - 1),
      capacity_(config.capacity == 0 ? 1 : config.capacity),
      aging_ms_(config.aging_ms),
      move_damping_ms_(config.move_damping_ms),
      seed_(config.seed != 0 ? config.seed : (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}()) {}

std::size_t MacTable::home(const MacAddress& mac) const noexcept {
  std::uint64_t x = mac.bits() ^ seed_;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<std::size_t>(x) & mask_;
}

std::optional<std::size_t> MacTable::find(const MacAddress& mac) const noexcept {
  for (std::size_t i = home(mac);; i = (i + 1) & mask_) {
    if (!slots_[i].used) return std::nullopt;  // load <= 50%: an empty slot always ends the probe
    if (slots_[i].entry.mac == mac) return i;
  }
}

bool MacTable::expired(const Slot& s, std::uint64_t now_ms) const noexcept {
  return !s.entry.is_static && aging_ms_ != 0 && now_ms - s.entry.last_seen_ms >= aging_ms_ &&
         now_ms >= s.entry.last_seen_ms;
}

void MacTable::erase_at(std::size_t i) noexcept {
  // Backward-shift deletion: pull later members of the probe run into the hole, so no
  // tombstones build up and every probe still ends at the first empty slot.
  slots_[i].used = false;
  --size_;
  for (std::size_t j = (i + 1) & mask_; slots_[j].used; j = (j + 1) & mask_) {
    const std::size_t h = home(slots_[j].entry.mac);
    // Slot j may move to the hole i if its home is not in the cyclic range (i, j].
    const bool home_in_range = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (home_in_range) continue;
    slots_[i] = slots_[j];
    slots_[j].used = false;
    i = j;
  }
}

std::size_t MacTable::insert(const MacEntry& e) {
  std::size_t i = home(e.mac);
  while (slots_[i].used) i = (i + 1) & mask_;
  slots_[i] = Slot{e, 0, true};
  ++size_;
  return i;
}

bool MacTable::add_static(const MacAddress& mac, PortId port) {
  if (mac.is_multicast() || mac.is_zero()) return false;
  if (auto i = find(mac)) {
    slots_[*i].entry = MacEntry{mac, port, true, 0};
    return true;
  }
  if (size_ >= capacity_) return false;
  insert(MacEntry{mac, port, true, 0});
  return true;
}

Learn MacTable::learn(const MacAddress& mac, PortId port, std::uint64_t now_ms) {
  if (mac.is_multicast() || mac.is_zero()) {
    ++counters_.refused_multicast;
    return Learn::kRefusedMulticast;
  }
  if (auto i = find(mac)) {
    Slot& s = slots_[*i];
    if (s.entry.is_static) {
      if (s.entry.port == port) return Learn::kRefreshed;
      ++counters_.refused_static;
      return Learn::kRefusedStatic;
    }
    if (expired(s, now_ms)) {  // an aged entry is a new one, wherever it is now
      ++counters_.aged;
      s.entry = MacEntry{mac, port, false, now_ms};
      s.last_move_ms = 0;
      ++counters_.learned;
      return Learn::kLearned;
    }
    if (s.entry.port == port) {
      s.entry.last_seen_ms = now_ms;
      return Learn::kRefreshed;
    }
    if (s.last_move_ms != 0 && now_ms - s.last_move_ms < move_damping_ms_) {
      ++counters_.move_damped;
      return Learn::kMoveDamped;
    }
    s.entry.port = port;
    s.entry.last_seen_ms = now_ms;
    s.last_move_ms = now_ms == 0 ? 1 : now_ms;
    ++counters_.moved;
    return Learn::kMoved;
  }
  if (size_ >= capacity_) {
    // Full: reclaim aged entries, but at most once a second, so a flood of new source
    // addresses cannot turn every frame into a walk over the whole table.
    if (last_full_sweep_ms_ == 0 || now_ms - last_full_sweep_ms_ >= 1000) {
      last_full_sweep_ms_ = now_ms == 0 ? 1 : now_ms;
      sweep(now_ms);
    }
    if (size_ >= capacity_) {
      ++counters_.refused_full;
      return Learn::kRefusedFull;
    }
  }
  insert(MacEntry{mac, port, false, now_ms});
  ++counters_.learned;
  return Learn::kLearned;
}

std::optional<PortId> MacTable::lookup(const MacAddress& mac, std::uint64_t now_ms) {
  auto i = find(mac);
  if (!i) return std::nullopt;
  if (expired(slots_[*i], now_ms)) {
    ++counters_.aged;
    erase_at(*i);
    return std::nullopt;
  }
  return slots_[*i].entry.port;
}

std::size_t MacTable::sweep(std::uint64_t now_ms) {
  std::size_t removed = 0;
  for (std::size_t i = 0; i < slots_.size();) {
    if (slots_[i].used && expired(slots_[i], now_ms)) {
      erase_at(i);  // may shift a later entry into i: look at i again
      ++removed;
      continue;
    }
    ++i;
  }
  counters_.aged += removed;
  return removed;
}

std::vector<MacEntry> MacTable::entries(std::uint64_t now_ms) const {
  std::vector<MacEntry> out;
  out.reserve(size_);
  for (const auto& s : slots_)
    if (s.used && !expired(s, now_ms)) out.push_back(s.entry);
  return out;
}

}  // namespace vswitch
