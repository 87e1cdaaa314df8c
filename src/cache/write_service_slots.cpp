// LARDER PENDING and DEADLETTERS on a Redis Cluster (docs/cluster.md, "Write-
// behind on a cluster"), where a keyspace's queue, dead letters and dead-keys
// hash are one of each per slot, in that slot (key_names.hpp):
//
//   find     one read-only script per chunk of <= 1024 slots of each range of
//            the map, on the range's owner (allow-cross-slot-keys, as the
//            flusher's sweep): PENDING's sums, or the dead-letter streams
//            with entries. A slot the node no longer owns (a reshard since
//            the map was read) is asked again on its own, routed by its slot.
//   LIST     XRANGE of only the streams that can hold the `count` oldest
//            (planOldest), merged by id; ids shown as <slot>/<stream id>
//   RETRY    per slot, the one-Redis requeue (retryDead) with that slot's
//   DROP     names; one id names its slot (parseSlotEntryId)
//
// Key names are Larder's (slotQueueKey), passed to the scripts as KEYS and
// ARGV; nothing is named in Lua.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "larder/cache/key_names.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/cache/write_service.hpp"
#include "larder/common/errors.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;

namespace {

// Calls sent at once: a failover can leave every slot to ask on its own,
// and 16384 requests in flight would hold all their replies at once.
constexpr std::size_t kCallsInFlight = 1024;
constexpr long long kDefaultListCount = 100;  // as one Redis's LIST

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A reply that is not what the script returns, as the operator's error.
std::string errorFrame(const std::string& reply) {
  return !reply.empty() && reply.front() == '-' ? reply
                                                : resp::errorReply(errors::operatorReply(reply));
}

asio::awaitable<std::vector<std::string>> scriptEachBounded(redis::Route& route,
                                                            const redis::Script& script,
                                                            std::vector<redis::ScriptCall> calls) {
  std::vector<std::string> replies;
  replies.reserve(calls.size());
  for (std::size_t at = 0; at < calls.size(); at += kCallsInFlight) {
    const auto end =
        calls.begin() + static_cast<std::ptrdiff_t>(std::min(calls.size(), at + kCallsInFlight));
    std::vector<redis::ScriptCall> part(
        std::make_move_iterator(calls.begin() + static_cast<std::ptrdiff_t>(at)),
        std::make_move_iterator(end));
    auto got = co_await redis::callScriptEach(route, script, part);
    for (auto& r : got) replies.push_back(std::move(r));
  }
  co_return replies;
}

asio::awaitable<std::vector<std::string>> callAllBounded(redis::Route& route,
                                                         std::vector<std::string> requests) {
  std::vector<std::string> replies;
  replies.reserve(requests.size());
  for (std::size_t at = 0; at < requests.size(); at += kCallsInFlight) {
    const auto end = requests.begin() +
                     static_cast<std::ptrdiff_t>(std::min(requests.size(), at + kCallsInFlight));
    std::vector<std::string> part(
        std::make_move_iterator(requests.begin() + static_cast<std::ptrdiff_t>(at)),
        std::make_move_iterator(end));
    auto got = co_await redis::callAll(route, std::move(part));
    for (auto& r : got) replies.push_back(std::move(r));
  }
  co_return replies;
}

// PENDING's sums for one keyspace, over the chunks' replies.
struct PendingSum {
  long long depth = 0, dead = 0, age_ms = 0;

  // v: {depth, oldest id or '', the node's now in ms, dead letters, ...}.
  // The age by each node's own clock, as one Redis's is by its own.
  void add(const resp::ReplyValue& v) {
    depth += v.elements[0].integer;
    dead += v.elements[3].integer;
    if (const auto first = StreamId::parse(v.elements[1].str())) {
      age_ms = std::max(age_ms, v.elements[2].integer - static_cast<long long>(first->ms));
    }
  }
};

bool pendingShape(const resp::ReplyValue& v) {
  if (!v.isArray() || v.elements.size() < 4) return false;
  return std::all_of(v.elements.begin(), v.elements.end(), [&](const resp::ReplyValue& e) {
    return &e == &v.elements[1] ? e.type == resp::ReplyValue::Type::Bulk
                                : e.type == resp::ReplyValue::Type::Integer;
  });
}

}  // namespace

WriteService::QueueNames WriteService::slotNames(const Keyspace& ks, int slot) const {
  return QueueNames{slotQueueKey(kQueue, ks.name(), slot),
                    slotQueueKey(kDeadLetters, ks.name(), slot),
                    slotQueueKey(kDeadKeys, ks.name(), slot), slot};
}

asio::awaitable<void> WriteService::pendingSlots(ReplyFn done) {
  const auto chunks =
      slotChunks(slot_ranges_ ? slot_ranges_() : std::vector<std::pair<int, int>>{});
  if (chunks.empty()) {
    done(resp::errorReply(errors::kNoSlotMap));
    co_return;
  }
  // A reload may add keyspaces while this waits on Redis: the ones there
  // now, as many as the header says.
  const std::size_t keyspaces = registry_.size();
  std::string out;
  resp::appendArrayHeader(out, keyspaces);
  for (std::size_t k = 0; k < keyspaces; ++k) {
    const Keyspace& ks = registry_.at(k);
    std::vector<redis::ScriptCall> calls;
    calls.reserve(chunks.size());
    for (const auto& [first, last] : chunks) {
      redis::ScriptCall& call = calls.emplace_back();
      QueueNames names = slotNames(ks, first);
      call.keys = {std::move(names.queue), std::move(names.dead)};
      for (int s = first + 1; s <= last; ++s) {
        QueueNames other = slotNames(ks, s);
        call.args.push_back(std::move(other.queue));
        call.args.push_back(std::move(other.dead));
      }
    }
    const auto replies =
        co_await scriptEachBounded(*cache_, pendingSlotsScript(), std::move(calls));
    PendingSum sum;
    std::vector<int> moved;  // slots to ask again, each on its own
    for (std::size_t c = 0; c < replies.size(); ++c) {
      resp::ReplyValue v;
      if (!resp::decodeReply(replies[c], v) || !pendingShape(v)) {
        // The whole chunk (its first slot moved, say): every slot on its own.
        spdlog::debug("keyspace {}: LARDER PENDING over slots {}-{}: {}", ks.name(),
                      chunks[c].first, chunks[c].second, replies[c].substr(0, 200));
        for (int s = chunks[c].first; s <= chunks[c].second; ++s) moved.push_back(s);
        continue;
      }
      sum.add(v);
      for (std::size_t i = 4; i < v.elements.size(); ++i) {
        moved.push_back(chunks[c].first + static_cast<int>(v.elements[i].integer));
      }
    }
    if (!moved.empty()) {
      spdlog::debug("keyspace {}: LARDER PENDING: {} slot(s) moved, asked again on their own",
                    ks.name(), moved.size());
      std::vector<redis::ScriptCall> again;
      for (int slot : moved) {
        QueueNames names = slotNames(ks, slot);
        again.push_back(redis::ScriptCall{{std::move(names.queue), std::move(names.dead)}, {}});
      }
      const auto retried =
          co_await scriptEachBounded(*cache_, pendingSlotsScript(), std::move(again));
      for (std::size_t i = 0; i < retried.size(); ++i) {
        resp::ReplyValue v;
        if (!resp::decodeReply(retried[i], v) || !pendingShape(v)) {
          done(errorFrame(retried[i]));
          co_return;
        }
        if (v.elements.size() > 4) {
          done(resp::errorReply(errors::slotUnreadable(moved[i])));
          co_return;
        }
        sum.add(v);
      }
    }
    resp::appendArrayHeader(out, 8);
    resp::appendBulk(out, "keyspace");
    resp::appendBulk(out, ks.name());
    resp::appendBulk(out, "depth");
    resp::appendInteger(out, sum.depth);
    resp::appendBulk(out, "oldest_age_ms");
    resp::appendInteger(out, std::max(0LL, sum.age_ms));
    resp::appendBulk(out, "dead_letters");
    resp::appendInteger(out, sum.dead);
  }
  done(std::move(out));
}

asio::awaitable<WriteService::DeadHeads> WriteService::deadLetterHeads(const Keyspace& ks) {
  DeadHeads out;
  const auto chunks =
      slotChunks(slot_ranges_ ? slot_ranges_() : std::vector<std::pair<int, int>>{});
  if (chunks.empty()) {
    out.error = resp::errorReply(errors::kNoSlotMap);
    co_return out;
  }
  std::vector<redis::ScriptCall> calls;
  std::vector<int> firsts;  // the first slot of each call
  calls.reserve(chunks.size());
  for (const auto& [first, last] : chunks) {
    redis::ScriptCall& call = calls.emplace_back();
    call.keys.push_back(slotQueueKey(kDeadLetters, ks.name(), first));
    for (int s = first + 1; s <= last; ++s) {
      call.args.push_back(slotQueueKey(kDeadLetters, ks.name(), s));
    }
    firsts.push_back(first);
  }
  // Triples {index, length (-1: unreadable), oldest id}; false when the
  // reply is not that.
  std::vector<int> moved;
  auto absorb = [&](const std::string& reply, int first, bool alone) {
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || !v.isArray() || v.elements.size() % 3 != 0) return false;
    for (std::size_t i = 0; i < v.elements.size(); i += 3) {
      const int slot = first + static_cast<int>(v.elements[i].integer);
      const long long length = v.elements[i + 1].integer;
      const auto oldest = StreamId::parse(v.elements[i + 2].str());
      if (length < 0 || !oldest) {
        if (alone) return false;
        moved.push_back(slot);
        continue;
      }
      out.heads.push_back(SlotHead{slot, *oldest, length});
    }
    return true;
  };
  const auto replies =
      co_await scriptEachBounded(*cache_, deadLetterSlotsScript(), std::move(calls));
  for (std::size_t c = 0; c < replies.size(); ++c) {
    if (absorb(replies[c], firsts[c], false)) continue;
    spdlog::debug("keyspace {}: dead letters of slots {}-{}: {}", ks.name(), chunks[c].first,
                  chunks[c].second, replies[c].substr(0, 200));
    for (int s = chunks[c].first; s <= chunks[c].second; ++s) moved.push_back(s);
  }
  if (moved.empty()) co_return out;
  spdlog::debug("keyspace {}: dead letters: {} slot(s) moved, asked again on their own", ks.name(),
                moved.size());
  const std::vector<int> again_slots = std::move(moved);
  moved.clear();
  std::vector<redis::ScriptCall> again;
  for (int slot : again_slots) {
    again.push_back(redis::ScriptCall{{slotQueueKey(kDeadLetters, ks.name(), slot)}, {}});
  }
  const auto retried =
      co_await scriptEachBounded(*cache_, deadLetterSlotsScript(), std::move(again));
  for (std::size_t i = 0; i < retried.size(); ++i) {
    if (absorb(retried[i], again_slots[i], true)) continue;
    out.heads.clear();
    out.error = !retried[i].empty() && retried[i].front() == '-'
                    ? retried[i]
                    : resp::errorReply(errors::slotUnreadable(again_slots[i]));
    co_return out;
  }
  co_return out;
}

asio::awaitable<void> WriteService::deadLettersSlots(std::vector<std::string> args, ReplyFn done) {
  const Keyspace* ks = registry_.byName(args[1]);
  if (!ks) {
    done(resp::errorReply(errors::noKeyspace(args[1])));
    co_return;
  }
  const std::string action = upper(args[2]);
  if (action == "LIST" && args.size() <= 4) {
    long long count = kDefaultListCount;
    if (args.size() == 4) {
      const std::string& text = args[3];
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), count);
      if (ec != std::errc() || end != text.data() + text.size()) {
        done(resp::errorReply(errors::kNotInteger));  // what XRANGE COUNT says on one Redis
        co_return;
      }
    }
    DeadHeads found = co_await deadLetterHeads(*ks);
    if (!found.error.empty()) {
      done(found.error);
      co_return;
    }
    const std::vector<SlotRead> plan = planOldest(std::move(found.heads), count);
    std::vector<std::string> requests;
    for (const SlotRead& r : plan) {
      resp::appendMultibulk(requests.emplace_back(),
                            {"XRANGE", slotQueueKey(kDeadLetters, ks->name(), r.slot), "-", "+",
                             "COUNT", std::to_string(r.count)});
    }
    const auto replies = co_await callAllBounded(*cache_, std::move(requests));
    struct Listed {
      StreamId id;
      int slot;
      resp::ReplyValue entry;
    };
    std::vector<Listed> listed;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      resp::ReplyValue v;
      if (!resp::decodeReply(replies[i], v) || !v.isArray()) {
        done(errorFrame(replies[i]));
        co_return;
      }
      for (auto& e : v.elements) {
        if (e.elements.size() != 2) continue;
        const auto id = StreamId::parse(e.elements[0].str());
        if (id) listed.push_back(Listed{*id, plan[i].slot, std::move(e)});
      }
    }
    std::sort(listed.begin(), listed.end(), [](const Listed& a, const Listed& b) {
      return a.id < b.id || (a.id == b.id && a.slot < b.slot);
    });
    if (static_cast<long long>(listed.size()) > count) {
      listed.resize(static_cast<std::size_t>(std::max(0LL, count)));
    }
    std::string out;
    resp::appendArrayHeader(out, listed.size());
    for (const Listed& l : listed) {
      const auto& fields = l.entry.elements[1].elements;
      resp::appendArrayHeader(out, 2 + fields.size());
      resp::appendBulk(out, "id");
      resp::appendBulk(out, slotEntryId(l.slot, l.entry.elements[0].str()));
      for (const auto& f : fields) resp::appendBulk(out, f.str());
    }
    done(std::move(out));
    co_return;
  }
  if ((action == "RETRY" || action == "DROP") && args.size() == 4) {
    const bool all = upper(args[3]) == "ALL";
    std::optional<SlotEntryId> one;
    if (!all) {
      one = parseSlotEntryId(args[3]);
      if (!one) {
        done(resp::errorReply(errors::badSlotEntryId(args[3])));
        co_return;
      }
    }
    std::vector<int> slots;
    if (all) {
      DeadHeads found = co_await deadLetterHeads(*ks);
      if (!found.error.empty()) {
        done(found.error);
        co_return;
      }
      for (const SlotHead& h : found.heads) slots.push_back(h.slot);
    } else {
      slots.push_back(one->slot);
    }
    if (action == "DROP") {
      if (!all) {
        std::string request;
        resp::appendMultibulk(
            request, {"XDEL", slotQueueKey(kDeadLetters, ks->name(), one->slot), one->id.str()});
        done(co_await redis::call(*cache_, std::move(request)));
        co_return;
      }
      std::vector<redis::ScriptCall> calls;
      for (int slot : slots) {
        QueueNames names = slotNames(*ks, slot);
        calls.push_back(redis::ScriptCall{{std::move(names.dead), std::move(names.dead_keys)}, {}});
      }
      const auto replies =
          co_await scriptEachBounded(*cache_, dropDeadLettersScript(), std::move(calls));
      long long dropped = 0;
      for (const std::string& reply : replies) {
        resp::ReplyValue v;
        if (!resp::decodeReply(reply, v) || v.type != resp::ReplyValue::Type::Integer) {
          done(errorFrame(reply));
          co_return;
        }
        dropped += v.integer;
      }
      std::string out;
      resp::appendInteger(out, dropped);
      done(std::move(out));
      co_return;
    }
    // RETRY: slot by slot, each page by page as on one Redis.
    long long requeued = 0, skipped = 0;
    DirtySlots* dirty = dirty_.get(static_cast<std::size_t>(ks->id));
    for (int slot : slots) {
      QueueNames names = slotNames(*ks, slot);
      const std::string id = one ? one->id.str() : std::string();
      const Retried r = co_await retryDead(*cache_, std::move(names), id, all);
      requeued += r.requeued;
      skipped += r.skipped;
      if (r.requeued > 0 && dirty) dirty->mark(slot);  // the flusher reads it next round
      if (!r.error.empty()) {
        if (requeued > 0) loader_.forgetAllMissing();
        done(r.error);
        co_return;
      }
    }
    if (skipped > 0) {
      spdlog::info(
          "keyspace {}: {} dead letter(s) not retried: their key was written after they were "
          "refused (LARDER DEADLETTERS {} DROP removes them)",
          ks->name(), skipped, ks->name());
    }
    if (requeued > 0) loader_.forgetAllMissing();  // the retried rows may be created now
    std::string out;
    resp::appendInteger(out, requeued);
    done(std::move(out));
    co_return;
  }
  done(resp::errorReply(errors::kDeadLettersUsage));
}

}  // namespace larder::cache
