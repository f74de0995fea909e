// Input limits of the Registry (enroll/validation.h rules, as the registry
// applies them): documents and templates per person, one template per finger
// and eye, no control characters in free text, bounded ids that are never
// echoed whole, one way to name a person, valid audit time ranges, and pages
// that stay under a default client's 4 MiB receive limit. Every refusal is
// INVALID_ARGUMENT naming the field, is audited, and writes nothing.
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "enroll/registry.h"
#include "enroll/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/adjudication.pb.h"
#include "hawiya/v1/audit.pb.h"
#include "hawiya/v1/enrollment.pb.h"
#include "hawiya/v1/match.pb.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"
#include "tests/testing/raw_db.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::hawiya::testing::RawDb;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// gRPC's default receive limit of a client.
constexpr size_t kDefaultClientReceiveBytes = 4 << 20;

std::string NewDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr ? base : "/tmp", "/limits-XXXXXX");
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

v1::Template Fingerprint(uint32_t position) {
  v1::Template t;
  t.set_modality(v1::FINGERPRINT);
  t.set_position(position);
  t.set_quality(80);
  for (int i = 0; i < 256; ++i) {
    t.add_vector(std::sin(0.37f * static_cast<float>(i + position)));
  }
  return t;
}

// Reads every page of a List method, `list` (request -> StatusOr<page>),
// from `request` on, passing each to `visit`; expects each page under a
// default client's receive limit. Returns the number of pages.
template <typename Request, typename List, typename Visit>
int ReadAllPages(Request request, const List& list, const Visit& visit) {
  for (int pages = 1;; ++pages) {
    auto page = list(request);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return pages;
    EXPECT_LT(page->ByteSizeLong(), kDefaultClientReceiveBytes);
    visit(*page);
    if (page->next_page_token().empty()) return pages;
    request.set_page_token(page->next_page_token());
  }
}

// `count` documents with 32-character numbers: about 45 bytes each.
void AddDocuments(v1::Person* person, int count) {
  for (int i = 0; i < count; ++i) {
    v1::Document* document = person->add_documents();
    document->set_type(v1::PASSPORT);
    document->set_number(absl::StrCat("P", std::string(23, '0'), 10000000 + i));
    document->set_issuing_country("KWT");
  }
}

class InputLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewDir();
    Open(InputLimits());
  }
  void TearDown() override {
    registry_.reset();
    fs::remove_all(dir_);
  }

  void Open(const InputLimits& limits) {
    registry_.reset();
    RegistryOptions options;
    options.data_dir = dir_;
    options.snapshots = false;
    options.limits = limits;
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }

  v1::EnrollRequest EnrollRequest(uint64_t n) {
    v1::EnrollRequest request = services::SyntheticEnrollRequest(model_, n);
    request.set_request_id(absl::StrCat("enroll-", n));
    return request;
  }

  std::string Enroll(uint64_t n) {
    absl::StatusOr<v1::EnrollResponse> enrolled =
        registry_->Enroll(EnrollRequest(n));
    EXPECT_TRUE(enrolled.ok()) << enrolled.status();
    return enrolled.ok() ? enrolled->person().subject_id() : "";
  }

  // Every audit record, oldest first, read page by page.
  std::vector<v1::AuditRecord> AuditRecords() {
    std::vector<v1::AuditRecord> records;
    v1::ListAuditRecordsRequest request;
    request.set_page_size(1000);
    ReadAllPages(
        request,
        [this](const auto& r) { return registry_->ListAuditRecords(r); },
        [&records](const v1::ListAuditRecordsResponse& page) {
          records.insert(records.end(), page.records().begin(),
                         page.records().end());
        });
    return records;
  }

  // The record of the last call of `method` ("Service/Method", as Actor
  // takes it) before this read.
  v1::AuditRecord LastRecordOf(const std::string& method) {
    v1::AuditRecord last;
    for (v1::AuditRecord& record : AuditRecords()) {
      if (record.method() == absl::StrCat("/hawiya.v1.", method)) {
        last = std::move(record);
      }
    }
    return last;
  }

  int64_t Count(const std::string& table) {
    return RawDb(dir_ + "/hawiya.db").Int("SELECT COUNT(*) FROM " + table);
  }

  // Expects INVALID_ARGUMENT whose message starts with `error`, audited
  // under `method` as INVALID_ARGUMENT, with nothing written.
  void ExpectRefused(const absl::Status& status, const std::string& error,
                     const std::string& method) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), StartsWith(error));
    EXPECT_LT(status.message().size(), 300u);
    EXPECT_EQ(LastRecordOf(method).outcome(), "INVALID_ARGUMENT") << error;
  }

  AuditActor Actor(const std::string& method) {
    return AuditActor{"hawiya://dev/test", "registrar",
                      absl::StrCat("/hawiya.v1.", method)};
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string dir_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(InputLimitsTest, DocumentsPerPersonAreLimited) {
  v1::EnrollRequest request = EnrollRequest(1);
  request.mutable_person()->clear_documents();
  AddDocuments(request.mutable_person(), 17);
  ExpectRefused(
      registry_->Enroll(request, Actor("EnrollmentService/Enroll")).status(),
      "person.documents: at most 16, not 17", "EnrollmentService/Enroll");
  EXPECT_EQ(Count("persons"), 0);

  // UpdatePerson may not bring a person over it either.
  const std::string subject = Enroll(2);
  v1::UpdatePersonRequest update;
  update.mutable_person()->set_subject_id(subject);
  AddDocuments(update.mutable_person(), 17);
  update.mutable_update_mask()->add_paths("documents");
  update.set_expected_version(1);
  ExpectRefused(
      registry_->UpdatePerson(update, Actor("EnrollmentService/UpdatePerson"))
          .status(),
      "person.documents: at most 16, not 17", "EnrollmentService/UpdatePerson");
  v1::GetPersonRequest get;
  get.set_subject_id(subject);
  EXPECT_EQ(registry_->GetPerson(get)->version(), 1);

  // The limit is the operator's.
  InputLimits more;
  more.max_documents = 17;
  Open(more);
  EXPECT_TRUE(registry_->Enroll(request).ok());
  EXPECT_TRUE(registry_->UpdatePerson(update).ok());
}

TEST_F(InputLimitsTest, TemplatesPerPersonAndOnePerFinger) {
  v1::EnrollRequest request = EnrollRequest(1);
  *request.add_templates() = Fingerprint(3);
  *request.add_templates() = Fingerprint(3);
  ExpectRefused(
      registry_->Enroll(request, Actor("EnrollmentService/Enroll")).status(),
      "templates[2]: a second FINGERPRINT at position 3, after templates[1]",
      "EnrollmentService/Enroll");
  EXPECT_EQ(Count("persons"), 0);
  EXPECT_EQ(Count("templates"), 0);

  // One face and four more captures; a sixth is refused.
  const std::string subject = Enroll(2);
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("replace-2");
  replace.set_subject_id(subject);
  for (uint64_t capture = 0; capture < 6; ++capture) {
    *replace.add_templates() =
        services::SyntheticFaceTemplate(model_, 2, capture);
  }
  ExpectRefused(registry_
                    ->ReplaceTemplates(
                        replace, Actor("EnrollmentService/ReplaceTemplates"))
                    .status(),
                "templates[5]: more than 5 FACE templates for one person",
                "EnrollmentService/ReplaceTemplates");
  EXPECT_EQ(Count("templates"), 1);
  replace.mutable_templates()->RemoveLast();
  absl::StatusOr<v1::Person> replaced = registry_->ReplaceTemplates(replace);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(Count("templates"), 5);
}

// A DUPLICATE decision's merge may not give the existing person two
// templates of one finger (or more of a modality than the limit).
TEST_F(InputLimitsTest, MergeIsHeldToTheTemplateLimits) {
  v1::EnrollRequest first = EnrollRequest(1);
  *first.add_templates() = Fingerprint(3);
  ASSERT_TRUE(registry_->Enroll(first).ok());
  // The same person again under another national id: held for a case.
  v1::EnrollRequest again = EnrollRequest(2);
  *again.mutable_person()->mutable_name_ar() = first.person().name_ar();
  *again.mutable_person()->mutable_name_latin() = first.person().name_latin();
  *again.mutable_person()->mutable_date_of_birth() =
      first.person().date_of_birth();
  *again.add_templates() = Fingerprint(3);
  absl::StatusOr<v1::EnrollResponse> held = registry_->Enroll(again);
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_FALSE(held->case_id().empty());
  EXPECT_EQ(Count("templates"), 4);

  v1::DecideCaseRequest decide;
  decide.set_request_id("decide-1");
  decide.set_case_id(held->case_id());
  decide.set_decision(v1::DUPLICATE);
  decide.set_comment("same person");
  decide.set_merge_templates(true);
  const absl::Status refused =
      registry_->DecideCase(decide, Actor("AdjudicationService/DecideCase"))
          .status();
  ExpectRefused(refused,
                "merge_templates: the templates duplicate_of would hold (its "
                "own, then the merged ones) break a limit (templates[",
                "AdjudicationService/DecideCase");
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("a second FINGERPRINT at position 3"));
  v1::GetPersonRequest get;
  get.set_subject_id(held->person().subject_id());
  EXPECT_EQ(registry_->GetPerson(get)->state(), v1::PENDING_ADJUDICATION);
  EXPECT_EQ(Count("templates"), 4);
  // Without the merge the decision stands.
  decide.set_request_id("decide-2");
  decide.set_merge_templates(false);
  absl::StatusOr<v1::Case> decided = registry_->DecideCase(decide);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(registry_->GetPerson(get)->state(), v1::REVOKED);
}

TEST_F(InputLimitsTest, ControlCharactersInFreeTextAreRefused) {
  v1::EnrollRequest enroll = EnrollRequest(1);
  enroll.set_request_id("enroll-1\r\nmethod: forged");
  ExpectRefused(
      registry_->Enroll(enroll, Actor("EnrollmentService/Enroll")).status(),
      "request_id: contains U+000D at byte 8", "EnrollmentService/Enroll");
  // The refused call's record holds the id escaped, on one line.
  EXPECT_EQ(LastRecordOf("EnrollmentService/Enroll").request_id(),
            "enroll-1\\r\\nmethod: forged");

  enroll = EnrollRequest(1);
  enroll.mutable_person()->set_place_of_birth("Kuwait\x1b[8m");
  ExpectRefused(
      registry_->Enroll(enroll, Actor("EnrollmentService/Enroll")).status(),
      "person.place_of_birth: contains U+001B", "EnrollmentService/Enroll");
  enroll = EnrollRequest(1);
  enroll.mutable_templates(0)->set_algorithm(std::string("arcface\0", 8));
  ExpectRefused(
      registry_->Enroll(enroll, Actor("EnrollmentService/Enroll")).status(),
      "templates[0].algorithm: contains U+0000", "EnrollmentService/Enroll");
  EXPECT_EQ(Count("persons"), 0);

  const std::string subject = Enroll(2);
  v1::DeletePersonRequest remove;
  remove.set_subject_id(subject);
  remove.set_reason("duplicate\nDELETED BY admin");
  ExpectRefused(
      registry_->DeletePerson(remove, Actor("EnrollmentService/DeletePerson")),
      "reason: contains U+000A", "EnrollmentService/DeletePerson");
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id(std::string("r\0", 2));
  replace.set_subject_id(subject);
  ExpectRefused(registry_
                    ->ReplaceTemplates(
                        replace, Actor("EnrollmentService/ReplaceTemplates"))
                    .status(),
                "request_id: contains U+0000",
                "EnrollmentService/ReplaceTemplates");
  v1::GetPersonRequest get;
  get.set_subject_id(subject);
  EXPECT_EQ(registry_->GetPerson(get)->state(), v1::ACTIVE);
  EXPECT_EQ(Count("templates"), 1);

  v1::DecideCaseRequest decide;
  decide.set_request_id("decide-1");
  decide.set_case_id("case-1");
  decide.set_decision(v1::DISTINCT);
  decide.set_comment("checked\x1b]0;pwned\x07");
  ExpectRefused(
      registry_->DecideCase(decide, Actor("AdjudicationService/DecideCase"))
          .status(),
      "comment: contains U+001B", "AdjudicationService/DecideCase");
  decide.set_comment("checked");
  decide.set_request_id("decide\x85");
  ExpectRefused(
      registry_->DecideCase(decide, Actor("AdjudicationService/DecideCase"))
          .status(),
      "request_id: is not valid UTF-8", "AdjudicationService/DecideCase");
}

TEST_F(InputLimitsTest, LongIdsAreRefusedBeforeLookupAndNeverEchoed) {
  const std::string huge(4 << 20, 'a');
  v1::GetPersonRequest get;
  get.set_subject_id(huge);
  ExpectRefused(
      registry_->GetPerson(get, Actor("EnrollmentService/GetPerson")).status(),
      "subject_id: must be at most 64", "EnrollmentService/GetPerson");
  EXPECT_LE(LastRecordOf("EnrollmentService/GetPerson").subject_id().size(),
            256u);

  v1::DeletePersonRequest remove;
  remove.set_subject_id(huge);
  remove.set_reason("test");
  ExpectRefused(
      registry_->DeletePerson(remove, Actor("EnrollmentService/DeletePerson")),
      "subject_id: must be at most 64", "EnrollmentService/DeletePerson");
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("replace-1");
  replace.set_subject_id(huge);
  ExpectRefused(registry_
                    ->ReplaceTemplates(
                        replace, Actor("EnrollmentService/ReplaceTemplates"))
                    .status(),
                "subject_id: must be at most 64",
                "EnrollmentService/ReplaceTemplates");
  v1::UpdatePersonRequest update;
  update.mutable_person()->set_subject_id(huge);
  update.mutable_update_mask()->add_paths("sex");
  update.set_expected_version(1);
  ExpectRefused(
      registry_->UpdatePerson(update, Actor("EnrollmentService/UpdatePerson"))
          .status(),
      "person.subject_id: must be at most 64",
      "EnrollmentService/UpdatePerson");
  update.mutable_person()->set_subject_id("abc");
  update.mutable_update_mask()->set_paths(0, huge);
  ExpectRefused(
      registry_->UpdatePerson(update, Actor("EnrollmentService/UpdatePerson"))
          .status(),
      "update_mask: unknown field 'aaaa", "EnrollmentService/UpdatePerson");
  v1::VerifyRequest verify;
  verify.set_subject_id(huge);
  *verify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  ExpectRefused(
      registry_->Verify(verify, Actor("MatchService/Verify")).status(),
      "subject_id: must be at most 64", "MatchService/Verify");
  v1::IdentifyRequest identify;
  *identify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  identify.add_gallery("abc");
  identify.add_gallery(huge);
  ExpectRefused(
      registry_->Identify(identify, Actor("MatchService/Identify")).status(),
      "gallery[1]: must be at most 64", "MatchService/Identify");

  v1::GetCaseRequest get_case;
  get_case.set_case_id(huge);
  ExpectRefused(
      registry_->GetCase(get_case, Actor("AdjudicationService/GetCase"))
          .status(),
      "case_id: must be at most 64", "AdjudicationService/GetCase");
  v1::DecideCaseRequest decide;
  decide.set_request_id("decide-1");
  decide.set_case_id(huge);
  decide.set_decision(v1::DISTINCT);
  decide.set_comment("checked");
  ExpectRefused(
      registry_->DecideCase(decide, Actor("AdjudicationService/DecideCase"))
          .status(),
      "case_id: must be at most 64", "AdjudicationService/DecideCase");
  decide.set_case_id("case-1");
  decide.set_decision(v1::DUPLICATE);
  decide.set_duplicate_of(huge);
  ExpectRefused(
      registry_->DecideCase(decide, Actor("AdjudicationService/DecideCase"))
          .status(),
      "duplicate_of: must be at most 64", "AdjudicationService/DecideCase");

  v1::ListPersonsRequest persons;
  persons.set_page_token(huge);
  ExpectRefused(
      registry_->ListPersons(persons, Actor("EnrollmentService/ListPersons"))
          .status(),
      "page_token: at most 256 bytes", "EnrollmentService/ListPersons");
  v1::ListCasesRequest cases;
  cases.set_page_token(huge);
  ExpectRefused(
      registry_->ListCases(cases, Actor("AdjudicationService/ListCases"))
          .status(),
      "page_token: at most 256 bytes", "AdjudicationService/ListCases");
  v1::ListAuditRecordsRequest audit;
  audit.set_page_token(huge);
  ExpectRefused(
      registry_->ListAuditRecords(audit, Actor("AuditService/ListAuditRecords"))
          .status(),
      "page_token: at most 256 bytes", "AuditService/ListAuditRecords");
}

TEST_F(InputLimitsTest, SubjectIdAndNationalIdTogetherAreRefused) {
  const std::string one = Enroll(1);
  Enroll(2);
  const v1::Person two = services::SyntheticPerson(2);
  v1::GetPersonRequest get;
  get.set_subject_id(one);
  get.set_national_id(two.national_id());
  get.set_issuing_country(two.issuing_country());
  ExpectRefused(
      registry_->GetPerson(get, Actor("EnrollmentService/GetPerson")).status(),
      "subject_id, national_id: give subject_id, or national_id and "
      "issuing_country, not both",
      "EnrollmentService/GetPerson");
  v1::VerifyRequest verify;
  verify.set_subject_id(one);
  verify.set_issuing_country("KWT");
  *verify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  ExpectRefused(
      registry_->Verify(verify, Actor("MatchService/Verify")).status(),
      "subject_id, issuing_country: give subject_id, or national_id and "
      "issuing_country, not both",
      "MatchService/Verify");
  // Each alone still works.
  verify.clear_issuing_country();
  EXPECT_TRUE(registry_->Verify(verify).ok());
  get.clear_subject_id();
  absl::StatusOr<v1::Person> found = registry_->GetPerson(get);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->national_id(), two.national_id());
}

TEST_F(InputLimitsTest, AuditTimeRangeIsValidated) {
  Enroll(1);
  const std::string method = "AuditService/ListAuditRecords";
  struct Bad {
    std::function<void(v1::ListAuditRecordsRequest*)> mutate;
    std::string error;
  };
  for (const Bad& bad : std::vector<Bad>{
           // Its microseconds overflow int64 (to a time before every record).
           {[](auto* r) {
              r->mutable_start_time()->set_seconds(9223372036855);
            },
            "start_time.seconds: 9223372036855 is outside"},
           {[](auto* r) { r->mutable_start_time()->set_nanos(-1); },
            "start_time.nanos: -1 out of range"},
           {[](auto* r) { r->mutable_end_time()->set_nanos(1000000000); },
            "end_time.nanos: 1000000000 out of range"},
           // 10000-01-01T00:00:00Z.
           {[](auto* r) { r->mutable_end_time()->set_seconds(253402300800); },
            "end_time.seconds: 253402300800 is outside"},
       }) {
    v1::ListAuditRecordsRequest request;
    bad.mutate(&request);
    absl::StatusOr<v1::ListAuditRecordsResponse> page =
        registry_->ListAuditRecords(request, Actor(method));
    ExpectRefused(page.status(), bad.error, method);
  }
  // The whole valid range is accepted: from year 1 to the last instant of
  // 9999, and a range wholly before 1970 holds nothing.
  v1::ListAuditRecordsRequest all;
  all.mutable_start_time()->set_seconds(-62135596800);
  all.mutable_end_time()->set_seconds(253402300799);
  all.mutable_end_time()->set_nanos(999999999);
  absl::StatusOr<v1::ListAuditRecordsResponse> page =
      registry_->ListAuditRecords(all);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_GE(page->records_size(), 1);
  v1::ListAuditRecordsRequest before;
  before.mutable_start_time()->set_seconds(-1000);
  before.mutable_end_time()->set_seconds(-10);
  page = registry_->ListAuditRecords(before);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->records_size(), 0);
}

// Persons of ~0.43 MB each (10,000 documents, under a raised limit): a page
// of 100 would be 5.2 MB; each page stays under 4 MiB and all are listed.
TEST_F(InputLimitsTest, PersonAndCasePagesStayUnderTheClientLimit) {
  InputLimits limits;
  limits.max_documents = 10000;
  Open(limits);
  constexpr int kPersons = 12;
  std::set<std::string> enrolled;
  for (int n = 0; n < kPersons; ++n) {
    v1::EnrollRequest request = EnrollRequest(n);
    request.clear_templates();
    // Persons 1.. share person 0's name and date of birth: each opens a
    // case holding a copy of its large record.
    if (n > 0) {
      const v1::Person first = services::SyntheticPerson(0);
      *request.mutable_person()->mutable_name_ar() = first.name_ar();
      *request.mutable_person()->mutable_name_latin() = first.name_latin();
      *request.mutable_person()->mutable_date_of_birth() =
          first.date_of_birth();
    }
    request.mutable_person()->clear_documents();
    AddDocuments(request.mutable_person(), 10000);
    absl::StatusOr<v1::EnrollResponse> response = registry_->Enroll(request);
    ASSERT_TRUE(response.ok()) << response.status();
    enrolled.insert(response->person().subject_id());
  }
  std::set<std::string> listed;
  v1::ListPersonsRequest list_persons;
  list_persons.set_page_size(100);
  EXPECT_GE(ReadAllPages(
                list_persons,
                [this](const auto& r) { return registry_->ListPersons(r); },
                [&listed](const v1::ListPersonsResponse& page) {
                  EXPECT_GE(page.persons_size(), 1);
                  for (const v1::Person& person : page.persons()) {
                    EXPECT_TRUE(listed.insert(person.subject_id()).second);
                  }
                }),
            2);
  EXPECT_EQ(listed, enrolled);

  std::set<std::string> cases;
  v1::ListCasesRequest list_cases;
  list_cases.set_page_size(100);
  EXPECT_GE(
      ReadAllPages(
          list_cases, [this](const auto& r) { return registry_->ListCases(r); },
          [&cases](const v1::ListCasesResponse& page) {
            for (const v1::Case& c : page.cases()) {
              EXPECT_TRUE(cases.insert(c.case_id()).second);
            }
          }),
      2);
  EXPECT_EQ(cases.size(), static_cast<size_t>(kPersons - 1));
}

// Audit records of ListPersons calls name every subject listed (1,000 ids,
// ~33 KB each): a page of 1,000 such records would be 33 MB.
TEST_F(InputLimitsTest, AuditPagesStayUnderTheClientLimit) {
  std::vector<v1::EnrollRequest> batch;
  for (uint64_t n = 0; n < 1000; ++n) {
    batch.push_back(EnrollRequest(n));
    batch.back().clear_templates();
  }
  ASSERT_TRUE(registry_->BatchEnroll(batch).ok());
  v1::ListPersonsRequest list;
  list.set_page_size(1000);
  constexpr int kLists = 150;
  for (int i = 0; i < kLists; ++i) {
    absl::StatusOr<v1::ListPersonsResponse> page = registry_->ListPersons(list);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_EQ(page->persons_size(), 1000);
  }
  std::vector<int64_t> sequences;
  v1::ListAuditRecordsRequest request;
  request.set_page_size(1000);
  EXPECT_GE(
      ReadAllPages(
          request,
          [this](const auto& r) { return registry_->ListAuditRecords(r); },
          [&sequences](const v1::ListAuditRecordsResponse& page) {
            for (const v1::AuditRecord& record : page.records()) {
              sequences.push_back(record.sequence());
            }
          }),
      2);
  // Every record once, in order: the BatchEnroll, the lists, and the
  // ListAuditRecords calls before the last page was read.
  ASSERT_GE(sequences.size(), static_cast<size_t>(1 + kLists));
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_EQ(sequences[i], static_cast<int64_t>(i + 1));
  }
}

}  // namespace
}  // namespace hawiya::enroll
