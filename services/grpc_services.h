// The v1 gRPC services: thin translators between the wire and the Registry.
// Handlers use gRPC's callback API and hand their work to a WorkQueue, so
// gRPC's own threads never block on a commit or a search.
//
// Deadlines and cancellation: a queued call whose client cancelled it or
// whose deadline passed while it waited is finished (CANCELLED,
// DEADLINE_EXCEEDED) without running. Long work checks again as it goes:
// BatchEnroll before its transaction starts (the transaction itself commits
// whole or not at all), RotateKey between its batches (each batch is one
// transaction). So a call that ends DEADLINE_EXCEEDED or CANCELLED never
// leaves a half-written request; it may have committed whole if it was
// already committing (retrying with the same request_id replays it).
//
// Audit: handlers pass the caller (principal, the role that allowed the
// call, the method) to the Registry, which records the call. Calls that
// never reach it (galleries loading, or abandoned in the queue) are
// recorded here, through ServiceContext::audit_log.
#ifndef HAWIYA_SERVICES_GRPC_SERVICES_H_
#define HAWIYA_SERVICES_GRPC_SERVICES_H_

#include <atomic>
#include <functional>

#include "enroll/audit_log.h"
#include "enroll/registry.h"
#include "hawiya/v1/adjudication.grpc.pb.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "hawiya/v1/partner.grpc.pb.h"
#include "services/auth.h"
#include "services/work_queue.h"

namespace hawiya::services {

// What the handlers share. The registry is null while galleries load; calls
// then fail with UNAVAILABLE.
struct ServiceContext {
  std::atomic<enroll::Registry*> registry{nullptr};
  WorkQueue* store_queue = nullptr;  // reads and writes of records
  WorkQueue* match_queue = nullptr;  // Verify, Identify
  // Who is calling: access->CallerOf(*ctx). Calls reach the handlers only
  // once it has let them through.
  const AccessPolicy* access = nullptr;
  // Test seam: runs on the work queue before a queued call is checked (for
  // cancellation and deadline) and run; gets the method name and whether
  // the call has expired (cancelled, or past its deadline) by now.
  std::function<void(const char*, const std::function<bool()>&)> before_run;
  // Where calls refused before reaching the registry are recorded; exists
  // (and the store behind it is attached) before the registry is ready.
  enroll::AuditLog* audit_log = nullptr;
};

class EnrollmentServiceImpl final
    : public v1::EnrollmentService::CallbackService {
 public:
  explicit EnrollmentServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* ctx,
                                   const v1::EnrollRequest* request,
                                   v1::EnrollResponse* response) override;
  grpc::ServerReadReactor<v1::EnrollRequest>* BatchEnroll(
      grpc::CallbackServerContext* ctx,
      v1::BatchEnrollResponse* response) override;
  grpc::ServerUnaryReactor* GetPerson(grpc::CallbackServerContext* ctx,
                                      const v1::GetPersonRequest* request,
                                      v1::Person* response) override;
  grpc::ServerUnaryReactor* UpdatePerson(grpc::CallbackServerContext* ctx,
                                         const v1::UpdatePersonRequest* request,
                                         v1::Person* response) override;
  grpc::ServerUnaryReactor* ReplaceTemplates(
      grpc::CallbackServerContext* ctx,
      const v1::ReplaceTemplatesRequest* request,
      v1::Person* response) override;
  grpc::ServerUnaryReactor* DeletePerson(
      grpc::CallbackServerContext* ctx, const v1::DeletePersonRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* ListPersons(
      grpc::CallbackServerContext* ctx, const v1::ListPersonsRequest* request,
      v1::ListPersonsResponse* response) override;

 private:
  ServiceContext* const context_;
};

class MatchServiceImpl final : public v1::MatchService::CallbackService {
 public:
  explicit MatchServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* ctx,
                                   const v1::VerifyRequest* request,
                                   v1::VerifyResponse* response) override;
  grpc::ServerUnaryReactor* Identify(grpc::CallbackServerContext* ctx,
                                     const v1::IdentifyRequest* request,
                                     v1::IdentifyResponse* response) override;

 private:
  ServiceContext* const context_;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  explicit AdminServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;
  grpc::ServerUnaryReactor* RotateKey(grpc::CallbackServerContext* ctx,
                                      const v1::RotateKeyRequest* request,
                                      v1::RotateKeyResponse* response) override;
  grpc::ServerUnaryReactor* GetSigningKeys(
      grpc::CallbackServerContext* ctx,
      const v1::GetSigningKeysRequest* request,
      v1::GetSigningKeysResponse* response) override;
  grpc::ServerUnaryReactor* RotateSigningKey(
      grpc::CallbackServerContext* ctx,
      const v1::RotateSigningKeyRequest* request,
      v1::RotateSigningKeyResponse* response) override;

 private:
  ServiceContext* const context_;
};

// AdjudicationService: cases raised by deduplication (registry).
class AdjudicationServiceImpl final
    : public v1::AdjudicationService::CallbackService {
 public:
  explicit AdjudicationServiceImpl(ServiceContext* context)
      : context_(context) {}

  grpc::ServerUnaryReactor* ListCases(grpc::CallbackServerContext* ctx,
                                      const v1::ListCasesRequest* request,
                                      v1::ListCasesResponse* response) override;
  grpc::ServerUnaryReactor* GetCase(grpc::CallbackServerContext* ctx,
                                    const v1::GetCaseRequest* request,
                                    v1::Case* response) override;
  grpc::ServerUnaryReactor* DecideCase(grpc::CallbackServerContext* ctx,
                                       const v1::DecideCaseRequest* request,
                                       v1::Case* response) override;

 private:
  ServiceContext* const context_;
};

// PartnerService: the registry applies the caller's data-sharing policy.
class PartnerServiceImpl final : public v1::PartnerService::CallbackService {
 public:
  explicit PartnerServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* VerifyCivilStatus(
      grpc::CallbackServerContext* ctx,
      const v1::VerifyCivilStatusRequest* request,
      v1::VerifyCivilStatusResponse* response) override;
  grpc::ServerUnaryReactor* VerifyCivilStatusBatch(
      grpc::CallbackServerContext* ctx,
      const v1::VerifyCivilStatusBatchRequest* request,
      v1::VerifyCivilStatusBatchResponse* response) override;

 private:
  ServiceContext* const context_;
};

class AuditServiceImpl final : public v1::AuditService::CallbackService {
 public:
  explicit AuditServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* ListAuditRecords(
      grpc::CallbackServerContext* ctx,
      const v1::ListAuditRecordsRequest* request,
      v1::ListAuditRecordsResponse* response) override;
  grpc::ServerUnaryReactor* VerifyAuditLog(
      grpc::CallbackServerContext* ctx,
      const v1::VerifyAuditLogRequest* request,
      v1::VerifyAuditLogResponse* response) override;

 private:
  ServiceContext* const context_;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_GRPC_SERVICES_H_
