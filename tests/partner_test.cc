// Partner verification (issue 5): data-sharing policies, the decision and
// disclosure rules, daily quotas that survive restarts, batches with mixed
// results, Ed25519 receipts (valid, broken by any changed byte, still
// valid after a key rotation, refused for an unknown key) and the audit
// records of partner answers (purpose, decision, disclosed attributes).
#include "enroll/partner.h"

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "enroll/audit.h"
#include "enroll/crypto.h"
#include "enroll/names.h"
#include "enroll/receipts.h"
#include "enroll/registry.h"
#include "enroll/store.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"
#include "tests/testing/raw_db.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Check = v1::AttributeCheck;
using Response = v1::VerifyCivilStatusResponse;

constexpr char kFull[] = "hawiya://partner/FULL";
constexpr char kLimited[] = "hawiya://partner/LIMITED";
constexpr char kMethod[] = "/hawiya.v1.PartnerService/VerifyCivilStatus";
constexpr char kBatchMethod[] =
    "/hawiya.v1.PartnerService/VerifyCivilStatusBatch";

std::string NewDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr ? base : "/tmp", "/partner-XXXXXX");
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

config::ServerConfig Policies() {
  config::ServerConfig config;
  config::PartnerPolicy* full = config.add_partner_policies();
  full->set_principal(kFull);
  full->add_allowed_purposes("BORDER_CROSSING");
  full->add_allowed_purposes("MARRIAGE_REGISTRATION");
  for (const char* a : {"name", "date_of_birth", "sex", "civil_status", "state",
                        "nationality"}) {
    full->add_disclosable_attributes(a);
  }
  full->set_biometric_allowed(true);
  config::PartnerPolicy* limited = config.add_partner_policies();
  limited->set_principal(kLimited);
  limited->add_allowed_purposes("BORDER_CROSSING");
  limited->add_disclosable_attributes("name");
  limited->set_daily_quota(3);
  return config;
}

AuditActor Actor(const std::string& principal,
                 const std::string& method = kMethod) {
  return AuditActor{principal, "partner", method};
}

// --- policies --------------------------------------------------------------

TEST(PartnerPolicyTest, ConfigErrorsNameTheField) {
  struct Case {
    std::string text;
    std::string error;
  } cases[] = {
      {"", "partner_policies[0].principal: empty"},
      {"principal: 'p'",
       "partner_policies[0].allowed_purposes: at least one purpose"},
      {"principal: 'p' allowed_purposes: 'SMUGGLING'",
       "partner_policies[0].allowed_purposes: unknown purpose 'SMUGGLING'"},
      {"principal: 'p' allowed_purposes: 'BORDER_CROSSING' "
       "disclosable_attributes: 'passport'",
       "partner_policies[0].disclosable_attributes: unknown attribute "
       "'passport'"},
      {"principal: 'p' allowed_purposes: 'BORDER_CROSSING' "
       "requests_per_second: -1",
       "partner_policies[0].requests_per_second: must be finite"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    config::ServerConfig config;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
        c.text, config.add_partner_policies()));
    absl::StatusOr<PartnerPolicies> policies =
        PartnerPolicies::FromConfig(config);
    EXPECT_EQ(policies.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(policies.status().message(), HasSubstr(c.error));
  }
  config::ServerConfig twice = Policies();
  *twice.add_partner_policies() = twice.partner_policies(0);
  EXPECT_THAT(PartnerPolicies::FromConfig(twice).status().message(),
              HasSubstr("partner_policies[2].principal: " + std::string(kFull) +
                        " is listed twice"));
}

TEST(PartnerPolicyTest, PrincipalWithoutPolicyIsDenied) {
  absl::StatusOr<PartnerPolicies> policies =
      PartnerPolicies::FromConfig(Policies());
  ASSERT_TRUE(policies.ok()) << policies.status();
  EXPECT_TRUE(policies->Find(kFull).ok());
  absl::StatusOr<const PartnerPolicy*> none =
      policies->Find("hawiya://partner/OTHER");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(none.status().message(),
              HasSubstr("no data-sharing policy for principal "
                        "hawiya://partner/OTHER"));
}

// --- receipts --------------------------------------------------------------

class ReceiptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Ed25519KeyPair> pair = GenerateEd25519Key();
    ASSERT_TRUE(pair.ok()) << pair.status();
    pair_ = *pair;
    key_id_ = SigningKeyId(pair_.public_key);
    v1::SigningKey* key = keys_.add_keys();
    key->set_key_id(key_id_);
    key->set_algorithm("Ed25519");
    key->set_public_key(pair_.public_key);
    key->mutable_valid_from()->set_seconds(1000);
  }

  v1::Receipt Sign(int64_t seconds = 2000) {
    v1::ReceiptPayload payload;
    payload.set_request_id("req-1");
    payload.set_principal(kFull);
    payload.set_decision(Response::MATCH);
    payload.mutable_time()->set_seconds(seconds);
    absl::StatusOr<v1::Receipt> receipt =
        SignReceipt(payload, key_id_, pair_.private_key);
    EXPECT_TRUE(receipt.ok()) << receipt.status();
    return receipt.ok() ? *receipt : v1::Receipt();
  }

  Ed25519KeyPair pair_;
  std::string key_id_;
  v1::GetSigningKeysResponse keys_;
};

TEST_F(ReceiptTest, VerifiesAndReturnsThePayload) {
  const v1::Receipt receipt = Sign();
  EXPECT_EQ(receipt.signature().size(), kEd25519SignatureBytes);
  EXPECT_THAT(receipt.key_id(),
              ::testing::MatchesRegex("ed25519:[0-9a-f]{16}"));
  absl::StatusOr<v1::ReceiptPayload> payload = VerifyReceipt(receipt, keys_);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->format(), "hawiya.receipt.v1");
  EXPECT_EQ(payload->key_id(), key_id_);
  EXPECT_EQ(payload->request_id(), "req-1");
  EXPECT_EQ(payload->decision(), Response::MATCH);
}

TEST_F(ReceiptTest, AnyFlippedByteOfPayloadOrSignatureFails) {
  const v1::Receipt receipt = Sign();
  for (size_t i = 0; i < receipt.payload().size(); ++i) {
    v1::Receipt changed = receipt;
    (*changed.mutable_payload())[i] ^= 0x01;
    EXPECT_FALSE(VerifyReceipt(changed, keys_).ok()) << "payload byte " << i;
  }
  for (size_t i = 0; i < receipt.signature().size(); ++i) {
    v1::Receipt changed = receipt;
    (*changed.mutable_signature())[i] ^= 0x80;
    absl::StatusOr<v1::ReceiptPayload> result = VerifyReceipt(changed, keys_);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
        << "signature byte " << i;
  }
  v1::Receipt truncated = receipt;
  truncated.mutable_signature()->pop_back();
  EXPECT_FALSE(VerifyReceipt(truncated, keys_).ok());
}

TEST_F(ReceiptTest, UnknownKeyForeignKeyAndTimeOutsideValidityFail) {
  v1::Receipt receipt = Sign();
  v1::Receipt unknown = receipt;
  unknown.set_key_id("ed25519:0000000000000000");
  absl::StatusOr<v1::ReceiptPayload> result = VerifyReceipt(unknown, keys_);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(result.status().message(), HasSubstr("key_id: no published"));

  // A receipt signed by another key, claiming this key's id.
  absl::StatusOr<Ed25519KeyPair> other = GenerateEd25519Key();
  ASSERT_TRUE(other.ok());
  v1::ReceiptPayload payload;
  payload.mutable_time()->set_seconds(2000);
  absl::StatusOr<v1::Receipt> forged =
      SignReceipt(payload, key_id_, other->private_key);
  ASSERT_TRUE(forged.ok());
  EXPECT_THAT(VerifyReceipt(*forged, keys_).status().message(),
              HasSubstr("signature: does not verify"));

  // A published key whose id is not its public key's.
  v1::GetSigningKeysResponse swapped = keys_;
  swapped.mutable_keys(0)->set_public_key(other->public_key);
  EXPECT_THAT(VerifyReceipt(receipt, swapped).status().message(),
              HasSubstr("is not a 32-byte Ed25519 public key with that id"));

  // Dated before the key was valid, or after it was retired.
  EXPECT_THAT(VerifyReceipt(Sign(999), keys_).status().message(),
              HasSubstr("payload.time: outside the validity"));
  v1::GetSigningKeysResponse retired = keys_;
  retired.mutable_keys(0)->mutable_valid_until()->set_seconds(2000);
  EXPECT_THAT(VerifyReceipt(receipt, retired).status().message(),
              HasSubstr("payload.time: outside the validity"));
  EXPECT_TRUE(VerifyReceipt(Sign(1999), retired).ok());
}

TEST(RequestDigestTest, CoversEveryFieldAndIgnoresNothingElse) {
  v1::VerifyCivilStatusRequest a;
  a.set_request_id("r");
  a.set_national_id("N1");
  v1::VerifyCivilStatusRequest b = a;
  EXPECT_EQ(RequestDigest(a), RequestDigest(b));
  EXPECT_EQ(RequestDigest(a).size(), 32u);
  b.mutable_name_latin()->set_given("X");
  EXPECT_NE(RequestDigest(a), RequestDigest(b));
  // Fields this version does not know (a newer client's) are not hashed,
  // at any depth: the receipt binds what the server understood.
  v1::VerifyCivilStatusRequest unknown;
  ASSERT_TRUE(unknown.ParseFromString(a.SerializeAsString() +
                                      std::string("\xb8\x06\x01", 3)));
  EXPECT_NE(unknown.SerializeAsString(), a.SerializeAsString());
  EXPECT_EQ(RequestDigest(unknown), RequestDigest(a));
  v1::Date date;
  ASSERT_TRUE(date.ParseFromString(std::string("\xb8\x06\x01", 3)));
  *a.mutable_date_of_birth() = date;
  v1::VerifyCivilStatusRequest plain = a;
  plain.mutable_date_of_birth()->DiscardUnknownFields();
  EXPECT_EQ(RequestDigest(a), RequestDigest(plain));
}

// --- the registry ----------------------------------------------------------

class PartnerRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewDir();
    // A deceased person can only come from the store (no RPC sets a state
    // but revocation): written before the registry opens.
    {
      absl::StatusOr<std::unique_ptr<Store>> store =
          Store::Open({dir_ + "/hawiya.db"});
      ASSERT_TRUE(store.ok()) << store.status();
      v1::Person deceased = services::SyntheticPerson(3);
      deceased.set_subject_id("deceased-3");
      deceased.set_state(v1::DECEASED);
      deceased.set_civil_status(v1::WIDOWED);
      ASSERT_TRUE(
          (*store)
              ->CreatePerson({"seed-3", "Enroll", "f"}, deceased,
                             {services::SyntheticFaceTemplate(model_, 3, 0)})
              .ok());
    }
    Open();
    for (uint64_t n : {1, 2}) {
      v1::EnrollRequest request = services::SyntheticEnrollRequest(model_, n);
      request.set_request_id(absl::StrCat("enroll-", n));
      absl::StatusOr<v1::EnrollResponse> enrolled = registry_->Enroll(request);
      ASSERT_TRUE(enrolled.ok()) << enrolled.status();
      subjects_.push_back(enrolled->person().subject_id());
    }
    v1::DeletePersonRequest revoke;
    revoke.set_subject_id(subjects_[1]);
    revoke.set_reason("fraudulent registration");
    ASSERT_TRUE(registry_->DeletePerson(revoke).ok());
  }

  void TearDown() override {
    registry_.reset();
    fs::remove_all(dir_);
  }

  void Open() {
    registry_.reset();
    RegistryOptions options;
    options.data_dir = dir_;
    options.snapshots = false;
    absl::StatusOr<PartnerPolicies> policies =
        PartnerPolicies::FromConfig(Policies());
    ASSERT_TRUE(policies.ok()) << policies.status();
    options.partner_policies = *policies;
    options.clock = [this] { return now_; };
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }

  // A claim on person n (SyntheticPerson): its Latin name, date of birth
  // and sex, as recorded.
  static v1::VerifyCivilStatusRequest Claim(uint64_t n) {
    const v1::Person person = services::SyntheticPerson(n);
    v1::VerifyCivilStatusRequest request;
    request.set_request_id(absl::StrCat("case-", n));
    request.set_purpose(v1::BORDER_CROSSING);
    request.set_purpose_text(absl::StrCat("entry at post 7, file ", n));
    request.set_national_id(person.national_id());
    request.set_issuing_country(person.issuing_country());
    *request.mutable_name_latin() = person.name_latin();
    *request.mutable_date_of_birth() = person.date_of_birth();
    request.set_sex(person.sex());
    return request;
  }

  Response Verify(const v1::VerifyCivilStatusRequest& request,
                  const std::string& principal = kFull) {
    absl::StatusOr<Response> response =
        registry_->VerifyCivilStatus(request, Actor(principal));
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : Response();
  }

  v1::GetSigningKeysResponse Keys() {
    absl::StatusOr<v1::GetSigningKeysResponse> keys =
        registry_->GetSigningKeys();
    EXPECT_TRUE(keys.ok()) << keys.status();
    return keys.ok() ? *keys : v1::GetSigningKeysResponse();
  }

  // The attribute -> result of a response, in order.
  static std::vector<std::string> Results(const Response& response) {
    std::vector<std::string> out;
    for (const Check& check : response.checks()) {
      out.push_back(absl::StrCat(check.attribute(), "=",
                                 Check::Result_Name(check.result())));
    }
    return out;
  }

  std::vector<AuditRecord> AuditOf(const std::string& principal) {
    v1::ListAuditRecordsRequest request;
    request.set_principal(principal);
    request.set_page_size(1000);
    absl::StatusOr<v1::ListAuditRecordsResponse> page =
        registry_->ListAuditRecords(request);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<AuditRecord> records;
    if (!page.ok()) return records;
    for (const v1::AuditRecord& r : page->records()) {
      AuditRecord record;
      record.sequence = r.sequence();
      record.event.method = r.method();
      record.event.request_id = r.request_id();
      record.event.outcome = r.outcome_code();
      record.event.purpose = r.purpose();
      record.event.decision = r.decision();
      record.event.disclosed.assign(r.disclosed_attributes().begin(),
                                    r.disclosed_attributes().end());
      records.push_back(record);
    }
    return records;
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string dir_;
  absl::Time now_ = absl::FromCivil(absl::CivilSecond(2026, 11, 30, 10, 0, 0),
                                    absl::UTCTimeZone());
  std::unique_ptr<Registry> registry_;
  std::vector<std::string> subjects_;  // person 1 active, 2 revoked
};

TEST_F(PartnerRegistryTest, MatchDisclosesWhatThePolicyAllowsWithAReceipt) {
  const v1::VerifyCivilStatusRequest request = Claim(1);
  const Response response = Verify(request);
  EXPECT_EQ(response.decision(), Response::MATCH);
  EXPECT_EQ(response.request_id(), "case-1");
  EXPECT_THAT(Results(response),
              ElementsAre("name_ar=NOT_PROVIDED", "name_latin=MATCH",
                          "date_of_birth=MATCH", "sex=MATCH",
                          "civil_status=NOT_PROVIDED"));
  EXPECT_FLOAT_EQ(response.checks(1).similarity(), 1.0f);
  EXPECT_FALSE(response.has_biometric());
  const v1::Person person = services::SyntheticPerson(1);
  EXPECT_THAT(response.disclosed().attributes(),
              ElementsAre("state", "civil_status", "sex", "date_of_birth",
                          "nationality"));
  EXPECT_EQ(response.disclosed().state(), v1::ACTIVE);
  EXPECT_EQ(response.disclosed().civil_status(), person.civil_status());
  EXPECT_EQ(response.disclosed().nationality(), "KWT");

  absl::StatusOr<v1::ReceiptPayload> payload =
      VerifyReceipt(response.receipt(), Keys());
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->request_digest(), RequestDigest(request));
  EXPECT_EQ(payload->principal(), kFull);
  EXPECT_EQ(payload->purpose(), v1::BORDER_CROSSING);
  EXPECT_EQ(payload->purpose_text(), request.purpose_text());
  EXPECT_EQ(payload->decision(), Response::MATCH);
  EXPECT_EQ(payload->checks_size(), 5);
  EXPECT_EQ(payload->disclosed().SerializeAsString(),
            response.disclosed().SerializeAsString());
  EXPECT_EQ(payload->time().seconds(), absl::ToUnixSeconds(now_));
  EXPECT_THAT(payload->issuer(), ::testing::MatchesRegex("[0-9a-f]{32}"));
}

TEST_F(PartnerRegistryTest, AnyMismatchIsNoMatchAndNothingClaimedInconclusive) {
  v1::VerifyCivilStatusRequest request = Claim(1);
  request.mutable_date_of_birth()->set_year(1950);
  Response response = Verify(request);
  EXPECT_EQ(response.decision(), Response::NO_MATCH);
  EXPECT_THAT(Results(response),
              ElementsAre("name_ar=NOT_PROVIDED", "name_latin=MATCH",
                          "date_of_birth=MISMATCH", "sex=MATCH",
                          "civil_status=NOT_PROVIDED"));

  request = Claim(1);
  request.mutable_name_latin()->set_given("Yusuf");
  response = Verify(request);
  EXPECT_EQ(response.decision(), Response::NO_MATCH);
  EXPECT_EQ(response.checks(1).result(), Check::MISMATCH);
  EXPECT_LT(response.checks(1).similarity(), 1.0f);

  request = Claim(1);
  request.clear_name_latin();
  request.clear_date_of_birth();
  request.set_sex(v1::SEX_UNSPECIFIED);
  response = Verify(request);
  EXPECT_EQ(response.decision(), Response::INCONCLUSIVE);
  // The state is still disclosed: the person exists and may be answered.
  EXPECT_EQ(response.disclosed().state(), v1::ACTIVE);
}

// Names as partners write them (enroll/names.h): other spellings of the
// same name, and a claim in one script against a record in the other.
TEST_F(PartnerRegistryTest, NamesMatchAcrossSpellingsAndScripts) {
  // Person 1 is recorded as محمد عبدالله الصباح / Mohammed Al-Sabah.
  auto name_result = [&](const std::string& principal,
                         const v1::VerifyCivilStatusRequest& request,
                         int index) {
    const Response response = Verify(request, principal);
    return std::make_pair(response.checks(index).result(),
                          response.checks(index).similarity());
  };
  auto latin = [](uint64_t n, const std::string& given,
                  const std::string& family) {
    v1::VerifyCivilStatusRequest request = Claim(n);
    request.clear_date_of_birth();
    request.set_sex(v1::SEX_UNSPECIFIED);
    request.mutable_name_latin()->Clear();
    request.mutable_name_latin()->set_given(given);
    request.mutable_name_latin()->set_family(family);
    return request;
  };
  auto arabic = [](uint64_t n, const std::string& given,
                   const std::string& family) {
    v1::VerifyCivilStatusRequest request = Claim(n);
    request.clear_date_of_birth();
    request.set_sex(v1::SEX_UNSPECIFIED);
    request.clear_name_latin();
    request.mutable_name_ar()->set_given(given);
    request.mutable_name_ar()->set_family(family);
    return request;
  };
  for (const auto& [given, family] :
       std::vector<std::pair<std::string, std::string>>{
           {"Muhammad", "Al-Sabah"},
           {"Mohamed", "Al Sabah"},
           {"MOHAMMAD", "al-sabah"}}) {
    SCOPED_TRACE(given + " " + family);
    const v1::VerifyCivilStatusRequest request = latin(1, given, family);
    const Response response = Verify(request);
    EXPECT_EQ(response.checks(1).result(), Check::MATCH);
    EXPECT_GE(response.checks(1).similarity(), names::kNameMatchThreshold);
    EXPECT_EQ(response.decision(), Response::MATCH);
  }
  // Arabic claim against the Arabic record, with tashkeel and another
  // alef: the same name.
  EXPECT_EQ(name_result(kFull, arabic(1, "مُحَمَّد", "الصباح"), 0).first,
            Check::MATCH);
  // Another person's name: MISMATCH, and the decision says so.
  const Response other = Verify(latin(1, "Ahmed", "Al-Sabah"));
  EXPECT_EQ(other.checks(1).result(), Check::MISMATCH);
  EXPECT_LT(other.checks(1).similarity(), names::kNameMatchThreshold);
  EXPECT_EQ(other.decision(), Response::NO_MATCH);

  // A record in Arabic script only, claimed in Latin script (a passport's
  // transliteration), and one in Latin only, claimed in Arabic.
  v1::EnrollRequest arabic_only = services::SyntheticEnrollRequest(model_, 4);
  arabic_only.set_request_id("enroll-4");
  arabic_only.mutable_person()->clear_name_latin();
  arabic_only.mutable_person()->mutable_name_ar()->set_family("الحربي");
  ASSERT_TRUE(registry_->Enroll(arabic_only).ok());
  v1::EnrollRequest latin_only = services::SyntheticEnrollRequest(model_, 6);
  latin_only.set_request_id("enroll-6");
  latin_only.mutable_person()->clear_name_ar();
  latin_only.mutable_person()->mutable_name_latin()->set_father("Abdullah");
  latin_only.mutable_person()->mutable_name_latin()->set_family("Al-Harbi");
  ASSERT_TRUE(registry_->Enroll(latin_only).ok());

  auto [result, similarity] =
      name_result(kFull, latin(4, "Muhammad", "Al-Harbi"), 1);
  EXPECT_EQ(result, Check::MATCH) << similarity;
  std::tie(result, similarity) =
      name_result(kFull, latin(4, "Mohammed", "Alharbi"), 1);
  EXPECT_EQ(result, Check::MATCH) << similarity;
  std::tie(result, similarity) =
      name_result(kFull, latin(4, "Fahad", "Al-Harbi"), 1);
  EXPECT_EQ(result, Check::MISMATCH) << similarity;
  std::tie(result, similarity) =
      name_result(kFull, arabic(6, "محمد", "الحربي"), 0);
  EXPECT_EQ(result, Check::MATCH) << similarity;
  std::tie(result, similarity) =
      name_result(kFull, arabic(6, "خالد", "الحربي"), 0);
  EXPECT_EQ(result, Check::MISMATCH) << similarity;
  // Both scripts claimed, one of them wrong: NO_MATCH.
  v1::VerifyCivilStatusRequest both = arabic(6, "محمد", "الحربي");
  both.mutable_name_latin()->set_given("Khalid");
  both.mutable_name_latin()->set_family("Al-Harbi");
  const Response mixed = Verify(both);
  EXPECT_THAT(Results(mixed),
              ElementsAre("name_ar=MATCH", "name_latin=MISMATCH",
                          "date_of_birth=NOT_PROVIDED", "sex=NOT_PROVIDED",
                          "civil_status=NOT_PROVIDED"));
  EXPECT_EQ(mixed.decision(), Response::NO_MATCH);
  // LIMITED (names only) compares names the same way.
  EXPECT_EQ(name_result(kLimited, latin(4, "Muhammad", "Al-Harbi"), 1).first,
            Check::MATCH);
}

TEST_F(PartnerRegistryTest, UnknownNationalIdIsNotFoundWithNothingDisclosed) {
  v1::VerifyCivilStatusRequest request = Claim(1);
  request.set_national_id("N999");
  const Response response = Verify(request);
  EXPECT_EQ(response.decision(), Response::NOT_FOUND);
  EXPECT_THAT(response.checks(), IsEmpty());
  EXPECT_FALSE(response.has_disclosed());
  absl::StatusOr<v1::ReceiptPayload> payload =
      VerifyReceipt(response.receipt(), Keys());
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->decision(), Response::NOT_FOUND);
  // Same id in another country: another person, not found either.
  request = Claim(1);
  request.set_issuing_country("SAU");
  EXPECT_EQ(Verify(request).decision(), Response::NOT_FOUND);
}

TEST_F(PartnerRegistryTest, RevokedPersonIsInconclusiveAndWithheld) {
  const Response response = Verify(Claim(2));
  EXPECT_EQ(response.decision(), Response::INCONCLUSIVE);
  EXPECT_THAT(Results(response),
              ElementsAre("name_ar=NOT_PROVIDED", "name_latin=WITHHELD",
                          "date_of_birth=WITHHELD", "sex=WITHHELD",
                          "civil_status=NOT_PROVIDED"));
  EXPECT_FALSE(response.has_disclosed());
  EXPECT_FALSE(response.has_biometric());
  // Probes change nothing: no comparison for a revoked record.
  v1::VerifyCivilStatusRequest request = Claim(2);
  *request.add_probes() = services::SyntheticFaceTemplate(model_, 2, 1);
  const Response with_probe = Verify(request);
  EXPECT_EQ(with_probe.decision(), Response::INCONCLUSIVE);
  EXPECT_FALSE(with_probe.has_biometric());
}

TEST_F(PartnerRegistryTest, DeceasedPersonMatchesWithStateDisclosed) {
  Response response = Verify(Claim(3));
  EXPECT_EQ(response.decision(), Response::MATCH);
  EXPECT_EQ(response.disclosed().state(), v1::DECEASED);
  EXPECT_EQ(response.disclosed().civil_status(), v1::WIDOWED);
  // A policy without "state" does not learn it.
  response = Verify(Claim(3), kLimited);
  EXPECT_EQ(response.decision(), Response::MATCH);
  EXPECT_FALSE(response.has_disclosed());
  // Templates of the deceased are not searchable: a probe is inconclusive,
  // and so is the answer.
  v1::VerifyCivilStatusRequest request = Claim(3);
  *request.add_probes() = services::SyntheticFaceTemplate(model_, 3, 1);
  response = Verify(request);
  EXPECT_EQ(response.biometric().decision(), v1::BiometricResult::INCONCLUSIVE);
  EXPECT_EQ(response.decision(), Response::INCONCLUSIVE);
}

TEST_F(PartnerRegistryTest, BiometricMatchAndNoMatch) {
  v1::VerifyCivilStatusRequest request = Claim(1);
  request.clear_name_latin();
  request.clear_date_of_birth();
  request.set_sex(v1::SEX_UNSPECIFIED);
  *request.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  Response response = Verify(request);
  EXPECT_EQ(response.biometric().decision(), v1::BiometricResult::MATCH);
  EXPECT_GT(response.biometric().score(), response.biometric().threshold());
  EXPECT_EQ(response.decision(), Response::MATCH);

  // An impostor's face with matching papers: NO_MATCH.
  request = Claim(1);
  *request.add_probes() = services::SyntheticFaceTemplate(model_, 77, 1);
  response = Verify(request);
  EXPECT_EQ(response.biometric().decision(), v1::BiometricResult::NO_MATCH);
  EXPECT_LT(response.biometric().score(), response.biometric().threshold());
  EXPECT_EQ(response.decision(), Response::NO_MATCH);
  absl::StatusOr<v1::ReceiptPayload> payload =
      VerifyReceipt(response.receipt(), Keys());
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(payload->biometric().decision(), v1::BiometricResult::NO_MATCH);

  // A malformed probe is the client's error, naming it.
  request = Claim(1);
  request.add_probes()->set_modality(v1::FACE);
  absl::StatusOr<Response> bad =
      registry_->VerifyCivilStatus(request, Actor(kFull));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("probes[0]"));
}

// The policy matrix: purpose allowed / denied, attribute withheld,
// biometric not allowed, no policy.
TEST_F(PartnerRegistryTest, PolicyMatrix) {
  // Allowed purpose for FULL, not for LIMITED.
  v1::VerifyCivilStatusRequest request = Claim(1);
  request.set_purpose(v1::MARRIAGE_REGISTRATION);
  EXPECT_EQ(Verify(request).decision(), Response::MATCH);
  absl::StatusOr<Response> denied =
      registry_->VerifyCivilStatus(request, Actor(kLimited));
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(),
              HasSubstr("allowed_purposes: the data-sharing policy of "
                        "hawiya://partner/LIMITED does not allow purpose "
                        "MARRIAGE_REGISTRATION"));

  // LIMITED may compare names only: the rest is withheld, uncounted.
  request = Claim(1);
  request.mutable_date_of_birth()->set_year(1950);
  request.mutable_date_of_birth()->set_month(1);
  request.mutable_date_of_birth()->set_day(1);
  request.set_civil_status(v1::MARRIED);
  Response response = Verify(request, kLimited);
  EXPECT_THAT(Results(response),
              ElementsAre("name_ar=NOT_PROVIDED", "name_latin=MATCH",
                          "date_of_birth=WITHHELD", "sex=WITHHELD",
                          "civil_status=WITHHELD"));
  EXPECT_EQ(response.decision(), Response::MATCH);
  EXPECT_FALSE(response.has_disclosed());

  // Probes without biometric_allowed.
  request = Claim(1);
  *request.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  denied = registry_->VerifyCivilStatus(request, Actor(kLimited));
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(), HasSubstr("biometric_allowed: "));

  // No policy at all.
  denied =
      registry_->VerifyCivilStatus(Claim(1), Actor("hawiya://partner/NONE"));
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(),
              HasSubstr("no data-sharing policy for principal "
                        "hawiya://partner/NONE"));

  // Malformed requests name the field.
  for (const auto& [mutate, field] :
       std::vector<std::pair<std::function<void(v1::VerifyCivilStatusRequest*)>,
                             std::string>>{
           {[](auto* r) { r->clear_request_id(); }, "request_id: required"},
           {[](auto* r) { r->set_purpose(v1::PURPOSE_UNSPECIFIED); },
            "purpose: required"},
           {[](auto* r) { r->clear_purpose_text(); }, "purpose_text: required"},
           {[](auto* r) { r->set_national_id("bad id!"); }, "national_id"},
           {[](auto* r) { r->set_issuing_country("kw"); }, "issuing_country"},
           {[](auto* r) { r->mutable_date_of_birth()->set_month(13); },
            "date_of_birth"},
           {[](auto* r) {
              r->mutable_name_ar()->set_given(std::string(200, 'x'));
            },
            "name_ar.given: at most 128 bytes"}}) {
    request = Claim(1);
    mutate(&request);
    absl::StatusOr<Response> bad =
        registry_->VerifyCivilStatus(request, Actor(kFull));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(bad.status().message(), HasSubstr(field));
  }
}

// Claimed names follow Enroll's script rules, and free text that reaches
// the receipt and the audit log holds no control character; each refusal
// names the field, is audited, and takes nothing from the quota.
TEST_F(PartnerRegistryTest, WrongScriptAndControlsAreRefusedBeforeTheQuota) {
  for (const auto& [mutate, error] :
       std::vector<std::pair<std::function<void(v1::VerifyCivilStatusRequest*)>,
                             std::string>>{
           {[](auto* r) { r->mutable_name_latin()->set_given("محمد"); },
            "name_latin.given: must not contain Arabic letters"},
           {[](auto* r) { r->mutable_name_ar()->set_family("Al-Sabah"); },
            "name_ar.family: must be in Arabic script"},
           {[](auto* r) { r->set_purpose_text("post 7\nDECISION: MATCH"); },
            "purpose_text: contains U+000A at byte 6"},
           {[](auto* r) { r->set_purpose_text(std::string("post\0", 5)); },
            "purpose_text: contains U+0000 at byte 4"},
           {[](auto* r) { r->set_request_id("case-1\x1b[2K"); },
            "request_id: contains U+001B at byte 6"}}) {
    v1::VerifyCivilStatusRequest request = Claim(1);
    mutate(&request);
    absl::StatusOr<Response> refused =
        registry_->VerifyCivilStatus(request, Actor(kLimited));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << error;
    EXPECT_THAT(refused.status().message(), HasSubstr(error));
  }
  const std::vector<AuditRecord> refused = AuditOf(kLimited);
  ASSERT_EQ(refused.size(), 5u);
  for (const AuditRecord& record : refused) {
    EXPECT_EQ(record.event.outcome,
              static_cast<int>(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(record.event.purpose.find('\n'), std::string::npos);
  }
  EXPECT_EQ(refused[2].event.purpose,
            "BORDER_CROSSING: post 7\\nDECISION: MATCH");
  EXPECT_EQ(refused[4].event.request_id, "case-1\\x1b[2K");
  // LIMITED's quota of 3 is whole.
  for (int i = 0; i < 3; ++i) Verify(Claim(1), kLimited);
  EXPECT_EQ(
      registry_->VerifyCivilStatus(Claim(1), Actor(kLimited)).status().code(),
      absl::StatusCode::kResourceExhausted);
}

TEST_F(PartnerRegistryTest, DailyQuotaSurvivesRestartAndResetsAtUtcMidnight) {
  // A refused call takes nothing from the quota.
  v1::VerifyCivilStatusRequest refused = Claim(1);
  refused.set_purpose(v1::SOCIAL_BENEFITS);
  EXPECT_FALSE(registry_->VerifyCivilStatus(refused, Actor(kLimited)).ok());
  for (int i = 0; i < 2; ++i) Verify(Claim(1), kLimited);
  Open();  // a restart
  // NOT_FOUND answers count too (probing unknown ids is not free).
  v1::VerifyCivilStatusRequest unknown = Claim(1);
  unknown.set_national_id("N404");
  EXPECT_EQ(Verify(unknown, kLimited).decision(), Response::NOT_FOUND);
  absl::StatusOr<Response> spent =
      registry_->VerifyCivilStatus(Claim(1), Actor(kLimited));
  EXPECT_EQ(spent.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(spent.status().message(),
              HasSubstr("daily_quota: principal hawiya://partner/LIMITED has "
                        "used 3 of its 3 verifications for 2026-11-30"));
  Open();
  EXPECT_EQ(
      registry_->VerifyCivilStatus(Claim(1), Actor(kLimited)).status().code(),
      absl::StatusCode::kResourceExhausted);
  // FULL has no quota; LIMITED's is its own.
  Verify(Claim(1), kFull);
  now_ += absl::Hours(14);  // 2026-12-01 00:00 UTC
  EXPECT_EQ(Verify(Claim(1), kLimited).decision(), Response::MATCH);
}

TEST_F(PartnerRegistryTest, BatchAnswersItemByItemWithMixedResults) {
  v1::VerifyCivilStatusBatchRequest batch;
  *batch.add_requests() = Claim(1);  // MATCH
  v1::VerifyCivilStatusRequest unknown = Claim(1);
  unknown.set_request_id("unknown");
  unknown.set_national_id("N404");
  *batch.add_requests() = unknown;  // NOT_FOUND
  v1::VerifyCivilStatusRequest invalid = Claim(1);
  invalid.set_request_id("invalid");
  invalid.clear_purpose_text();
  *batch.add_requests() = invalid;  // INVALID_ARGUMENT
  v1::VerifyCivilStatusRequest wrong = Claim(1);
  wrong.set_request_id("wrong");
  wrong.set_sex(v1::FEMALE);
  *batch.add_requests() = wrong;     // NO_MATCH
  *batch.add_requests() = Claim(2);  // revoked: INCONCLUSIVE
  absl::StatusOr<v1::VerifyCivilStatusBatchResponse> response =
      registry_->VerifyCivilStatusBatch(batch, Actor(kFull, kBatchMethod));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 5);
  EXPECT_EQ(response->results(0).response().decision(), Response::MATCH);
  EXPECT_EQ(response->results(1).response().decision(), Response::NOT_FOUND);
  EXPECT_FALSE(response->results(2).has_response());
  EXPECT_EQ(response->results(2).error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(response->results(2).error_message(),
              HasSubstr("requests[2].purpose_text: required"));
  EXPECT_EQ(response->results(3).response().decision(), Response::NO_MATCH);
  EXPECT_EQ(response->results(4).response().decision(), Response::INCONCLUSIVE);
  const v1::GetSigningKeysResponse keys = Keys();
  for (int i : {0, 1, 3, 4}) {
    absl::StatusOr<v1::ReceiptPayload> payload =
        VerifyReceipt(response->results(i).response().receipt(), keys);
    ASSERT_TRUE(payload.ok()) << payload.status();
    EXPECT_EQ(payload->request_id(), batch.requests(i).request_id());
    EXPECT_EQ(payload->request_digest(), RequestDigest(batch.requests(i)));
  }
  // One record per item, in order, each with its own outcome.
  std::vector<std::string> audited;
  for (const AuditRecord& r : AuditOf(kFull)) {
    EXPECT_EQ(r.event.method, kBatchMethod);
    audited.push_back(absl::StrCat(r.event.request_id, ":", r.event.outcome,
                                   ":", r.event.decision));
  }
  EXPECT_THAT(audited, ElementsAre("case-1:0:MATCH", "unknown:0:NOT_FOUND",
                                   "invalid:3:", "wrong:0:NO_MATCH",
                                   "case-2:0:INCONCLUSIVE"));

  // LIMITED's quota (3) is smaller than the 4 answerable items: nothing is
  // answered.
  absl::StatusOr<v1::VerifyCivilStatusBatchResponse> over =
      registry_->VerifyCivilStatusBatch(batch, Actor(kLimited, kBatchMethod));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Verify(Claim(1), kLimited).decision(), Response::MATCH);

  v1::VerifyCivilStatusBatchRequest too_many;
  for (int i = 0; i < 101; ++i) *too_many.add_requests() = Claim(1);
  EXPECT_THAT(registry_->VerifyCivilStatusBatch(too_many, Actor(kFull))
                  .status()
                  .message(),
              HasSubstr("requests: at most 100"));
}

TEST_F(PartnerRegistryTest, EachAnswerIsAuditedWithPurposeAndDisclosure) {
  Verify(Claim(1));
  Verify(Claim(1), kLimited);
  v1::VerifyCivilStatusRequest refused = Claim(1);
  refused.set_purpose(v1::VISA_APPLICATION);
  EXPECT_FALSE(registry_->VerifyCivilStatus(refused, Actor(kLimited)).ok());

  std::vector<AuditRecord> full = AuditOf(kFull);
  ASSERT_EQ(full.size(), 1u);
  EXPECT_EQ(full[0].event.purpose, "BORDER_CROSSING: entry at post 7, file 1");
  EXPECT_EQ(full[0].event.decision, "MATCH");
  EXPECT_THAT(full[0].event.disclosed,
              ElementsAre("state", "civil_status", "sex", "date_of_birth",
                          "nationality"));
  std::vector<AuditRecord> limited = AuditOf(kLimited);
  ASSERT_EQ(limited.size(), 2u);
  EXPECT_EQ(limited[0].event.decision, "MATCH");
  EXPECT_THAT(limited[0].event.disclosed, IsEmpty());
  EXPECT_EQ(limited[1].event.outcome,
            static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(limited[1].event.purpose,
            "VISA_APPLICATION: entry at post 7, file 1");
  EXPECT_EQ(limited[1].event.decision, "");

  // The chain, new columns included, verifies; and editing what was
  // disclosed is found at that record.
  absl::StatusOr<v1::VerifyAuditLogResponse> verified =
      registry_->VerifyAuditLog(v1::VerifyAuditLogRequest());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->intact()) << verified->reason();
  registry_.reset();
  testing::RawDb(dir_ + "/hawiya.db")
      .Exec(absl::StrCat("UPDATE audit SET disclosed = 'state' WHERE seq = ",
                         full[0].sequence));
  absl::StatusOr<AuditVerification> broken =
      VerifyAuditDatabase(dir_ + "/hawiya.db");
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_FALSE(broken->intact);
  EXPECT_EQ(broken->first_broken_sequence, full[0].sequence);
}

TEST_F(PartnerRegistryTest, OldReceiptsVerifyAfterKeyRotationAndRestart) {
  const Response before = Verify(Claim(1));
  const std::string first_key = before.receipt().key_id();
  now_ += absl::Minutes(1);
  absl::StatusOr<v1::RotateSigningKeyResponse> rotated =
      registry_->RotateSigningKey();
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->previous_key_id(), first_key);
  EXPECT_NE(rotated->key().key_id(), first_key);
  const Response after = Verify(Claim(1));
  EXPECT_EQ(after.receipt().key_id(), rotated->key().key_id());

  Open();  // the keys are in the store
  const v1::GetSigningKeysResponse keys = Keys();
  ASSERT_EQ(keys.keys_size(), 2);
  EXPECT_EQ(keys.current_key_id(), rotated->key().key_id());
  EXPECT_EQ(keys.keys(0).key_id(), first_key);
  EXPECT_TRUE(keys.keys(0).has_valid_until());
  EXPECT_FALSE(keys.keys(1).has_valid_until());
  for (const v1::SigningKey& key : keys.keys()) {
    EXPECT_EQ(key.algorithm(), "Ed25519");
    EXPECT_EQ(key.public_key().size(), kEd25519KeyBytes);
  }
  EXPECT_TRUE(VerifyReceipt(before.receipt(), keys).ok());
  EXPECT_TRUE(VerifyReceipt(after.receipt(), keys).ok());
  EXPECT_EQ(Verify(Claim(1)).receipt().key_id(), rotated->key().key_id());
  // The retired key's private half is gone from the store.
  EXPECT_EQ(testing::RawDb(dir_ + "/hawiya.db")
                .Blob(absl::StrCat("SELECT sealed_private_key FROM "
                                   "signing_keys WHERE key_id = '",
                                   first_key, "'")),
            "");
  // Without the old key published, the old receipt cannot be checked.
  v1::GetSigningKeysResponse current_only;
  *current_only.add_keys() = keys.keys(1);
  EXPECT_EQ(VerifyReceipt(before.receipt(), current_only).status().code(),
            absl::StatusCode::kNotFound);
}

// The private signing key is sealed by the key-encryption key: not in the
// database in the clear, and re-sealed by a KEK rotation (the registry
// still signs, and the keys still load, after it).
TEST_F(PartnerRegistryTest, SigningKeySealedAndFollowsKekRotation) {
  const Response response = Verify(Claim(1));
  const std::string key_id = response.receipt().key_id();
  {
    testing::RawDb raw(dir_ + "/hawiya.db");
    const std::string sealed = raw.Blob(absl::StrCat(
        "SELECT sealed_private_key FROM signing_keys WHERE key_id = '", key_id,
        "'"));
    EXPECT_EQ(sealed.size(), kEd25519KeyBytes + kAeadOverheadBytes);
  }
  // A retired key (private half deleted) beside the current one.
  now_ += absl::Minutes(1);
  absl::StatusOr<v1::RotateSigningKeyResponse> rotated =
      registry_->RotateSigningKey();
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  const std::string new_key = dir_ + "/kek-2.key";
  ASSERT_TRUE(CreateKeyFile(new_key).ok());
  v1::RotateKeyRequest rotate;
  rotate.set_new_key_file(new_key);
  ASSERT_TRUE(registry_->RotateKey(rotate, [] { return false; }).ok());
  registry_.reset();
  RegistryOptions options;
  options.data_dir = dir_;
  options.key_file = new_key;
  options.snapshots = false;
  options.partner_policies = *PartnerPolicies::FromConfig(Policies());
  absl::StatusOr<std::unique_ptr<Registry>> reopened = Registry::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  absl::StatusOr<v1::GetSigningKeysResponse> keys =
      (*reopened)->GetSigningKeys();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->current_key_id(), rotated->key().key_id());
  EXPECT_TRUE(VerifyReceipt(response.receipt(), *keys).ok());
  // The current private key opens under the new KEK: it still signs.
  v1::VerifyCivilStatusRequest request = Claim(1);
  absl::StatusOr<Response> signed_after =
      (*reopened)->VerifyCivilStatus(request, Actor(kFull));
  ASSERT_TRUE(signed_after.ok()) << signed_after.status();
  EXPECT_EQ(signed_after->receipt().key_id(), rotated->key().key_id());
  EXPECT_TRUE(VerifyReceipt(signed_after->receipt(), *keys).ok());
}

// Records without the partner fields hash as before; with them, the
// encoding extends the old one.
TEST(PartnerAuditEncodingTest, ExtendsTheEncodingOnlyWhenSet) {
  AuditEvent plain;
  plain.principal = "p";
  plain.method = kMethod;
  AuditEvent partner = plain;
  const std::string before = CanonicalAuditBytes(1, AuditGenesisHash(), plain);
  partner.decision = "MATCH";
  const std::string after = CanonicalAuditBytes(1, AuditGenesisHash(), partner);
  EXPECT_EQ(after.substr(0, before.size()), before);
  EXPECT_GT(after.size(), before.size());
  EXPECT_NE(AuditHash(1, AuditGenesisHash(), plain),
            AuditHash(1, AuditGenesisHash(), partner));
  AuditEvent moved = plain;
  moved.purpose = "MATCH";  // same bytes in another field
  EXPECT_NE(CanonicalAuditBytes(1, AuditGenesisHash(), moved), after);
}

}  // namespace
}  // namespace hawiya::enroll
