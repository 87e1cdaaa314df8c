#pragma once
// A latency histogram with fixed Prometheus-style buckets (seconds), written
// by one thread and read by any.
#include <array>
#include <chrono>

#include "larder/common/counter.hpp"

namespace larder {

class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

  void observe(std::chrono::nanoseconds d) {
    const double seconds = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    buckets_[i].add();
    count_.add();
    sum_ns_.add(static_cast<std::uint64_t>(d.count()));
  }

  // Adds `other`'s observations (scrape-time sums across workers).
  void merge(const Histogram& other) {
    for (std::size_t i = 0; i < buckets_.size(); ++i) buckets_[i].add(other.buckets_[i].get());
    count_.add(other.count_.get());
    sum_ns_.add(other.sum_ns_.get());
  }

  // Non-cumulative count of bucket i (i == kBounds.size() is +Inf).
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].get(); }
  std::uint64_t count() const { return count_.get(); }
  double sumSeconds() const { return static_cast<double>(sum_ns_.get()) / 1e9; }

 private:
  std::array<Counter, kBounds.size() + 1> buckets_;
  Counter count_;
  Counter sum_ns_;
};

}  // namespace larder
