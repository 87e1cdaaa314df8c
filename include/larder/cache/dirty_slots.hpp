#pragma once
// Which slots' write queues of one keyspace may hold entries the flusher has
// not read, on a Redis Cluster (docs/cluster.md, "Write-behind on a
// cluster"). Workers mark a slot once its write script queued an entry; the
// flusher takes the marks each round and reads only those queues. A bit per
// slot (2 KiB per keyspace): bounded, no queue, no lock. The flusher's
// periodic sweep finds what the marks cannot tell (other Larder instances'
// writes, entries left by a crash or moved by a reshard).
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "larder/redis/slot.hpp"

namespace larder::cache {

class DirtySlots {
 public:
  // Any thread.
  void mark(int slot) {
    words_[static_cast<std::size_t>(slot) / 64].fetch_or(std::uint64_t{1} << (slot % 64),
                                                         std::memory_order_release);
  }
  // The flusher's thread: every slot marked since the last take, in order.
  std::vector<int> take() {
    std::vector<int> out;
    for (std::size_t w = 0; w < words_.size(); ++w) {
      if (words_[w].load(std::memory_order_relaxed) == 0) continue;
      std::uint64_t bits = words_[w].exchange(0, std::memory_order_acquire);
      while (bits != 0) {
        const int bit = __builtin_ctzll(bits);
        out.push_back(static_cast<int>(w * 64) + bit);
        bits &= bits - 1;
      }
    }
    return out;
  }

 private:
  std::array<std::atomic<std::uint64_t>, cluster::kSlots / 64> words_{};
};

}  // namespace larder::cache
