#include "services/grpc_services.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "services/log.h"

namespace hawiya::services {
namespace {

// absl and gRPC share the canonical code numbering. Server faults are
// logged; their messages name server-made ids only (services/log.h), while
// client errors, whose messages may quote the request, are not.
grpc::Status ToGrpc(const absl::Status& status, const char* method) {
  if (status.ok()) return grpc::Status::OK;
  if (status.code() == absl::StatusCode::kInternal ||
      status.code() == absl::StatusCode::kUnknown ||
      status.code() == absl::StatusCode::kDataLoss) {
    Log("ERROR", method, ": ", status.ToString());
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status ToAbsl(absl::Status status) { return status; }
template <typename T>
absl::Status ToAbsl(const absl::StatusOr<T>& result) {
  return result.status();
}

template <typename T, typename Response>
void Assign(absl::StatusOr<T>&& result, Response* response) {
  if (result.ok()) *response = *std::move(result);
}
template <typename Response>
void Assign(absl::Status&&, Response*) {}

grpc::Status Loading() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "galleries are loading; retry shortly");
}

// Whether the call's client gave up or its deadline passed: work for it
// should stop at the next point where stopping leaves nothing half-written.
// The deadline is checked as well as IsCancelled, which may only notice it
// once gRPC's deadline timer has fired.
bool Expired(const grpc::CallbackServerContext& ctx) {
  return ctx.IsCancelled() || ctx.deadline() < std::chrono::system_clock::now();
}

// Why a queued call should not run: its client gave up or its deadline
// passed while it waited.
std::optional<grpc::Status> Abandoned(const grpc::CallbackServerContext& ctx) {
  if (ctx.IsCancelled()) return grpc::Status::CANCELLED;
  if (ctx.deadline() < std::chrono::system_clock::now()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "deadline passed before the call ran");
  }
  return std::nullopt;
}

// Runs call(registry, request) on `queue` and finishes the RPC with its
// result. The request and response live until Finish: gRPC owns them.
template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* Dispatch(const char* method,
                                   grpc::CallbackServerContext* ctx,
                                   ServiceContext* context, WorkQueue* queue,
                                   const Request* request, Response* response,
                                   Call call) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  enroll::Registry* registry = context->registry.load();
  if (registry == nullptr) {
    reactor->Finish(Loading());
    return reactor;
  }
  queue->Schedule([=] {
    if (context->before_run) {
      context->before_run(method, [ctx] { return Expired(*ctx); });
    }
    if (std::optional<grpc::Status> abandoned = Abandoned(*ctx)) {
      reactor->Finish(*abandoned);
      return;
    }
    auto result = call(*registry, *request);
    const absl::Status status = ToAbsl(result);
    Assign(std::move(result), response);
    reactor->Finish(ToGrpc(status, method));
  });
  return reactor;
}

// Buffers the streamed requests, then commits them as one batch on the store
// queue. Reading stops one past the registry's maximum, so a client cannot
// make the server buffer without bound.
class BatchEnrollReactor final
    : public grpc::ServerReadReactor<v1::EnrollRequest> {
 public:
  BatchEnrollReactor(grpc::CallbackServerContext* ctx, ServiceContext* context,
                     v1::BatchEnrollResponse* response)
      : ctx_(ctx),
        context_(context),
        queue_(context->store_queue),
        registry_(context->registry.load()),
        response_(response) {
    if (registry_ == nullptr) {
      Finish(Loading());
      return;
    }
    StartRead(&next_);
  }

  void OnReadDone(bool ok) override {
    // !ok: the client closed its side, or the call is cancelled (which the
    // queued task notices).
    if (!ok) {
      Commit();
      return;
    }
    if (requests_.size() == enroll::Registry::kMaxBatchEnrollRequests) {
      Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("requests: at most ",
                                    enroll::Registry::kMaxBatchEnrollRequests,
                                    " per call")));
      return;
    }
    bytes_ += next_.ByteSizeLong();
    if (bytes_ > kMaxBatchBytes) {
      Finish(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("requests: more than ", kMaxBatchBytes >> 20,
                       " MiB in one call; send fewer requests per call")));
      return;
    }
    requests_.push_back(std::move(next_));
    next_.Clear();
    StartRead(&next_);
  }

  void OnDone() override { delete this; }

 private:
  void Commit() {
    queue_->Schedule([this] {
      if (context_->before_run) {
        context_->before_run("BatchEnroll", [this] { return Expired(*ctx_); });
      }
      if (std::optional<grpc::Status> abandoned = Abandoned(*ctx_)) {
        Finish(*abandoned);
        return;
      }
      // Checked again once the batch is validated and the write lock held.
      absl::StatusOr<v1::BatchEnrollResponse> result =
          registry_->BatchEnroll(requests_, [this] { return Expired(*ctx_); });
      if (result.ok()) *response_ = *std::move(result);
      Finish(ToGrpc(result.status(), "BatchEnroll"));
    });
  }

  grpc::CallbackServerContext* const ctx_;
  ServiceContext* const context_;
  WorkQueue* const queue_;
  enroll::Registry* const registry_;
  v1::BatchEnrollResponse* const response_;
  // What one call may make the server hold before it commits: about 10000
  // requests of a few templates each.
  static constexpr size_t kMaxBatchBytes = size_t{256} << 20;

  v1::EnrollRequest next_;
  std::vector<v1::EnrollRequest> requests_;
  size_t bytes_ = 0;
};

}  // namespace

grpc::ServerUnaryReactor* EnrollmentServiceImpl::Enroll(
    grpc::CallbackServerContext* ctx, const v1::EnrollRequest* request,
    v1::EnrollResponse* response) {
  return Dispatch(
      "Enroll", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.Enroll(req); });
}

grpc::ServerReadReactor<v1::EnrollRequest>* EnrollmentServiceImpl::BatchEnroll(
    grpc::CallbackServerContext* ctx, v1::BatchEnrollResponse* response) {
  return new BatchEnrollReactor(ctx, context_, response);
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::GetPerson(
    grpc::CallbackServerContext* ctx, const v1::GetPersonRequest* request,
    v1::Person* response) {
  return Dispatch(
      "GetPerson", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.GetPerson(req); });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::UpdatePerson(
    grpc::CallbackServerContext* ctx, const v1::UpdatePersonRequest* request,
    v1::Person* response) {
  return Dispatch(
      "UpdatePerson", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.UpdatePerson(req); });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::ReplaceTemplates(
    grpc::CallbackServerContext* ctx,
    const v1::ReplaceTemplatesRequest* request, v1::Person* response) {
  return Dispatch("ReplaceTemplates", ctx, context_, context_->store_queue,
                  request, response, [](enroll::Registry& r, const auto& req) {
                    return r.ReplaceTemplates(req);
                  });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::DeletePerson(
    grpc::CallbackServerContext* ctx, const v1::DeletePersonRequest* request,
    google::protobuf::Empty* response) {
  return Dispatch(
      "DeletePerson", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.DeletePerson(req); });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::ListPersons(
    grpc::CallbackServerContext* ctx, const v1::ListPersonsRequest* request,
    v1::ListPersonsResponse* response) {
  return Dispatch(
      "ListPersons", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.ListPersons(req); });
}

grpc::ServerUnaryReactor* MatchServiceImpl::Verify(
    grpc::CallbackServerContext* ctx, const v1::VerifyRequest* request,
    v1::VerifyResponse* response) {
  return Dispatch(
      "Verify", ctx, context_, context_->match_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.Verify(req); });
}

grpc::ServerUnaryReactor* MatchServiceImpl::Identify(
    grpc::CallbackServerContext* ctx, const v1::IdentifyRequest* request,
    v1::IdentifyResponse* response) {
  return Dispatch(
      "Identify", ctx, context_, context_->match_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.Identify(req); });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetStats(
    grpc::CallbackServerContext* ctx, const v1::GetStatsRequest* request,
    v1::GetStatsResponse* response) {
  return Dispatch(
      "GetStats", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto&) { return r.GetStats(); });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateKey(
    grpc::CallbackServerContext* ctx, const v1::RotateKeyRequest* request,
    v1::RotateKeyResponse* response) {
  // Long (minutes for millions of templates): it stops between batches once
  // the call is cancelled (which Shutdown does after its grace period) or
  // its deadline passes.
  return Dispatch(
      "RotateKey", ctx, context_, context_->store_queue, request, response,
      [ctx](enroll::Registry& r, const v1::RotateKeyRequest& req) {
        absl::StatusOr<v1::RotateKeyResponse> rotated =
            r.RotateKey(req, [ctx] { return Expired(*ctx); });
        if (rotated.ok() && !req.new_key_file().empty()) {
          // The config still names the old key file: say so where the
          // operator will look when the next start fails.
          Log("WARNING", "key-encryption key rotated: the data keys are now ",
              "wrapped by ", req.new_key_file(), " (key check ",
              rotated->key_check(),
              "); set key_file in the config to it before the next start");
        }
        return rotated;
      });
}

}  // namespace hawiya::services
