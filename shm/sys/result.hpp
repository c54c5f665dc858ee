// Result<T, E>: a value or an error, shaped like C++23 std::expected (which g++ 12
// offers only under -std=c++2b and clang 14 not at all). Used on every fallible path
// that is not a control-path exception; [[nodiscard]] so an error cannot be dropped.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace vswitch::sys {

template <typename E>
struct Unexpected {
  // A constructor, not an aggregate: clang 14 has no parenthesised aggregate init.
  explicit Unexpected(E e) : error(std::move(e)) {}
  E error;
};
template <typename E>
Unexpected(E) -> Unexpected<E>;

template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Unexpected<E> e) : v_(std::in_place_index<1>, std::move(e.error)) {}  // NOLINT

  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(v_); }
  const T& value() const& { assert(has_value()); return std::get<0>(v_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const E& error() const { assert(!has_value()); return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// Result of an operation that yields nothing but can fail.
template <typename E>
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Unexpected<E> e) : ok_(false), error_(std::move(e.error)) {}  // NOLINT
  [[nodiscard]] bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const E& error() const { assert(!ok_); return error_; }

 private:
  bool ok_ = true;
  E error_{};
};

}  // namespace vswitch::sys
