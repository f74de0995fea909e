#include "enroll/partner.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "enroll/names.h"
#include "enroll/validation.h"

namespace hawiya::enroll {
namespace {

constexpr size_t kMaxRequestIdBytes = 128;
constexpr size_t kMaxPurposeTextBytes = 256;
constexpr size_t kMaxNamePartBytes = 128;

using Check = v1::AttributeCheck;
using Response = v1::VerifyCivilStatusResponse;

bool IsAttribute(absl::string_view name) {
  for (const std::string& a : PartnerAttributes()) {
    if (a == name) return true;
  }
  return false;
}

bool Empty(const v1::PersonName& name) {
  return name.given().empty() && name.father().empty() &&
         name.grandfather().empty() && name.family().empty();
}

bool Empty(const v1::Date& date) {
  return date.year() == 0 && date.month() == 0 && date.day() == 0;
}

bool SameDate(const v1::Date& a, const v1::Date& b) {
  return a.year() == b.year() && a.month() == b.month() && a.day() == b.day();
}

// A claimed name may be partial (any part may be left out), but each part
// given follows the rules of a recorded one, script included: an Arabic
// name in name_latin is refused, before any quota is charged, as Enroll
// refuses it.
absl::Status CheckName(absl::string_view field, const v1::PersonName& name,
                       bool arabic) {
  const std::pair<const char*, const std::string*> parts[] = {
      {"given", &name.given()},
      {"father", &name.father()},
      {"grandfather", &name.grandfather()},
      {"family", &name.family()}};
  for (const auto& [part, value] : parts) {
    if (value->size() > kMaxNamePartBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".", part, ": at most ", kMaxNamePartBytes, " bytes"));
    }
  }
  return arabic ? ValidateArabicName(field, name)
                : ValidateLatinName(field, name);
}

Check* AddCheck(Response* response, absl::string_view attribute,
                Check::Result result) {
  Check* check = response->add_checks();
  check->set_attribute(std::string(attribute));
  check->set_result(result);
  return check;
}

// The best similarity of a claimed name against the recorded names, in
// either script (an Arabic claim against a Latin record and the reverse go
// through the transliteration in names.h). Unset if nothing is recorded.
std::optional<names::NameComparison> CompareWithRecord(
    const v1::PersonName& claimed, const v1::Person& person) {
  std::optional<names::NameComparison> best;
  for (const v1::PersonName* recorded :
       {&person.name_ar(), &person.name_latin()}) {
    if (Empty(*recorded)) continue;
    names::NameComparison c = names::CompareNames(claimed, *recorded);
    if (!best.has_value() || c.similarity > best->similarity) best = c;
  }
  return best;
}

}  // namespace

const std::vector<std::string>& PartnerAttributes() {
  static const std::vector<std::string>* const kAttributes =
      new std::vector<std::string>{"name",  "date_of_birth",
                                   "sex",   "civil_status",
                                   "state", "nationality"};
  return *kAttributes;
}

absl::StatusOr<PartnerPolicies> PartnerPolicies::FromConfig(
    const config::ServerConfig& config) {
  PartnerPolicies policies;
  for (int i = 0; i < config.partner_policies_size(); ++i) {
    const config::PartnerPolicy& entry = config.partner_policies(i);
    const std::string field = absl::StrCat("partner_policies[", i, "]");
    PartnerPolicy policy;
    policy.principal = entry.principal();
    if (policy.principal.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".principal: empty"));
    }
    if (entry.allowed_purposes().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".allowed_purposes: at least one purpose is required"));
    }
    for (const std::string& name : entry.allowed_purposes()) {
      v1::Purpose purpose;
      if (!v1::Purpose_Parse(name, &purpose) ||
          purpose == v1::PURPOSE_UNSPECIFIED) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".allowed_purposes: unknown purpose '", name,
                         "' (a hawiya.v1.Purpose name, e.g. BORDER_CROSSING)"));
      }
      policy.purposes.insert(purpose);
    }
    for (const std::string& name : entry.disclosable_attributes()) {
      if (!IsAttribute(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".disclosable_attributes: unknown attribute '", name,
            "' (one of ", absl::StrJoin(PartnerAttributes(), ", "), ")"));
      }
      policy.disclosable.insert(name);
    }
    policy.biometric_allowed = entry.biometric_allowed();
    if (entry.daily_quota() > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".daily_quota: too large"));
    }
    policy.daily_quota = static_cast<int64_t>(entry.daily_quota());
    if (!std::isfinite(entry.requests_per_second()) ||
        entry.requests_per_second() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".requests_per_second: must be finite and >= 0"));
    }
    if (!policies.policies_.emplace(policy.principal, policy).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".principal: ", policy.principal, " is listed twice"));
    }
  }
  return policies;
}

absl::StatusOr<const PartnerPolicy*> PartnerPolicies::Find(
    absl::string_view principal) const {
  auto it = policies_.find(principal);
  if (it == policies_.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("no data-sharing policy for principal ", principal,
                     " (ServerConfig.partner_policies)"));
  }
  return &it->second;
}

absl::Status CheckPartnerRequest(const v1::VerifyCivilStatusRequest& request,
                                 const PartnerPolicy& policy, absl::Time now) {
  if (request.request_id().empty()) {
    return absl::InvalidArgumentError(
        "request_id: required (the partner's reference for this check)");
  }
  if (request.request_id().size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: at most ", kMaxRequestIdBytes, " bytes"));
  }
  // Echoed in the response, the signed receipt and the audit log.
  if (absl::Status s = ValidateFreeText("request_id", request.request_id(),
                                        kMaxRequestIdBytes);
      !s.ok()) {
    return s;
  }
  if (request.purpose() == v1::PURPOSE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "purpose: required (BORDER_CROSSING, RESIDENCE_APPLICATION, ...)");
  }
  if (!v1::Purpose_IsValid(request.purpose())) {
    return absl::InvalidArgumentError(
        absl::StrCat("purpose: unknown value ", request.purpose()));
  }
  if (request.purpose_text().empty()) {
    return absl::InvalidArgumentError(
        "purpose_text: required (a case or file reference)");
  }
  if (request.purpose_text().size() > kMaxPurposeTextBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("purpose_text: at most ", kMaxPurposeTextBytes, " bytes"));
  }
  if (absl::Status s = ValidateFreeText("purpose_text", request.purpose_text(),
                                        kMaxPurposeTextBytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateNationalId("national_id", request.national_id());
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ValidateCountryCode("issuing_country", request.issuing_country());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckName("name_ar", request.name_ar(), true); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckName("name_latin", request.name_latin(), false);
      !s.ok()) {
    return s;
  }
  if (request.has_date_of_birth() && !Empty(request.date_of_birth())) {
    if (absl::Status s =
            ValidateDate("date_of_birth", request.date_of_birth(), now);
        !s.ok()) {
      return s;
    }
  }
  if (!v1::Sex_IsValid(request.sex())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sex: unknown value ", request.sex()));
  }
  if (!v1::CivilStatus_IsValid(request.civil_status())) {
    return absl::InvalidArgumentError(
        absl::StrCat("civil_status: unknown value ", request.civil_status()));
  }
  // Policy, once the request is well-formed.
  if (policy.purposes.count(request.purpose()) == 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "allowed_purposes: the data-sharing policy of ", policy.principal,
        " does not allow purpose ", v1::Purpose_Name(request.purpose())));
  }
  if (request.probes_size() > 0 && !policy.biometric_allowed) {
    return absl::PermissionDeniedError(absl::StrCat(
        "biometric_allowed: the data-sharing policy of ", policy.principal,
        " does not allow biometric matching; send no probes"));
  }
  return absl::OkStatus();
}

bool AnswerableState(v1::PersonState state) {
  return state == v1::ACTIVE || state == v1::DECEASED;
}

v1::VerifyCivilStatusResponse EvaluateClaim(
    const v1::VerifyCivilStatusRequest& request, const PartnerPolicy& policy,
    const v1::Person* person,
    const std::optional<v1::BiometricResult>& biometric) {
  Response response;
  response.set_request_id(request.request_id());
  if (person == nullptr) {
    response.set_decision(Response::NOT_FOUND);
    return response;
  }
  const bool answerable = AnswerableState(person->state());
  int compared = 0;
  bool mismatch = false;

  // Each claimed attribute: withheld unless the policy lets the partner
  // learn it and the person's state allows an answer.
  auto claim = [&](absl::string_view attribute, absl::string_view policy_name,
                   bool provided) -> bool {
    if (!provided) {
      AddCheck(&response, attribute, Check::NOT_PROVIDED);
      return false;
    }
    if (!answerable || !policy.may(policy_name)) {
      AddCheck(&response, attribute, Check::WITHHELD);
      return false;
    }
    return true;
  };
  auto record = [&](absl::string_view attribute, bool matched) -> Check* {
    ++compared;
    if (!matched) mismatch = true;
    return AddCheck(&response, attribute,
                    matched ? Check::MATCH : Check::MISMATCH);
  };

  for (const auto& [attribute, claimed] :
       {std::pair<const char*, const v1::PersonName*>{"name_ar",
                                                      &request.name_ar()},
        {"name_latin", &request.name_latin()}}) {
    if (!claim(attribute, "name", !Empty(*claimed))) continue;
    std::optional<names::NameComparison> c =
        CompareWithRecord(*claimed, *person);
    if (!c.has_value()) {
      AddCheck(&response, attribute, Check::NOT_RECORDED);
      continue;
    }
    record(attribute, c->match)
        ->set_similarity(static_cast<float>(c->similarity));
  }
  if (claim("date_of_birth", "date_of_birth",
            request.has_date_of_birth() && !Empty(request.date_of_birth()))) {
    if (Empty(person->date_of_birth())) {
      AddCheck(&response, "date_of_birth", Check::NOT_RECORDED);
    } else {
      record("date_of_birth",
             SameDate(request.date_of_birth(), person->date_of_birth()));
    }
  }
  if (claim("sex", "sex", request.sex() != v1::SEX_UNSPECIFIED)) {
    if (person->sex() == v1::SEX_UNSPECIFIED) {
      AddCheck(&response, "sex", Check::NOT_RECORDED);
    } else {
      record("sex", request.sex() == person->sex());
    }
  }
  if (claim("civil_status", "civil_status",
            request.civil_status() != v1::CIVIL_STATUS_UNSPECIFIED)) {
    if (person->civil_status() == v1::CIVIL_STATUS_UNSPECIFIED) {
      AddCheck(&response, "civil_status", Check::NOT_RECORDED);
    } else {
      record("civil_status", request.civil_status() == person->civil_status());
    }
  }

  if (!answerable) {
    response.set_decision(Response::INCONCLUSIVE);
    return response;
  }

  bool biometric_inconclusive = false;
  bool biometric_matched = false;
  if (biometric.has_value()) {
    *response.mutable_biometric() = *biometric;
    switch (biometric->decision()) {
      case v1::BiometricResult::MATCH:
        biometric_matched = true;
        break;
      case v1::BiometricResult::NO_MATCH:
        mismatch = true;
        break;
      default:
        biometric_inconclusive = true;
    }
  }
  if (mismatch) {
    response.set_decision(Response::NO_MATCH);
  } else if (biometric_inconclusive || (compared == 0 && !biometric_matched)) {
    response.set_decision(Response::INCONCLUSIVE);
  } else {
    response.set_decision(Response::MATCH);
  }

  // Disclosure: only what the policy lists, for a person that may be
  // answered about at all.
  v1::DisclosedAttributes* disclosed = response.mutable_disclosed();
  if (policy.may("state")) {
    disclosed->add_attributes("state");
    disclosed->set_state(person->state());
  }
  if (policy.may("civil_status")) {
    disclosed->add_attributes("civil_status");
    disclosed->set_civil_status(person->civil_status());
  }
  if (policy.may("sex")) {
    disclosed->add_attributes("sex");
    disclosed->set_sex(person->sex());
  }
  if (policy.may("date_of_birth")) {
    disclosed->add_attributes("date_of_birth");
    *disclosed->mutable_date_of_birth() = person->date_of_birth();
  }
  if (policy.may("nationality")) {
    disclosed->add_attributes("nationality");
    disclosed->set_nationality(person->nationality());
  }
  if (disclosed->attributes().empty()) response.clear_disclosed();
  return response;
}

std::string AuditPurpose(const v1::VerifyCivilStatusRequest& request) {
  const std::string purpose =
      absl::StrCat(v1::Purpose_IsValid(request.purpose())
                       ? v1::Purpose_Name(request.purpose())
                       : absl::StrCat(static_cast<int>(request.purpose())),
                   ": ", request.purpose_text());
  // A refused request's text too: clipped on a UTF-8 boundary, controls
  // escaped.
  return AuditText(purpose, 300);
}

}  // namespace hawiya::enroll
