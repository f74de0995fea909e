// Cross-border civil-status verification for partner ministries: the
// data-sharing policies (ServerConfig.partner_policies) and the rules that
// turn a claim and a record into an answer (PartnerService,
// proto/hawiya/v1/partner.proto). The Registry runs the store and matcher
// side (lookup, quota, biometrics, receipt, audit) and calls these; they
// are pure functions, so every rule is testable without a store.
//
// Attribute names (policy and response): "name" (covers the claimed
// name_ar and name_latin), "date_of_birth", "sex", "civil_status" (compared
// when claimed, disclosed as recorded), "state" and "nationality"
// (disclosed only).
#ifndef HAWIYA_ENROLL_PARTNER_H_
#define HAWIYA_ENROLL_PARTNER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hawiya/config/config.pb.h"
#include "hawiya/v1/partner.pb.h"
#include "hawiya/v1/types.pb.h"

namespace hawiya::enroll {

// Every attribute a policy may list, in the order responses give them.
const std::vector<std::string>& PartnerAttributes();

// Most items in one VerifyCivilStatusBatch.
inline constexpr size_t kMaxPartnerBatch = 100;

struct PartnerPolicy {
  std::string principal;
  std::set<v1::Purpose> purposes;
  std::set<std::string> disclosable;
  bool biometric_allowed = false;
  // Per UTC day; 0 = unlimited.
  int64_t daily_quota = 0;

  bool may(absl::string_view attribute) const {
    return disclosable.count(std::string(attribute)) > 0;
  }
};

class PartnerPolicies {
 public:
  // config.partner_policies. INVALID_ARGUMENT naming the field
  // ("partner_policies[1].allowed_purposes: unknown purpose 'X'") on an
  // empty or repeated principal, no purpose, an unknown purpose or
  // attribute, or a negative / non-finite rate.
  static absl::StatusOr<PartnerPolicies> FromConfig(
      const config::ServerConfig& config);

  // The principal's policy; PERMISSION_DENIED "no data-sharing policy for
  // principal P" if it has none.
  absl::StatusOr<const PartnerPolicy*> Find(absl::string_view principal) const;

  bool empty() const { return policies_.empty(); }

 private:
  std::map<std::string, PartnerPolicy, std::less<>> policies_;
};

// Checks what can be checked without the record: INVALID_ARGUMENT naming
// the field for a malformed request (request_id, purpose, purpose_text,
// national_id, issuing_country, names, date_of_birth, enums); then
// PERMISSION_DENIED naming the rule for a purpose the policy does not
// allow ("allowed_purposes") or probes while biometrics are not allowed
// ("biometric_allowed"). Probe vectors are checked by the registry.
absl::Status CheckPartnerRequest(const v1::VerifyCivilStatusRequest& request,
                                 const PartnerPolicy& policy, absl::Time now);

// The answer to `request` (decision, checks, disclosed attributes; no
// receipt): `person` is the record holding the claimed national id (null
// if none: NOT_FOUND), `biometric` the 1:1 result if probes were sent and
// run. Decision rules: partner.proto, VerifyCivilStatusResponse.Decision.
// REVOKED and PENDING_ADJUDICATION persons are INCONCLUSIVE with every
// claimed attribute WITHHELD and nothing disclosed; DECEASED persons are
// compared like ACTIVE ones, and their state disclosed if the policy
// allows "state".
v1::VerifyCivilStatusResponse EvaluateClaim(
    const v1::VerifyCivilStatusRequest& request, const PartnerPolicy& policy,
    const v1::Person* person,
    const std::optional<v1::BiometricResult>& biometric);

// Whether a person in this state may be compared at all.
bool AnswerableState(v1::PersonState state);

// The audit's purpose text: "BORDER_CROSSING: <purpose_text>", clipped.
std::string AuditPurpose(const v1::VerifyCivilStatusRequest& request);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_PARTNER_H_
