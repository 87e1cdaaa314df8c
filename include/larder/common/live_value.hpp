#pragma once
// A setting that may change while Larder runs (config reload): written by the
// reload, read by any thread. Copyable so that structs holding it can still
// be built by value before they are shared.
#include <atomic>

namespace larder {

template <typename T>
class LiveValue {
 public:
  LiveValue(T value = T{}) : value_(value) {}  // NOLINT(google-explicit-constructor)
  LiveValue(const LiveValue& other) : value_(other.get()) {}
  LiveValue& operator=(const LiveValue& other) {
    set(other.get());
    return *this;
  }

  T get() const { return value_.load(std::memory_order_relaxed); }
  void set(T value) { value_.store(value, std::memory_order_relaxed); }

 private:
  std::atomic<T> value_;
};

}  // namespace larder
