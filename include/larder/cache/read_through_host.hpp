#pragma once
// What a mapped read or write needs from the thread it runs on: the worker's
// event loop, config, near cache and counters, and the PostgreSQL side (the
// Loader and the WriteService, null while it is not running). server::Worker
// implements it; tests can give their own.
#include <boost/asio/io_context.hpp>

#include "larder/cache/read_stats.hpp"
#include "larder/config/config.hpp"

namespace larder::cache {

class Loader;
class NearCache;
class WriteService;

class ReadThroughHost {
 public:
  virtual const config::Config& config() const = 0;
  virtual boost::asio::io_context& context() = 0;
  virtual NearCache* nearCache() = 0;  // null: no near cache
  virtual ReadPathStats& readStats() = 0;
  virtual Loader* loader() = 0;        // null: no PostgreSQL side
  virtual WriteService* writes() = 0;  // null: no PostgreSQL side

 protected:
  ~ReadThroughHost() = default;
};

}  // namespace larder::cache
