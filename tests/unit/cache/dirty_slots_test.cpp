#include "larder/cache/dirty_slots.hpp"

#include <catch2/catch.hpp>
#include <thread>

using larder::cache::DirtySlots;

TEST_CASE("dirty slots: marks come back once, in slot order", "[cache][dirty]") {
  DirtySlots dirty;
  CHECK(dirty.take().empty());
  for (int s : {16383, 0, 63, 64, 5461, 63}) dirty.mark(s);
  CHECK(dirty.take() == std::vector<int>{0, 63, 64, 5461, 16383});
  CHECK(dirty.take().empty());
  dirty.mark(7);
  CHECK(dirty.take() == std::vector<int>{7});
}

TEST_CASE("dirty slots: no mark from another thread is lost", "[cache][dirty]") {
  DirtySlots dirty;
  std::vector<int> seen(larder::cluster::kSlots, 0);
  std::thread writer([&] {
    for (int round = 0; round < 4; ++round) {
      for (int s = 0; s < larder::cluster::kSlots; ++s) dirty.mark(s);
    }
  });
  // Taken while marks arrive: every slot is seen at least once.
  for (int i = 0; i < 100; ++i) {
    for (int s : dirty.take()) seen[static_cast<std::size_t>(s)] = 1;
  }
  writer.join();
  for (int s : dirty.take()) seen[static_cast<std::size_t>(s)] = 1;
  CHECK(std::count(seen.begin(), seen.end(), 1) == larder::cluster::kSlots);
}
