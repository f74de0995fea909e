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
//
// Request bodies: every method takes its request as bytes (the generated
// WithRawCallbackMethod_* handlers) and parses it itself, so that a body
// gRPC could not decode is refused like any other bad input rather than
// answered UNIMPLEMENTED by gRPC: a body over
// ServiceContext::max_request_bytes is RESOURCE_EXHAUSTED, one that is not
// a valid encoding of the request type (bad wire format, invalid UTF-8 in a
// string field, nesting past the parser's recursion limit) is
// INVALID_ARGUMENT "request: cannot be parsed as hawiya.v1.EnrollRequest";
// both are audited and write nothing. BatchEnroll does the same for each
// streamed item, naming it ("requests[3]: ..."), and then commits none.
#ifndef HAWIYA_SERVICES_GRPC_SERVICES_H_
#define HAWIYA_SERVICES_GRPC_SERVICES_H_

#include <grpcpp/support/byte_buffer.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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
  // Largest request body (each streamed item, for BatchEnroll) the handlers
  // accept: config max_receive_message_bytes.
  uint32_t max_request_bytes = kDefaultMaxRequestBytes;

  static constexpr uint32_t kDefaultMaxRequestBytes = 16 << 20;
};

// The limit to give gRPC's transport (ServerBuilder::SetMaxReceiveMessageSize)
// for handlers that accept `max_request_bytes`: above it, so that an
// oversized request reaches its handler and is refused there, audited. gRPC
// drops a message over the transport's limit before any handler or
// interceptor runs, unrecorded. See the definition for the ceiling chosen.
int TransportMaxReceiveBytes(uint32_t max_request_bytes);

// Each service with every method taking its request and response as bytes;
// still registered under the service's name (reflection and health checks
// see it as before).
template <typename Service, template <typename> class... RawMethods>
struct RawService;
template <typename Service>
struct RawService<Service> {
  using Type = typename Service::Service;
};
template <typename Service, template <typename> class First,
          template <typename> class... Rest>
struct RawService<Service, First, Rest...> {
  using Type = First<typename RawService<Service, Rest...>::Type>;
};

using RawEnrollmentService =
    RawService<v1::EnrollmentService,
               v1::EnrollmentService::WithRawCallbackMethod_Enroll,
               v1::EnrollmentService::WithRawCallbackMethod_BatchEnroll,
               v1::EnrollmentService::WithRawCallbackMethod_GetPerson,
               v1::EnrollmentService::WithRawCallbackMethod_UpdatePerson,
               v1::EnrollmentService::WithRawCallbackMethod_ReplaceTemplates,
               v1::EnrollmentService::WithRawCallbackMethod_DeletePerson,
               v1::EnrollmentService::WithRawCallbackMethod_ListPersons>::Type;
using RawMatchService =
    RawService<v1::MatchService, v1::MatchService::WithRawCallbackMethod_Verify,
               v1::MatchService::WithRawCallbackMethod_Identify>::Type;
using RawAdminService =
    RawService<v1::AdminService,
               v1::AdminService::WithRawCallbackMethod_GetStats,
               v1::AdminService::WithRawCallbackMethod_RotateKey,
               v1::AdminService::WithRawCallbackMethod_GetSigningKeys,
               v1::AdminService::WithRawCallbackMethod_RotateSigningKey>::Type;
using RawAdjudicationService =
    RawService<v1::AdjudicationService,
               v1::AdjudicationService::WithRawCallbackMethod_ListCases,
               v1::AdjudicationService::WithRawCallbackMethod_GetCase,
               v1::AdjudicationService::WithRawCallbackMethod_DecideCase>::Type;
using RawPartnerService = RawService<
    v1::PartnerService,
    v1::PartnerService::WithRawCallbackMethod_VerifyCivilStatus,
    v1::PartnerService::WithRawCallbackMethod_VerifyCivilStatusBatch>::Type;
using RawAuditService =
    RawService<v1::AuditService,
               v1::AuditService::WithRawCallbackMethod_ListAuditRecords,
               v1::AuditService::WithRawCallbackMethod_VerifyAuditLog>::Type;

// The full names of the hawiya.v1 services below ("hawiya.v1.MatchService",
// ...): each has its own health status, and tests cover every one.
const std::vector<std::string>& ApiServiceNames();

class EnrollmentServiceImpl final : public RawEnrollmentService {
 public:
  explicit EnrollmentServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* BatchEnroll(
      grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetPerson(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* UpdatePerson(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ReplaceTemplates(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DeletePerson(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListPersons(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;

 private:
  ServiceContext* const context_;
};

class MatchServiceImpl final : public RawMatchService {
 public:
  explicit MatchServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Identify(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

 private:
  ServiceContext* const context_;
};

class AdminServiceImpl final : public RawAdminService {
 public:
  explicit AdminServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RotateKey(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetSigningKeys(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RotateSigningKey(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;

 private:
  ServiceContext* const context_;
};

// AdjudicationService: cases raised by deduplication (registry).
class AdjudicationServiceImpl final : public RawAdjudicationService {
 public:
  explicit AdjudicationServiceImpl(ServiceContext* context)
      : context_(context) {}

  grpc::ServerUnaryReactor* ListCases(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetCase(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DecideCase(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;

 private:
  ServiceContext* const context_;
};

// PartnerService: the registry applies the caller's data-sharing policy.
class PartnerServiceImpl final : public RawPartnerService {
 public:
  explicit PartnerServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* VerifyCivilStatus(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* VerifyCivilStatusBatch(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;

 private:
  ServiceContext* const context_;
};

class AuditServiceImpl final : public RawAuditService {
 public:
  explicit AuditServiceImpl(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* ListAuditRecords(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* VerifyAuditLog(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;

 private:
  ServiceContext* const context_;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_GRPC_SERVICES_H_
