// Counter blocks: every group of counters is a struct of 64-bit words that its owner (the
// run loop, the MAC table, a frontend) keeps and that is described once, by a list of
// (name, help) entries. The list generates the struct's fields and its name table:
//
//   #define VSWITCH_MAC_COUNTERS(X) X(learned, "addresses learned") X(aged, "entries aged out")
//   struct MacTableCounters {
//     VSWITCH_MAC_COUNTERS(VSWITCH_COUNTER_FIELD)
//     static constexpr sys::CounterName kNames[] = {VSWITCH_MAC_COUNTERS(VSWITCH_COUNTER_NAME)};
//   };
//
// The stats region stores blocks as words (store_block / load_block); vswitchctl's text
// and JSON are generated from the tables (counter_values). A new counter is one line in
// one list. A list that holds a gauge takes a second macro, G, for its gauges: the field is
// the same, the table marks it (VSWITCH_GAUGE_NAME). Counts by reason (drops, bad chains) are ReasonCounts, named by the reason
// enum's to_string().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

namespace vswitch::sys {

struct CounterName {
  std::string_view name;
  std::string_view help;
  bool gauge = false;  // a level now (entries in a table), not a count of events since start
};

#define VSWITCH_COUNTER_FIELD(name, help) std::uint64_t name = 0;
#define VSWITCH_COUNTER_NAME(name, help) ::vswitch::sys::CounterName{#name, help, false},
#define VSWITCH_GAUGE_NAME(name, help) ::vswitch::sys::CounterName{#name, help, true},

// A block whose fields are exactly the words its kNames table names, in order.
template <typename Block>
concept CounterBlock = requires { Block::kNames; } && std::is_trivially_copyable_v<Block> &&
                       std::is_standard_layout_v<Block> &&
                       sizeof(Block) == std::size(Block::kNames) * sizeof(std::uint64_t);

template <CounterBlock Block>
inline constexpr std::size_t kCounterCount = std::size(Block::kNames);

// The block's values, in the order of its table.
template <CounterBlock Block>
[[nodiscard]] std::array<std::uint64_t, kCounterCount<Block>> counter_values(const Block& b) noexcept {
  std::array<std::uint64_t, kCounterCount<Block>> v;
  std::memcpy(v.data(), &b, sizeof b);
  return v;
}

// Counts indexed by a reason enum (with a kCount member and to_string()); Slots leaves
// room for reasons added later without moving what follows in the stats region.
template <typename Reason, std::size_t Slots>
struct ReasonCounts {
  static_assert(static_cast<std::size_t>(Reason::kCount) <= Slots);
  static constexpr std::size_t kReasons = static_cast<std::size_t>(Reason::kCount);
  std::array<std::uint64_t, Slots> by_reason{};

  void count(Reason r, std::uint64_t n = 1) noexcept { by_reason[static_cast<std::size_t>(r)] += n; }
  [[nodiscard]] std::uint64_t operator[](Reason r) const noexcept { return by_reason[static_cast<std::size_t>(r)]; }
  [[nodiscard]] std::uint64_t total() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < kReasons; ++i) n += by_reason[i];
    return n;
  }
  // fn(std::string_view name, std::uint64_t value) for every reason, in enum order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (std::size_t i = 0; i < kReasons; ++i) fn(to_string(static_cast<Reason>(i)), by_reason[i]);
  }
};

// Blocks as words in a counter area of the stats region (a frontend's area holds the
// block of that frontend's kind). The area outlives a process: a restarted endpoint
// loads what its predecessor stored and counts on from there.
template <typename Block, std::size_t Words>
void store_block(const Block& b, std::array<std::uint64_t, Words>& area) noexcept {
  static_assert(std::is_trivially_copyable_v<Block> && sizeof(Block) <= Words * sizeof(std::uint64_t));
  std::memcpy(area.data(), &b, sizeof b);
}
template <typename Block, std::size_t Words>
[[nodiscard]] Block load_block(const std::array<std::uint64_t, Words>& area) noexcept {
  static_assert(std::is_trivially_copyable_v<Block> && sizeof(Block) <= Words * sizeof(std::uint64_t));
  Block b{};
  std::memcpy(static_cast<void*>(&b), area.data(), sizeof b);
  return b;
}

}  // namespace vswitch::sys
