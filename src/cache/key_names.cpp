#include "larder/cache/key_names.hpp"

#include <atomic>
#include <unordered_map>

#include "larder/cache/write_scripts.hpp"
#include "larder/redis/slot.hpp"

namespace larder::cache {

namespace {
// Written once at start-up, before the threads that read it exist.
std::atomic<NameLayout> g_layout{NameLayout::OneRedis};
}  // namespace

void setNameLayout(NameLayout layout) { g_layout.store(layout, std::memory_order_relaxed); }

NameLayout nameLayout() { return g_layout.load(std::memory_order_relaxed); }

std::string internalKey(std::string_view kind, std::string_view key) {
  std::string prefix;
  prefix.reserve(kReservedPrefix.size() + kind.size() + 1);
  prefix.append(kReservedPrefix).append(kind).push_back(':');
  if (nameLayout() == NameLayout::Cluster) return cluster::taggedKey(prefix, key);
  prefix.append(key);
  return prefix;
}

namespace {

std::string familyKey(std::string_view kind, std::string_view keyspace, int slot) {
  std::string out(kReservedPrefix);
  out.append(kind).push_back(':');
  if (slot >= 0) out.append("{").append(cluster::slotTag(slot)).append("}:");
  out.append(keyspace);
  return out;
}

}  // namespace

std::string queueFamilyKey(std::string_view kind, std::string_view keyspace, std::string_view key) {
  return familyKey(kind, keyspace,
                   nameLayout() == NameLayout::Cluster ? cluster::keySlot(key) : -1);
}

std::string slotQueueKey(std::string_view kind, std::string_view keyspace, int slot) {
  return familyKey(kind, keyspace, slot);
}

std::string_view queueKeyspace(std::string_view queue) {
  static const std::string prefix = std::string(kReservedPrefix) + std::string(kQueue) + ":";
  if (queue.substr(0, prefix.size()) != prefix) return {};
  queue.remove_prefix(prefix.size());
  if (nameLayout() == NameLayout::Cluster) {
    // {<tag>}:<keyspace>: the tag is [0-9a-z] (slotTag), never a brace.
    const std::size_t close = queue.find('}');
    if (queue.empty() || queue.front() != '{' || close == std::string_view::npos || close < 2 ||
        queue.substr(close + 1, 1) != ":") {
      return {};
    }
    for (const char c : queue.substr(1, close - 1)) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return {};
    }
    queue.remove_prefix(close + 2);
  }
  return queue;
}

std::string slotInstanceKey(int slot) {
  std::string out(kInstanceIdKey);
  out.append(":{").append(cluster::slotTag(slot)).append("}");
  return out;
}

std::string_view keyOfMarker(std::string_view marker) {
  static const std::string prefix = std::string(kReservedPrefix) + "pending:";
  if (marker.substr(0, prefix.size()) != prefix) return {};
  marker.remove_prefix(prefix.size());
  if (nameLayout() == NameLayout::OneRedis) return marker;
  // {<tag>}<key>: the tag has no braces.
  const std::size_t close = marker.find('}');
  if (marker.empty() || marker.front() != '{' || close == std::string_view::npos) return {};
  return marker.substr(close + 1);
}

std::vector<std::vector<std::size_t>> groupBySlot(const std::vector<std::string_view>& keys,
                                                  bool sharded) {
  std::vector<std::vector<std::size_t>> groups;
  if (!sharded) {
    if (keys.empty()) return groups;
    auto& all = groups.emplace_back();
    for (std::size_t i = 0; i < keys.size(); ++i) all.push_back(i);
    return groups;
  }
  std::unordered_map<std::uint16_t, std::size_t> group_of;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto [it, fresh] = group_of.try_emplace(cluster::keySlot(keys[i]), groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  return groups;
}

}  // namespace larder::cache
