// INFO, and the LARDER subcommands that concern the process rather than the
// write queues: RELOAD, STATS, LOGLEVEL.
#include <spdlog/spdlog.h>

#include "larder/commands/registry.hpp"
#include "larder/common/logging.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

constexpr std::string_view kOverlaid[] = {"server", "clients", "stats"};

std::string capitalized(std::string_view name) {
  std::string out(name);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// One line, for an error reply.
std::string oneLine(std::string text) {
  for (auto& c : text) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return text;
}

std::string encodeReload(const ReloadResult& r) {
  if (!r.ok)
    return "-ERR Larder: reload rejected, the running config is kept: " + oneLine(r.error) + "\r\n";
  std::string out;
  resp::appendArrayHeader(out, 1 + r.applied.size() + r.not_applied.size());
  resp::appendBulk(out, "reloaded " + r.source + ": " + std::to_string(r.applied.size()) +
                            " change(s) applied, " + std::to_string(r.not_applied.size()) +
                            " not applied");
  for (const auto& line : r.applied) resp::appendBulk(out, "applied: " + line);
  for (const auto& line : r.not_applied) resp::appendBulk(out, "not applied: " + line);
  return out;
}

}  // namespace

Session::Flow Session::info(const resp::Request& req) {
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
    if (!commands::equalsIgnoreCase(args[i], "larder")) backend_args.push_back(args[i]);
  }
  if (backend_args.size() == 1 && args.size() > 1) {  // only "larder" was asked for
    std::string out;
    resp::appendBulk(
        out, composeInfo("", {InfoSection{"Larder", worker_.server().infoFields("larder")}}));
    reply(out);
    return Flow::Continue;
  }
  resp::Request forwarded;
  forwarded.args = backend_args;
  forwarded.inline_form = true;  // re-encoded from args
  if (pinned_ && releasable() && !queue_.empty()) return Flow::Barrier;
  // Registered before sending: an unreachable backend answers synchronously.
  info_merges_[queue_.nextTag()] = std::move(request);
  return forwardCurrent(forwarded);
}

std::string Session::mergeInfo(const InfoRequest& request, std::string_view backend_frame) const {
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
    overlays.push_back(InfoSection{capitalized(name), worker_.server().infoFields(name)});
  }
  if (request.larder || !backend_error.empty()) {
    InfoSection larder{"Larder", worker_.server().infoFields("larder")};
    if (!backend_error.empty()) larder.fields.emplace_back("backend_info_error", backend_error);
    overlays.push_back(std::move(larder));
  }
  std::string out;
  resp::appendBulk(out, composeInfo(backend, overlays));
  return out;
}

Session::Flow Session::larderAdmin(const resp::Request& req, const std::string& sub) {
  const auto& args = req.args;
  auto arity = [&](std::size_t min, std::size_t max) {
    if (args.size() >= min && args.size() <= max) return true;
    replyError("ERR wrong number of arguments for 'larder|" + sub + "' command");
    return false;
  };
  std::string out;
  if (sub == "RELOAD") {
    if (!arity(2, 2)) return Flow::Continue;
    auto done = replyLater(queue_.reserve());
    worker_.server().reload([done](const ReloadResult& r) { done(encodeReload(r)); });
  } else if (sub == "STATS") {
    if (!arity(2, 2)) return Flow::Continue;
    const InfoFields fields = worker_.server().infoFields("larder");
    resp::appendArrayHeader(out, fields.size() * 2);
    for (const auto& [k, v] : fields) {
      resp::appendBulk(out, k);
      resp::appendBulk(out, v);
    }
    reply(out);
  } else if (sub == "LOGLEVEL") {
    if (!arity(2, 3)) return Flow::Continue;
    if (args.size() == 2) {
      resp::appendBulk(out, logLevelName());
      reply(out);
      return Flow::Continue;
    }
    try {
      setLogLevel(std::string(args[2]));
    } catch (const std::invalid_argument&) {
      replyError("ERR Larder: unknown log level '" + oneLine(std::string(args[2])) +
                 "' (trace, debug, info, warn, error, critical, off)");
      return Flow::Continue;
    }
    spdlog::info("log level set to {} by client {}", std::string(args[2]), peer_);
    reply("+OK\r\n");
  }
  return Flow::Continue;
}

}  // namespace larder::server
