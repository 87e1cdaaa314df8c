// The shape table: which commands' replies change structure in RESP3, and how
// (see resp3.hpp). Read off redis-server 7.0's replies; tests/integration/
// test_resp3.py compares every one of them with a real redis-server.
#include <algorithm>
#include <charconv>

#include "larder/commands/registry.hpp"
#include "larder/resp/resp3.hpp"

namespace larder::resp {

namespace {

using Kind = Resp3Shape::Kind;
using Args = std::vector<std::string_view>;

// ------------------------------------------------------------- the shapes
// What redis-server 7.0 sends in RESP3, read off its replies (see
// tests/integration/test_resp3.py, which compares every one of them).

extern const Resp3Shape kCommandInfo;
extern const Resp3Shape kCommandDoc;
extern const Resp3Shape kCommandArg;

const Resp3Shape kDouble{Kind::Double};
const Resp3Shape kVerbatim{Kind::Verbatim};
const Resp3Shape kSet{Kind::Set};
const Resp3Shape kMap{Kind::Map};
const Resp3Shape kDoubles{Kind::Array, &kDouble};
const Resp3Shape kMaps{Kind::Array, &kMap};
const Resp3Shape kScorePairs{Kind::Pairs, &kDouble};  // [member, score] pairs
const Resp3Shape kValuePairs{Kind::Pairs};            // HRANDFIELD WITHVALUES
const Resp3Shape kStreamsMap{Kind::StreamsMap};
const Resp3Shape kGeoPos{Kind::Array, &kDoubles};

const Resp3Shape* const kScoredItems[] = {nullptr, &kDouble};
const Resp3Shape kScored{.kind = Kind::Tuple, .items = kScoredItems};  // ZPOPMIN, ZRANK WITHSCORE
const Resp3Shape kScoredList{Kind::Array, &kScored};
const Resp3Shape* const kMpopItems[] = {nullptr, &kScoredList};
const Resp3Shape kMpop{.kind = Kind::Tuple, .items = kMpopItems};  // [key, [[member, score]...]]
const Resp3Shape* const kBlockingPopItems[] = {nullptr, nullptr, &kDouble};
const Resp3Shape kBlockingPop{.kind = Kind::Tuple, .items = kBlockingPopItems};

// GEORADIUS & co WITHCOORD: [name, dist?, hash?, [lon, lat]]; the coordinates
// come last, at 1, 2 or 3 depending on WITHDIST and WITHHASH.
const Resp3Shape* const kGeoItems1[] = {nullptr, &kDoubles};
const Resp3Shape* const kGeoItems2[] = {nullptr, nullptr, &kDoubles};
const Resp3Shape* const kGeoItems3[] = {nullptr, nullptr, nullptr, &kDoubles};
const Resp3Shape kGeoItem1{.kind = Kind::Tuple, .items = kGeoItems1};
const Resp3Shape kGeoItem2{.kind = Kind::Tuple, .items = kGeoItems2};
const Resp3Shape kGeoItem3{.kind = Kind::Tuple, .items = kGeoItems3};
const Resp3Shape kGeoResults[] = {
    {Kind::Array, &kGeoItem1}, {Kind::Array, &kGeoItem2}, {Kind::Array, &kGeoItem3}};

const Resp3Field kFlagsSet[] = {{"flags", &kSet}};
const Resp3Shape kTrackingInfo{.kind = Kind::Map, .fields = kFlagsSet};
const Resp3Field kAclUserFields[] = {{"flags", &kSet}, {"selectors", &kMaps}};
const Resp3Shape kAclUser{.kind = Kind::Map, .fields = kAclUserFields};
const Resp3Field kAclLogFields[] = {{"age-seconds", &kDouble}};
const Resp3Shape kAclLogEntry{.kind = Kind::Map, .fields = kAclLogFields};
const Resp3Shape kAclLog{Kind::Array, &kAclLogEntry};

const Resp3Shape kStat{Kind::Stat};
const Resp3Shape kMemoryStats{Kind::Map, &kStat};
const Resp3Field kHistogramFields[] = {{"histogram_usec", &kMap}};
const Resp3Shape kHistogram{.kind = Kind::Map, .fields = kHistogramFields};
const Resp3Shape kLatencyHistogram{Kind::Map, &kHistogram};

const Resp3Field kConsumersField[] = {{"consumers", &kMaps}};
const Resp3Shape kStreamGroup{.kind = Kind::Map, .fields = kConsumersField};
const Resp3Shape kStreamGroups{Kind::Array, &kStreamGroup};
const Resp3Field kStreamFields[] = {{"groups", &kStreamGroups}};  // FULL: maps; else a count
const Resp3Shape kStreamInfo{.kind = Kind::Map, .fields = kStreamFields};

const Resp3Shape kFunctionInfo{.kind = Kind::Map, .fields = kFlagsSet};
const Resp3Shape kFunctionInfos{Kind::Array, &kFunctionInfo};
const Resp3Field kLibraryFields[] = {{"functions", &kFunctionInfos}};
const Resp3Shape kLibrary{.kind = Kind::Map, .fields = kLibraryFields};
const Resp3Shape kFunctionList{Kind::Array, &kLibrary};
const Resp3Shape kEngines{Kind::Map, &kMap};
const Resp3Field kFunctionStatsFields[] = {{"running_script", &kMap}, {"engines", &kEngines}};
const Resp3Shape kFunctionStats{.kind = Kind::Map, .fields = kFunctionStatsFields};

// COMMAND / COMMAND INFO: [name, arity, flags, first, last, step, acl
// categories, tips, key specs, subcommands], the sets and maps nested.
const Resp3Field kKeySearchFields[] = {{"spec", &kMap}};
const Resp3Shape kKeySearch{.kind = Kind::Map, .fields = kKeySearchFields};
const Resp3Field kKeySpecFields[] = {
    {"flags", &kSet}, {"begin_search", &kKeySearch}, {"find_keys", &kKeySearch}};
const Resp3Shape kKeySpec{.kind = Kind::Map, .fields = kKeySpecFields};
const Resp3Shape kKeySpecs{Kind::Set, &kKeySpec};
const Resp3Shape kSubcommands{Kind::SetIfEmpty, &kCommandInfo};
const Resp3Shape* const kCommandInfoItems[] = {nullptr, nullptr, &kSet, nullptr,    nullptr,
                                               nullptr, &kSet,   &kSet, &kKeySpecs, &kSubcommands};
const Resp3Shape kCommandInfo{.kind = Kind::Tuple, .items = kCommandInfoItems};
const Resp3Shape kCommandInfos{Kind::Array, &kCommandInfo};
// COMMAND DOCS: a map of name -> doc map, arguments and subcommands nested.
const Resp3Shape kCommandArgs{Kind::Array, &kCommandArg};
const Resp3Field kCommandArgFields[] = {{"flags", &kSet}, {"arguments", &kCommandArgs}};
const Resp3Shape kCommandArg{.kind = Kind::Map, .fields = kCommandArgFields};
const Resp3Shape kCommandDocs{Kind::Map, &kCommandDoc};
const Resp3Field kCommandDocFields[] = {{"doc_flags", &kSet},
                                        {"history", &kSet},
                                        {"arguments", &kCommandArgs},
                                        {"subcommands", &kCommandDocs}};
const Resp3Shape kCommandDoc{.kind = Kind::Map, .fields = kCommandDocFields};
const Resp3Shape* const kKeyAndFlagsItems[] = {nullptr, &kSet};
const Resp3Shape kKeyAndFlags{.kind = Kind::Tuple, .items = kKeyAndFlagsItems};
const Resp3Shape kKeysAndFlags{Kind::Array, &kKeyAndFlags};

// ------------------------------------------------------- choosing a shape

bool is(std::string_view a, std::string_view lower) { return commands::equalsLower(a, lower); }

// True when one of args[from..] is `word` (an option such as WITHSCORES).
bool hasOption(const Args& args, std::size_t from, std::string_view word) {
  for (std::size_t i = from; i < args.size(); ++i) {
    if (is(args[i], word)) return true;
  }
  return false;
}

const Resp3Shape* withScores(const Args& args, std::size_t options_from) {
  return hasOption(args, options_from, "withscores") ? &kScorePairs : nullptr;
}

// ZRANGE, ZRANGEBYSCORE, ZREVRANGE, ZREVRANGEBYSCORE: key min max [options].
const Resp3Shape* pickRange(const Args& args) { return withScores(args, 4); }

// ZUNION, ZINTER, ZDIFF: numkeys key... [options].
const Resp3Shape* pickSetOperation(const Args& args) {
  long long numkeys = 0;
  if (args.size() < 2) return nullptr;
  auto [ptr, ec] = std::from_chars(args[1].data(), args[1].data() + args[1].size(), numkeys);
  if (ec != std::errc() || numkeys < 1) return nullptr;
  return withScores(args, 2 + static_cast<std::size_t>(numkeys));
}

const Resp3Shape* pickZrandmember(const Args& args) {
  return args.size() == 4 && is(args[3], "withscores") ? &kScorePairs : nullptr;
}

const Resp3Shape* pickHrandfield(const Args& args) {
  return args.size() == 4 && is(args[3], "withvalues") ? &kValuePairs : nullptr;
}

// ZPOPMIN key -> [member, score]; ZPOPMIN key count -> [[member, score]...].
const Resp3Shape* pickPop(const Args& args) { return args.size() >= 3 ? &kScorePairs : &kScored; }

const Resp3Shape* pickRank(const Args& args) {
  return args.size() == 4 && is(args[3], "withscore") ? &kScored : nullptr;
}

// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member: INCR answers the new score.
const Resp3Shape* pickZadd(const Args& args) {
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (is(args[i], "incr")) return &kDouble;
    if (!is(args[i], "nx") && !is(args[i], "xx") && !is(args[i], "gt") && !is(args[i], "lt") &&
        !is(args[i], "ch")) {
      break;
    }
  }
  return nullptr;
}

const Resp3Shape* pickSpop(const Args& args) { return args.size() == 3 ? &kSet : nullptr; }

const Resp3Shape* pickLcs(const Args& args) { return hasOption(args, 3, "idx") ? &kMap : nullptr; }

// GEORADIUS & co: the options start at `from`; the arguments of the options
// that take some are skipped (a member may be called "withcoord").
const Resp3Shape* geoResults(const Args& args, std::size_t from) {
  bool coord = false;
  std::size_t before_coord = 0;  // WITHDIST and WITHHASH
  for (std::size_t i = from; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (is(a, "withcoord")) {
      coord = true;
    } else if (is(a, "withdist") || is(a, "withhash")) {
      ++before_coord;
    } else if (is(a, "frommember") || is(a, "count") || is(a, "store") || is(a, "storedist")) {
      i += 1;
    } else if (is(a, "fromlonlat") || is(a, "byradius")) {
      i += 2;
    } else if (is(a, "bybox")) {
      i += 3;
    }
  }
  return coord ? &kGeoResults[std::min<std::size_t>(before_coord, 2)] : nullptr;
}

// COMMAND alone lists every command like COMMAND INFO.
const Resp3Shape* pickCommand(const Args& args) {
  if (args.size() == 1 || is(args[1], "info")) return &kCommandInfos;
  if (is(args[1], "docs")) return &kCommandDocs;
  if (is(args[1], "getkeysandflags")) return &kKeysAndFlags;
  return nullptr;
}

}  // namespace

const Resp3Shape* resp3ShapeOf(commands::ReplyShape shape, const Args& args) {
  using S = commands::ReplyShape;
  switch (shape) {
    case S::Keep:
      return nullptr;
    case S::AclUser:
      return &kAclUser;
    case S::AclLog:
      return &kAclLog;
    case S::Mpop:
      return &kMpop;
    case S::BlockingPop:
      return &kBlockingPop;
    case S::Verbatim:
      return &kVerbatim;
    case S::TrackingInfo:
      return &kTrackingInfo;
    case S::Command:
      return pickCommand(args);
    case S::Map:
      return &kMap;
    case S::Maps:
      return &kMaps;
    case S::Set:
      return &kSet;
    case S::Double:
      return &kDouble;
    case S::Doubles:
      return &kDoubles;
    case S::FunctionList:
      return &kFunctionList;
    case S::FunctionStats:
      return &kFunctionStats;
    case S::GeoPos:
      return &kGeoPos;
    case S::GeoRadius:
      return geoResults(args, 6);
    case S::GeoRadiusByMember:
      return geoResults(args, 5);
    case S::GeoSearch:
      return geoResults(args, 2);
    case S::HRandField:
      return pickHrandfield(args);
    case S::LatencyHistogram:
      return &kLatencyHistogram;
    case S::Lcs:
      return pickLcs(args);
    case S::MemoryStats:
      return &kMemoryStats;
    case S::SPop:
      return pickSpop(args);
    case S::StreamInfo:
      return &kStreamInfo;
    case S::StreamsMap:
      return &kStreamsMap;
    case S::ZAdd:
      return pickZadd(args);
    case S::ZSetOperation:
      return pickSetOperation(args);
    case S::ZPop:
      return pickPop(args);
    case S::ZRandMember:
      return pickZrandmember(args);
    case S::ZRange:
      return pickRange(args);
    case S::ZRank:
      return pickRank(args);
  }
  return nullptr;
}

const Resp3Shape* resp3ShapeOf(const Args& args) {
  const commands::Resolved r = commands::Registry::get().resolve(args);
  return r.command ? resp3ShapeOf(r.command->handling.reply, args) : nullptr;
}

}  // namespace larder::resp
