#pragma once
// Larder's configuration as plain structs with defaults. Loaded once from YAML
// (config/loader.hpp), validated, then passed down as `const Config&`.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "larder/acl/password.hpp"
#include "larder/acl/permissions.hpp"

namespace larder::config {

using Millis = std::chrono::milliseconds;

// Per-keyspace state lives in fixed slots so that a reload can add keyspaces
// while other threads read them (common/slots.hpp).
constexpr std::size_t kMaxKeyspaces = 64;

struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string toString() const;  // "host:port", IPv6 hosts in brackets
  bool operator==(const Endpoint&) const = default;
};

// TLS for Larder's own connections to Redis (docs/tls.md). The server's
// certificate is always verified against ca_file (or the system's CAs) and
// server_name (default: the address' host).
struct RedisTlsConfig {
  bool enabled = false;
  std::string ca_file;    // empty: the system's default CAs
  std::string cert_file;  // client certificate, for --tls-auth-clients yes
  std::string key_file;
  std::string server_name;  // SNI and the name verified; empty: address.host
};

// Redis Cluster as the backend (docs/cluster.md): set instead of address.
struct RedisClusterConfig {
  std::vector<Endpoint> seeds;  // empty: one Redis at redis.address
  // Reads (readonly commands outside transactions) go to replicas (READONLY).
  bool read_from_replicas = false;
  int redirect_limit = 5;         // MOVED/ASK followed per request at most
  Millis retry_timeout{2000};     // TRYAGAIN, CLUSTERDOWN, a shard down: retried this long
  Millis refresh_interval{5000};  // topology re-read this often (and on MOVED, lost connections)
};

struct RedisConfig {
  Endpoint address{"127.0.0.1", 6379};
  RedisClusterConfig cluster;
  RedisTlsConfig tls;
  std::string username;                   // empty: AUTH <password> only
  std::string password;                   // empty: no AUTH
  int db = 0;                             // SELECTed on every backend connection
  int connections_per_worker = 2;         // shared, pipelined connections
  int max_pinned_per_worker = 1024;       // dedicated connections (MULTI, pub/sub, blocking)
  int max_pending_per_connection = 4096;  // requests in flight; beyond, clients wait
  Millis connect_timeout{2000};
  Millis reconnect_min{100};
  Millis reconnect_max{2000};
  // While keyspaces exist, client traffic runs as this Redis ACL user, which
  // cannot reach Larder's reserved keys (docs/security.md); "" turns it off,
  // and scripts are then refused.
  std::string client_acl_user = "larder-client";
  // A shared connection on which requests have waited about this long with
  // nothing read from Redis is closed and every request on it fails (a
  // silent network: docs/failures.md).
  // Pinned connections (blocking commands, MULTI, pub/sub) are exempt. 0: off.
  Millis request_timeout{10000};
  // TCP keepalive: first probe after this much silence, then 3 probes this
  // far apart / 2 (a dead peer is noticed after about 2.5x this). 0: off.
  Millis keepalive{10000};

  bool clusterMode() const { return !cluster.seeds.empty(); }
};

struct PostgresConfig {
  std::string dsn;  // libpq connection string; empty: no PostgreSQL
  // TLS to PostgreSQL, passed to libpq as keywords that override the DSN's
  // (docs/tls.md). Empty: the DSN's value or libpq's default (sslmode=prefer).
  std::string sslmode;  // disable, allow, prefer, require, verify-ca, verify-full
  std::string sslrootcert;
  std::string sslcert;
  std::string sslkey;
  int pool_size = 4;
  Millis connect_timeout{5000};
  Millis statement_timeout{5000};
  // libpq TCP keepalives (keepalives_idle, _interval = half, _count = 3, and
  // tcp_user_timeout) unless the DSN sets them; also how long the LISTEN
  // connection may stay silent before it is probed. 0: off.
  Millis keepalive{10000};
};

struct LimitsConfig {
  std::size_t max_array_len = 1024 * 1024;
  std::size_t max_bulk_len = 512ull * 1024 * 1024;
  std::size_t max_inline_len = 64 * 1024;
  std::size_t max_inflight_per_client = 128;              // requests read but not yet answered
  std::size_t client_output_limit = 64ull * 1024 * 1024;  // queued reply bytes before close
  std::size_t maxclients = 10000;
};

// How misses are loaded from PostgreSQL (the Loader).
struct ReadThroughConfig {
  std::chrono::microseconds batch_window{500};  // misses within it share one SELECT
  std::size_t max_batch = 256;                  // keys per SELECT at most
  Millis load_timeout{2000};                    // a miss waits this long, then -ERR
  std::size_t negative_cache_entries = 100000;  // remembered missing rows (per process)
};

// How writes to mapped keys reach PostgreSQL (the queue and the Flusher).
enum class QueueFullPolicy { Error, Block };

struct WriteBehindConfig {
  Millis flush_interval{50};        // a queued write waits at most about this long
  std::size_t max_batch = 1000;     // queue entries read (and rows applied) per batch
  std::size_t max_queue = 1000000;  // entries per keyspace queue; beyond, writes are refused
  QueueFullPolicy on_full = QueueFullPolicy::Error;
  Millis block_timeout{2000};  // on_full: block waits this long, then -ERR
  Millis retry_min{100};       // backoff after a retryable PostgreSQL error
  Millis retry_max{5000};
  Millis drain_timeout{10000};  // SIGTERM: flush the queues for at most this long
  // PostgreSQL connections that apply one keyspace's batches in parallel, each
  // for the keys that hash to it (a key's writes stay in order).
  int apply_connections = 2;
  // Where the applied position of each queue is kept (docs/writes.md: replays).
  std::string state_table = "larder.flush_state";
  // With `behind` keyspaces, Redis' persistence is checked at connect: risky
  // settings are logged; true refuses behind writes under them instead.
  bool require_durable_redis = false;
  // > 0: a behind write is acknowledged only once WAIT <wait_replicas>
  // <wait_timeout> says that many replicas have it.
  int wait_replicas = 0;
  Millis wait_timeout{100};
};

// Invalidation (docs/invalidation.md).
struct InvalidationConfig {
  // PostgreSQL channel Larder LISTENs on for changes made by other programs
  // (the trigger `larder --install-triggers` installs NOTIFYs it). Empty: off.
  std::string listen_channel;
  // Redis channel every change to a mapped key is PUBLISHed on (payload: the
  // key), for application-side caches. Empty: off.
  std::string publish_channel;
};

// A keyspace's per-worker in-process cache (docs/invalidation.md).
struct NearCacheConfig {
  bool enabled = false;
  std::size_t max_bytes = 64ull * 1024 * 1024;  // per worker thread
  Millis max_ttl{10000};                        // an entry is dropped after this at most
};

// Stampede control beyond the Loader's single-flight (docs/stampede.md).
struct StampedeConfig {
  // A cold key is loaded by the one instance that wins a Redis lease
  // (SET NX PX) on it; the others wait for its fill. 0: no lease.
  Millis lease{3000};
  // XFetch (Vattani et al., PVLDB 2015): a hit refreshes the row early with a
  // probability that grows as expiry nears, scaled by the time the last load
  // took (stored beside the value) and this beta. 0: off.
  double early_refresh = 0.0;
  // Past its ttl a value is still served this long while one refresh runs
  // (soft ttl = ttl, hard ttl = ttl + this). 0: off.
  Millis stale_while_revalidate{0};
};

enum class KeyShape { String, Hash };
enum class WriteMode { Behind, Through, None };

struct KeyspaceConfig {
  std::string name;
  std::string key;    // template, e.g. "user:{id}"
  std::string table;  // schema-qualified, e.g. "public.users"
  KeyShape shape = KeyShape::Hash;
  std::vector<std::string> columns;  // empty: every non-key column
  Millis ttl{3600 * 1000};           // 0: no expiry
  double ttl_jitter = 0.0;           // fraction, 0.1 for "10%"
  Millis negative_ttl{30 * 1000};    // 0: no negative caching
  WriteMode write = WriteMode::Behind;
  NearCacheConfig near_cache;
  StampedeConfig stampede;
};

// The TLS client listener, a second port beside `listen` as Redis' tls-port
// (docs/tls.md). Certificate files are read at start-up and on reload.
enum class TlsVerifyClients { None, Optional, Required };
enum class TlsVersion { Tls12, Tls13 };

struct TlsListenerConfig {
  std::optional<Endpoint> listen;  // unset: no TLS listener
  std::string cert_file;           // PEM chain, leaf first
  std::string key_file;
  std::string ca_file;  // CAs client certificates must chain to
  TlsVerifyClients verify_clients = TlsVerifyClients::None;
  TlsVersion min_version = TlsVersion::Tls12;
  Millis handshake_timeout{5000};  // a client that has not finished it by then is closed
};

enum class LogFormat { Text, Json };

// An ACL user (docs/security.md). Passwords are kept only as SHA-256 digests.
struct UserConfig {
  std::string name;
  std::vector<acl::Digest> passwords;  // AUTH succeeds with any of them
  bool nopass = false;                 // AUTH succeeds with any password
  bool enabled = true;
  std::vector<std::string> commands;  // the rules as written (shown in /config)
  std::vector<std::string> keys;
  std::vector<std::string> channels;
  acl::Permissions permissions;  // compiled from commands, keys and channels at load
  bool implicit = false;         // the default user made from requirepass
  bool operator==(const UserConfig&) const = default;
};

// The user named `name`, or nullptr. A loaded config always has "default".
const UserConfig* findUser(const std::vector<UserConfig>& users, std::string_view name);
// True when the file has a `users:` list (beyond the implicit default user).
bool hasAclUsers(const std::vector<UserConfig>& users);
// The default user `requirepass` stands for: all commands and keys, that
// password (or none: nopass).
UserConfig implicitDefaultUser(const std::string& requirepass);

struct Config {
  std::string source;  // file it was loaded from ("<embedded>" otherwise)
  Endpoint listen{"127.0.0.1", 6380};
  int threads = 0;                // 0 = auto (hardware cores)
  std::optional<Endpoint> admin;  // unset: no admin HTTP listener
  std::string admin_token;        // non-empty: admin endpoints need "Bearer <token>"
  int backlog = 511;
  Millis idle_timeout{0};         // 0 = never close idle clients (as Redis)
  std::string requirepass;        // empty: clients need no AUTH
  std::vector<UserConfig> users;  // ACL users; loading adds "default" when absent
  std::string log_level = "info";
  LogFormat log_format = LogFormat::Text;
  TlsListenerConfig tls;
  RedisConfig redis;
  PostgresConfig postgres;
  LimitsConfig limits;
  ReadThroughConfig read_through;
  WriteBehindConfig write_behind;
  InvalidationConfig invalidation;
  std::vector<KeyspaceConfig> keyspaces;  // in file order
};

}  // namespace larder::config
