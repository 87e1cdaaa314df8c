// INFO (Larder's fields laid over Redis'), LARDER (operator commands) and
// FLUSHALL/FLUSHDB (pending writes first when keyspaces exist).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "larder/common/errors.hpp"
#include "larder/common/logging.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

namespace {

using commands::equalsLower;

constexpr std::string_view kOverlaid[] = {"server", "clients", "stats"};

std::string capitalized(std::string_view name) {
  std::string out(name);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// One line, for an error reply.
std::string oneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\r', ' ');
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

}  // namespace

Pipeline::Flow Pipeline::info(const resp::Request& req) {
  const auto& args = req.args;
  const std::vector<std::string> asked =
      infoSectionsAsked(std::vector<std::string_view>(args.begin() + 1, args.end()));
  auto has = [&asked](std::string_view s) {
    return std::find(asked.begin(), asked.end(), s) != asked.end();
  };
  const bool everything = has("default") || has("all") || has("everything");
  InfoRequest request;
  request.larder = everything || has("larder");
  for (std::string_view s : kOverlaid) {
    if (everything || has(s)) request.overlays.emplace_back(s);
  }
  std::vector<std::string_view> backend_args{args[0]};
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (!equalsLower(args[i], "larder")) backend_args.push_back(args[i]);
  }
  if (backend_args.size() == 1 && args.size() > 1) {  // only "larder" was asked for
    std::string out;
    resp::appendBulk(out,
                     composeInfo("", {InfoSection{"Larder", ports_.admin.infoFields("larder")}}));
    reply(out);
    return Flow::Continue;
  }
  resp::Request forwarded;
  forwarded.args = backend_args;
  forwarded.inline_form = true;  // re-encoded from args
  const std::optional<Conn> conn = currentConnection();
  if (!conn) return Flow::Barrier;
  if (ports_.backend.saturated(*conn)) return Flow::Saturated;
  // Registered before sending: an unreachable backend answers synchronously.
  info_merges_[queue_.nextTag()] = std::move(request);
  return forward(forwarded, *conn);
}

std::string Pipeline::mergeInfo(const InfoRequest& request, std::string_view backend_frame) const {
  std::string_view backend;
  std::string backend_error;
  if (!backend_frame.empty() && backend_frame.front() == '$') {
    const auto header_end = backend_frame.find("\r\n");
    backend = backend_frame.substr(header_end + 2, backend_frame.size() - header_end - 4);
  } else if (!backend_frame.empty() && backend_frame.front() == '-') {
    backend_error = backend_frame.substr(1, backend_frame.size() - 3);
  }
  std::vector<InfoSection> overlays;
  for (const auto& name : request.overlays) {
    overlays.push_back(InfoSection{capitalized(name), ports_.admin.infoFields(name)});
  }
  if (request.larder || !backend_error.empty()) {
    InfoSection larder{"Larder", ports_.admin.infoFields("larder")};
    if (!backend_error.empty()) larder.fields.emplace_back("backend_info_error", backend_error);
    overlays.push_back(std::move(larder));
  }
  std::string out;
  resp::appendBulk(out, composeInfo(backend, overlays));
  return out;
}

Pipeline::Flow Pipeline::larder(const resp::Request& req) {
  const auto& args = req.args;
  const std::string_view sub = args[1];
  auto arity = [&](std::size_t min, std::size_t max) {
    if (args.size() >= min && args.size() <= max) return true;
    std::string name = "larder|" + std::string(sub);
    replyError(errors::arity(name));
    return false;
  };
  std::string out;
  if (equalsLower(sub, "reload")) {
    if (!arity(2, 2)) return Flow::Continue;
    ports_.admin.reload(queue_.reserve());
  } else if (equalsLower(sub, "stats")) {
    if (!arity(2, 2)) return Flow::Continue;
    const InfoFields fields = ports_.admin.infoFields("larder");
    resp::appendArrayHeader(out, fields.size() * 2);
    for (const auto& [k, v] : fields) {
      resp::appendBulk(out, k);
      resp::appendBulk(out, v);
    }
    reply(out);
  } else if (equalsLower(sub, "loglevel")) {
    if (!arity(2, 3)) return Flow::Continue;
    if (args.size() == 2) {
      resp::appendBulk(out, logLevelName());
      reply(out);
      return Flow::Continue;
    }
    try {
      setLogLevel(std::string(args[2]));
    } catch (const std::invalid_argument&) {
      replyError(errors::unknownLogLevel(oneLine(std::string(args[2]))));
      return Flow::Continue;
    }
    spdlog::info("log level set to {} by client {}", std::string(args[2]), id_);
    reply("+OK\r\n");
  } else {
    // The write queues (FLUSH, PENDING, DEADLETTERS) and INVALIDATE: writes
    // this client sent before are in Redis before the command looks.
    if (!queue_.empty()) return Flow::Barrier;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    const std::uint64_t tag = queue_.nextTag();
    const bool invalidate = equalsLower(sub, "invalidate");
    queue_.reserve();
    const bool taken = invalidate ? ports_.admin.invalidateCommand(std::move(rest), tag)
                                  : ports_.admin.writesCommand(std::move(rest), tag);
    if (!taken) complete(tag, resp::errorReply(errors::kNoKeyspaces));
  }
  return Flow::Continue;
}

Pipeline::Flow Pipeline::flushAll(const resp::Request& req) {
  const bool all = equalsLower(req.args[0], "flushall");
  const long long home = ports_.admin.config().redis.db;
  if (ports_.admin.keyspaces().empty() || (!all && state_.db != home)) {
    return forwardCurrent(req);  // no mapped keys there: Redis' own FLUSHDB
  }
  // On a cluster without write-behind there is nothing to flush first:
  // Redis' own FLUSHALL on every primary. With it, each node's FLUSHALL
  // would drop its slots' write queues: flushed first, then every primary
  // wipes its keys but Larder's, as on one Redis.
  if (ports_.admin.config().redis.clusterMode()) {
    const auto& config = ports_.admin.config();
    const bool behind =
        std::any_of(config.keyspaces.begin(), config.keyspaces.end(),
                    [](const auto& ks) { return ks.write == config::WriteMode::Behind; });
    if (!behind) return forwardCurrent(req);
  }
  if (req.args.size() > 2 || (req.args.size() == 2 && !equalsLower(req.args[1], "async") &&
                              !equalsLower(req.args[1], "sync"))) {
    replyError(errors::kSyntax);
    return Flow::Continue;
  }
  if (!queue_.empty()) return Flow::Barrier;
  const std::uint64_t tag = queue_.reserve();
  if (!ports_.admin.flushAll(all, tag)) complete(tag, resp::errorReply(errors::kNoPostgres));
  return Flow::Continue;
}

}  // namespace larder::proxy
