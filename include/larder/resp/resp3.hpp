#pragma once
// RESP3 for clients (HELLO 3) while every backend connection stays RESP2.
//
// Backend connections are shared by many sessions, so they cannot switch
// protocol for one client. Instead each RESP2 reply is rewritten, at delivery,
// into the RESP3 form redis-server 7.0 sends for that command:
//
//   request args --resp3ShapeOf--> shape   (resp3_commands.cpp: HGETALL -> map,
//                                            ZSCORE -> double, SMEMBERS -> set, ...)
//   RESP2 frame + shape --toResp3--> RESP3 frame   (resp3.cpp)
//
// Nulls ($-1, *-1) become `_` for every command; the table only lists replies
// whose structure changes. Commands not in the table get just that, so an
// unknown command's reply is still valid RESP3. Pure: no I/O, no state.
//
// ReplyForms keeps, per session, the protocol and shape each reply slot was
// requested under, so a reply still in flight when HELLO switches protocol
// keeps the form it was asked in (as Redis, which answers each command in the
// protocol in force when it ran).
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "larder/commands/registry.hpp"

namespace larder::resp {

struct Resp3Field;

// A node of the shape table (resp3_commands.cpp): how one reply, or one
// element of it, changes between RESP2 and RESP3. A null shape pointer means
// Keep. Shapes nest (a map whose "flags" value is a set) and may recurse
// (COMMAND INFO's subcommands are command infos).
struct Resp3Shape {
  enum class Kind : std::uint8_t {
    Keep,        // nulls become `_`, nothing else changes
    Double,      // a bulk string holding a number -> `,` double
    Verbatim,    // a bulk string -> `=` verbatim string of format "txt"
    Stat,        // MEMORY STATS values: a bulk is a double, an array a map
    Set,         // array -> `~` set, every element takes `element`
    SetIfEmpty,  // COMMAND's subcommands: an empty array is a set, others stay arrays
    Array,       // array, every element takes `element`
    Tuple,       // array, element i takes items[i] (Keep past the end)
    Map,         // flat array k1 v1 k2 v2 -> `%` map; values by `fields`, else `element`
    StreamsMap,  // XREAD: array of [key, value] arrays -> `%` map, values take `element`
    Pairs,       // flat array a1 b1 a2 b2 -> array of [a, b]; b takes `element` (WITHSCORES)
  };
  Kind kind = Kind::Keep;
  const Resp3Shape* element = nullptr;
  std::span<const Resp3Field> fields{};
  std::span<const Resp3Shape* const> items{};
};

struct Resp3Field {
  std::string_view key;
  const Resp3Shape* shape;
};

// The shape of the reply to `args`, from the registry row's reply column
// (some shapes depend on the arguments: WITHSCORES, WITHCOORD...).
const Resp3Shape* resp3ShapeOf(commands::ReplyShape shape,
                               const std::vector<std::string_view>& args);
// The same, looking the command up (args[0] is the command name, any case).
const Resp3Shape* resp3ShapeOf(const std::vector<std::string_view>& args);

// The RESP3 form of one complete RESP2 frame. Returns `frame` itself when
// nothing changes, else a view of `scratch`. A frame that does not have the
// shape's structure gets the generic translation; a malformed one is returned
// unchanged. RESP3 frames pass unchanged.
std::string_view toResp3(std::string_view frame, const Resp3Shape* shape, std::string& scratch);

// A frame read from a subscribed (pub/sub) connection, for a RESP3 client:
// messages and (un)subscribe confirmations become push frames (`>`), and
// PING's subscribed-mode reply ["pong", msg] becomes PING's normal reply.
std::string_view pubSubToResp3(std::string_view frame, std::string& scratch);

class ReplyForms {
 public:
  // False while no RESP3 reply can be outstanding: the session may skip
  // request() and translate() altogether.
  bool active() const { return !forms_.empty(); }

  // Before routing a request: its replies take tags from `next_tag` on.
  // `head_tag` is the oldest reply still outstanding; `in_multi` says the
  // request is queued inside MULTI (its shape then applies inside EXEC's reply).
  // `command` is the request's registry row (null: unknown to Redis 7.0).
  void request(const commands::Command* command, const std::vector<std::string_view>& args,
               bool resp3, bool in_multi, std::uint64_t next_tag, std::uint64_t head_tag);
  // HELLO or RESET changed the protocol; their own reply (tag `next_tag`)
  // is already in the new one.
  void switched(bool resp3, std::uint64_t next_tag, std::uint64_t head_tag);
  // The reply for slot `tag` in the form its request was made under.
  std::string_view translate(std::uint64_t tag, std::string_view frame, std::uint64_t head_tag);
  // A pub/sub frame for a RESP3 client (see pubSubToResp3).
  std::string_view push(std::string_view frame) { return pubSubToResp3(frame, scratch_); }

 private:
  struct Form {
    bool resp3 = false;
    const Resp3Shape* shape = nullptr;
    bool exec = false;  // EXEC: element i takes queued[i]
    std::vector<const Resp3Shape*> queued;
  };
  void set(std::uint64_t tag, Form form);
  void prune(std::uint64_t head_tag);

  std::map<std::uint64_t, Form> forms_;    // a form holds from its tag to the next entry's
  std::vector<const Resp3Shape*> queued_;  // MULTI: shapes of the queued commands
  std::string scratch_;
};

}  // namespace larder::resp
