#pragma once
// A keyspace at run time: the config, its key template, and the table shape
// read from PostgreSQL, turned into what the data path needs (which columns,
// which SQL). Built at start (or when a reload adds it) and shared by all
// threads; only its TTLs change afterwards, through LiveValue.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "larder/common/live_value.hpp"
#include "larder/common/slots.hpp"
#include "larder/config/config.hpp"
#include "larder/config/key_template.hpp"
#include "larder/pg/catalog.hpp"

namespace larder::cache {

// The start-up error for a keyspace that does not fit its table.
class KeyspaceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Keyspace {
  int id = 0;
  config::KeyspaceConfig config;  // as loaded; the TTLs below may since have changed
  config::KeyTemplate key;
  std::string schema;
  std::string table;
  std::vector<std::string> key_columns;  // primary key, in template order
  std::vector<std::string> key_types;    // as the catalog names them: character varying(20)
  // The types values are cast to in SQL, without modifiers (character
  // varying): the column's own length, precision or scale then applies on
  // assignment, and a value that does not fit fails (22001) instead of being cut.
  std::vector<std::string> key_casts;
  std::vector<std::string> value_columns;  // hash fields, or the one string column
  std::vector<std::string> value_types;
  std::vector<std::string> value_casts;
  std::vector<bool> value_not_null;
  // Non-key columns of the table (mapped or not) that are NOT NULL with no
  // default: an upsert that does not write them all must update existing rows
  // first (change.hpp).
  std::vector<std::string> required_columns;
  std::string load_sql;  // $1.. = one array per key column

  // What a reload may change while the keyspace serves.
  LiveValue<std::int64_t> ttl_ms;
  LiveValue<double> ttl_jitter;
  LiveValue<std::int64_t> negative_ttl_ms;
  LiveValue<std::int64_t> lease_ms;  // stampede.lease; 0: off
  LiveValue<double> early_refresh;   // stampede.early_refresh (XFetch beta); 0: off
  LiveValue<std::int64_t> stale_ms;  // stampede.stale_while_revalidate; 0: off

  config::Millis ttl() const { return config::Millis(ttl_ms.get()); }
  config::Millis negativeTtl() const { return config::Millis(negative_ttl_ms.get()); }
  // A hit may refresh the row before it expires (XFetch or a stale window).
  bool refreshes() const { return early_refresh.get() > 0 || stale_ms.get() > 0; }
  // The TTL a cached value gets in Redis: ttl plus the stale window, during
  // which it is served while one refresh runs. 0: no expiry.
  std::int64_t hardTtlMs(std::int64_t ttl) const { return ttl > 0 ? ttl + stale_ms.get() : 0; }
  void retune(const config::KeyspaceConfig& next);

  const std::string& name() const { return config.name; }
  bool isHash() const { return config.shape == config::KeyShape::Hash; }
  // Index of a hash field among value_columns, or -1.
  int field(std::string_view name) const;
  // Splits `key` into primary-key values when it fits the template. A value
  // runs up to the first occurrence of the character that follows it in the
  // template (the last one runs to the end) and is never empty.
  bool match(std::string_view key, std::vector<std::string_view>& values) const;
  // True when `value` is the one spelling of a key column value of this type
  // that Larder accepts: keys that cannot name a row (user:abc for a bigint
  // id) are misses without a query, and a row never gets two keys (user:7 and
  // user:007, date 2024-1-5 and 2024-01-05, boolean t and true, numeric 1.5
  // and 1.50, a char(n) value with trailing blanks). docs/keyspaces.md.
  bool plausibleKeyValue(std::size_t column, std::string_view value) const;
  // False for key types whose spellings Larder does not check (timestamp,
  // inet...); said once in the log at start.
  static bool keyTypeChecked(const std::string& type);
};

// Checks the config against the table and builds the keyspace. Throws
// KeyspaceError naming the keyspace, table and column when they do not fit.
Keyspace buildKeyspace(int id, const config::KeyspaceConfig& config, const pg::TableInfo& table);

// Every keyspace, by id. Lookups from any thread need no lock; a reload may
// append keyspaces (never remove or replace one) while they run.
class KeyspaceRegistry {
 public:
  KeyspaceRegistry() = default;
  explicit KeyspaceRegistry(std::vector<Keyspace> keyspaces);
  KeyspaceRegistry(const KeyspaceRegistry&) = delete;
  KeyspaceRegistry& operator=(const KeyspaceRegistry&) = delete;

  bool empty() const { return size() == 0; }
  std::size_t size() const { return size_.load(std::memory_order_acquire); }
  const Keyspace& at(std::size_t i) const { return *slots_.get(i); }
  // Appends a keyspace whose id is size(). One thread at a time.
  const Keyspace& add(Keyspace keyspace);
  // For a reload changing TTLs.
  Keyspace& mutableAt(std::size_t i) { return *slots_.get(i); }
  // The keyspace `key` belongs to, filling `values`; nullptr when unmapped.
  const Keyspace* match(std::string_view key, std::vector<std::string_view>& values) const;
  const Keyspace* byName(std::string_view name) const;

 private:
  Slots<Keyspace, config::kMaxKeyspaces> slots_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace larder::cache
