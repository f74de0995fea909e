// Prometheus metrics of one hawiya-server, in the text exposition format
// (version 0.0.4), served over plain HTTP on --metrics_listen:
//   CallMetrics      every finished gRPC call by method and status code, and
//                    its latency, seen by a server interceptor (so every
//                    service, health and reflection included, is counted
//                    the same way);
//   MetricsText      how a family and its samples are written;
//   MetricsEndpoint  GET /metrics on its own port and threads.
// Metrics carry no personal data: method names, codes, modalities, counts.
#ifndef HAWIYA_SERVICES_METRICS_H_
#define HAWIYA_SERVICES_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace httplib {
class Server;
}

namespace hawiya::services {

// Writes metric families: each family's HELP and TYPE lines once, before
// its samples. Label values are escaped as the format requires.
class MetricsText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // type: "counter", "gauge", "histogram" or "summary".
  void Family(absl::string_view name, absl::string_view type,
              absl::string_view help);
  // REQUIRES: Family(name or its histogram/summary base) came before.
  void Sample(absl::string_view name, const Labels& labels, double value);

  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// gRPC status code names as Prometheus label values ("OK", "NOT_FOUND").
absl::string_view StatusCodeName(grpc::StatusCode code);

class CallMetrics {
 public:
  // Latency histogram bucket bounds, seconds: from a cached Verify to a
  // national-scale 1:N search or a batch import.
  static constexpr std::array<double, 15> kLatencyBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,   1,      2.5,   5,    10,    30};

  // Calls to methods outside `methods` (a client may name any path) are
  // counted as method "other", so a client cannot make the label set grow.
  explicit CallMetrics(std::set<std::string> methods);

  void RecordCall(absl::string_view method, grpc::StatusCode code,
                  absl::Duration latency);

  // hawiya_rpc_calls_total and hawiya_rpc_duration_seconds.
  void Write(MetricsText* out) const;

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators. The
  // factory refers to this object, which must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  InterceptorFactory();

 private:
  struct MethodStats {
    std::map<grpc::StatusCode, int64_t> calls;
    std::array<int64_t, kLatencyBuckets.size()> buckets{};  // not cumulative
    int64_t count = 0;
    double sum_seconds = 0;
  };

  const std::set<std::string> methods_;
  mutable absl::Mutex mu_;
  std::map<std::string, MethodStats> stats_ ABSL_GUARDED_BY(mu_);
};

// Serves GET /metrics (and nothing else: 404) with what `render` returns,
// on host:port, plain HTTP, on threads of its own.
class MetricsEndpoint {
 public:
  using Render = std::function<std::string()>;

  // Binds `listen` (host:port; port 0 picks a free one) and starts serving.
  // UNAVAILABLE naming the address if it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& listen, Render render);

  ~MetricsEndpoint();  // stops serving

  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;

  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_METRICS_H_
