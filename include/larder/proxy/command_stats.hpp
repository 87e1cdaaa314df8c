#pragma once
// Calls and latency per command, for /metrics: one slot per registry row
// (commands and subcommands, as Redis' INFO commandstats counts them) and one
// "other" for names Redis 7.0 does not know, so a client sending made-up
// command names cannot grow the label set. Per worker, summed at scrape time.
#include <cstdint>
#include <memory>
#include <string_view>

#include "larder/commands/registry.hpp"
#include "larder/common/histogram.hpp"

namespace larder::proxy {

inline constexpr std::uint16_t kNoStatsSlot = 0xFFFF;

struct CommandCounters {
  Histogram latency;  // request read to reply complete; its count is the calls
};

class CommandStats {
 public:
  CommandStats()
      : size_(commands::Registry::get().size() + 1),
        slots_(std::make_unique<CommandCounters[]>(size_)) {}

  // The slot of a request: its row's id, or "other" for an unknown name.
  static std::uint16_t slotOf(const commands::Command* command) {
    return command ? command->id : static_cast<std::uint16_t>(commands::Registry::get().size());
  }
  // The label of a slot: the command's name ("get", "config|get") or "other".
  static std::string_view label(std::size_t slot) {
    const auto& registry = commands::Registry::get();
    return slot < registry.size() ? registry.at(static_cast<commands::CommandId>(slot)).name()
                                  : std::string_view("other");
  }

  std::size_t size() const { return size_; }
  CommandCounters& operator[](std::size_t slot) { return slots_[slot]; }
  const CommandCounters& operator[](std::size_t slot) const { return slots_[slot]; }

 private:
  std::size_t size_;
  std::unique_ptr<CommandCounters[]> slots_;
};

}  // namespace larder::proxy
