#pragma once
// Builds a Prometheus text exposition at scrape time from Larder's own
// counters (per-worker, single-writer, summed when read), using
// prometheus-cpp's core types and TextSerializer for the format itself.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "larder/common/histogram.hpp"

namespace larder::admin {

using Labels = std::map<std::string, std::string>;

class MetricsWriter {
 public:
  MetricsWriter();
  ~MetricsWriter();
  // Samples of one family must share name, help and type; call in any order.
  void counter(const std::string& name, const std::string& help, const Labels& labels,
               double value);
  void gauge(const std::string& name, const std::string& help, const Labels& labels, double value);
  void histogram(const std::string& name, const std::string& help, const Labels& labels,
                 const Histogram& histogram);
  std::string text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace larder::admin
