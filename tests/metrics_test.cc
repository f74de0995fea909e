// services/metrics.h: what a Prometheus scraper reads.
#include "services/metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hawiya::services {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTextTest, WritesHelpTypeAndEscapedLabels) {
  MetricsText out;
  out.Family("x_total", "counter", "What x counts.");
  out.Sample("x_total", {{"a", "q\"b\\c\nd"}, {"b", "plain"}}, 3);
  out.Sample("x_total", {}, 0.25);
  EXPECT_EQ(out.text(),
            "# HELP x_total What x counts.\n"
            "# TYPE x_total counter\n"
            "x_total{a=\"q\\\"b\\\\c\\nd\",b=\"plain\"} 3\n"
            "x_total 0.25\n");
}

TEST(CallMetricsTest, CountsByMethodAndCodeWithCumulativeBuckets) {
  CallMetrics metrics({"/s.S/Known"});
  metrics.RecordCall("/s.S/Known", grpc::StatusCode::OK,
                     absl::Microseconds(100));
  metrics.RecordCall("/s.S/Known", grpc::StatusCode::OK, absl::Milliseconds(3));
  metrics.RecordCall("/s.S/Known", grpc::StatusCode::NOT_FOUND,
                     absl::Seconds(100));
  MetricsText out;
  metrics.Write(&out);
  const std::string& text = out.text();
  EXPECT_THAT(text, HasSubstr("hawiya_rpc_calls_total{method=\"/s.S/Known\","
                              "code=\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("hawiya_rpc_calls_total{method=\"/s.S/Known\","
                              "code=\"NOT_FOUND\"} 1\n"));
  const std::string bucket =
      "hawiya_rpc_duration_seconds_bucket{method=\"/s.S/Known\",le=";
  EXPECT_THAT(text, HasSubstr(bucket + "\"0.0005\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(bucket + "\"0.005\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(bucket + "\"30\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(bucket + "\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("hawiya_rpc_duration_seconds_count{method=\"/"
                              "s.S/Known\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("hawiya_rpc_duration_seconds_sum{method=\"/"
                              "s.S/Known\"} 100.0031\n"));
}

TEST(CallMetricsTest, UnknownMethodsShareOneLabel) {
  CallMetrics metrics({"/s.S/Known"});
  metrics.RecordCall("/attacker/one", grpc::StatusCode::UNIMPLEMENTED,
                     absl::Milliseconds(1));
  metrics.RecordCall("/attacker/two", grpc::StatusCode::UNIMPLEMENTED,
                     absl::Milliseconds(1));
  MetricsText out;
  metrics.Write(&out);
  EXPECT_THAT(out.text(), Not(HasSubstr("attacker")));
  EXPECT_THAT(out.text(),
              HasSubstr("hawiya_rpc_calls_total{method=\"other\",code=\""
                        "UNIMPLEMENTED\"} 2\n"));
}

}  // namespace
}  // namespace hawiya::services
