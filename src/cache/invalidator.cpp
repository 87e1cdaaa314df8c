#include "larder/cache/invalidator.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "larder/cache/key_names.hpp"
#include "larder/cache/stampede.hpp"
#include "larder/common/errors.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cache {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kDropPage = 500;      // keys per UNLINK script call
constexpr const char* kScanCount = "1000";  // SCAN page size hint
constexpr auto kNotifyWait = std::chrono::milliseconds(1000);
constexpr auto kRetryMin = std::chrono::milliseconds(200);
constexpr auto kRetryMax = std::chrono::milliseconds(5000);

// KEYS: key, its load lease, key, its lease ... UNLINKs them (a lease may say
// the row is absent, or belong to a load that read the row before the
// change), then PUBLISHes each key on ARGV[1] when it is not empty.
const redis::Script& dropScript() {
  static const redis::Script script = redis::makeScript(R"lua(
redis.call('UNLINK', unpack(KEYS))
if ARGV[1] ~= '' then
  for i = 1, #KEYS, 2 do redis.call('PUBLISH', ARGV[1], KEYS[i]) end
end
return #KEYS / 2
)lua");
  return script;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Minimal reader for the trigger's JSON: objects of strings (and `true`).
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  bool string(std::string& out) {
    skip();
    if (!eat('"')) return false;
    out.clear();
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
            std::uint32_t low = 0;
            if (!eat('\\') || !eat('u') || !hex4(low) || low < 0xDC00 || low > 0xDFFF) {
              return false;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          utf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool literal(std::string_view word) {
    skip();
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool atEnd() {
    skip();
    return i_ == s_.size();
  }

 private:
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool hex4(std::uint32_t& out) {
    if (i_ + 4 > s_.size()) return false;
    out = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      out <<= 4;
      if (c >= '0' && c <= '9')
        out |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        out |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        out |= static_cast<std::uint32_t>(c - 'A' + 10);
      else
        return false;
    }
    return true;
  }
  static void utf8(std::uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

std::string sqlLiteral(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

// SCAN MATCH syntax: the literal prefix with glob characters escaped.
std::string globPrefix(std::string_view prefix) {
  std::string out;
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out + "*";
}

std::string request(std::initializer_list<std::string_view> parts) {
  std::string out;
  resp::appendArrayHeader(out, parts.size());
  for (auto p : parts) resp::appendBulk(out, p);
  return out;
}

}  // namespace

std::optional<RowChange> parseRowChange(std::string_view payload) {
  JsonReader r(payload);
  RowChange change;
  bool has_table = false, has_key = false, truncate = false;
  if (!r.eat('{')) return std::nullopt;
  if (!r.eat('}')) {
    do {
      std::string name;
      if (!r.string(name) || !r.eat(':')) return std::nullopt;
      if (name == "t") {
        if (!r.string(change.table)) return std::nullopt;
        has_table = true;
      } else if (name == "k") {
        if (!r.eat('{')) return std::nullopt;
        if (!r.eat('}')) {
          do {
            std::string column, value;
            if (!r.string(column) || !r.eat(':') || !r.string(value)) return std::nullopt;
            change.key.emplace_back(std::move(column), std::move(value));
          } while (r.eat(','));
          if (!r.eat('}')) return std::nullopt;
        }
        has_key = true;
      } else if (name == "truncate") {
        if (!r.literal("true")) return std::nullopt;
        truncate = true;
      } else {
        return std::nullopt;
      }
    } while (r.eat(','));
    if (!r.eat('}')) return std::nullopt;
  }
  if (!r.atEnd() || !has_table || (has_key == truncate)) return std::nullopt;
  return change;  // truncate: an empty key
}

std::optional<std::string> keyFor(const Keyspace& ks, const RowChange& change) {
  std::string key = ks.key.literals[0];
  for (std::size_t i = 0; i < ks.key.placeholders.size(); ++i) {
    const std::string& column = ks.key.placeholders[i];
    auto it = std::find_if(change.key.begin(), change.key.end(),
                           [&](const auto& kv) { return kv.first == column; });
    if (it == change.key.end()) return std::nullopt;
    key += it->second;
    key += ks.key.literals[i + 1];
  }
  return key;
}

std::string triggerSql(const std::vector<const Keyspace*>& keyspaces, const std::string& channel) {
  // One generic function; each table's trigger passes the channel and its key
  // columns. Larder's own flushes set larder.origin and are not announced.
  std::string sql = R"sql(CREATE SCHEMA IF NOT EXISTS larder;
CREATE OR REPLACE FUNCTION larder.notify_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  cols text[] := TG_ARGV[1:TG_NARGS - 1];
  tab text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  old_key json;
  new_key json;
BEGIN
  IF current_setting('larder.origin', true) = 'larder' THEN
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    SELECT json_object_agg(c, to_jsonb(OLD) ->> c) INTO old_key FROM unnest(cols) AS c;
    PERFORM pg_notify(TG_ARGV[0], json_build_object('t', tab, 'k', old_key)::text);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    SELECT json_object_agg(c, to_jsonb(NEW) ->> c) INTO new_key FROM unnest(cols) AS c;
    IF old_key IS NULL OR old_key::text <> new_key::text THEN
      PERFORM pg_notify(TG_ARGV[0], json_build_object('t', tab, 'k', new_key)::text);
    END IF;
  END IF;
  RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION larder.notify_truncate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  IF current_setting('larder.origin', true) = 'larder' THEN
    RETURN NULL;
  END IF;
  PERFORM pg_notify(TG_ARGV[0], json_build_object('t', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
                                                  'truncate', true)::text);
  RETURN NULL;
END
$fn$;
)sql";
  std::vector<std::string> done;
  for (const Keyspace* ks : keyspaces) {
    const std::string table =
        pg::quoteIdentifier(ks->schema) + "." + pg::quoteIdentifier(ks->table);
    if (std::find(done.begin(), done.end(), table) != done.end()) continue;
    done.push_back(table);
    std::string args = sqlLiteral(channel);
    for (const auto& column : ks->key_columns) args += ", " + sqlLiteral(column);
    sql += "CREATE OR REPLACE TRIGGER larder_notify_change AFTER INSERT OR UPDATE OR DELETE ON " +
           table + " FOR EACH ROW EXECUTE FUNCTION larder.notify_change(" + args + ");\n";
    sql += "CREATE OR REPLACE TRIGGER larder_notify_truncate AFTER TRUNCATE ON " + table +
           " FOR EACH STATEMENT EXECUTE FUNCTION larder.notify_truncate(" + sqlLiteral(channel) +
           ");\n";
  }
  return sql;
}

Invalidator::Invalidator(asio::io_context& context, Loader& loader,
                         const KeyspaceRegistry& registry, const config::Config& config,
                         std::shared_ptr<redis::Route> redis)
    : context_(context),
      loader_(loader),
      registry_(registry),
      config_(config),
      redis_(std::move(redis)),
      backoff_(context) {}

Invalidator::~Invalidator() = default;

void Invalidator::start() {
  if (config_.invalidation.listen_channel.empty()) return;
  asio::co_spawn(context_, listen(), logEscaped("PostgreSQL listener"));
}

void Invalidator::stop() {
  stopping_ = true;
  backoff_.cancel();
  if (listener_) listener_->interrupt();
}

asio::awaitable<void> Invalidator::listen() {
  const std::string& channel = config_.invalidation.listen_channel;
  auto delay = kRetryMin;
  bool warned = false;
  while (!stopping_) {
    listener_ = std::make_unique<pg::Connection>(
        context_.get_executor(), pg::connectParams(config_.postgres),
        config_.postgres.connect_timeout, config_.postgres.statement_timeout);
    pg::PgError error = co_await listener_->connect();
    if (!error) error = (co_await listener_->query("LISTEN " + pg::quoteIdentifier(channel))).error;
    if (error) {
      stats_.listen_errors.add();
      if (!warned) {
        spdlog::warn("cannot LISTEN on PostgreSQL channel {}: {}; retrying", channel,
                     error.message);
        warned = true;
      }
      backoff_.expires_after(delay);
      co_await backoff_.async_wait(asio::as_tuple(asio::use_awaitable));
      delay = std::min(delay * 2, kRetryMax);
      continue;
    }
    delay = kRetryMin;
    warned = false;
    stats_.listening.add();
    // Changes made while nobody listened were not heard: drop what may be stale.
    long long dropped = 0;
    const std::size_t n = registry_.size();
    for (std::size_t i = 0; i < n && !stopping_; ++i) {
      std::string all;
      const long long count = co_await dropMatching(registry_.at(i), all);
      if (count > 0) dropped += count;
    }
    stats_.resyncs.add();
    spdlog::info(
        "listening on PostgreSQL channel {}; dropped {} cached key(s) of {} keyspace(s), "
        "whose changes while not listening are unknown",
        channel, dropped, n);
    // A LISTEN connection hears nothing when nothing changes, and nothing
    // either when the network silently dropped it: after postgres.keepalive
    // of silence it is probed, and a probe that fails means notifications
    // were lost: reconnect, which drops what may be stale.
    const auto probe_after = config_.postgres.keepalive;
    auto heard = std::chrono::steady_clock::now();
    while (!stopping_) {
      pg::NotifyOutcome out = co_await listener_->notifications(kNotifyWait);
      if (out.error) {
        if (!stopping_) {
          spdlog::warn("PostgreSQL channel {}: connection lost ({}); reconnecting", channel,
                       out.error.message);
        }
        break;
      }
      const auto now = std::chrono::steady_clock::now();
      if (!out.notifications.empty()) {
        heard = now;
        co_await apply(out.notifications);
        continue;
      }
      if (probe_after.count() > 0 && now - heard >= probe_after) {
        stats_.probes.add();
        auto probe = co_await listener_->query("SELECT 1");
        if (!probe.ok()) {
          if (!stopping_) {
            spdlog::warn(
                "PostgreSQL channel {}: the silent LISTEN connection did not answer a "
                "probe ({}); reconnecting",
                channel, probe.error.message);
          }
          break;
        }
        heard = std::chrono::steady_clock::now();
      }
    }
    stats_.listening.sub();
  }
  listener_.reset();
}

asio::awaitable<void> Invalidator::apply(const std::vector<pg::Notification>& batch) {
  std::vector<std::string> keys;
  for (const auto& note : batch) {
    stats_.notifications.add();
    std::optional<RowChange> change = parseRowChange(note.payload);
    if (!change) {
      stats_.bad_payloads.add();
      spdlog::debug("ignoring a notification that names no row: {}", note.payload);
      continue;
    }
    bool mapped = false;
    const std::size_t n = registry_.size();
    for (std::size_t i = 0; i < n; ++i) {
      const Keyspace& ks = registry_.at(i);
      if (ks.schema + "." + ks.table != change->table) continue;
      mapped = true;
      if (change->key.empty()) {  // TRUNCATE
        loader_.forgetKeyspace(ks.id);
        std::string all;
        co_await dropMatching(ks, all);
        continue;
      }
      if (std::optional<std::string> key = keyFor(ks, *change)) {
        loader_.forget(*key);
        keys.push_back(std::move(*key));
      }
    }
    if (!mapped) stats_.bad_payloads.add();
  }
  if (!keys.empty()) co_await drop(std::move(keys));
}

asio::awaitable<bool> Invalidator::drop(std::vector<std::string> keys) {
  const std::vector<std::string_view> views(keys.begin(), keys.end());
  // One script call per slot on a cluster, of at most kDropPage keys each,
  // all sent at once.
  std::vector<redis::ScriptCall> calls;
  std::vector<std::size_t> sizes;
  for (const std::vector<std::size_t>& group : groupBySlot(views, redis_->sharded())) {
    for (std::size_t at = 0; at < group.size(); at += kDropPage) {
      const std::size_t end = std::min(group.size(), at + kDropPage);
      redis::ScriptCall& call = calls.emplace_back();
      call.keys.reserve(2 * (end - at));
      for (std::size_t i = at; i < end; ++i) {
        call.keys.push_back(keys[group[i]]);
        call.keys.push_back(leaseKey(keys[group[i]]));
      }
      call.args = {config_.invalidation.publish_channel};
      sizes.push_back(end - at);
    }
  }
  const std::vector<std::string> replies =
      co_await redis::callScriptEach(*redis_, dropScript(), calls);
  bool ok = true;
  for (std::size_t c = 0; c < replies.size(); ++c) {
    if (replies[c].empty() || replies[c].front() != ':') {
      spdlog::warn("dropping {} invalidated key(s) from Redis failed: {}", sizes[c], replies[c]);
      ok = false;
      continue;
    }
    stats_.keys_dropped.add(sizes[c]);
  }
  co_return ok;
}

asio::awaitable<long long> Invalidator::dropMatching(const Keyspace& ks, std::string pattern) {
  if (pattern.empty()) pattern = globPrefix(ks.key.prefix());
  std::string cursor = "0";
  long long count = 0;
  std::vector<std::string_view> values;
  do {
    // Built outside co_await: GCC 12 miscompiles braced lists inside it.
    std::string scan = request({"SCAN", cursor, "MATCH", pattern, "COUNT", kScanCount});
    const std::string reply = co_await redis::call(*redis_, std::move(scan));
    resp::ReplyValue value;
    if (!resp::decodeReply(reply, value) || !value.isArray() || value.elements.size() != 2) {
      spdlog::warn("keyspace {}: SCAN for invalidation failed: {}", ks.name(), reply);
      co_return -1;
    }
    cursor = value.elements[0].str();
    std::vector<std::string> keys;
    for (const auto& element : value.elements[1].elements) {
      // Only keys of this keyspace, whatever the pattern matched.
      if (registry_.match(element.str(), values) == &ks) keys.push_back(element.str());
    }
    for (const auto& key : keys) loader_.forget(key);
    count += static_cast<long long>(keys.size());
    if (!keys.empty()) {
      const bool dropped = co_await drop(std::move(keys));
      if (!dropped) co_return -1;
    }
  } while (cursor != "0" && !stopping_);
  co_return count;
}

void Invalidator::command(std::vector<std::string> args, std::function<void(std::string)> done) {
  asio::post(context_, [this, args = std::move(args), done = std::move(done)]() mutable {
    asio::co_spawn(context_, runCommand(std::move(args), std::move(done)),
                   logEscaped("LARDER INVALIDATE"));
  });
}

asio::awaitable<void> Invalidator::runCommand(std::vector<std::string> args,
                                              std::function<void(std::string)> done) {
  // args: INVALIDATE <ks> [key ...] | INVALIDATE <ks> MATCH <pattern>
  if (args.size() < 2) {
    done(resp::errorReply(errors::arity("larder|invalidate")));
    co_return;
  }
  const Keyspace* ks = registry_.byName(args[1]);
  if (ks == nullptr) {
    done(resp::errorReply(errors::noKeyspace(args[1])));
    co_return;
  }
  std::string out;
  if (args.size() == 2 || (args.size() == 4 && upper(args[2]) == "MATCH")) {
    loader_.forgetKeyspace(ks->id);
    // A named argument: GCC 12 mishandles temporaries built inside co_await.
    std::string pattern = args.size() == 4 ? args[3] : std::string();
    const long long count = co_await dropMatching(*ks, std::move(pattern));
    if (count < 0) {
      done(resp::errorReply(errors::kKeyspaceNotInvalidated));
      co_return;
    }
    resp::appendInteger(out, count);
    done(out);
    co_return;
  }
  std::vector<std::string> keys(args.begin() + 2, args.end());
  std::vector<std::string_view> values;
  for (const auto& key : keys) {
    if (registry_.match(key, values) != ks) {
      done(resp::errorReply(errors::keyNotInKeyspace(key, ks->name())));
      co_return;
    }
  }
  for (const auto& key : keys) loader_.forget(key);
  const long long count = static_cast<long long>(keys.size());
  const bool dropped = co_await drop(std::move(keys));
  if (!dropped) {
    done(resp::errorReply(errors::kKeysNotInvalidated));
    co_return;
  }
  resp::appendInteger(out, count);
  done(out);
}

}  // namespace larder::cache
