#include "services/grpc_services.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/message.h"
#include "services/log.h"

namespace hawiya::services {

// gRPC 1.51's transport buffers a whole message (up to the 4 GiB its
// length prefix allows) before its size limit is checked, so the limit
// bounds nothing while a message arrives; it decides what is handed on.
// Over it, the core drops the call before any handler or interceptor runs,
// unaudited. Handed on, a body reaches these handlers, which check its
// length before parsing and release its bytes at once, or gRPC's own
// health and reflection services, which parse whatever they get. Twice the
// request limit lets every moderately oversized request reach a handler and
// be refused on the record, while the services this server does not own
// are never handed more than twice what a request may be, and the core
// inflates no compressed message larger than that.
int TransportMaxReceiveBytes(uint32_t max_request_bytes) {
  return static_cast<int>(
      std::min<int64_t>(int64_t{2} * max_request_bytes, INT_MAX));
}

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

// Parses a request body into `request`, or says why it is refused: over
// `max_bytes` (RESOURCE_EXHAUSTED), or not an encoding of the request type
// (INVALID_ARGUMENT), which covers bad wire format, invalid UTF-8 in a
// string field and nesting past protobuf's recursion limit. `field` names
// the body in the message: "request", "requests[3]".
grpc::Status ParseRequest(const grpc::ByteBuffer& body, uint32_t max_bytes,
                          absl::string_view field,
                          google::protobuf::Message* request) {
  if (body.Length() > max_bytes) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(field, ": ", body.Length(), " bytes, over the limit of ",
                     max_bytes, " (max_receive_message_bytes)"));
  }
  // Shares the body's slices; the reader wants a mutable buffer.
  grpc::ByteBuffer slices(body);
  bool parsed = false;
  if (slices.Valid()) {  // not valid: the call carried no message at all
    grpc::ProtoBufferReader reader(&slices);
    google::protobuf::io::CodedInputStream decoder(&reader);
    parsed = request->ParseFromCodedStream(&decoder) &&
             decoder.ConsumedEntireMessage() && reader.status().ok();
  }
  if (!parsed) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(field, ": cannot be parsed as ",
                                     request->GetDescriptor()->full_name()));
  }
  return grpc::Status::OK;
}

// Frees a received body's bytes. gRPC hands the body out as const, but the
// buffer it holds until the call ends is its own, not const; releasing it
// once parsed, as gRPC's own deserialisation does, keeps a call waiting in
// a queue holding only its parsed request.
void Release(const grpc::ByteBuffer* body) {
  const_cast<grpc::ByteBuffer*>(body)->Clear();
}

grpc::Status SerializeResponse(const google::protobuf::Message& response,
                               grpc::ByteBuffer* out, const char* method) {
  bool own_buffer = false;
  grpc::Status status =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(
          response, out, &own_buffer);
  if (!status.ok()) {
    Log("ERROR", method, ": response not serialised: ", status.error_message());
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        "response: cannot be serialised");
  }
  return status;
}

// Parses the request body, runs call(registry, request, actor) on `queue`,
// and finishes the RPC with its result, the response serialised into
// `response`. A body that is refused (ParseRequest) or a call that cannot
// run is recorded through Refused. The body and response buffers live until
// Finish: gRPC owns them.
template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* Dispatch(const char* method,
                                   grpc::CallbackServerContext* ctx,
                                   ServiceContext* context, WorkQueue* queue,
                                   const grpc::ByteBuffer* body,
                                   grpc::ByteBuffer* response, Call call) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  enroll::Registry* registry = context->registry.load();
  enroll::AuditActor actor = ActorOf(*context, *ctx, method);
  auto refuse = [=](grpc::Status status) {
    queue->Schedule([=] { reactor->Finish(Refused(*context, actor, status)); });
    return reactor;
  };
  if (registry == nullptr) {
    Release(body);
    return refuse(Loading());
  }
  auto request = std::make_shared<Request>();
  grpc::Status parsed =
      ParseRequest(*body, context->max_request_bytes, "request", request.get());
  Release(body);
  if (!parsed.ok()) return refuse(std::move(parsed));
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
    if (!status.ok()) {
      reactor->Finish(ToGrpc(status, method));
      return;
    }
    Response typed_response;
    Assign(std::move(result), &typed_response);
    reactor->Finish(SerializeResponse(typed_response, response, method));
  });
  return reactor;
}

// Parses and buffers the streamed requests, then commits them as one batch
// on the store queue. Each item is read as bytes and parsed here: gRPC would
// report an item it cannot decode as the end of the stream, and the items
// before it would be committed as if they were the whole batch. A refused
// item refuses the call, and nothing is committed. Reading stops one past
// the registry's maximum, so a client cannot make the server buffer without
// bound.
class BatchEnrollReactor final
    : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  BatchEnrollReactor(grpc::CallbackServerContext* ctx, ServiceContext* context,
                     grpc::ByteBuffer* response)
      : ctx_(ctx),
        context_(context),
        queue_(context->store_queue),
        registry_(context->registry.load()),
        response_(response),
        actor_(ActorOf(*context, *ctx, kMethod)) {
    if (registry_ == nullptr) {
      RefuseOnQueue(Loading());
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
    bytes_ += next_.Length();
    if (bytes_ > kMaxBatchBytes) {
      RefuseOnQueue(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("requests: more than ", kMaxBatchBytes >> 20,
                       " MiB in one call; send fewer requests per call")));
      return;
    }
    v1::EnrollRequest request;
    grpc::Status parsed = ParseRequest(
        next_, context_->max_request_bytes,
        absl::StrCat("requests[", requests_.size(), "]"), &request);
    next_.Clear();
    if (!parsed.ok()) {
      RefuseOnQueue(std::move(parsed));
      return;
    }
    requests_.push_back(std::move(request));
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
      if (!result.ok()) {
        Finish(ToGrpc(result.status(), kMethod));
        return;
      }
      Finish(SerializeResponse(*result, response_, kMethod));
    });
  }

  grpc::CallbackServerContext* const ctx_;
  ServiceContext* const context_;
  WorkQueue* const queue_;
  enroll::Registry* const registry_;
  grpc::ByteBuffer* const response_;
  const enroll::AuditActor actor_;
  // What one call may make the server hold before it commits: about 10000
  // requests of a few templates each.
  static constexpr size_t kMaxBatchBytes = size_t{256} << 20;

  grpc::ByteBuffer next_;
  std::vector<v1::EnrollRequest> requests_;
  size_t bytes_ = 0;
};

}  // namespace

const std::vector<std::string>& ApiServiceNames() {
  static const auto* names = new std::vector<std::string>{
      v1::EnrollmentService::service_full_name(),
      v1::MatchService::service_full_name(),
      v1::AdminService::service_full_name(),
      v1::AuditService::service_full_name(),
      v1::PartnerService::service_full_name(),
      v1::AdjudicationService::service_full_name()};
  return *names;
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::Enroll(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::EnrollRequest, v1::EnrollResponse>(
      "/hawiya.v1.EnrollmentService/Enroll", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.Enroll(req, a);
      });
}

grpc::ServerReadReactor<grpc::ByteBuffer>* EnrollmentServiceImpl::BatchEnroll(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) {
  return new BatchEnrollReactor(ctx, context_, response);
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::GetPerson(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::GetPersonRequest, v1::Person>(
      "/hawiya.v1.EnrollmentService/GetPerson", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.GetPerson(req, a);
      });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::UpdatePerson(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::UpdatePersonRequest, v1::Person>(
      "/hawiya.v1.EnrollmentService/UpdatePerson", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.UpdatePerson(req, a);
      });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::ReplaceTemplates(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::ReplaceTemplatesRequest, v1::Person>(
      "/hawiya.v1.EnrollmentService/ReplaceTemplates", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.ReplaceTemplates(req, a);
      });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::DeletePerson(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::DeletePersonRequest, google::protobuf::Empty>(
      "/hawiya.v1.EnrollmentService/DeletePerson", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.DeletePerson(req, a);
      });
}

grpc::ServerUnaryReactor* EnrollmentServiceImpl::ListPersons(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::ListPersonsRequest, v1::ListPersonsResponse>(
      "/hawiya.v1.EnrollmentService/ListPersons", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.ListPersons(req, a);
      });
}

grpc::ServerUnaryReactor* MatchServiceImpl::Verify(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::VerifyRequest, v1::VerifyResponse>(
      "/hawiya.v1.MatchService/Verify", ctx, context_, context_->match_queue,
      request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.Verify(req, a);
      });
}

grpc::ServerUnaryReactor* MatchServiceImpl::Identify(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::IdentifyRequest, v1::IdentifyResponse>(
      "/hawiya.v1.MatchService/Identify", ctx, context_, context_->match_queue,
      request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.Identify(req, a);
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetStats(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::GetStatsRequest, v1::GetStatsResponse>(
      "/hawiya.v1.AdminService/GetStats", ctx, context_, context_->store_queue,
      request, response, [](enroll::Registry& r, const auto&, const auto& a) {
        return r.GetStats(a);
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateKey(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  // Long (minutes for millions of templates): it stops between batches once
  // the call is cancelled (which Shutdown does after its grace period) or
  // its deadline passes.
  return Dispatch<v1::RotateKeyRequest, v1::RotateKeyResponse>(
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
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::ListAuditRecordsRequest, v1::ListAuditRecordsResponse>(
      "/hawiya.v1.AuditService/ListAuditRecords", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.ListAuditRecords(req, a);
      });
}

grpc::ServerUnaryReactor* AuditServiceImpl::VerifyAuditLog(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::VerifyAuditLogRequest, v1::VerifyAuditLogResponse>(
      "/hawiya.v1.AuditService/VerifyAuditLog", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.VerifyAuditLog(req, a);
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetSigningKeys(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::GetSigningKeysRequest, v1::GetSigningKeysResponse>(
      "/hawiya.v1.AdminService/GetSigningKeys", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto&, const auto& a) {
        return r.GetSigningKeys(a);
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateSigningKey(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::RotateSigningKeyRequest, v1::RotateSigningKeyResponse>(
      "/hawiya.v1.AdminService/RotateSigningKey", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto&, const auto& a) {
        return r.RotateSigningKey(a);
      });
}

// A biometric comparison makes these matches: on the match queue.
grpc::ServerUnaryReactor* PartnerServiceImpl::VerifyCivilStatus(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::VerifyCivilStatusRequest, v1::VerifyCivilStatusResponse>(
      "/hawiya.v1.PartnerService/VerifyCivilStatus", ctx, context_,
      context_->match_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.VerifyCivilStatus(req, a);
      });
}

grpc::ServerUnaryReactor* PartnerServiceImpl::VerifyCivilStatusBatch(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::VerifyCivilStatusBatchRequest,
                  v1::VerifyCivilStatusBatchResponse>(
      "/hawiya.v1.PartnerService/VerifyCivilStatusBatch", ctx, context_,
      context_->match_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.VerifyCivilStatusBatch(req, a);
      });
}

// Adjudication reads and writes records: on the store queue.
grpc::ServerUnaryReactor* AdjudicationServiceImpl::ListCases(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::ListCasesRequest, v1::ListCasesResponse>(
      "/hawiya.v1.AdjudicationService/ListCases", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.ListCases(req, a);
      });
}

grpc::ServerUnaryReactor* AdjudicationServiceImpl::GetCase(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::GetCaseRequest, v1::Case>(
      "/hawiya.v1.AdjudicationService/GetCase", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.GetCase(req, a);
      });
}

grpc::ServerUnaryReactor* AdjudicationServiceImpl::DecideCase(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Dispatch<v1::DecideCaseRequest, v1::Case>(
      "/hawiya.v1.AdjudicationService/DecideCase", ctx, context_,
      context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req, const auto& a) {
        return r.DecideCase(req, a);
      });
}

}  // namespace hawiya::services
