#include "larder/common/histogram.hpp"

#include <catch2/catch.hpp>
#include <cmath>

using larder::Histogram;

TEST_CASE("the nanosecond bounds are the exposed bounds", "[common]") {
  for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    CHECK(Histogram::kBoundsNs[i] == std::llround(Histogram::kBounds[i] * 1e9));
  }
}

TEST_CASE("an observation lands in the first bucket whose bound it does not exceed", "[common]") {
  Histogram h;
  h.observe(std::chrono::microseconds(500));  // exactly 0.5 ms: the first bucket
  h.observe(std::chrono::microseconds(501));
  h.observe(std::chrono::seconds(3));  // past every bound: +Inf
  CHECK(h.bucket(0) == 1);
  CHECK(h.bucket(1) == 1);
  CHECK(h.bucket(Histogram::kBounds.size()) == 1);
  CHECK(h.count() == 3);
  CHECK(std::abs(h.sumSeconds() - 3.001001) < 1e-9);
}
