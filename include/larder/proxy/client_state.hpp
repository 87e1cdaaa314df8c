#pragma once
// What a client's connection is in, as Redis would see it. Everything Redis
// decides (the db after SELECT, MULTI, WATCH, CLIENT TRACKING) changes only
// when Redis' reply confirms it; until then the request that would change it
// counts as unconfirmed, and a request whose handling depends on that state
// waits for the reply (pipeline.hpp). What Larder answers itself (AUTH,
// HELLO, CLIENT SETNAME, RESET) changes when Larder answers. A value.
#include <cstdint>
#include <string>

#include "larder/config/config.hpp"
#include "larder/proxy/subscriptions.hpp"

namespace larder::proxy {

struct ClientState {
  long long db = 0;    // the db Redis runs the client's commands in
  bool resp3 = false;  // HELLO 3: replies are translated (resp/resp3.hpp)
  bool authenticated = false;
  // The authenticated user, in the config generation `user_config` (kept for
  // the life of the process, so the pointer stays valid). nullptr: not
  // authenticated, or a config without users (everything allowed).
  const config::UserConfig* user = nullptr;
  const config::Config* user_config = nullptr;

  bool pinned = false;         // holds a dedicated backend connection
  bool stream = false;         // pinned in pub/sub: frames flow straight through
  bool in_multi = false;       // Redis answered MULTI
  bool multi_aborted = false;  // a command was refused while queueing: EXEC discards
  bool watching = false;       // Redis answered WATCH
  bool sticky = false;         // CLIENT TRACKING and friends: pinned until RESET
  // Another client's CLIENT TRACKING REDIRECTs to this one: its dedicated
  // connection is the Redis client named, so it stays (never pooled) until
  // RESET or the end of the connection (proxy/tracking.cpp).
  bool redirect_target = false;
  bool dirty_stream = false;  // a RESET went through the stream connection
  unsigned unconfirmed = 0;   // state-changing requests Redis has not answered yet
  // RESP3 pub/sub: the pinned connection speaks RESP3, so ordinary commands
  // run between SUBSCRIBE and UNSUBSCRIBE as in Redis; push frames stream
  // straight to the client, replies answer their requests (see `stream`).
  bool push = false;
  SubscriptionCounts subscriptions;  // from Redis' confirmations (CLIENT LIST)

  bool monitor = false;     // MONITOR: every client's commands are fed to it
  bool no_evict = false;    // CLIENT NO-EVICT ON: shown; Larder evicts no client anyway
  bool reply_off = false;   // CLIENT REPLY OFF: replies are dropped, pushes are not
  bool reply_skip = false;  // CLIENT REPLY SKIP: the next command's reply is dropped

  std::string name;  // CLIENT SETNAME
  std::string lib_name;
  std::string lib_ver;
};

}  // namespace larder::proxy
