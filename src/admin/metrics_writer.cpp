#include "larder/admin/metrics_writer.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <limits>

namespace larder::admin {

namespace {

std::vector<prometheus::ClientMetric::Label> toLabels(const Labels& labels) {
  std::vector<prometheus::ClientMetric::Label> out;
  out.reserve(labels.size());
  for (const auto& [name, value] : labels) out.push_back({name, value});
  return out;  // std::map order, so label order is stable across scrapes
}

// The exposition format wants `\\` and `\n` escaped in HELP text, and
// prometheus-cpp's TextSerializer writes HELP verbatim (it escapes label values only).
std::string escapeHelp(const std::string& help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

struct MetricsWriter::Impl {
  // Keyed by name: the map keeps families sorted, so text() is stable.
  std::map<std::string, prometheus::MetricFamily> families;

  // The family a sample goes to, or nullptr when the name was first used with
  // another type (a programming error; dropping beats serializing nonsense).
  prometheus::MetricFamily* family(const std::string& name, const std::string& help,
                                   prometheus::MetricType type) {
    auto [it, inserted] = families.try_emplace(name);
    auto& f = it->second;
    if (inserted) {
      f.name = name;
      f.help = escapeHelp(help);
      f.type = type;
    } else if (f.type != type) {
      spdlog::warn("metrics: sample for {} dropped: its family has another type", name);
      return nullptr;
    }
    return &f;
  }
};

MetricsWriter::MetricsWriter() : impl_(std::make_unique<Impl>()) {}
MetricsWriter::~MetricsWriter() = default;

void MetricsWriter::counter(const std::string& name, const std::string& help, const Labels& labels,
                            double value) {
  auto* f = impl_->family(name, help, prometheus::MetricType::Counter);
  if (!f) return;
  prometheus::ClientMetric m;
  m.label = toLabels(labels);
  m.counter.value = value;
  f->metric.push_back(std::move(m));
}

void MetricsWriter::gauge(const std::string& name, const std::string& help, const Labels& labels,
                          double value) {
  auto* f = impl_->family(name, help, prometheus::MetricType::Gauge);
  if (!f) return;
  prometheus::ClientMetric m;
  m.label = toLabels(labels);
  m.gauge.value = value;
  f->metric.push_back(std::move(m));
}

void MetricsWriter::histogram(const std::string& name, const std::string& help,
                              const Labels& labels, const Histogram& histogram) {
  auto* f = impl_->family(name, help, prometheus::MetricType::Histogram);
  if (!f) return;
  prometheus::ClientMetric m;
  m.label = toLabels(labels);
  // Larder counts per bucket; Prometheus wants running totals per upper bound.
  // The buckets are read one by one while a worker may still be observing, so
  // count is taken as the +Inf total, keeping _count equal to le="+Inf".
  std::uint64_t running = 0;
  auto& buckets = m.histogram.bucket;
  buckets.reserve(Histogram::kBounds.size() + 1);
  for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    running += histogram.bucket(i);
    buckets.push_back({running, Histogram::kBounds[i]});
  }
  running += histogram.bucket(Histogram::kBounds.size());
  buckets.push_back({running, std::numeric_limits<double>::infinity()});
  m.histogram.sample_count = running;
  m.histogram.sample_sum = histogram.sumSeconds();
  f->metric.push_back(std::move(m));
}

std::string MetricsWriter::text() const {
  std::vector<prometheus::MetricFamily> families;
  families.reserve(impl_->families.size());
  for (const auto& [name, family] : impl_->families) families.push_back(family);
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace larder::admin
