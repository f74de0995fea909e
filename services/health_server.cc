#include "services/health_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/log.h"

namespace hawiya::services {
namespace {

using ::grpc::experimental::InterceptionHookPoints;

// Drops the builder plugins every ServerBuilder gets from process-wide
// registrations (server reflection, once the main server has registered
// it), so that the health port serves the health service alone.
class NoPluginsOption final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    plugins->clear();
  }
};

// Appends one audit record per call as its status is about to be sent.
class AuditInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuditInterceptor(grpc::experimental::ServerRpcInfo* info,
                   enroll::AuditLog* audit_log)
      : info_(info), audit_log_(audit_log) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      enroll::AuditEvent event;
      event.principal = std::string(kHealthProbePrincipal);
      event.method = Method();
      event.outcome = static_cast<int>(status.error_code());
      absl::Status written = audit_log_->Append(std::move(event));
      if (!written.ok()) {
        Log("ERROR", "audit: ", written.ToString());
        methods->ModifySendStatus(grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            absl::StrCat("audit: the call's audit record could not be "
                         "written, so the call is refused: ",
                         written.message())));
      }
    }
    methods->Proceed();
  }

 private:
  // A registered method's name, or for any other the path the generic
  // service received.
  std::string Method() const {
    if (info_->method() != nullptr) return info_->method();
    auto* generic = static_cast<grpc::GenericCallbackServerContext*>(
        info_->server_context());
    return generic->method();
  }

  grpc::experimental::ServerRpcInfo* const info_;
  enroll::AuditLog* const audit_log_;
};

class AuditInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit AuditInterceptorFactory(enroll::AuditLog* audit_log)
      : audit_log_(audit_log) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new AuditInterceptor(info, audit_log_);
  }

 private:
  enroll::AuditLog* const audit_log_;
};

class HealthServerImpl final : public HealthServer {
 public:
  HealthServerImpl(std::vector<std::string> services,
                   std::shared_ptr<enroll::AuditLog> audit_log)
      : services_(std::move(services)), audit_log_(std::move(audit_log)) {}

  ~HealthServerImpl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Bind(const std::string& listen) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.SetOption(std::make_unique<NoPluginsOption>());
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port_);
    // Every method but the health service's lands here: UNIMPLEMENTED, and
    // audited like the rest. It is also the server's one callback service,
    // without which gRPC builds no server (no frequently polled queue).
    builder.RegisterCallbackGenericService(&unimplemented_);
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(
        std::make_unique<AuditInterceptorFactory>(audit_log_.get()));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("health_listen: cannot bind ", listen));
    }
    grpc::HealthCheckServiceInterface* health =
        server_->GetHealthCheckService();
    health->SetServingStatus("", false);
    for (const std::string& name : services_) {
      health->SetServingStatus(name, false);
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }

  void SetServing(bool serving) override {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    server_->GetHealthCheckService()->SetServingStatus(serving);
  }

  void Shutdown(absl::Duration grace) override {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_ || server_ == nullptr) return;
      shut_down_ = true;
    }
    // Also sets NOT_SERVING, which ends the Watch streams.
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoNanoseconds(grace));
    server_->Wait();
  }

 private:
  const std::vector<std::string> services_;
  const std::shared_ptr<enroll::AuditLog> audit_log_;
  int port_ = 0;
  grpc::CallbackGenericService unimplemented_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(
    const std::string& listen, const std::vector<std::string>& services,
    std::shared_ptr<enroll::AuditLog> audit_log) {
  auto server =
      std::make_unique<HealthServerImpl>(services, std::move(audit_log));
  if (absl::Status s = server->Bind(listen); !s.ok()) return s;
  return server;
}

}  // namespace hawiya::services
