#pragma once
// Finds the boundaries of RESP replies coming back from Redis, without building
// reply objects: the proxy forwards reply bytes untouched, so all it needs to
// know is where one reply ends and the next begins.
//
// Why not hiredis' redisReader: hiredis 0.14 (Debian 12) keeps a fixed 9-level
// task stack and fails on `COMMAND DOCS` from Redis 7 ("nested multi bulk
// replies with depth > 7"), which redis-cli sends on start-up. This scanner
// keeps its nesting on a vector, bounded by maxDepth.
//
// Like RequestParser, it is resumable: the caller passes the bytes starting at
// the first byte of the reply in progress; progress is kept as offsets.
// Understands RESP2 and the RESP3 types, so a RESP3 backend can be scanned too.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace larder::resp {

enum class ScanStatus { Complete, NeedMore, Error };

class ReplyScanner {
 public:
  explicit ReplyScanner(std::size_t max_depth = 256) : max_depth_(max_depth) {}

  // On Complete, the first frameSize() bytes of `input` are one whole reply.
  ScanStatus scan(std::string_view input);
  std::size_t frameSize() const { return frame_size_; }
  const std::string& errorMessage() const { return error_; }
  void reset();

 private:
  ScanStatus fail(std::string message);

  std::size_t max_depth_;
  std::size_t pos_ = 0;
  std::vector<long long> remaining_;  // elements still to read, per open aggregate
  std::size_t frame_size_ = 0;
  std::string error_;
};

// The element frames of one whole array reply (views into `frame`), for a
// script that answers one element per slot; false when `frame` is not one
// well-formed array.
bool splitArray(std::string_view frame, std::vector<std::string_view>& elements);

}  // namespace larder::resp
