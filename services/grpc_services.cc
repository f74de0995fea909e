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

// Who makes the call, for its audit record. Calls reach the handlers only
// once the access check let them through, so CallerOf fails only if the
// configuration is inconsistent; the record then names no principal.
enroll::AuditActor ActorOf(const ServiceContext& context,
                           const grpc::CallbackServerContext& ctx,
                           const char* method) {
  enroll::AuditActor actor;
  actor.method = method;
  absl::StatusOr<Caller> caller = context.access->CallerOf(ctx);
  if (caller.ok()) {
    actor.principal = caller->principal;
    actor.role = context.access->RoleFor(*caller, method);
  }
  return actor;
}

// Records a call refused before it reached the registry, and returns its
// status. Blocks for the commit: run it on a work queue.
grpc::Status Refused(const ServiceContext& context,
                     const enroll::AuditActor& actor, grpc::Status status) {
  if (context.audit_log != nullptr) {
    enroll::AuditEvent event = enroll::AuditEvent::For(actor);
    event.outcome = static_cast<int>(status.error_code());
    // The call fails anyway; a record that cannot be written is logged.
    if (absl::Status s = context.audit_log->Append(std::move(event)); !s.ok()) {
      Log("ERROR", actor.method, ": ", s.ToString());
    }
  }
  return status;
}

// Runs call(registry, request, actor) on `queue` and finishes the RPC with
// its result. The request and response live until Finish: gRPC owns them.
template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* Dispatch(const char* method,
                                   grpc::CallbackServerContext* ctx,
                                   ServiceContext* context, WorkQueue* queue,
                                   const Request* request, Response* response,
                                   Call call) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  enroll::Registry* registry = context->registry.load();
  enroll::AuditActor actor = ActorOf(*context, *ctx, method);
  if (registry == nullptr) {
    queue->Schedule(
        [=] { reactor->Finish(Refused(*context, actor, Loading())); });
    return reactor;
  }
  queue->Schedule([=] {
    if (context->before_run) {
      context->before_run(method, [ctx] { return Expired(*ctx); });
    }
    if (std::optional<grpc::Status> abandoned = Abandoned(*ctx)) {
      reactor->Finish(Refused(*context, actor, *abandoned));
      return;
    }
    auto result = call(*registry, *request, actor);
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
        response_(response),
        actor_(ActorOf(*context, *ctx, kMethod)) {
    if (registry_ == nullptr) {
      queue_->Schedule(
          [this] { Finish(Refused(*context_, actor_, Loading())); });
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
      RefuseOnQueue(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("requests: at most ",
                                    enroll::Registry::kMaxBatchEnrollRequests,
                                    " per call")));
      return;
    }
    bytes_ += next_.ByteSizeLong();
    if (bytes_ > kMaxBatchBytes) {
      RefuseOnQueue(grpc::Status(
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
  static constexpr const char* kMethod =
      "/hawiya.v1.EnrollmentService/BatchEnroll";

  // Finishes with `status` once its audit record is written.
  void RefuseOnQueue(grpc::Status status) {
    queue_->Schedule(
        [this, status] { Finish(Refused(*context_, actor_, status)); });
  }

  void Commit() {
    queue_->Schedule([this] {
      if (context_->before_run) {
        context_->before_run(kMethod, [this] { return Expired(*ctx_); });
      }
      if (std::optional<grpc::Status> abandoned = Abandoned(*ctx_)) {
        Finish(Refused(*context_, actor_, *abandoned));
        return;
      }
      // Checked again once the batch is validated and the write lock held.
      absl::StatusOr<v1::BatchEnrollResponse> result = registry_->BatchEnroll(
          requests_, [this] { return Expired(*ctx_); }, actor_);
      if (result.ok()) *response_ = *std::move(result);
      Finish(ToGrpc(result.status(), kMethod));
    });
  }

  grpc::CallbackServerContext* const ctx_;
  ServiceContext* const context_;
  WorkQueue* const queue_;
  enroll::Registry* const registry_;
  v1::BatchEnrollResponse* const response_;
  const enroll::AuditActor actor_;
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
  return Dispatch("/hawiya.v1.EnrollmentService/Enroll", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.Enroll(req, a);
                  });
}

grpc::ServerReadReactor<v1::EnrollRequest>* EnrollmentServiceImpl::BatchEnroll(
    grpc::CallbackServerContext* ctx, v1::BatchEnrollResponse* response) {
  return new BatchEnrollReactor(ctx, context_, response);
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::GetPerson(
    grpc::CallbackServerContext* ctx, const v1::GetPersonRequest* request,
    v1::Person* response) {
  return Dispatch("/hawiya.v1.EnrollmentService/GetPerson", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.GetPerson(req, a);
                  });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::UpdatePerson(
    grpc::CallbackServerContext* ctx, const v1::UpdatePersonRequest* request,
    v1::Person* response) {
  return Dispatch("/hawiya.v1.EnrollmentService/UpdatePerson", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.UpdatePerson(req, a);
                  });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::ReplaceTemplates(
    grpc::CallbackServerContext* ctx,
    const v1::ReplaceTemplatesRequest* request, v1::Person* response) {
  return Dispatch("/hawiya.v1.EnrollmentService/ReplaceTemplates", ctx,
                  context_, context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.ReplaceTemplates(req, a);
                  });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::DeletePerson(
    grpc::CallbackServerContext* ctx, const v1::DeletePersonRequest* request,
    google::protobuf::Empty* response) {
  return Dispatch("/hawiya.v1.EnrollmentService/DeletePerson", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.DeletePerson(req, a);
                  });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::ListPersons(
    grpc::CallbackServerContext* ctx, const v1::ListPersonsRequest* request,
    v1::ListPersonsResponse* response) {
  return Dispatch("/hawiya.v1.EnrollmentService/ListPersons", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.ListPersons(req, a);
                  });
}

grpc::ServerUnaryReactor* MatchServiceImpl::Verify(
    grpc::CallbackServerContext* ctx, const v1::VerifyRequest* request,
    v1::VerifyResponse* response) {
  return Dispatch("/hawiya.v1.MatchService/Verify", ctx, context_,
                  context_->match_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.Verify(req, a);
                  });
}

grpc::ServerUnaryReactor* MatchServiceImpl::Identify(
    grpc::CallbackServerContext* ctx, const v1::IdentifyRequest* request,
    v1::IdentifyResponse* response) {
  return Dispatch("/hawiya.v1.MatchService/Identify", ctx, context_,
                  context_->match_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.Identify(req, a);
                  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetStats(
    grpc::CallbackServerContext* ctx, const v1::GetStatsRequest* request,
    v1::GetStatsResponse* response) {
  return Dispatch("/hawiya.v1.AdminService/GetStats", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto&, const auto& a) {
                    return r.GetStats(a);
                  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateKey(
    grpc::CallbackServerContext* ctx, const v1::RotateKeyRequest* request,
    v1::RotateKeyResponse* response) {
  // Long (minutes for millions of templates): it stops between batches once
  // the call is cancelled (which Shutdown does after its grace period) or
  // its deadline passes.
  return Dispatch(
      "/hawiya.v1.AdminService/RotateKey", ctx, context_, context_->store_queue,
      request, response,
      [ctx](enroll::Registry& r, const v1::RotateKeyRequest& req,
            const enroll::AuditActor& a) {
        absl::StatusOr<v1::RotateKeyResponse> rotated = r.RotateKey(
            req, [ctx] { return Expired(*ctx); }, a);
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

grpc::ServerUnaryReactor* AuditServiceImpl::ListAuditRecords(
    grpc::CallbackServerContext* ctx,
    const v1::ListAuditRecordsRequest* request,
    v1::ListAuditRecordsResponse* response) {
  return Dispatch("/hawiya.v1.AuditService/ListAuditRecords", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.ListAuditRecords(req, a);
                  });
}

grpc::ServerUnaryReactor* AuditServiceImpl::VerifyAuditLog(
    grpc::CallbackServerContext* ctx, const v1::VerifyAuditLogRequest* request,
    v1::VerifyAuditLogResponse* response) {
  return Dispatch("/hawiya.v1.AuditService/VerifyAuditLog", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.VerifyAuditLog(req, a);
                  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetSigningKeys(
    grpc::CallbackServerContext* ctx, const v1::GetSigningKeysRequest* request,
    v1::GetSigningKeysResponse* response) {
  return Dispatch("/hawiya.v1.AdminService/GetSigningKeys", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto&, const auto& a) {
                    return r.GetSigningKeys(a);
                  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateSigningKey(
    grpc::CallbackServerContext* ctx,
    const v1::RotateSigningKeyRequest* request,
    v1::RotateSigningKeyResponse* response) {
  return Dispatch("/hawiya.v1.AdminService/RotateSigningKey", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto&, const auto& a) {
                    return r.RotateSigningKey(a);
                  });
}

// A biometric comparison makes these matches: on the match queue.
grpc::ServerUnaryReactor* PartnerServiceImpl::VerifyCivilStatus(
    grpc::CallbackServerContext* ctx,
    const v1::VerifyCivilStatusRequest* request,
    v1::VerifyCivilStatusResponse* response) {
  return Dispatch("/hawiya.v1.PartnerService/VerifyCivilStatus", ctx, context_,
                  context_->match_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.VerifyCivilStatus(req, a);
                  });
}

grpc::ServerUnaryReactor* PartnerServiceImpl::VerifyCivilStatusBatch(
    grpc::CallbackServerContext* ctx,
    const v1::VerifyCivilStatusBatchRequest* request,
    v1::VerifyCivilStatusBatchResponse* response) {
  return Dispatch("/hawiya.v1.PartnerService/VerifyCivilStatusBatch", ctx,
                  context_, context_->match_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.VerifyCivilStatusBatch(req, a);
                  });
}

// Adjudication reads and writes records: on the store queue.
grpc::ServerUnaryReactor* AdjudicationServiceImpl::ListCases(
    grpc::CallbackServerContext* ctx, const v1::ListCasesRequest* request,
    v1::ListCasesResponse* response) {
  return Dispatch("/hawiya.v1.AdjudicationService/ListCases", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.ListCases(req, a);
                  });
}

grpc::ServerUnaryReactor* AdjudicationServiceImpl::GetCase(
    grpc::CallbackServerContext* ctx, const v1::GetCaseRequest* request,
    v1::Case* response) {
  return Dispatch("/hawiya.v1.AdjudicationService/GetCase", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.GetCase(req, a);
                  });
}

grpc::ServerUnaryReactor* AdjudicationServiceImpl::DecideCase(
    grpc::CallbackServerContext* ctx, const v1::DecideCaseRequest* request,
    v1::Case* response) {
  return Dispatch("/hawiya.v1.AdjudicationService/DecideCase", ctx, context_,
                  context_->store_queue, request, response,
                  [](enroll::Registry& r, const auto& req, const auto& a) {
                    return r.DecideCase(req, a);
                  });
}

}  // namespace hawiya::services
