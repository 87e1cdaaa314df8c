#pragma once
// A counter written by one thread (its worker) and read by any (INFO, /metrics).
// Relaxed load+store instead of fetch_add: no locked instruction on the hot
// path, and a reader never sees a torn value.
#include <atomic>
#include <cstdint>

namespace larder {

class Counter {
 public:
  void add(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

}  // namespace larder
