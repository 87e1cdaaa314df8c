// The Flusher on a Redis Cluster (docs/cluster.md, "Write-behind on a
// cluster"): a keyspace's queue is one stream per slot, in the slot of the
// keys it holds (key_names.hpp), so each write script stays on one node and a
// slot's queue moves with its keys in a reshard and fails over with them.
//
//   own       pg_try_advisory_lock('larder:<cluster id>:<ks>'), as on one Redis
//   discover  the workers' marks (DirtySlots) every round; a sweep of every
//             range of the map (one script per chunk of slots, on their owner:
//             allow-cross-slot-keys) at ownership, every kSweepPeriod and for
//             a waiter: other instances' writes, entries left by a crash
//   read      up to kSlotsPerRound slots at once: XRANGE per slot, then one
//             read script per node for its slots (queue state, the slot's
//             instance id __larder:id:{tag}; allow-cross-slot-keys)
//   marks     one row per slot in flush_state, "<slot's instance id>:<ks>",
//             read when the slot's queue is first read (or its id changed)
//   apply     a slot's rows on connection slot % apply_connections: one
//             transaction per connection moves each of its slots' marks first
//             (the fence), then applies their rows
//   ack       one ack script per node for its slots' batches; a slot the node
//             does not serve (moved, migrating) is acked on its own
//
// A slot whose queue is behind its mark (a replica that lagged was promoted)
// is resynced as one Redis's queue is (flusher_apply.cpp).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <limits>

#include "larder/cache/flush_scripts.hpp"
#include "larder/cache/flusher.hpp"
#include "larder/cache/key_names.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

namespace {

// A sweep costs the cluster about 0.5 us of Redis time per slot, 7-11 ms in
// all (tests/bench/cluster/queue_discovery_cost.py): once a second is 0.3 % of
// a node; the workers' marks carry this instance's writes in between.
constexpr Millis kSweepPeriod{1000};
constexpr int kSweepChunk = 1024;  // slots per sweep script call
// Slots a node answered for that it no longer serves are asked again, first
// grouped by Larder's map, keyed on one of them (the first call may have been
// redirected by its keyed slot alone), then those still unknown on their own
// (each call follows MOVED or ASK), up to this many per sweep; more make the
// sweep incomplete until Larder's map has caught up.
constexpr std::size_t kSweepAloneMax = 256;
constexpr std::size_t kSlotsPerRound = 1024;
constexpr std::size_t kMinPerSlot = 16;  // XRANGE COUNT floor per slot
constexpr Millis kRedisRetry{100};

}  // namespace

asio::awaitable<bool> Flusher::sweep() {
  const auto ranges = sharded_->ranges();
  if (ranges.empty()) co_return false;  // no map yet
  const std::uint64_t waiters_before = next_waiter_;
  // One script call per group of slots, keyed on the first: its queue is
  // KEYS[1], the others' ARGV.
  auto callsFor = [this](const std::vector<std::vector<int>>& groups) {
    std::vector<redis::ScriptCall> calls(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
      calls[g].keys.push_back(slotQueueKey(kQueue, ks_.name(), groups[g].front()));
      for (std::size_t i = 1; i < groups[g].size(); ++i) {
        calls[g].args.push_back(slotQueueKey(kQueue, ks_.name(), groups[g][i]));
      }
    }
    return calls;
  };
  std::vector<std::vector<int>> groups;
  for (const auto& [first, last] : ranges) {
    for (int chunk = first; chunk <= last; chunk += kSweepChunk) {
      std::vector<int>& group = groups.emplace_back();
      for (int s = chunk; s <= std::min(last, chunk + kSweepChunk - 1); ++s) group.push_back(s);
    }
  }
  auto replies = co_await redis::callScriptEach(*redis_, sweepScript(), callsFor(groups));
  bool complete = true;
  long long depth = 0;
  std::optional<StreamId> oldest;
  std::vector<std::pair<int, StreamId>> newest;
  std::unordered_map<int, StreamId> oldest_of;
  std::vector<int> unknown;  // slots a node answered for that it does not serve
  long long now_ms =
      std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  // One call's reply: its slots' queues with entries, four elements each
  // (the first the slot's index in `slots`); a slot its node does not serve
  // goes to `unknown`, or (the last pass) makes the sweep incomplete.
  auto take = [&](const std::string& reply, const std::vector<int>& slots, bool last_pass) {
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || !v.isArray() || v.elements.size() % 4 != 0) {
      spdlog::debug("keyspace {}: sweeping the write queues of slot(s) {}..: {}", ks_.name(),
                    slots.front(), reply.substr(0, 200));
      complete = false;
      return;
    }
    for (std::size_t i = 0; i < v.elements.size(); i += 4) {
      const auto index = static_cast<std::size_t>(v.elements[i].integer);
      if (index >= slots.size()) {
        complete = false;
        continue;
      }
      const int slot = slots[index];
      if (v.elements[i + 2].integer < 0) {
        // Moved or migrating away: not "empty".
        if (last_pass) {
          complete = false;
        } else {
          unknown.push_back(slot);
        }
        continue;
      }
      pending_.insert(slot);
      if (auto id = StreamId::parse(v.elements[i + 1].str())) newest.emplace_back(slot, *id);
      depth += v.elements[i + 2].integer;
      const auto first = StreamId::parse(v.elements[i + 3].str());
      if (first && (!oldest || *first < *oldest)) oldest = first;
      if (first) oldest_of[slot] = *first;
    }
  };
  for (std::size_t c = 0; c < replies.size(); ++c) take(replies[c], groups[c], false);
  // Again by the map, keyed on another slot; then what is left on its own.
  for (int pass = 0; pass < 2 && complete && !unknown.empty(); ++pass) {
    spdlog::debug(
        "keyspace {}: {} slot(s) answered for by a node that does not serve them; "
        "swept again{}",
        ks_.name(), unknown.size(), pass == 0 ? "" : " on their own");
    groups.clear();
    if (pass == 0) {
      for (const auto& group : byNode(unknown)) {
        std::vector<int>& slots = groups.emplace_back();
        for (std::size_t i : group) slots.push_back(unknown[i]);
      }
    } else if (unknown.size() > kSweepAloneMax) {
      complete = false;  // Larder's map is far behind: the next sweep
      break;
    } else {
      for (int slot : unknown) groups.push_back({slot});
    }
    unknown.clear();
    replies = co_await redis::callScriptEach(*redis_, sweepScript(), callsFor(groups));
    for (std::size_t c = 0; c < replies.size(); ++c) take(replies[c], groups[c], pass == 1);
  }
  if (!complete) co_return false;
  swept_ = Clock::now();
  sweep_now_ = false;
  // The gauges: the queues' depth, and the age of the oldest entry (by this
  // machine's clock; the ids are the nodes').
  gauges_at_ = swept_;
  stats_.queue_depth.sub(stats_.queue_depth.get());
  stats_.queue_depth.add(static_cast<std::uint64_t>(depth));
  stats_.oldest_age_ms.sub(stats_.oldest_age_ms.get());
  if (oldest && static_cast<std::uint64_t>(now_ms) > oldest->ms) {
    stats_.oldest_age_ms.add(static_cast<std::uint64_t>(now_ms) - oldest->ms);
  }
  // Waiters that came before this sweep began wait for what it found. A
  // target is met once a sweep finds its slot's queue empty or starting past
  // it: acknowledged and trimmed, by whichever flusher (another instance
  // may hold the lock).
  for (Waiter& w : waiters_) {
    if (w.has_target) {
      std::erase_if(w.slot_targets, [&](const auto& t) {
        const auto it = oldest_of.find(t.first);
        return it == oldest_of.end() || t.second < it->second;
      });
    } else if (w.id < waiters_before) {
      w.has_target = true;
      w.slot_targets = newest;
    }
  }
  co_return true;
}

void Flusher::settleSlotWaiters() {
  const auto now = Clock::now();
  std::erase_if(waiters_, [&](Waiter& w) {
    bool done = false;
    if (w.has_target) {
      done = std::all_of(w.slot_targets.begin(), w.slot_targets.end(), [&](const auto& t) {
        const auto it = slots_.find(t.first);
        return it != slots_.end() && t.second <= it->second.acked;
      });
    }
    if (done || now >= w.deadline) {
      w.timer->cancel();
      w.done(done);
      return true;
    }
    return false;
  });
}

asio::awaitable<pg::PgError> Flusher::loadSlots(
    const std::vector<std::pair<int, std::string>>& found) {
  std::vector<std::unique_ptr<FlushState>> states;
  std::vector<const FlushState*> views;
  for (const auto& [slot, instance] : found) {
    states.push_back(std::make_unique<FlushState>(config_.write_behind.state_table,
                                                  instance + ":" + ks_.name(), 1));
    views.push_back(states.back().get());
  }
  std::vector<AppliedMarks> marks;
  if (auto e = co_await FlushState::loadSlots(*apply_[0], views, marks, !table_ready_)) {
    co_return e;
  }
  table_ready_ = true;
  for (std::size_t i = 0; i < found.size(); ++i) {
    SlotQueue& q = slots_[found[i].first];
    q.state = std::move(states[i]);
    q.marks = std::move(marks[i]);
    q.owner_for = found[i].second;
    q.acked = StreamId{};
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> Flusher::applySlots(std::size_t p, std::vector<SlotBatch*> group) {
  PartitionBatch rows;
  for (const SlotBatch* b : group) {
    const PartitionBatch& part = b->batch.parts[0];
    rows.rows.insert(rows.rows.end(), part.rows.begin(), part.rows.end());
    rows.last.insert(rows.last.end(), part.last.begin(), part.last.end());
    rows.entries += part.entries;
  }
  if (rows.empty()) co_return pg::PgError{};
  std::vector<FlushState::Move> moves;
  for (const SlotBatch* b : group) {
    const PartitionBatch& part = b->batch.parts[0];
    if (part.empty()) continue;
    const SlotQueue& q = slots_.at(b->slot);
    moves.push_back({q.state.get(), q.marks.current.marks[0], part.through});
  }
  const Fence fence = [&moves](pg::Connection& c) { return FlushState::advanceAll(c, moves); };
  pg::PgError error = co_await applyRows(*apply_[p], rows, fence);
  if (error) co_return error;
  for (const SlotBatch* b : group) {
    const PartitionBatch& part = b->batch.parts[0];
    if (!part.empty()) slots_.at(b->slot).marks.current.marks[0] = part.through;
  }
  co_return pg::PgError{};
}

std::vector<std::vector<std::size_t>> Flusher::byNode(const std::vector<int>& slots) const {
  auto ranges = sharded_->ranges();
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::vector<std::size_t>> groups;
  std::unordered_map<std::size_t, std::size_t> group_of;  // range -> its open group
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const auto after = std::upper_bound(ranges.begin(), ranges.end(),
                                        std::pair{slots[i], std::numeric_limits<int>::max()});
    if (after == ranges.begin() || std::prev(after)->second < slots[i]) {
      groups.push_back({i});  // not in the map: on its own, the router finds it
      continue;
    }
    const auto range = static_cast<std::size_t>(std::prev(after) - ranges.begin());
    auto [it, fresh] = group_of.try_emplace(range, groups.size());
    if (!fresh && groups[it->second].size() >= static_cast<std::size_t>(kSweepChunk)) {
      it->second = groups.size();
      fresh = true;
    }
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  return groups;
}

asio::awaitable<std::vector<std::optional<Flusher::Read>>> Flusher::readSlots(
    const std::vector<int>& slots, std::size_t count) {
  // XRANGE natively, then the read script, as on one Redis: the state is read
  // after the entries (every XRANGE has answered). The state of each node's
  // slots comes from one script call on that node.
  std::vector<std::string> ranges;
  for (int slot : slots) {
    const std::string queue = slotQueueKey(kQueue, ks_.name(), slot);
    resp::appendMultibulk(ranges.emplace_back(),
                          {"XRANGE", queue, "-", "+", "COUNT", std::to_string(count)});
  }
  const auto entries = co_await redis::callAll(*redis_, std::move(ranges));
  const auto groups = byNode(slots);
  std::vector<redis::ScriptCall> calls;
  for (const auto& group : groups) {
    redis::ScriptCall& call = calls.emplace_back();
    call.keys.push_back(slotQueueKey(kQueue, ks_.name(), slots[group.front()]));
    for (std::size_t i : group) {
      call.args.push_back(slotQueueKey(kQueue, ks_.name(), slots[i]));
      call.args.push_back(slotInstanceKey(slots[i]));
    }
  }
  const auto replies = co_await redis::callScriptEach(*redis_, readSlotsScript(), calls);
  std::vector<std::string_view> meta(slots.size());
  std::vector<std::string_view> elements;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (!resp::splitArray(replies[g], elements) || elements.size() != groups[g].size()) continue;
    for (std::size_t k = 0; k < elements.size(); ++k) {
      if (elements[k].front() != '-') meta[groups[g][k]] = elements[k];
    }
  }
  // A slot its node did not serve (moved since the map was read, or being
  // migrated): asked on its own, which follows MOVED and ASK.
  std::vector<std::size_t> alone;
  std::vector<redis::ScriptCall> alone_calls;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (!meta[i].empty()) continue;
    alone.push_back(i);
    alone_calls.push_back(redis::ScriptCall{
        {slotQueueKey(kQueue, ks_.name(), slots[i]), slotInstanceKey(slots[i])}, {}});
  }
  std::vector<std::string> alone_replies;
  if (!alone.empty()) {
    spdlog::debug(
        "keyspace {}: {} slot(s) not read by their node's call (moved, migrating, or "
        "the call failed): their queues are read on their own",
        ks_.name(), alone.size());
    alone_replies = co_await redis::callScriptEach(*redis_, readBatchScript(), alone_calls);
    for (std::size_t k = 0; k < alone.size(); ++k) meta[alone[k]] = alone_replies[k];
  }
  std::vector<std::optional<Read>> out(slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i) {
    Read r;
    if (!decodeQueueRead(entries[i], meta[i], r)) {
      spdlog::debug("keyspace {}: reading the write queue of slot {}: {} / {}", ks_.name(),
                    slots[i], entries[i].substr(0, 200), meta[i]);
      continue;
    }
    out[i] = std::move(r);
  }
  co_return out;
}

asio::awaitable<void> Flusher::ackSlots(std::vector<SlotBatch>& batches) {
  std::vector<int> slots;
  for (const SlotBatch& b : batches) slots.push_back(b.slot);
  const auto groups = byNode(slots);
  const std::string linger = std::to_string(markerLinger(config_).count());
  std::vector<redis::ScriptCall> calls;
  for (const auto& group : groups) {
    redis::ScriptCall& call = calls.emplace_back();
    call.keys.push_back(slotQueueKey(kQueue, ks_.name(), slots[group.front()]));
    call.args.push_back(linger);
    for (std::size_t i : group) {
      call.args.push_back(slotQueueKey(kQueue, ks_.name(), slots[i]));
      appendAckSection(call.args, batches[i].batch);
    }
  }
  const auto replies = co_await redis::callScriptEach(*redis_, ackSlotsScript(), calls);
  std::vector<bool> acked(batches.size(), false);
  std::vector<std::string_view> elements;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (!resp::splitArray(replies[g], elements) || elements.size() != groups[g].size()) {
      spdlog::debug("keyspace {}: acknowledging the batches of {} slot(s): {}", ks_.name(),
                    groups[g].size(), replies[g].substr(0, 200));
      continue;
    }
    for (std::size_t k = 0; k < elements.size(); ++k) {
      acked[groups[g][k]] = elements[k].front() == ':';
    }
  }
  // The rest on their own (following MOVED and ASK); one that fails is read
  // again later, and the marks make that a replay that changes nothing.
  std::vector<std::function<asio::awaitable<void>()>> alone;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (acked[i]) continue;
    alone.push_back([this, &batches, &acked, i]() -> asio::awaitable<void> {
      std::string queue = slotQueueKey(kQueue, ks_.name(), batches[i].slot);
      const bool done = co_await ackQueue(std::move(queue), batches[i].batch);
      acked[i] = done;
    });
  }
  if (!alone.empty()) {
    spdlog::debug(
        "keyspace {}: {} slot(s) not acknowledged by their node's call (moved, "
        "migrating, or the call failed): their batches are acknowledged on their own",
        ks_.name(), alone.size());
    co_await runAll(std::move(alone));
  }
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (acked[i]) {
      SlotQueue& q = slots_[batches[i].slot];
      q.acked = std::max(q.acked, batches[i].batch.last);
    } else {
      pending_.insert(batches[i].slot);
    }
  }
}

asio::awaitable<void> Flusher::runSlots() {
  const config::WriteBehindConfig& wb = config_.write_behind;
  while (!stopping_) {
    if (owner_for_.empty()) {
      const std::string instance = co_await claimInstance();  // the cluster's __larder:id
      if (instance.empty()) {
        settleSlotWaiters();
        co_await pause(std::max(wb.flush_interval, kRedisRetry));
        continue;
      }
      pg::PgError error;
      const Own own_result = co_await own(instance, error);
      if (own_result == Own::Taken) {
        // Another instance flushes; a LARDER FLUSH here still learns from
        // sweeps when the queues have drained. (A drain waits for the lock:
        // the owner still has the keyspace `behind`.)
        if (!waiters_.empty() && Clock::now() - swept_ >= Millis(100)) co_await sweep();
        settleSlotWaiters();
        co_await pause(Millis(500));
        continue;
      }
      if (own_result == Own::Failed) {
        failedStep(error);
        dropOwnership();
        co_await pause(nextBackoff());
        continue;
      }
      pending_.clear();
    }
    const auto started = Clock::now();
    for (int slot : sharded_->dirty->take()) pending_.insert(slot);
    const bool waiter_unswept = std::any_of(waiters_.begin(), waiters_.end(),
                                            [](const Waiter& w) { return !w.has_target; });
    bool redis_trouble = false;
    if (sweep_now_ || waiter_unswept || started - swept_ >= kSweepPeriod) {
      redis_trouble = !co_await sweep();
    }
    if (pending_.empty()) {
      settleSlotWaiters();
      if (drained_ && swept_ >= started) {  // this round's sweep was complete: every queue empty
        spdlog::info("keyspace {}: old write queues drained", ks_.name());
        drained_();
        break;
      }
      const auto since = Clock::now() - started;
      const Millis wait = redis_trouble ? kRedisRetry : wb.flush_interval;
      if (since < wait) co_await pause(std::chrono::duration_cast<Millis>(wait - since));
      continue;
    }

    std::vector<int> round;
    while (!pending_.empty() && round.size() < kSlotsPerRound) {
      round.push_back(*pending_.begin());
      pending_.erase(pending_.begin());
    }
    const std::size_t count = std::max(kMinPerSlot, wb.max_batch / round.size());
    auto reads = co_await readSlots(round, count);
    const auto read_done = Clock::now();
    std::vector<SlotBatch> batches;
    batches.reserve(round.size());
    pg::PgError error;
    std::size_t entries = 0;
    // First sight of a slot: an id to claim (read again next round), or its
    // marks to read; all of the round's at once.
    std::vector<redis::ScriptCall> claims;
    std::vector<std::pair<int, std::string>> unknown;
    for (std::size_t i = 0; i < round.size(); ++i) {
      if (!reads[i]) continue;
      const auto it = slots_.find(round[i]);
      if (reads[i]->instance.empty()) {
        claims.push_back(redis::ScriptCall{{slotInstanceKey(round[i])}, {randomId()}});
        pending_.insert(round[i]);
      } else if (it == slots_.end() || it->second.owner_for != reads[i]->instance) {
        unknown.emplace_back(round[i], reads[i]->instance);
      }
    }
    if (!claims.empty()) co_await redis::callScriptEach(*redis_, claimIdScript(), claims);
    if (!unknown.empty()) error = co_await loadSlots(unknown);
    for (std::size_t i = 0; i < round.size() && !error && !stopping_; ++i) {
      const int slot = round[i];
      if (!reads[i]) {  // a node unreachable or moving: again later
        pending_.insert(slot);
        redis_trouble = true;
        continue;
      }
      Read& r = *reads[i];
      if (r.instance.empty()) continue;  // claimed above
      SlotQueue& q = slots_[slot];
      if (r.generated.value_or(StreamId{}) < q.marks.highest()) {
        std::string queue = slotQueueKey(kQueue, ks_.name(), slot);
        co_await resyncQueue(std::move(queue), q.marks.highest());
        pending_.insert(slot);
        continue;
      }
      for (const auto& field : r.unknown_fields) {
        spdlog::warn("keyspace {}: queue entry {} has a field Larder does not write", ks_.name(),
                     field);
      }
      if (r.entries.empty()) continue;
      if (r.entries.size() >= count) pending_.insert(slot);  // more to read
      SlotBatch& b = batches.emplace_back();
      b.slot = slot;
      b.entries = r.entries.size();
      b.batch = planBatch(ks_, r.entries, q.marks);
      entries += b.entries;
      std::vector<Dead> unmatched;
      for (auto& u : b.batch.unmatched) {
        unmatched.push_back(
            Dead{u.row, u.last, {"", "the key no longer fits keyspace " + ks_.name()}});
      }
      error = co_await recordDead(unmatched);
    }
    dead_rows_ = 0;
    const auto planned = Clock::now();
    if (!error && !batches.empty()) {
      std::vector<std::vector<SlotBatch*>> groups(partitions_);
      for (auto& b : batches) groups[static_cast<std::size_t>(b.slot) % partitions_].push_back(&b);
      std::vector<pg::PgError> errors(partitions_);
      std::vector<std::function<asio::awaitable<void>()>> tasks;
      for (std::size_t p = 0; p < partitions_; ++p) {
        if (groups[p].empty()) continue;
        tasks.push_back([this, p, &groups, &errors]() -> asio::awaitable<void> {
          errors[p] = co_await applySlots(p, groups[p]);
        });
      }
      co_await runAll(std::move(tasks));
      for (auto& e : errors) {
        if (e && !error) error = e;
      }
    }
    const auto applied = Clock::now();
    if (error) {
      failedStep(error);
      for (int slot : round) pending_.insert(slot);
      // As on one Redis: own the queues again, which reads the marks anew.
      dropOwnership();
      co_await pause(nextBackoff());
      continue;
    }
    if (!batches.empty()) {
      co_await ackSlots(batches);
      auto ms = [](Clock::duration d) {
        return std::chrono::duration_cast<std::chrono::microseconds>(d).count() / 1000.0;
      };
      spdlog::debug(
          "keyspace {}: {} slots, {} entries: read {:.1f} ms, marks and plan {:.1f} ms, apply "
          "{:.1f} ms, ack {:.1f} ms; {} slots pending",
          ks_.name(), round.size(), entries, ms(read_done - started), ms(planned - read_done),
          ms(applied - planned), ms(Clock::now() - applied), pending_.size());
      recovered();
      stats_.batches.add();
      stats_.entries.add(entries);
      std::size_t rows = 0, coalesced = 0, replayed = 0;
      for (const auto& b : batches) {
        rows += b.batch.parts[0].rows.size();
        coalesced += b.batch.coalesced;
        replayed += b.batch.replayed_entries;
      }
      stats_.rows.add(rows - std::min(rows, dead_rows_));
      stats_.coalesced.add(coalesced);
      stats_.replayed.add(replayed);
      stats_.latency.observe(Clock::now() - started);
    }
    settleSlotWaiters();
    if (redis_trouble) {
      co_await pause(kRedisRetry);
    } else if (pending_.empty()) {
      const auto since = Clock::now() - started;
      if (since < wb.flush_interval && waiters_.empty()) {
        co_await pause(std::chrono::duration_cast<Millis>(wb.flush_interval - since));
      }
    }
  }
  dropOwnership();
}

}  // namespace larder::cache
