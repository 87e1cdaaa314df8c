// Scripts that keep Redis busy behind a shared connection (see script_watch.hpp).
#include "larder/server/script_watch.hpp"

#include <algorithm>

#include "larder/common/errors.hpp"

namespace larder::server {

std::string_view BusyScripts::text() const {
  if (function.load(std::memory_order_relaxed) > 0) return errors::kBusyFunction;
  if (eval.load(std::memory_order_relaxed) > 0) return errors::kBusyScript;
  return {};
}

ScriptWatch::ScriptWatch(boost::asio::any_io_executor executor, BusyScripts& busy, Probe probe)
    : busy_(busy), probe_(std::move(probe)), timer_(executor) {}

ScriptWatch::~ScriptWatch() {
  *alive_ = false;
  setKind(Kind::None);
}

void ScriptWatch::stop() {
  *alive_ = false;
  timer_.cancel();
  in_flight_.clear();
  setKind(Kind::None);
}

void ScriptWatch::started(const void* connection, std::uint64_t session, std::uint64_t tag) {
  in_flight_.push_back({connection, session, tag, std::chrono::steady_clock::now()});
  arm();
}

void ScriptWatch::finished(std::uint64_t session, std::uint64_t tag) {
  std::erase_if(in_flight_,
                [&](const InFlight& s) { return s.session == session && s.tag == tag; });
  if (in_flight_.empty()) setKind(Kind::None);
}

std::string_view ScriptWatch::stuck(const void* connection, std::uint64_t session) const {
  if (kind_ == Kind::None) return {};
  bool on_connection = false;
  for (const InFlight& s : in_flight_) {
    if (s.connection != connection) continue;
    // This session's own script is ahead of it on the connection: Redis
    // reads its next request after the script, as it would directly.
    if (s.session == session) return {};
    on_connection = true;
  }
  return on_connection ? std::string_view(text_) : std::string_view();
}

void ScriptWatch::arm() {
  if (armed_ || !*alive_) return;
  armed_ = true;
  timer_.expires_after(kProbeAfter);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive) return;
    armed_ = false;
    tick();
  });
}

void ScriptWatch::tick() {
  if (in_flight_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  const bool old_enough = std::any_of(in_flight_.begin(), in_flight_.end(), [&](const InFlight& s) {
    return now - s.since >= kProbeAfter;
  });
  if (old_enough && !probing_ && kind_ == Kind::None) {
    // Redis answers this PING at once when a script has run past its
    // threshold (-BUSY), else when the script ends: one probe at a time.
    probing_ = true;
    probe_([this, alive = alive_](std::string reply) {
      if (!*alive) return;
      probing_ = false;
      onProbe(reply);
    });
  }
  arm();
}

void ScriptWatch::onProbe(const std::string& reply) {
  constexpr std::string_view kBusy = "-BUSY ";
  if (in_flight_.empty() || reply.compare(0, kBusy.size(), kBusy) != 0) {
    setKind(Kind::None);
    return;
  }
  text_ = reply.substr(1, reply.size() >= 3 ? reply.size() - 3 : 0);  // no '-', no CRLF
  setKind(text_.find("FUNCTION KILL") != std::string::npos ? Kind::Function : Kind::Eval);
}

void ScriptWatch::setKind(Kind kind) {
  if (kind == kind_) return;
  auto counter = [this](Kind k) -> std::atomic<int>* {
    if (k == Kind::Eval) return &busy_.eval;
    if (k == Kind::Function) return &busy_.function;
    return nullptr;
  };
  if (auto* old = counter(kind_)) old->fetch_sub(1, std::memory_order_relaxed);
  if (auto* now = counter(kind)) now->fetch_add(1, std::memory_order_relaxed);
  kind_ = kind;
}

}  // namespace larder::server
