#pragma once
// Scripts that keep Redis busy behind a shared connection.
//
// While a script runs past Redis' busy-reply threshold (lua-time-limit),
// Redis answers every other connection's commands with -BUSY; but Redis does
// not read the script's own connection until the script ends, so the other
// clients whose requests Larder queued on that shared connection would wait
// instead. The worker therefore keeps the script calls (EVAL, FCALL...) in
// flight on its shared connections:
//
//   sent on shared connection C   -> started(C, session, tag)
//   its reply (or failure)        -> finished(session, tag)
//   one still in flight after kProbeAfter -> PING on the out-of-band
//     connection (one at a time): -BUSY... -> Redis is busy: stuck(C, s) gives
//     that text to every other session's request for C, and busy() makes
//     Larder's local answers (PING, ECHO) say it too, on every worker;
//     anything else -> not (yet) busy, asked again while scripts are in flight
//   the last script in flight answered -> busy no more
//
// Scripts that finish within kProbeAfter cost a vector push and pop. The
// out-of-band connection also carries SCRIPT KILL and FUNCTION KILL, so they
// reach Redis while the script runs.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace larder::server {

// Whether some worker knows Redis to be busy with a script; read by every
// session's local answers. One per process.
struct BusyScripts {
  std::atomic<int> eval{0};      // workers that saw "SCRIPT KILL" in Redis' -BUSY
  std::atomic<int> function{0};  // workers that saw "FUNCTION KILL"
  // Redis' -BUSY text, or "" when no worker knows Redis to be busy.
  std::string_view text() const;
};

class ScriptWatch {
 public:
  static constexpr std::chrono::milliseconds kProbeAfter{20};
  // Sends PING on the out-of-band connection; the reply frame goes to the callback.
  using Probe = std::function<void(std::function<void(std::string)>)>;

  ScriptWatch(boost::asio::any_io_executor executor, BusyScripts& busy, Probe probe);
  ~ScriptWatch();

  void started(const void* connection, std::uint64_t session, std::uint64_t tag);
  void finished(std::uint64_t session, std::uint64_t tag);
  // Redis' -BUSY text for a request of `session` on `connection` that would
  // wait behind a busy script; "" when it may be sent.
  std::string_view stuck(const void* connection, std::uint64_t session) const;
  bool busy() const { return kind_ != Kind::None; }
  void stop();

 private:
  enum class Kind : std::uint8_t { None, Eval, Function };
  struct InFlight {
    const void* connection;
    std::uint64_t session;
    std::uint64_t tag;
    std::chrono::steady_clock::time_point since;
  };
  void arm();
  void tick();
  void onProbe(const std::string& reply);
  void setKind(Kind kind);

  BusyScripts& busy_;
  Probe probe_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for probe callbacks
  std::vector<InFlight> in_flight_;
  std::string text_;  // Redis' own -BUSY text
  Kind kind_ = Kind::None;
  bool armed_ = false;
  bool probing_ = false;
};

}  // namespace larder::server
