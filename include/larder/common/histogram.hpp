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
  static constexpr std::array<long long, 12> kBoundsNs{
      500'000,    1'000'000,   2'500'000,   5'000'000,   10'000'000,    25'000'000,
      50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000, 2'500'000'000};

  void observe(std::chrono::nanoseconds d) {
    // Integer compares on the request path; the bounds in seconds are for exposition.
    const auto ns = d.count();
    std::size_t i = 0;
    while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
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
