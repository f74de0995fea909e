// Registry: the domain service behind every v1 RPC. It validates requests,
// writes the store (one transaction per request) and keeps the galleries in
// step with it. Requests and responses are the v1 API messages, so the gRPC
// layer only moves them across the wire.
//
// Consistency: writes are serialised, and a write's gallery change is applied
// before the next write starts, so the galleries always equal what the store
// says is ACTIVE. Reads and matches run concurrently with each other.
#ifndef HAWIYA_ENROLL_REGISTRY_H_
#define HAWIYA_ENROLL_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "enroll/store.h"
#include "hawiya/v1/admin.pb.h"
#include "hawiya/v1/enrollment.pb.h"
#include "hawiya/v1/match.pb.h"
#include "matcher/matcher.h"

namespace hawiya::enroll {

struct RegistryOptions {
  // Folder of the embedded store (hawiya.db); created if absent.
  std::string data_dir;
  std::vector<matcher::ModalitySpec> modalities = matcher::DefaultModalities();
};

class Registry {
 public:
  // Opens the store and rebuilds every gallery from it. Serving may start
  // when this returns.
  static absl::StatusOr<std::unique_ptr<Registry>> Open(
      const RegistryOptions& options);

  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The most requests one BatchEnroll takes: bounds a call's memory and the
  // time it holds the write lock.
  static constexpr size_t kMaxBatchEnrollRequests = 10000;

  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request);
  // Enroll of every request in one transaction, all or nothing; responses[i]
  // answers requests[i]. Errors name the item: "requests[3].person...".
  absl::StatusOr<v1::BatchEnrollResponse> BatchEnroll(
      absl::Span<const v1::EnrollRequest> requests);
  absl::StatusOr<v1::Person> GetPerson(const v1::GetPersonRequest& request);
  absl::StatusOr<v1::Person> UpdatePerson(
      const v1::UpdatePersonRequest& request);
  absl::StatusOr<v1::Person> ReplaceTemplates(
      const v1::ReplaceTemplatesRequest& request);
  absl::Status DeletePerson(const v1::DeletePersonRequest& request);
  absl::StatusOr<v1::ListPersonsResponse> ListPersons(
      const v1::ListPersonsRequest& request);

  absl::StatusOr<v1::VerifyResponse> Verify(const v1::VerifyRequest& request);
  absl::StatusOr<v1::IdentifyResponse> Identify(
      const v1::IdentifyRequest& request);

  absl::StatusOr<v1::GetStatsResponse> GetStats();

 private:
  Registry(std::unique_ptr<Store> store,
           std::unique_ptr<matcher::Matcher> matcher);

  absl::Status LoadGalleries();
  // Validates an Enroll request and builds the record the store writes.
  absl::StatusOr<NewPerson> PrepareEnroll(const v1::EnrollRequest& request,
                                          absl::Time now) const;
  // Resolves subject_id, or national_id + issuing_country.
  absl::StatusOr<v1::Person> Resolve(const std::string& subject_id,
                                     const std::string& national_id,
                                     const std::string& issuing_country);
  // Adds freshly written templates of an ACTIVE person to the galleries.
  absl::Status AddToGalleries(const std::string& subject_id,
                              const std::vector<TemplateRecord>& templates);

  const std::unique_ptr<Store> store_;
  const std::unique_ptr<matcher::Matcher> matcher_;
  // Held across a write's store transaction and its gallery change.
  absl::Mutex write_mu_;
};

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_REGISTRY_H_
