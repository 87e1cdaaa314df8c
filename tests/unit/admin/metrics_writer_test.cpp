#include "larder/admin/metrics_writer.hpp"

#include <catch2/catch.hpp>
#include <chrono>

using larder::Histogram;
using larder::admin::MetricsWriter;

TEST_CASE("MetricsWriter writes a counter with labels", "[admin][metrics]") {
  MetricsWriter w;
  w.counter("larder_commands_total", "Commands handled.", {{"worker", "1"}, {"kind", "read"}}, 7);
  w.counter("larder_commands_total", "Commands handled.", {{"worker", "0"}, {"kind", "read"}}, 3);
  CHECK(w.text() ==
        "# HELP larder_commands_total Commands handled.\n"
        "# TYPE larder_commands_total counter\n"
        "larder_commands_total{kind=\"read\",worker=\"1\"} 7\n"
        "larder_commands_total{kind=\"read\",worker=\"0\"} 3\n");
}

TEST_CASE("MetricsWriter writes a gauge without labels", "[admin][metrics]") {
  MetricsWriter w;
  w.gauge("larder_clients", "Connected clients.", {}, 42);
  CHECK(w.text() ==
        "# HELP larder_clients Connected clients.\n"
        "# TYPE larder_clients gauge\n"
        "larder_clients 42\n");
}

TEST_CASE("MetricsWriter orders families by name", "[admin][metrics]") {
  MetricsWriter w;
  w.gauge("zeta", "Z.", {}, 1);
  w.counter("alpha_total", "A.", {}, 2.5);
  CHECK(w.text() ==
        "# HELP alpha_total A.\n"
        "# TYPE alpha_total counter\n"
        "alpha_total 2.5\n"
        "# HELP zeta Z.\n"
        "# TYPE zeta gauge\n"
        "zeta 1\n");
}

TEST_CASE("MetricsWriter makes histogram buckets cumulative", "[admin][metrics]") {
  using std::chrono::microseconds;
  using std::chrono::milliseconds;
  Histogram h;
  h.observe(microseconds(100));   // le 0.0005
  h.observe(microseconds(400));   // le 0.0005
  h.observe(milliseconds(20));    // le 0.025
  h.observe(milliseconds(3000));  // +Inf only
  MetricsWriter w;
  w.histogram("larder_latency_seconds", "Latency.", {{"op", "get"}}, h);
  CHECK(w.text() ==
        "# HELP larder_latency_seconds Latency.\n"
        "# TYPE larder_latency_seconds histogram\n"
        "larder_latency_seconds_count{op=\"get\"} 4\n"
        "larder_latency_seconds_sum{op=\"get\"} 3.0205\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.0005\"} 2\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.001\"} 2\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.0025\"} 2\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.005\"} 2\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.01\"} 2\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.025\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.05\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.1\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.25\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"0.5\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"2.5\"} 3\n"
        "larder_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n");
}

TEST_CASE("MetricsWriter writes an empty histogram with every bucket", "[admin][metrics]") {
  Histogram h;
  MetricsWriter w;
  w.histogram("h_seconds", "H.", {}, h);
  const std::string text = w.text();
  CHECK(text.find("h_seconds_count 0\n") != std::string::npos);
  CHECK(text.find("h_seconds_sum 0\n") != std::string::npos);
  CHECK(text.find("h_seconds_bucket{le=\"0.0005\"} 0\n") != std::string::npos);
  CHECK(text.find("h_seconds_bucket{le=\"+Inf\"} 0\n") != std::string::npos);
  // One +Inf bucket only (the serializer adds its own when the last bound is finite).
  CHECK(text.find("+Inf") == text.rfind("+Inf"));
}

TEST_CASE("MetricsWriter escapes label values", "[admin][metrics]") {
  MetricsWriter w;
  w.gauge("g", "Help with \\ and\nnewline.", {{"key", "a\"b\\c\nd"}}, 1);
  CHECK(w.text() ==
        "# HELP g Help with \\\\ and\\nnewline.\n"
        "# TYPE g gauge\n"
        "g{key=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST_CASE("MetricsWriter drops a sample whose type differs from its family", "[admin][metrics]") {
  MetricsWriter w;
  w.counter("x_total", "X.", {}, 1);
  w.gauge("x_total", "X.", {{"a", "b"}}, 2);
  CHECK(w.text() ==
        "# HELP x_total X.\n"
        "# TYPE x_total counter\n"
        "x_total 1\n");
}

TEST_CASE("MetricsWriter with nothing written is empty", "[admin][metrics]") {
  CHECK(MetricsWriter().text().empty());
}
