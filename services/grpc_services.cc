#include "services/grpc_services.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/log.h"

namespace hawiya::services {
namespace {

// absl and gRPC share the canonical code numbering.
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
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "galleries are loading; retry shortly"));
    return reactor;
  }
  queue->Schedule([=] {
    // A call whose client gave up or whose deadline passed while queued is
    // not worth running.
    if (ctx->IsCancelled()) {
      reactor->Finish(grpc::Status::CANCELLED);
      return;
    }
    if (ctx->deadline() < std::chrono::system_clock::now()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                   "deadline passed before the call ran"));
      return;
    }
    auto result = call(*registry, *request);
    const absl::Status status = ToAbsl(result);
    Assign(std::move(result), response);
    reactor->Finish(ToGrpc(status, method));
  });
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* EnrollmentServiceImpl::Enroll(
    grpc::CallbackServerContext* ctx, const v1::EnrollRequest* request,
    v1::EnrollResponse* response) {
  return Dispatch(
      "Enroll", ctx, context_, context_->store_queue, request, response,
      [](enroll::Registry& r, const auto& req) { return r.Enroll(req); });
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

}  // namespace hawiya::services
