// Deduplication at enrollment and adjudication (issue 6, items 1 and 2):
// a fresh capture of an enrolled face is held back as PENDING_ADJUDICATION
// with its candidate; a hard-variant look-alike is not; the demographic
// pre-checks; pending persons are found by later enrollments (also after a
// restart); eight concurrent enrollments of one face leave exactly one
// ACTIVE; each decision and its effect on Verify, Identify and GetPerson;
// decisions are final; their audit records name the adjudicator.
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "enroll/audit.h"
#include "enroll/names.h"
#include "enroll/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kAdjudicator[] = "hawiya://dev/adjudicator";
constexpr char kDecide[] = "/hawiya.v1.AdjudicationService/DecideCase";
constexpr char kRegistrar[] = "hawiya://dev/registrar";
constexpr char kDelete[] = "/hawiya.v1.EnrollmentService/DeletePerson";

std::string NewDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr ? base : "/tmp", "/dedup-XXXXXX");
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

AuditActor Adjudicator() {
  return AuditActor{kAdjudicator, "adjudicator", kDecide};
}

// n spelled in letters ("Bac..."), since names hold no digits.
std::string Letters(uint64_t n) {
  std::string out = "Q";
  do {
    out += static_cast<char>('a' + n % 26);
    n /= 26;
  } while (n > 0);
  return out;
}

// Person n with a name and date of birth of its own (SyntheticPerson gives
// every person the same name), so that only the biometric check applies.
v1::Person DistinctPerson(uint64_t n) {
  v1::Person person = services::SyntheticPerson(n);
  person.mutable_name_latin()->set_given(Letters(n));
  person.mutable_name_latin()->set_family(Letters(n * 7919 + 104729));
  person.clear_name_ar();
  person.mutable_date_of_birth()->set_year(1930 + static_cast<int>(n % 80));
  person.mutable_date_of_birth()->set_month(1 + static_cast<int>(n / 80 % 12));
  person.mutable_date_of_birth()->set_day(1 + static_cast<int>(n / 960 % 28));
  return person;
}

class DedupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewDir();
    Open();
  }
  void TearDown() override {
    registry_.reset();
    fs::remove_all(dir_);
  }

  void Open(DedupOptions dedup = {}) {
    registry_.reset();
    RegistryOptions options;
    options.data_dir = dir_;
    options.snapshots = false;
    options.dedup = dedup;
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }

  // Enrolls person `n` with capture `capture` of face `identity`.
  v1::EnrollResponse Enroll(uint64_t n, uint64_t identity, uint64_t capture,
                            const matcher::SyntheticModel* model = nullptr) {
    v1::EnrollRequest request;
    request.set_request_id(absl::StrCat("enroll-", n));
    *request.mutable_person() = DistinctPerson(n);
    *request.add_templates() = services::SyntheticFaceTemplate(
        model != nullptr ? *model : model_, identity, capture);
    absl::StatusOr<v1::EnrollResponse> response = registry_->Enroll(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::EnrollResponse();
  }

  // The subjects Identify returns for capture `capture` of `identity`.
  std::vector<std::string> Identify(uint64_t identity, uint64_t capture) {
    v1::IdentifyRequest request;
    *request.add_probes() =
        services::SyntheticFaceTemplate(model_, identity, capture);
    request.set_max_candidates(10);
    absl::StatusOr<v1::IdentifyResponse> response =
        registry_->Identify(request);
    EXPECT_TRUE(response.ok()) << response.status();
    std::vector<std::string> subjects;
    if (!response.ok()) return subjects;
    for (const v1::Candidate& c : response->candidates()) {
      if (c.score() >= response->threshold()) {
        subjects.push_back(c.subject_id());
      }
    }
    return subjects;
  }

  absl::StatusOr<v1::VerifyResponse> Verify(const std::string& subject_id,
                                            uint64_t identity,
                                            uint64_t capture) {
    v1::VerifyRequest request;
    request.set_subject_id(subject_id);
    *request.add_probes() =
        services::SyntheticFaceTemplate(model_, identity, capture);
    return registry_->Verify(request);
  }

  v1::Person Get(const std::string& subject_id) {
    v1::GetPersonRequest request;
    request.set_subject_id(subject_id);
    absl::StatusOr<v1::Person> person = registry_->GetPerson(request);
    EXPECT_TRUE(person.ok()) << person.status();
    return person.ok() ? *person : v1::Person();
  }

  absl::StatusOr<v1::Case> Decide(const std::string& case_id,
                                  v1::Decision decision,
                                  const std::string& request_id,
                                  bool merge = false) {
    v1::DecideCaseRequest request;
    request.set_request_id(request_id);
    request.set_case_id(case_id);
    request.set_decision(decision);
    request.set_comment("checked the documents at the counter");
    request.set_merge_templates(merge);
    return registry_->DecideCase(request, Adjudicator());
  }

  // An Enroll (no templates) of person `n` born on `date` named `given
  // family`.
  static v1::EnrollRequest Named(const std::string& request_id, uint64_t n,
                                 const v1::Date& date, const std::string& given,
                                 const std::string& family) {
    v1::EnrollRequest request;
    request.set_request_id(request_id);
    *request.mutable_person() = DistinctPerson(n);
    *request.mutable_person()->mutable_date_of_birth() = date;
    request.mutable_person()->mutable_name_latin()->set_given(given);
    request.mutable_person()->mutable_name_latin()->set_family(family);
    return request;
  }

  // GetCase of `case_id`, which must exist.
  v1::Case GetCaseOf(const std::string& case_id) {
    v1::GetCaseRequest request;
    request.set_case_id(case_id);
    absl::StatusOr<v1::Case> got = registry_->GetCase(request);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::Case();
  }

  // Replaces the subject's templates with capture `capture` of `identity`.
  v1::Person Replace(const std::string& subject_id, uint64_t identity,
                     uint64_t capture) {
    v1::ReplaceTemplatesRequest request;
    request.set_request_id(absl::StrCat("replace-", subject_id, "-", capture));
    request.set_subject_id(subject_id);
    *request.add_templates() =
        services::SyntheticFaceTemplate(model_, identity, capture);
    absl::StatusOr<v1::Person> replaced = registry_->ReplaceTemplates(request);
    EXPECT_TRUE(replaced.ok()) << replaced.status();
    return replaced.ok() ? *replaced : v1::Person();
  }

  // A (n=1, face 7) ACTIVE and B (n=2, another capture of face 7) pending.
  void EnrollPair() {
    a_ = Enroll(1, 7, 0);
    b_ = Enroll(2, 7, 1);
    ASSERT_EQ(a_.person().state(), v1::ACTIVE);
    ASSERT_EQ(b_.person().state(), v1::PENDING_ADJUDICATION);
  }

  std::string dir_;
  std::unique_ptr<Registry> registry_;
  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  v1::EnrollResponse a_;
  v1::EnrollResponse b_;
};

// The synthetic persons the README imports are not held by the
// demographic check: no two of the first DistinctSyntheticPersons() share
// a date of birth and a matching name.
TEST(SyntheticPersonsTest, DistinctByNameOrDateOfBirth) {
  const uint64_t distinct = services::DistinctSyntheticPersons();
  ASSERT_GE(distinct, 300000u);
  absl::flat_hash_map<std::string, uint64_t> first;
  std::vector<v1::Person> runs;  // a person of each given name
  for (uint64_t n = 0; n < distinct; ++n) {
    const v1::Person p = services::SyntheticPerson(n);
    const std::string key =
        absl::StrCat(p.date_of_birth().year(), "-", p.date_of_birth().month(),
                     "-", p.date_of_birth().day(), "/", p.name_latin().given());
    const auto [it, inserted] = first.emplace(key, n);
    ASSERT_TRUE(inserted) << "persons " << it->second << " and " << n
                          << " share " << key;
    if (runs.empty() ||
        runs.back().name_latin().given() != p.name_latin().given()) {
      runs.push_back(p);
    }
  }
  ASSERT_GE(runs.size(), 20u);
  // Persons of different given names may share a date: no form of one
  // name matches a form of another.
  for (size_t a = 0; a < runs.size(); ++a) {
    for (size_t b = a + 1; b < runs.size(); ++b) {
      for (const v1::PersonName* x :
           {&runs[a].name_ar(), &runs[a].name_latin()}) {
        for (const v1::PersonName* y :
             {&runs[b].name_ar(), &runs[b].name_latin()}) {
          EXPECT_FALSE(names::CompareNames(*x, *y).match)
              << x->given() << " ~ " << y->given();
        }
      }
    }
  }
}

TEST_F(DedupTest, FreshCaptureOfAnEnrolledFaceIsHeldForAdjudication) {
  const v1::EnrollResponse a = Enroll(1, 7, 0);
  ASSERT_EQ(a.person().state(), v1::ACTIVE);
  EXPECT_THAT(a.duplicates(), IsEmpty());
  EXPECT_EQ(a.case_id(), "");

  const v1::EnrollResponse b = Enroll(2, 7, 1);
  EXPECT_EQ(b.person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(b.duplicates_size(), 1);
  EXPECT_EQ(b.duplicates(0).subject_id(), a.person().subject_id());
  EXPECT_EQ(b.duplicates(0).rank(), 1u);
  EXPECT_THAT(b.duplicates(0).reasons(), ElementsAre(v1::BIOMETRIC));
  ASSERT_EQ(b.duplicates(0).modality_scores_size(), 1);
  EXPECT_EQ(b.duplicates(0).modality_scores(0).modality(), v1::FACE);
  EXPECT_GE(b.duplicates(0).score(), 0.4f);
  EXPECT_NE(b.case_id(), "");
  EXPECT_EQ(b.person().case_id(), b.case_id());

  // Not searchable: Identify finds only A, Verify refuses B.
  EXPECT_THAT(Identify(7, 2), ElementsAre(a.person().subject_id()));
  EXPECT_EQ(Verify(b.person().subject_id(), 7, 2).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Get(b.person().subject_id()).case_id(), b.case_id());

  // A replay answers with the same case and candidates, writing nothing.
  v1::EnrollRequest again;
  again.set_request_id("enroll-2");
  *again.mutable_person() = DistinctPerson(2);
  *again.add_templates() = services::SyntheticFaceTemplate(model_, 7, 1);
  absl::StatusOr<v1::EnrollResponse> replay = registry_->Enroll(again);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->case_id(), b.case_id());
  ASSERT_EQ(replay->duplicates_size(), 1);
  EXPECT_EQ(replay->duplicates(0).subject_id(), a.person().subject_id());
}

TEST_F(DedupTest, DisabledDedupLetsTheSameFaceEnrollTwice) {
  DedupOptions off;
  off.enabled = false;
  Open(off);
  EXPECT_EQ(Enroll(1, 7, 0).person().state(), v1::ACTIVE);
  EXPECT_EQ(Enroll(2, 7, 1).person().state(), v1::ACTIVE);
}

TEST_F(DedupTest, HardVariantLookAlikeIsNotCaughtButItsOwnRecaptureIs) {
  matcher::SyntheticOptions hard_options;
  hard_options.hard = true;
  const matcher::SyntheticModel hard(hard_options);
  // Identities 0-4 share a cluster (cluster_size 100): look-alikes.
  const v1::EnrollResponse first = Enroll(1, 0, 0, &hard);
  ASSERT_EQ(first.person().state(), v1::ACTIVE);
  for (uint64_t identity = 1; identity < 5; ++identity) {
    SCOPED_TRACE(identity);
    const v1::EnrollResponse lookalike =
        Enroll(10 + identity, identity, 0, &hard);
    EXPECT_EQ(lookalike.person().state(), v1::ACTIVE);
    EXPECT_THAT(lookalike.duplicates(), IsEmpty());
  }
  // The look-alikes do resemble each other (more than strangers do), so
  // what separates them is the threshold.
  const std::vector<float> a = hard.Capture(0, 1);
  const std::vector<float> b = hard.Capture(1, 1);
  float dot = 0;
  for (size_t i = 0; i < a.size(); ++i) dot += a[i] * b[i];
  EXPECT_GT(dot, 0.1f);
  EXPECT_LT(dot, 0.4f);

  const v1::EnrollResponse recapture = Enroll(20, 0, 1, &hard);
  EXPECT_EQ(recapture.person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(recapture.duplicates_size(), 1);
  EXPECT_EQ(recapture.duplicates(0).subject_id(), first.person().subject_id());
}

TEST_F(DedupTest, ConfiguredThresholdApplies) {
  DedupOptions strict;
  strict.threshold = 0.99f;  // no fresh capture scores this high
  Open(strict);
  EXPECT_EQ(Enroll(1, 7, 0).person().state(), v1::ACTIVE);
  EXPECT_EQ(Enroll(2, 7, 1).person().state(), v1::ACTIVE);
}

TEST_F(DedupTest, SameNationalIdInAnotherCountryRaisesACase) {
  const v1::EnrollResponse kwt = Enroll(1, 7, 0);
  v1::EnrollRequest request;
  request.set_request_id("sau");
  *request.mutable_person() = DistinctPerson(2);
  request.mutable_person()->set_national_id(kwt.person().national_id());
  request.mutable_person()->set_issuing_country("SAU");
  absl::StatusOr<v1::EnrollResponse> sau = registry_->Enroll(request);
  ASSERT_TRUE(sau.ok()) << sau.status();
  EXPECT_EQ(sau->person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(sau->duplicates_size(), 1);
  EXPECT_EQ(sau->duplicates(0).subject_id(), kwt.person().subject_id());
  EXPECT_THAT(sau->duplicates(0).reasons(),
              ElementsAre(v1::NATIONAL_ID_OTHER_COUNTRY));

  // Without the demographic check it would have been ACTIVE.
  DedupOptions biometric_only;
  biometric_only.demographic_check = false;
  Open(biometric_only);
  request.set_request_id("omn");
  request.mutable_person()->set_issuing_country("OMN");
  absl::StatusOr<v1::EnrollResponse> omn = registry_->Enroll(request);
  ASSERT_TRUE(omn.ok()) << omn.status();
  EXPECT_EQ(omn->person().state(), v1::ACTIVE);
}

TEST_F(DedupTest, SameNameAcrossSpellingsAndDateOfBirthRaisesACase) {
  v1::Person recorded = DistinctPerson(1);
  recorded.mutable_name_latin()->set_given("Mohammed");
  recorded.mutable_name_latin()->set_family("Al-Sabah");
  v1::EnrollRequest first;
  first.set_request_id("first");
  *first.mutable_person() = recorded;
  ASSERT_EQ(registry_->Enroll(first)->person().state(), v1::ACTIVE);

  // Another national id, the same date of birth, the name spelled otherwise.
  const v1::EnrollRequest second =
      Named("second", 2, recorded.date_of_birth(), "Muhammad", "Al Sabah");
  absl::StatusOr<v1::EnrollResponse> caught = registry_->Enroll(second);
  ASSERT_TRUE(caught.ok()) << caught.status();
  EXPECT_EQ(caught->person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(caught->duplicates_size(), 1);
  EXPECT_THAT(caught->duplicates(0).reasons(),
              ElementsAre(v1::NAME_AND_DATE_OF_BIRTH));

  // A sibling (another given name) born the same day is not a candidate.
  v1::EnrollRequest sibling = second;
  sibling.set_request_id("sibling");
  sibling.mutable_person()->set_national_id("SIB1");
  sibling.mutable_person()->mutable_name_latin()->set_given("Abdullah");
  absl::StatusOr<v1::EnrollResponse> other = registry_->Enroll(sibling);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->person().state(), v1::ACTIVE);

  // Neither is the same name born another day.
  v1::EnrollRequest later = second;
  later.set_request_id("later");
  later.mutable_person()->set_national_id("LATER1");
  later.mutable_person()->mutable_date_of_birth()->set_year(
      recorded.date_of_birth().year() + 1);
  EXPECT_EQ(registry_->Enroll(later)->person().state(), v1::ACTIVE);
}

// A store written before schema 6 gets its persons' dates of birth indexed
// by the migration, so the demographic check finds them.
TEST_F(DedupTest, MigrationToSchema6IndexesExistingDatesOfBirth) {
  v1::EnrollRequest first;
  first.set_request_id("first");
  *first.mutable_person() = DistinctPerson(1);
  ASSERT_TRUE(registry_->Enroll(first).ok());
  registry_.reset();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/hawiya.db").c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw,
                         "DROP TABLE snapshots; "
                         "DROP TABLE distinct_pairs; DROP TABLE name_keys; "
                         "DROP TABLE cases; DROP INDEX persons_by_birth_date; "
                         "DROP INDEX persons_by_national_id; "
                         "ALTER TABLE persons DROP COLUMN flags; "
                         "ALTER TABLE persons DROP COLUMN birth_date; "
                         "PRAGMA user_version = 5",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  Open();
  v1::EnrollRequest second = first;
  second.set_request_id("second");
  second.mutable_person()->set_national_id("OTHER1");
  absl::StatusOr<v1::EnrollResponse> caught = registry_->Enroll(second);
  ASSERT_TRUE(caught.ok()) << caught.status();
  EXPECT_EQ(caught->person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(caught->duplicates_size(), 1);
  EXPECT_THAT(caught->duplicates(0).reasons(),
              ElementsAre(v1::NAME_AND_DATE_OF_BIRTH));
}

TEST_F(DedupTest, PendingPersonsAreSearchedByLaterEnrollmentsAlsoAfterRestart) {
  EnrollPair();
  // C, a third capture of face 7: both A (ACTIVE) and B (pending) are
  // candidates.
  const v1::EnrollResponse c = Enroll(3, 7, 2);
  EXPECT_EQ(c.person().state(), v1::PENDING_ADJUDICATION);
  std::vector<std::string> ids;
  for (const v1::Candidate& d : c.duplicates()) ids.push_back(d.subject_id());
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(a_.person().subject_id(),
                                                   b_.person().subject_id()));

  // Revoke A: B alone is left to catch face 7, from the pending gallery
  // the registry rebuilds from the store at Open.
  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(a_.person().subject_id());
  revoke.set_reason("test");
  ASSERT_TRUE(registry_->DeletePerson(revoke).ok());
  Open();
  const v1::EnrollResponse d = Enroll(4, 7, 3);
  EXPECT_EQ(d.person().state(), v1::PENDING_ADJUDICATION);
  ids.clear();
  for (const v1::Candidate& x : d.duplicates()) ids.push_back(x.subject_id());
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(b_.person().subject_id(),
                                                   c.person().subject_id()));
}

TEST_F(DedupTest, EightConcurrentEnrollmentsOfOneFaceLeaveOneActive) {
  std::vector<absl::StatusOr<v1::EnrollResponse>> results(8);
  std::vector<std::thread> threads;
  for (uint64_t i = 0; i < 8; ++i) {
    threads.emplace_back([this, i, &results] {
      v1::EnrollRequest request;
      request.set_request_id(absl::StrCat("concurrent-", i));
      *request.mutable_person() = DistinctPerson(100 + i);
      *request.add_templates() = services::SyntheticFaceTemplate(model_, 9, i);
      results[i] = registry_->Enroll(request);
    });
  }
  for (std::thread& t : threads) t.join();
  int active = 0;
  int pending = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    if (result->person().state() == v1::ACTIVE) ++active;
    if (result->person().state() == v1::PENDING_ADJUDICATION) {
      ++pending;
      EXPECT_FALSE(result->duplicates().empty());
    }
  }
  EXPECT_EQ(active, 1);
  EXPECT_EQ(pending, 7);
  EXPECT_EQ(Identify(9, 99).size(), 1u);

  // The same person (same national id) eight times: one enrollment, seven
  // ALREADY_EXISTS.
  std::vector<absl::StatusOr<v1::EnrollResponse>> same(8);
  threads.clear();
  for (uint64_t i = 0; i < 8; ++i) {
    threads.emplace_back([this, i, &same] {
      v1::EnrollRequest request;
      request.set_request_id(absl::StrCat("same-", i));
      *request.mutable_person() = DistinctPerson(200);
      *request.add_templates() = services::SyntheticFaceTemplate(model_, 12, i);
      same[i] = registry_->Enroll(request);
    });
  }
  for (std::thread& t : threads) t.join();
  int created = 0;
  for (const auto& result : same) {
    if (result.ok()) {
      ++created;
      EXPECT_EQ(result->person().state(), v1::ACTIVE);
    } else {
      EXPECT_EQ(result.status().code(), absl::StatusCode::kAlreadyExists);
    }
  }
  EXPECT_EQ(created, 1);
}

TEST_F(DedupTest, BatchItemsAreDeduplicatedAgainstEarlierItems) {
  const v1::EnrollResponse existing = Enroll(1, 30, 0);
  std::vector<v1::EnrollRequest> batch(3);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].set_request_id(absl::StrCat("batch-", i));
    *batch[i].mutable_person() = DistinctPerson(50 + i);
  }
  *batch[0].add_templates() = services::SyntheticFaceTemplate(model_, 31, 0);
  *batch[1].add_templates() = services::SyntheticFaceTemplate(model_, 31, 1);
  *batch[2].add_templates() = services::SyntheticFaceTemplate(model_, 30, 1);
  absl::StatusOr<v1::BatchEnrollResponse> response =
      registry_->BatchEnroll(batch);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->responses_size(), 3);
  EXPECT_EQ(response->responses(0).person().state(), v1::ACTIVE);
  EXPECT_EQ(response->responses(1).person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(response->responses(1).duplicates_size(), 1);
  EXPECT_EQ(response->responses(1).duplicates(0).subject_id(),
            response->responses(0).person().subject_id());
  EXPECT_EQ(response->responses(2).person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(response->responses(2).duplicates_size(), 1);
  EXPECT_EQ(response->responses(2).duplicates(0).subject_id(),
            existing.person().subject_id());
  absl::StatusOr<v1::Case> c = registry_->GetCase([&] {
    v1::GetCaseRequest r;
    r.set_case_id(response->responses(1).case_id());
    return r;
  }());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->raised_by(), "BatchEnroll");
}

// A batch is deduplicated with one search per gallery and one all-pairs pass
// over its items; the outcome must be what the same items get sent one by
// one: the same states, and the same candidates (by who they are), scores,
// modality scores, reasons and ranks.
TEST_F(DedupTest, BatchRaisesTheSameCasesAsTheSameItemsOneByOne) {
  const matcher::SyntheticModel fingers(matcher::SyntheticOptions{256, 5});
  const auto finger = [&](uint64_t identity, uint64_t capture) {
    v1::Template t =
        services::SyntheticFaceTemplate(fingers, identity, capture);
    t.set_modality(v1::FINGERPRINT);
    t.set_position(1);  // right thumb
    return t;
  };
  std::vector<v1::EnrollRequest> items(9);
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].set_request_id(absl::StrCat("item-", i));
    *items[i].mutable_person() = DistinctPerson(60 + i);
  }
  const auto face = [&](size_t i, uint64_t identity, uint64_t capture) {
    *items[i].add_templates() =
        services::SyntheticFaceTemplate(model_, identity, capture);
  };
  face(0, 41, 0);                             // new
  face(1, 7, 2);                              // A (gallery), B (pending)
  face(2, 41, 1);                             // item 0 (in the batch)
  face(3, 42, 0);                             // new, face and finger
  *items[3].add_templates() = finger(42, 0);  //
  *items[4].add_templates() = finger(42, 1);  // item 3, by finger only
  face(5, 7, 3);                              // A, B and item 1 (pending)
  face(5, 43, 0);                             //   with a second face
  // Item 6: item 0's name and date of birth, another face (demographic).
  *items[6].mutable_person()->mutable_name_latin() =
      items[0].person().name_latin();
  *items[6].mutable_person()->mutable_date_of_birth() =
      items[0].person().date_of_birth();
  face(6, 44, 0);
  // Item 7 has no template; item 8 is new.
  face(8, 45, 0);

  // Per registry: subject id -> who ("A", "B", "item i").
  std::map<std::string, std::string> who;
  const auto setup = [&] {
    EnrollPair();
    who[a_.person().subject_id()] = "A";
    who[b_.person().subject_id()] = "B";
  };
  const auto outcome = [&who](const v1::EnrollResponse& r) {
    std::string out = absl::StrCat(v1::PersonState_Name(r.person().state()),
                                   r.case_id().empty() ? "" : " case");
    for (const v1::Candidate& c : r.duplicates()) {
      absl::StrAppend(&out, "; #", c.rank(), " ", who[c.subject_id()], " ",
                      c.score());
      for (const v1::ModalityScore& m : c.modality_scores()) {
        absl::StrAppend(&out, " ", v1::Modality_Name(m.modality()), "=",
                        m.score());
      }
      for (int reason : c.reasons()) {
        absl::StrAppend(&out, " ", v1::DuplicateReason_Name(reason));
      }
    }
    return out;
  };

  setup();
  std::vector<std::string> one_by_one;
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StatusOr<v1::EnrollResponse> r = registry_->Enroll(items[i]);
    ASSERT_TRUE(r.ok()) << r.status();
    who[r->person().subject_id()] = absl::StrCat("item ", i);
    one_by_one.push_back(outcome(*r));
  }

  registry_.reset();
  fs::remove_all(dir_);
  dir_ = NewDir();
  Open();
  who.clear();
  setup();
  absl::StatusOr<v1::BatchEnrollResponse> batch = registry_->BatchEnroll(items);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->responses_size(), static_cast<int>(items.size()));
  for (size_t i = 0; i < items.size(); ++i) {
    who[batch->responses(i).person().subject_id()] = absl::StrCat("item ", i);
  }
  std::vector<std::string> batched;
  for (const v1::EnrollResponse& r : batch->responses()) {
    batched.push_back(outcome(r));
  }
  EXPECT_EQ(batched, one_by_one);
  // The cases this test is about were raised (not all ACTIVE by accident).
  EXPECT_THAT(batched[1], HasSubstr("A "));
  EXPECT_THAT(batched[1], HasSubstr("B "));
  EXPECT_THAT(batched[2], HasSubstr("item 0 "));
  EXPECT_THAT(batched[4], HasSubstr("item 3 "));
  EXPECT_THAT(batched[5], HasSubstr("item 1 "));
  EXPECT_THAT(batched[6], HasSubstr("item 0 0 NAME_AND_DATE_OF_BIRTH"));
  for (size_t i : {0, 3, 7, 8}) EXPECT_EQ(batched[i], "ACTIVE") << i;
}

TEST_F(DedupTest, ReplaceTemplatesWithAnotherPersonsFaceIsHeld) {
  const v1::EnrollResponse a = Enroll(1, 40, 0);
  const v1::EnrollResponse b = Enroll(2, 41, 0);
  ASSERT_EQ(b.person().state(), v1::ACTIVE);
  v1::ReplaceTemplatesRequest request;
  request.set_request_id("replace");
  request.set_subject_id(b.person().subject_id());
  *request.add_templates() = services::SyntheticFaceTemplate(model_, 40, 1);
  absl::StatusOr<v1::Person> replaced = registry_->ReplaceTemplates(request);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(replaced->state(), v1::PENDING_ADJUDICATION);
  EXPECT_NE(replaced->case_id(), "");
  // B left the galleries: neither its old face nor the new one finds it.
  EXPECT_THAT(Identify(41, 1), IsEmpty());
  EXPECT_THAT(Identify(40, 2), ElementsAre(a.person().subject_id()));

  // Its own fresh capture is not a duplicate of itself.
  request.set_request_id("own");
  request.set_subject_id(a.person().subject_id());
  request.clear_templates();
  *request.add_templates() = services::SyntheticFaceTemplate(model_, 40, 3);
  absl::StatusOr<v1::Person> own = registry_->ReplaceTemplates(request);
  ASSERT_TRUE(own.ok()) << own.status();
  // ...but it is one of B's, now pending with face 40.
  EXPECT_EQ(own->state(), v1::PENDING_ADJUDICATION);
}

TEST_F(DedupTest, DistinctActivatesTheNewPerson) {
  EnrollPair();
  const std::string b = b_.person().subject_id();
  absl::StatusOr<v1::Case> decided =
      Decide(b_.case_id(), v1::DISTINCT, "decide-1");
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->decision(), v1::DISTINCT);
  EXPECT_EQ(decided->adjudicator(), kAdjudicator);
  EXPECT_EQ(decided->comment(), "checked the documents at the counter");
  EXPECT_TRUE(decided->has_decide_time());
  EXPECT_EQ(decided->person().state(), v1::ACTIVE);

  const v1::Person person = Get(b);
  EXPECT_EQ(person.state(), v1::ACTIVE);
  EXPECT_EQ(person.case_id(), "");
  absl::StatusOr<v1::VerifyResponse> verify = Verify(b, 7, 5);
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_TRUE(verify->match());
  EXPECT_THAT(Identify(7, 5),
              ::testing::UnorderedElementsAre(a_.person().subject_id(), b));
}

TEST_F(DedupTest, DuplicateRevokesTheNewRecordAndMayMergeItsTemplates) {
  EnrollPair();
  const std::string a = a_.person().subject_id();
  const std::string b = b_.person().subject_id();
  absl::StatusOr<v1::Case> decided =
      Decide(b_.case_id(), v1::DUPLICATE, "decide-2", /*merge=*/true);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->duplicate_of(), a);
  EXPECT_TRUE(decided->merged_templates());

  EXPECT_EQ(Get(b).state(), v1::REVOKED);
  EXPECT_EQ(Verify(b, 7, 5).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const v1::Person existing = Get(a);
  EXPECT_EQ(existing.state(), v1::ACTIVE);
  ASSERT_EQ(existing.template_counts_size(), 1);
  EXPECT_EQ(existing.template_counts(0).count(), 2u);
  EXPECT_THAT(Identify(7, 5), ElementsAre(a));
  // The merged capture is searchable under A, and survives a restart
  // (the galleries are rebuilt from the store).
  Open();
  v1::VerifyRequest request;
  request.set_subject_id(a);
  *request.add_probes() = services::SyntheticFaceTemplate(model_, 7, 1);
  absl::StatusOr<v1::VerifyResponse> verify = registry_->Verify(request);
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_GT(verify->score(), 0.99f);  // the very capture B enrolled
}

TEST_F(DedupTest, DuplicateWithoutMergeLeavesTheExistingTemplates) {
  EnrollPair();
  ASSERT_TRUE(Decide(b_.case_id(), v1::DUPLICATE, "decide-3").ok());
  EXPECT_EQ(Get(b_.person().subject_id()).state(), v1::REVOKED);
  EXPECT_EQ(Get(a_.person().subject_id()).template_counts(0).count(), 1u);
}

TEST_F(DedupTest, FraudRevokesTheNewRecordAndFlagsTheCandidates) {
  EnrollPair();
  const std::string a = a_.person().subject_id();
  ASSERT_TRUE(Decide(b_.case_id(), v1::FRAUD, "decide-4").ok());
  EXPECT_EQ(Get(b_.person().subject_id()).state(), v1::REVOKED);
  const v1::Person flagged = Get(a);
  EXPECT_EQ(flagged.state(), v1::ACTIVE);
  EXPECT_THAT(flagged.flags(), ElementsAre("fraud:" + b_.case_id()));
  // Still searchable.
  EXPECT_THAT(Identify(7, 5), ElementsAre(a));
}

TEST_F(DedupTest, ADecisionIsFinalAndReplaysByRequestId) {
  EnrollPair();
  ASSERT_TRUE(Decide(b_.case_id(), v1::DISTINCT, "decide-5").ok());
  absl::StatusOr<v1::Case> again = Decide(b_.case_id(), v1::FRAUD, "other");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("case_id: "));
  EXPECT_THAT(std::string(again.status().message()),
              HasSubstr("already decided"));
  // Same decision under another request_id: still refused.
  EXPECT_EQ(Decide(b_.case_id(), v1::DISTINCT, "other").status().code(),
            absl::StatusCode::kFailedPrecondition);
  // The same request again: the decided case, nothing written.
  absl::StatusOr<v1::Case> replay =
      Decide(b_.case_id(), v1::DISTINCT, "decide-5");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->decision(), v1::DISTINCT);
  EXPECT_EQ(Get(b_.person().subject_id()).state(), v1::ACTIVE);
}

// DecideCase's request_id is in the key space of Enroll's and
// ReplaceTemplates': a key any of them committed cannot be reused for
// another request, by any method.
TEST_F(DedupTest, DecideCaseRequestIdsShareTheKeySpaceOfEveryWrite) {
  EnrollPair();
  const v1::EnrollResponse c = Enroll(3, 7, 2);  // a second open case
  ASSERT_EQ(c.person().state(), v1::PENDING_ADJUDICATION);
  const auto expect_taken = [](const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
    EXPECT_EQ(status.message(),
              "request_id: already used for a different request");
  };
  // Enroll's key, for a decision: refused, the case still open.
  expect_taken(Decide(b_.case_id(), v1::DISTINCT, "enroll-1").status());
  EXPECT_EQ(GetCaseOf(b_.case_id()).decision(), v1::DECISION_UNSPECIFIED);

  ASSERT_TRUE(Decide(b_.case_id(), v1::DISTINCT, "decide-b").ok());
  // The decision's key, for another case, another comment, an Enroll or a
  // ReplaceTemplates: refused, nothing written.
  expect_taken(Decide(c.case_id(), v1::DISTINCT, "decide-b").status());
  EXPECT_EQ(GetCaseOf(c.case_id()).decision(), v1::DECISION_UNSPECIFIED);
  v1::DecideCaseRequest reworded;
  reworded.set_request_id("decide-b");
  reworded.set_case_id(b_.case_id());
  reworded.set_decision(v1::DISTINCT);
  reworded.set_comment("another comment");
  expect_taken(registry_->DecideCase(reworded, Adjudicator()).status());
  v1::EnrollRequest enroll;
  enroll.set_request_id("decide-b");
  *enroll.mutable_person() = DistinctPerson(4);
  expect_taken(registry_->Enroll(enroll).status());
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("decide-b");
  replace.set_subject_id(a_.person().subject_id());
  expect_taken(registry_->ReplaceTemplates(replace).status());
  // The same request again is a replay.
  absl::StatusOr<v1::Case> replay =
      Decide(b_.case_id(), v1::DISTINCT, "decide-b");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->decision(), v1::DISTINCT);
}

TEST_F(DedupTest, DecideCaseValidatesItsRequest) {
  EnrollPair();
  struct Bad {
    v1::DecideCaseRequest request;
    absl::StatusCode code;
    std::string message;
  };
  v1::DecideCaseRequest good;
  good.set_request_id("r");
  good.set_case_id(b_.case_id());
  good.set_decision(v1::DISTINCT);
  good.set_comment("ok");
  std::vector<Bad> bad;
  bad.push_back({good, absl::StatusCode::kInvalidArgument, "decision: "});
  bad.back().request.clear_decision();
  bad.push_back({good, absl::StatusCode::kInvalidArgument, "comment: "});
  bad.back().request.clear_comment();
  bad.push_back({good, absl::StatusCode::kInvalidArgument, "request_id: "});
  bad.back().request.clear_request_id();
  bad.push_back(
      {good, absl::StatusCode::kInvalidArgument, "merge_templates: "});
  bad.back().request.set_merge_templates(true);
  bad.push_back({good, absl::StatusCode::kNotFound, "case_id: "});
  bad.back().request.set_case_id("case-nope");
  bad.push_back({good, absl::StatusCode::kInvalidArgument, "duplicate_of: "});
  bad.back().request.set_decision(v1::DUPLICATE);
  bad.back().request.set_duplicate_of("not-a-candidate");
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.message);
    absl::StatusOr<v1::Case> result =
        registry_->DecideCase(b.request, Adjudicator());
    EXPECT_EQ(result.status().code(), b.code);
    EXPECT_THAT(std::string(result.status().message()),
                ::testing::StartsWith(b.message));
  }
  // None of them decided anything.
  EXPECT_EQ(Get(b_.person().subject_id()).state(), v1::PENDING_ADJUDICATION);
}

TEST_F(DedupTest, ListAndGetCases) {
  EnrollPair();
  const v1::EnrollResponse c = Enroll(3, 8, 0);
  const v1::EnrollResponse d = Enroll(4, 8, 1);
  ASSERT_EQ(d.person().state(), v1::PENDING_ADJUDICATION);

  v1::ListCasesRequest list;
  list.set_page_size(1);
  absl::StatusOr<v1::ListCasesResponse> first = registry_->ListCases(list);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->cases_size(), 1);
  EXPECT_EQ(first->cases(0).case_id(), b_.case_id());  // oldest first
  EXPECT_EQ(first->cases(0).person().subject_id(), b_.person().subject_id());
  EXPECT_EQ(first->cases(0).person().national_id(), b_.person().national_id());
  ASSERT_NE(first->next_page_token(), "");
  list.set_page_token(first->next_page_token());
  absl::StatusOr<v1::ListCasesResponse> second = registry_->ListCases(list);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->cases_size(), 1);
  EXPECT_EQ(second->cases(0).case_id(), d.case_id());
  EXPECT_EQ(second->next_page_token(), "");

  v1::GetCaseRequest get;
  get.set_case_id(b_.case_id());
  absl::StatusOr<v1::Case> got = registry_->GetCase(get);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->raised_by(), "Enroll");
  EXPECT_EQ(got->decision(), v1::DECISION_UNSPECIFIED);
  ASSERT_EQ(got->candidates_size(), 1);
  EXPECT_EQ(got->candidates(0).candidate().subject_id(),
            a_.person().subject_id());
  EXPECT_EQ(got->candidates(0).person().national_id(),
            a_.person().national_id());
  EXPECT_GT(got->candidates(0).candidate().modality_scores(0).score(), 0.4f);

  // A decided case leaves the open list but is listed with include_decided.
  ASSERT_TRUE(Decide(b_.case_id(), v1::DISTINCT, "decide-6").ok());
  list.clear_page_token();
  list.set_page_size(10);
  EXPECT_EQ(registry_->ListCases(list)->cases_size(), 1);
  list.set_include_decided(true);
  EXPECT_EQ(registry_->ListCases(list)->cases_size(), 2);
  list.set_page_token("open:1");  // a token of the other listing
  EXPECT_EQ(registry_->ListCases(list).status().code(),
            absl::StatusCode::kInvalidArgument);
  get.set_case_id("case-nope");
  EXPECT_EQ(registry_->GetCase(get).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DedupTest, DecisionsAreAuditedWithTheAdjudicator) {
  EnrollPair();
  ASSERT_TRUE(Decide(b_.case_id(), v1::FRAUD, "decide-7").ok());
  ASSERT_FALSE(Decide(b_.case_id(), v1::DISTINCT, "decide-8").ok());
  v1::ListAuditRecordsRequest request;
  request.set_principal(kAdjudicator);
  absl::StatusOr<v1::ListAuditRecordsResponse> page =
      registry_->ListAuditRecords(request);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->records_size(), 2);
  const v1::AuditRecord& ok = page->records(0);
  EXPECT_EQ(ok.method(), kDecide);
  EXPECT_EQ(ok.role(), "adjudicator");
  EXPECT_EQ(ok.request_id(), "decide-7");
  EXPECT_EQ(ok.outcome_code(), 0);
  EXPECT_EQ(ok.decision(), "FRAUD");
  EXPECT_EQ(ok.subject_id(), b_.person().subject_id());
  EXPECT_THAT(ok.subject_ids(), ElementsAre(a_.person().subject_id()));
  const v1::AuditRecord& refused = page->records(1);
  EXPECT_EQ(refused.outcome_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));

  // The enrollment that raised the case names its candidate too.
  v1::VerifyAuditLogRequest verify;
  EXPECT_TRUE(registry_->VerifyAuditLog(verify)->intact());
}

// A DISTINCT decision is remembered per pair (issue 6, gap 1): deduplicating
// either person again does not raise the other, also after a restart, while
// any other candidate still raises a case.
TEST_F(DedupTest, DistinctPairsAreNotRaisedAgainButOtherCandidatesAre) {
  EnrollPair();
  const std::string a = a_.person().subject_id();
  const std::string b = b_.person().subject_id();
  ASSERT_TRUE(Decide(b_.case_id(), v1::DISTINCT, "decide-1").ok());
  Open();  // the pair survives a restart

  // B, then A, with a fresh capture of the same face: no case.
  EXPECT_EQ(Replace(b, 7, 2).state(), v1::ACTIVE);
  EXPECT_EQ(Get(b).case_id(), "");
  EXPECT_EQ(Replace(a, 7, 3).state(), v1::ACTIVE);

  // A third look-alike is a candidate of both, and raises a case.
  const v1::EnrollResponse c = Enroll(3, 7, 4);
  ASSERT_EQ(c.person().state(), v1::PENDING_ADJUDICATION);
  std::vector<std::string> raised;
  for (const v1::Candidate& d : c.duplicates())
    raised.push_back(d.subject_id());
  EXPECT_THAT(raised, ::testing::UnorderedElementsAre(a, b));

  // B again: A is set aside, C (pending) still raises a case of its own.
  const v1::Person held = Replace(b, 7, 5);
  ASSERT_EQ(held.state(), v1::PENDING_ADJUDICATION);
  const v1::Case opened = GetCaseOf(held.case_id());
  ASSERT_EQ(opened.candidates_size(), 1);
  EXPECT_EQ(opened.candidates(0).candidate().subject_id(),
            c.person().subject_id());
  EXPECT_EQ(opened.raised_by(), "ReplaceTemplates");
}

// Revoking or erasing a pending person closes its case (gap 2): WITHDRAWN
// by the deleting principal, with why, in the delete's own audit record.
TEST_F(DedupTest, RevokingOrErasingAPendingPersonWithdrawsItsCase) {
  EnrollPair();
  const AuditActor registrar{kRegistrar, "registrar", kDelete};
  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(b_.person().subject_id());
  revoke.set_reason("application withdrawn");
  ASSERT_TRUE(registry_->DeletePerson(revoke, registrar).ok());

  const v1::Case withdrawn = GetCaseOf(b_.case_id());
  EXPECT_EQ(withdrawn.decision(), v1::WITHDRAWN);
  EXPECT_EQ(withdrawn.adjudicator(), kRegistrar);
  EXPECT_EQ(withdrawn.comment(), "person revoked: application withdrawn");
  EXPECT_TRUE(withdrawn.has_decide_time());
  EXPECT_EQ(withdrawn.person().state(), v1::REVOKED);
  EXPECT_EQ(withdrawn.person().case_id(), "");
  v1::ListCasesRequest list;
  EXPECT_THAT(registry_->ListCases(list)->cases(), IsEmpty());
  list.set_include_decided(true);
  EXPECT_EQ(registry_->ListCases(list)->cases_size(), 1);

  // Closed like a decided case; WITHDRAWN is never an adjudicator's.
  absl::StatusOr<v1::Case> late = Decide(b_.case_id(), v1::DISTINCT, "late");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(late.status().message()),
              ::testing::StartsWith("case_id: "));
  absl::StatusOr<v1::Case> forged =
      Decide(b_.case_id(), v1::WITHDRAWN, "forged");
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(forged.status().message()),
              ::testing::StartsWith("decision: WITHDRAWN"));

  // Erase: the case keeps the subject id, without a record.
  const v1::EnrollResponse c = Enroll(3, 8, 0);
  const v1::EnrollResponse d = Enroll(4, 8, 1);
  ASSERT_EQ(d.person().state(), v1::PENDING_ADJUDICATION);
  v1::DeletePersonRequest erase;
  erase.set_subject_id(d.person().subject_id());
  erase.set_reason("court order");
  erase.set_erase(true);
  ASSERT_TRUE(registry_->DeletePerson(erase, registrar).ok());
  const v1::Case erased = GetCaseOf(d.case_id());
  EXPECT_EQ(erased.decision(), v1::WITHDRAWN);
  EXPECT_EQ(erased.comment(), "person erased");
  EXPECT_EQ(erased.person().subject_id(), d.person().subject_id());
  EXPECT_EQ(erased.person().national_id(), "");

  // Each delete's audit record says what it closed, and the chain holds.
  v1::ListAuditRecordsRequest audit;
  audit.set_principal(kRegistrar);
  absl::StatusOr<v1::ListAuditRecordsResponse> page =
      registry_->ListAuditRecords(audit);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->records_size(), 2);
  EXPECT_EQ(page->records(0).decision(), "WITHDRAWN " + b_.case_id());
  EXPECT_EQ(page->records(0).subject_id(), b_.person().subject_id());
  EXPECT_THAT(page->records(0).subject_ids(),
              ElementsAre(a_.person().subject_id()));
  EXPECT_EQ(page->records(1).decision(), "WITHDRAWN " + d.case_id());
  EXPECT_THAT(page->records(1).subject_ids(),
              ElementsAre(c.person().subject_id()));
  EXPECT_TRUE(registry_->VerifyAuditLog({})->intact());
}

// A candidate erased or revoked while the case is open: GetCase still lists
// it (an erased one without its record), and DUPLICATE naming it is refused
// cleanly, deciding nothing; another decision still can be taken.
TEST_F(DedupTest, DuplicateOfAnErasedOrRevokedCandidateIsRefused) {
  EnrollPair();
  v1::DeletePersonRequest erase;
  erase.set_subject_id(a_.person().subject_id());
  erase.set_reason("court order");
  erase.set_erase(true);
  ASSERT_TRUE(registry_->DeletePerson(erase).ok());
  const v1::Case open = GetCaseOf(b_.case_id());
  ASSERT_EQ(open.candidates_size(), 1);
  EXPECT_EQ(open.candidates(0).candidate().subject_id(),
            a_.person().subject_id());
  EXPECT_FALSE(open.candidates(0).has_person());
  // DUPLICATE of the case's only candidate, merged or not, is refused
  // naming duplicate_of and leaves the new person pending.
  const auto expect_refused = [this](const v1::EnrollResponse& pending) {
    for (bool merge : {false, true}) {
      absl::StatusOr<v1::Case> refused =
          Decide(pending.case_id(), v1::DUPLICATE,
                 absl::StrCat("dup-", pending.case_id(), merge), merge);
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_THAT(std::string(refused.status().message()),
                  ::testing::StartsWith("duplicate_of: "));
    }
    EXPECT_EQ(Get(pending.person().subject_id()).state(),
              v1::PENDING_ADJUDICATION);
  };
  expect_refused(b_);

  const v1::EnrollResponse c = Enroll(3, 8, 0);
  const v1::EnrollResponse d = Enroll(4, 8, 1);
  ASSERT_EQ(d.person().state(), v1::PENDING_ADJUDICATION);
  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(c.person().subject_id());
  revoke.set_reason("deceased");
  ASSERT_TRUE(registry_->DeletePerson(revoke).ok());
  expect_refused(d);
  ASSERT_TRUE(Decide(d.case_id(), v1::FRAUD, "fraud").ok());
  ASSERT_TRUE(Decide(b_.case_id(), v1::DISTINCT, "distinct").ok());
}

// The date of birth check reads every plausible name of the date, not the
// first 1000 persons (gap 3): 1500 persons share a date of birth, the one
// whose name matches was enrolled 1400th.
TEST_F(DedupTest, DateOfBirthCheckIsNotCappedAtAThousandPersons) {
  DedupOptions off;
  off.enabled = false;
  Open(off);
  std::vector<v1::EnrollRequest> batch(1500);
  v1::Date date;
  date.set_year(1970);
  date.set_month(1);
  date.set_day(1);
  for (uint64_t n = 1; n <= 1500; ++n) {
    const v1::Person person = DistinctPerson(n);
    batch[n - 1] =
        n == 1400
            ? Named(absl::StrCat("bulk-", n), n, date, "Mohammed", "Al-Harbi")
            : Named(absl::StrCat("bulk-", n), n, date,
                    person.name_latin().given(), person.name_latin().family());
  }
  absl::StatusOr<v1::BatchEnrollResponse> bulk = registry_->BatchEnroll(batch);
  ASSERT_TRUE(bulk.ok()) << bulk.status();
  ASSERT_EQ(bulk->responses_size(), 1500);
  const std::string match = bulk->responses(1399).person().subject_id();
  Open();

  absl::StatusOr<v1::EnrollResponse> caught =
      registry_->Enroll(Named("probe", 2000, date, "Muhammad", "Alharbi"));
  ASSERT_TRUE(caught.ok()) << caught.status();
  EXPECT_EQ(caught->person().state(), v1::PENDING_ADJUDICATION);
  ASSERT_EQ(caught->duplicates_size(), 1);
  EXPECT_EQ(caught->duplicates(0).subject_id(), match);
  EXPECT_THAT(caught->duplicates(0).reasons(),
              ElementsAre(v1::NAME_AND_DATE_OF_BIRTH));
}

}  // namespace
}  // namespace hawiya::enroll
