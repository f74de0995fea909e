#include "services/metrics.h"

#include <httplib.h>

#include <cmath>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace hawiya::services {
namespace {

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.9g", value);
}

class CallMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallMetricsInterceptor(CallMetrics* metrics,
                         grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), method_(info->method()), start_(absl::Now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->RecordCall(method_, methods->GetSendStatus().error_code(),
                           absl::Now() - start_);
    }
    methods->Proceed();
  }

 private:
  CallMetrics* const metrics_;
  const std::string method_;
  const absl::Time start_;
};

class CallMetricsFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallMetricsFactory(CallMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallMetricsInterceptor(metrics_, info);
  }

 private:
  CallMetrics* const metrics_;
};

}  // namespace

void MetricsText::Family(absl::string_view name, absl::string_view type,
                         absl::string_view help) {
  absl::StrAppend(&text_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                  type, "\n");
}

void MetricsText::Sample(absl::string_view name, const Labels& labels,
                         double value) {
  absl::StrAppend(&text_, name);
  if (!labels.empty()) {
    text_.push_back('{');
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&text_, i == 0 ? "" : ",", labels[i].first, "=\"",
                      EscapeLabelValue(labels[i].second), "\"");
    }
    text_.push_back('}');
  }
  absl::StrAppend(&text_, " ", FormatValue(value), "\n");
}

absl::string_view StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

CallMetrics::CallMetrics(std::set<std::string> methods)
    : methods_(std::move(methods)) {}

void CallMetrics::RecordCall(absl::string_view method, grpc::StatusCode code,
                             absl::Duration latency) {
  const double seconds = absl::ToDoubleSeconds(latency);
  size_t bucket = 0;
  while (bucket < kLatencyBuckets.size() && seconds > kLatencyBuckets[bucket]) {
    ++bucket;
  }
  const std::string key =
      methods_.count(std::string(method)) ? std::string(method) : "other";
  absl::MutexLock lock(&mu_);
  MethodStats& stats = stats_[key];
  ++stats.calls[code];
  if (bucket < kLatencyBuckets.size()) ++stats.buckets[bucket];
  ++stats.count;
  stats.sum_seconds += seconds;
}

void CallMetrics::Write(MetricsText* out) const {
  absl::MutexLock lock(&mu_);
  out->Family("hawiya_rpc_calls_total", "counter",
              "gRPC calls finished, by method and status code.");
  for (const auto& [method, stats] : stats_) {
    for (const auto& [code, calls] : stats.calls) {
      out->Sample(
          "hawiya_rpc_calls_total",
          {{"method", method}, {"code", std::string(StatusCodeName(code))}},
          static_cast<double>(calls));
    }
  }
  out->Family("hawiya_rpc_duration_seconds", "histogram",
              "Time from a call's start to its status, by method.");
  for (const auto& [method, stats] : stats_) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
      cumulative += stats.buckets[i];
      out->Sample("hawiya_rpc_duration_seconds_bucket",
                  {{"method", method}, {"le", FormatValue(kLatencyBuckets[i])}},
                  static_cast<double>(cumulative));
    }
    out->Sample("hawiya_rpc_duration_seconds_bucket",
                {{"method", method}, {"le", "+Inf"}},
                static_cast<double>(stats.count));
    out->Sample("hawiya_rpc_duration_seconds_sum", {{"method", method}},
                stats.sum_seconds);
    out->Sample("hawiya_rpc_duration_seconds_count", {{"method", method}},
                static_cast<double>(stats.count));
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
CallMetrics::InterceptorFactory() {
  return std::make_unique<CallMetricsFactory>(this);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& listen, Render render) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics_listen: \"", listen.substr(0, 64), "\" is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  endpoint->http_ = std::make_unique<httplib::Server>();
  endpoint->http_->Get(
      "/metrics", [render = std::move(render)](const httplib::Request&,
                                               httplib::Response& response) {
        response.set_content(render(), "text/plain; version=0.0.4");
      });
  endpoint->port_ =
      port == 0 ? endpoint->http_->bind_to_any_port(host)
                : (endpoint->http_->bind_to_port(host, port) ? port : -1);
  if (endpoint->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics_listen: cannot bind ", listen));
  }
  httplib::Server* http = endpoint->http_.get();
  endpoint->thread_ = std::thread([http] { http->listen_after_bind(); });
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace hawiya::services
