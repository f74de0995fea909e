// Integration tests: the real hawiya-server binary on a loopback port with a
// temporary data dir, driven through the generated v1 stubs.
#include "services/server.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/config.h"
#include "services/health_server.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::grpc::StatusCode;
using ::hawiya::services::SyntheticFaceTemplate;
using ::hawiya::services::SyntheticPerson;
using ::hawiya::testing::Ctx;
using ::hawiya::testing::MakeEnrollRequest;
using ::hawiya::testing::NewTempDir;
using ::hawiya::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = NewTempDir("hawiya-server-test");
    ASSERT_FALSE(data_dir_.empty());
    StartServer();
  }

  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(data_dir_);
  }

  void StartServer() {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir_,
                             {"--shutdown_grace=1s"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = server_->NewChannel();
    enrollment_ = v1::EnrollmentService::NewStub(channel);
    match_ = v1::MatchService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
    health_ = grpc::health::v1::Health::NewStub(channel);
  }

  // Enrolls person n with capture 0 of identity n; returns its subject id.
  std::string MustEnroll(uint64_t n) {
    v1::EnrollResponse response;
    grpc::Status status = enrollment_->Enroll(
        Ctx().get(), MakeEnrollRequest(model_, n), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.person().subject_id();
  }

  v1::IdentifyResponse MustIdentify(uint64_t identity, uint64_t capture) {
    v1::IdentifyRequest request;
    *request.add_probes() = SyntheticFaceTemplate(model_, identity, capture);
    v1::IdentifyResponse response;
    grpc::Status status = match_->Identify(Ctx().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Streams `requests` to BatchEnroll.
  grpc::Status BatchEnroll(const std::vector<v1::EnrollRequest>& requests,
                           v1::BatchEnrollResponse* response) {
    std::unique_ptr<grpc::ClientContext> ctx = Ctx();
    std::unique_ptr<grpc::ClientWriter<v1::EnrollRequest>> writer =
        enrollment_->BatchEnroll(ctx.get(), response);
    for (const v1::EnrollRequest& request : requests) {
      if (!writer->Write(request)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::vector<v1::EnrollRequest> Requests(uint64_t first, uint64_t count) {
    std::vector<v1::EnrollRequest> requests;
    for (uint64_t n = first; n < first + count; ++n) {
      requests.push_back(MakeEnrollRequest(model_, n));
    }
    return requests;
  }

  int64_t PersonCount() {
    v1::GetStatsResponse stats;
    EXPECT_TRUE(
        admin_->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).ok());
    return stats.persons();
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string data_dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollment_;
  std::unique_ptr<v1::MatchService::Stub> match_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// A second hawiya-server on the data folder exits 2, naming the folder and
// the process that holds it, and the first one serves on.
TEST_F(ServerTest, SecondServerOnTheDataDirExitsNamingTheHolder) {
  // `timeout`: a second server that wrongly started would serve forever.
  const testing::CommandResult second = testing::RunCommand(absl::StrCat(
      "timeout 300 ", HAWIYA_SERVER_PATH,
      " --insecure --listen=127.0.0.1:0 --data_dir=", data_dir_, " 2>&1"));
  EXPECT_EQ(second.exit_code, 2) << second.out;
  EXPECT_THAT(second.out, HasSubstr(absl::StrCat("data_dir ", data_dir_,
                                                 " is in use by process ",
                                                 server_->pid())));
  MustEnroll(1);
  EXPECT_EQ(PersonCount(), 1);
}

TEST_F(ServerTest, ReportsServingAndStats) {
  grpc::health::v1::HealthCheckResponse health;
  ASSERT_TRUE(
      health_
          ->Check(Ctx().get(), grpc::health::v1::HealthCheckRequest(), &health)
          .ok());
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  grpc::health::v1::HealthCheckRequest per_service;
  per_service.set_service("hawiya.v1.MatchService");
  ASSERT_TRUE(health_->Check(Ctx().get(), per_service, &health).ok());
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  MustEnroll(1);
  v1::GetStatsResponse stats;
  ASSERT_TRUE(
      admin_->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.persons(), 1);
  ASSERT_EQ(stats.galleries_size(), 3);
  EXPECT_EQ(stats.galleries(0).modality(), v1::FACE);
  EXPECT_EQ(stats.galleries(0).dimension(), 512u);
  EXPECT_EQ(stats.galleries(0).templates(), 1);
  EXPECT_EQ(stats.galleries(0).index_kind(), "exact");
  EXPECT_EQ(stats.galleries(1).modality(), v1::FINGERPRINT);
  EXPECT_EQ(stats.galleries(1).dimension(), 256u);
  EXPECT_EQ(stats.galleries(2).modality(), v1::IRIS);
}

TEST_F(ServerTest, EnrollGetUpdateListDelete) {
  v1::EnrollRequest enroll = MakeEnrollRequest(model_, 7);
  v1::EnrollResponse enrolled;
  ASSERT_TRUE(enrollment_->Enroll(Ctx().get(), enroll, &enrolled).ok());
  const v1::Person& person = enrolled.person();
  EXPECT_FALSE(person.subject_id().empty());
  EXPECT_EQ(person.state(), v1::ACTIVE);
  EXPECT_EQ(person.version(), 1);
  EXPECT_GT(person.create_time().seconds(), 0);
  EXPECT_TRUE(enrolled.duplicates().empty());
  ASSERT_EQ(person.template_counts_size(), 1);
  EXPECT_EQ(person.template_counts(0).modality(), v1::FACE);
  EXPECT_EQ(person.template_counts(0).count(), 1u);
  EXPECT_EQ(person.name_ar().given(), "محمد");

  // By subject id and by national id: the same record.
  v1::GetPersonRequest by_subject;
  by_subject.set_subject_id(person.subject_id());
  v1::Person got;
  ASSERT_TRUE(enrollment_->GetPerson(Ctx().get(), by_subject, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got, person));
  v1::GetPersonRequest by_national_id;
  by_national_id.set_national_id("N7");
  by_national_id.set_issuing_country("KWT");
  ASSERT_TRUE(enrollment_->GetPerson(Ctx().get(), by_national_id, &got).ok());
  EXPECT_EQ(got.subject_id(), person.subject_id());

  // Update civil status; version moves on; other fields untouched.
  v1::UpdatePersonRequest update;
  update.mutable_person()->set_subject_id(person.subject_id());
  update.mutable_person()->set_civil_status(v1::MARRIED);
  update.mutable_update_mask()->add_paths("civil_status");
  update.set_expected_version(1);
  v1::Person updated;
  grpc::Status status =
      enrollment_->UpdatePerson(Ctx().get(), update, &updated);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(updated.civil_status(), v1::MARRIED);
  EXPECT_EQ(updated.version(), 2);
  EXPECT_EQ(updated.name_latin().family(), "Al-Sabah");

  // A second update with the stale version is refused: ABORTED.
  update.mutable_person()->set_civil_status(v1::DIVORCED);
  status = enrollment_->UpdatePerson(Ctx().get(), update, &updated);
  EXPECT_EQ(status.error_code(), StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), StartsWith("expected_version"));
  ASSERT_TRUE(enrollment_->GetPerson(Ctx().get(), by_subject, &got).ok());
  EXPECT_EQ(got.civil_status(), v1::MARRIED);

  // Output-only fields cannot be updated.
  update.set_expected_version(2);
  update.mutable_update_mask()->set_paths(0, "state");
  status = enrollment_->UpdatePerson(Ctx().get(), update, &updated);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("update_mask"));

  // An invalid new value is refused and nothing changes.
  update.mutable_update_mask()->set_paths(0, "date_of_birth");
  update.mutable_person()->mutable_date_of_birth()->set_year(2001);
  update.mutable_person()->mutable_date_of_birth()->set_month(2);
  update.mutable_person()->mutable_date_of_birth()->set_day(29);
  status = enrollment_->UpdatePerson(Ctx().get(), update, &updated);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("person.date_of_birth"));

  MustEnroll(8);
  v1::ListPersonsRequest list;
  v1::ListPersonsResponse listed;
  ASSERT_TRUE(enrollment_->ListPersons(Ctx().get(), list, &listed).ok());
  EXPECT_EQ(listed.persons_size(), 2);
  EXPECT_TRUE(listed.next_page_token().empty());

  // Revoke: still readable, REVOKED, and gone from ACTIVE listings.
  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(person.subject_id());
  revoke.set_reason("court order 12/2026");
  google::protobuf::Empty empty;
  ASSERT_TRUE(enrollment_->DeletePerson(Ctx().get(), revoke, &empty).ok());
  ASSERT_TRUE(enrollment_->GetPerson(Ctx().get(), by_subject, &got).ok());
  EXPECT_EQ(got.state(), v1::REVOKED);
  list.set_state(v1::ACTIVE);
  ASSERT_TRUE(enrollment_->ListPersons(Ctx().get(), list, &listed).ok());
  ASSERT_EQ(listed.persons_size(), 1);
  EXPECT_EQ(listed.persons(0).national_id(), "N8");

  // Erase: gone entirely.
  revoke.set_erase(true);
  ASSERT_TRUE(enrollment_->DeletePerson(Ctx().get(), revoke, &empty).ok());
  status = enrollment_->GetPerson(Ctx().get(), by_subject, &got);
  EXPECT_EQ(status.error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(PersonCount(), 1);

  // Delete needs a reason.
  revoke.clear_reason();
  status = enrollment_->DeletePerson(Ctx().get(), revoke, &empty);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("reason"));
}

TEST_F(ServerTest, IdempotentReplayReturnsFirstResponseAndWritesNothing) {
  v1::EnrollRequest request = MakeEnrollRequest(model_, 3);
  v1::EnrollResponse first, second;
  ASSERT_TRUE(enrollment_->Enroll(Ctx().get(), request, &first).ok());
  ASSERT_TRUE(enrollment_->Enroll(Ctx().get(), request, &second).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(first, second));
  EXPECT_EQ(PersonCount(), 1);

  // The same key for a different request is refused.
  request.mutable_person()->set_national_id("N999");
  grpc::Status status = enrollment_->Enroll(Ctx().get(), request, &second);
  EXPECT_EQ(status.error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), StartsWith("request_id"));

  // A new key for an enrolled national id: ALREADY_EXISTS.
  request = MakeEnrollRequest(model_, 3);
  request.set_request_id("another-key");
  status = enrollment_->Enroll(Ctx().get(), request, &second);
  EXPECT_EQ(status.error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), StartsWith("person.national_id"));
  EXPECT_EQ(PersonCount(), 1);

  // ReplaceTemplates replays too.
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("replace-1");
  replace.set_subject_id(first.person().subject_id());
  *replace.add_templates() = SyntheticFaceTemplate(model_, 3, 5);
  v1::Person replaced, replayed;
  ASSERT_TRUE(
      enrollment_->ReplaceTemplates(Ctx().get(), replace, &replaced).ok());
  ASSERT_TRUE(
      enrollment_->ReplaceTemplates(Ctx().get(), replace, &replayed).ok());
  EXPECT_EQ(replaced.version(), 2);
  EXPECT_TRUE(MessageDifferencer::Equals(replaced, replayed));
}

struct ValidationCase {
  std::string name;
  std::string field;
  std::function<void(v1::EnrollRequest&)> mutate;
};

TEST_F(ServerTest, BatchEnrollCommitsEveryPersonAndReplaysWhole) {
  v1::BatchEnrollResponse empty;
  ASSERT_TRUE(BatchEnroll({}, &empty).ok());
  EXPECT_EQ(empty.responses_size(), 0);

  const std::vector<v1::EnrollRequest> batch = Requests(100, 50);
  v1::BatchEnrollResponse first;
  grpc::Status status = BatchEnroll(batch, &first);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(first.responses_size(), 50);
  EXPECT_EQ(PersonCount(), 50);
  std::set<std::string> subjects;
  for (int i = 0; i < 50; ++i) {
    const v1::Person& person = first.responses(i).person();
    EXPECT_EQ(person.national_id(), batch[i].person().national_id());
    EXPECT_EQ(person.state(), v1::ACTIVE);
    subjects.insert(person.subject_id());
  }
  EXPECT_EQ(subjects.size(), 50u);
  // A later live capture finds the batch-enrolled person: the galleries
  // took the batch too.
  v1::IdentifyResponse found = MustIdentify(120, 1);
  ASSERT_GT(found.candidates_size(), 0);
  EXPECT_EQ(found.candidates(0).subject_id(),
            first.responses(20).person().subject_id());

  // Resending the whole batch (a client that lost the answer) replays.
  v1::BatchEnrollResponse again;
  ASSERT_TRUE(BatchEnroll(batch, &again).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(again, first));
  EXPECT_EQ(PersonCount(), 50);

  // Mixed: two committed one by one, then a batch that holds them and more.
  const std::string s200 = MustEnroll(200);
  const std::string s201 = MustEnroll(201);
  v1::BatchEnrollResponse mixed;
  ASSERT_TRUE(BatchEnroll(Requests(199, 5), &mixed).ok());
  ASSERT_EQ(mixed.responses_size(), 5);
  EXPECT_EQ(mixed.responses(1).person().subject_id(), s200);
  EXPECT_EQ(mixed.responses(2).person().subject_id(), s201);
  EXPECT_EQ(PersonCount(), 50 + 5);
  EXPECT_EQ(MustIdentify(203, 1).candidates(0).subject_id(),
            mixed.responses(4).person().subject_id());
}

TEST_F(ServerTest, BatchEnrollIsAllOrNothingNamingTheItem) {
  MustEnroll(1);
  v1::BatchEnrollResponse response;

  std::vector<v1::EnrollRequest> batch = Requests(10, 20);
  batch[17].mutable_person()->mutable_date_of_birth()->set_month(13);
  grpc::Status status = BatchEnroll(batch, &response);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "requests[17].person.date_of_birth: month 13 out of range");

  batch = Requests(10, 20);
  *batch[5].mutable_person() = SyntheticPerson(12);  // as requests[2]
  status = BatchEnroll(batch, &response);
  EXPECT_EQ(status.error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(),
              StartsWith("requests[5].person.national_id: "));

  batch = Requests(10, 20);
  *batch[3].mutable_person() = SyntheticPerson(1);  // enrolled above
  status = BatchEnroll(batch, &response);
  EXPECT_EQ(status.error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(),
              StartsWith("requests[3].person.national_id: "));

  batch = Requests(10, 20);
  batch[9].set_request_id("enroll-1");  // the key of another request
  status = BatchEnroll(batch, &response);
  EXPECT_EQ(status.error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), StartsWith("requests[9].request_id: "));

  // Nothing of any refused batch was written, in the store or galleries.
  EXPECT_EQ(PersonCount(), 1);
  v1::IdentifyResponse found = MustIdentify(10, 1);
  EXPECT_LT(found.candidates(0).score(), found.threshold());

  // One past the limit is refused without reading further.
  std::vector<v1::EnrollRequest> too_many(10001, MakeEnrollRequest(model_, 0));
  status = BatchEnroll(too_many, &response);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "requests: at most 10000 per call");
  EXPECT_EQ(PersonCount(), 1);

  // Each refused batch has its audit record, the one refused while
  // streaming included.
  v1::ListAuditRecordsResponse audit;
  ASSERT_TRUE(
      v1::AuditService::NewStub(server_->NewChannel())
          ->ListAuditRecords(Ctx().get(), v1::ListAuditRecordsRequest(), &audit)
          .ok());
  std::vector<std::string> outcomes;
  for (const v1::AuditRecord& record : audit.records()) {
    if (record.method() != "/hawiya.v1.EnrollmentService/BatchEnroll") {
      continue;
    }
    EXPECT_EQ(record.principal(), "hawiya://dev/insecure");
    EXPECT_EQ(record.role(), "registrar");
    EXPECT_THAT(record.subject_ids(), ::testing::IsEmpty());
    outcomes.push_back(record.outcome());
  }
  EXPECT_THAT(outcomes,
              ::testing::ElementsAre("INVALID_ARGUMENT", "ALREADY_EXISTS",
                                     "ALREADY_EXISTS", "ALREADY_EXISTS",
                                     "INVALID_ARGUMENT"));
}

TEST_F(ServerTest, EveryValidationRuleNamesItsField) {
  const std::vector<ValidationCase> cases = {
      {"no request id", "request_id",
       [](v1::EnrollRequest& r) { r.clear_request_id(); }},
      {"no person", "person", [](v1::EnrollRequest& r) { r.clear_person(); }},
      {"empty national id", "person.national_id",
       [](v1::EnrollRequest& r) { r.mutable_person()->clear_national_id(); }},
      {"national id charset", "person.national_id",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->set_national_id("AB_12");
       }},
      {"national id length", "person.national_id",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->set_national_id(std::string(33, '1'));
       }},
      {"lower-case country", "person.issuing_country",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->set_issuing_country("kwt");
       }},
      {"two-letter country", "person.issuing_country",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->set_issuing_country("KW");
       }},
      {"no names", "person.name",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->clear_name_ar();
         r.mutable_person()->clear_name_latin();
       }},
      {"latin in arabic name", "person.name_ar.given",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_name_ar()->set_given("Mohammed");
       }},
      {"arabic in latin name", "person.name_latin.family",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_name_latin()->set_family("الصباح");
       }},
      {"name too long", "person.name_latin.given",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_name_latin()->set_given(
             std::string(129, 'a'));
       }},
      {"month 13", "person.date_of_birth",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_date_of_birth()->set_month(13);
       }},
      {"30 February", "person.date_of_birth",
       [](v1::EnrollRequest& r) {
         auto* d = r.mutable_person()->mutable_date_of_birth();
         d->set_month(2);
         d->set_day(30);
       }},
      {"future birth", "person.date_of_birth",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_date_of_birth()->set_year(2999);
       }},
      {"born before 1900", "person.date_of_birth",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_date_of_birth()->set_year(1899);
       }},
      {"document without number", "person.documents[0].number",
       [](v1::EnrollRequest& r) {
         r.mutable_person()->mutable_documents(0)->clear_number();
       }},
      {"template dimension", "templates[0].vector",
       [](v1::EnrollRequest& r) {
         r.mutable_templates(0)->mutable_vector()->Truncate(500);
       }},
      {"non-finite component", "templates[0].vector",
       [](v1::EnrollRequest& r) {
         r.mutable_templates(0)->set_vector(
             17, std::numeric_limits<float>::quiet_NaN());
       }},
      {"zero vector", "templates[0].vector",
       [](v1::EnrollRequest& r) {
         for (float& x : *r.mutable_templates(0)->mutable_vector()) x = 0;
       }},
      {"quality over 100", "templates[0].quality",
       [](v1::EnrollRequest& r) { r.mutable_templates(0)->set_quality(101); }},
      {"no modality", "templates[0].modality",
       [](v1::EnrollRequest& r) { r.mutable_templates(0)->clear_modality(); }},
  };
  for (const ValidationCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::EnrollRequest request = MakeEnrollRequest(model_, 1);
    c.mutate(request);
    v1::EnrollResponse response;
    grpc::Status status = enrollment_->Enroll(Ctx().get(), request, &response);
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), StartsWith(c.field + ":"))
        << status.error_message();
  }
  EXPECT_EQ(PersonCount(), 0) << "a refused request wrote something";
}

TEST_F(ServerTest, UnknownIdsAreNotFound) {
  const std::string ghost = "00000000000000000000000000000000";
  v1::Person person;
  v1::GetPersonRequest get;
  get.set_subject_id(ghost);
  EXPECT_EQ(enrollment_->GetPerson(Ctx().get(), get, &person).error_code(),
            StatusCode::NOT_FOUND);
  get.clear_subject_id();
  get.set_national_id("X1");
  get.set_issuing_country("BHR");
  EXPECT_EQ(enrollment_->GetPerson(Ctx().get(), get, &person).error_code(),
            StatusCode::NOT_FOUND);

  v1::UpdatePersonRequest update;
  update.mutable_person()->set_subject_id(ghost);
  update.mutable_update_mask()->add_paths("civil_status");
  update.set_expected_version(1);
  EXPECT_EQ(
      enrollment_->UpdatePerson(Ctx().get(), update, &person).error_code(),
      StatusCode::NOT_FOUND);

  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("r");
  replace.set_subject_id(ghost);
  EXPECT_EQ(
      enrollment_->ReplaceTemplates(Ctx().get(), replace, &person).error_code(),
      StatusCode::NOT_FOUND);

  v1::DeletePersonRequest remove;
  remove.set_subject_id(ghost);
  remove.set_reason("test");
  google::protobuf::Empty empty;
  EXPECT_EQ(enrollment_->DeletePerson(Ctx().get(), remove, &empty).error_code(),
            StatusCode::NOT_FOUND);

  v1::VerifyRequest verify;
  verify.set_subject_id(ghost);
  *verify.add_probes() = SyntheticFaceTemplate(model_, 1, 1);
  v1::VerifyResponse verdict;
  EXPECT_EQ(match_->Verify(Ctx().get(), verify, &verdict).error_code(),
            StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, VerifyGenuineAndImpostor) {
  const std::string alice = MustEnroll(10);
  MustEnroll(11);

  v1::VerifyRequest request;
  request.set_subject_id(alice);
  *request.add_probes() =
      SyntheticFaceTemplate(model_, 10, 1);  // a fresh capture
  v1::VerifyResponse genuine;
  ASSERT_TRUE(match_->Verify(Ctx().get(), request, &genuine).ok());
  EXPECT_TRUE(genuine.match());
  EXPECT_GE(genuine.score(), genuine.threshold());
  EXPECT_NEAR(genuine.score(), 0.61, 0.1);
  EXPECT_EQ(genuine.subject_id(), alice);
  ASSERT_EQ(genuine.modality_scores_size(), 1);
  EXPECT_EQ(genuine.modality_scores(0).modality(), v1::FACE);
  EXPECT_FLOAT_EQ(genuine.modality_scores(0).score(), genuine.score());

  // Identity 11's face against alice's claim, this time by national id.
  request.clear_subject_id();
  request.set_national_id("N10");
  request.set_issuing_country("KWT");
  *request.mutable_probes(0) = SyntheticFaceTemplate(model_, 11, 1);
  v1::VerifyResponse impostor;
  ASSERT_TRUE(match_->Verify(Ctx().get(), request, &impostor).ok());
  EXPECT_FALSE(impostor.match());
  EXPECT_LT(impostor.score(), impostor.threshold());
  EXPECT_NEAR(impostor.score(), 0.0, 0.25);

  // A modality alice never enrolled cannot be verified.
  request.mutable_probes(0)->set_modality(v1::IRIS);
  request.mutable_probes(0)->set_position(1);
  request.mutable_probes(0)->mutable_vector()->Truncate(256);
  grpc::Status status = match_->Verify(Ctx().get(), request, &impostor);
  EXPECT_EQ(status.error_code(), StatusCode::FAILED_PRECONDITION);

  request.clear_probes();
  status = match_->Verify(Ctx().get(), request, &impostor);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("probes"));
}

TEST_F(ServerTest, FusesFaceAndIrisIntoOneScore) {
  matcher::SyntheticOptions iris_options;
  iris_options.dimension = 256;
  iris_options.seed = 99;
  const matcher::SyntheticModel iris_model(iris_options);
  auto iris = [&](uint64_t identity, uint64_t capture) {
    v1::Template t = SyntheticFaceTemplate(iris_model, identity, capture);
    t.set_modality(v1::IRIS);
    t.set_position(1);
    return t;
  };
  v1::EnrollRequest enroll = MakeEnrollRequest(model_, 60);
  *enroll.add_templates() = iris(60, 0);
  v1::EnrollResponse enrolled;
  ASSERT_TRUE(enrollment_->Enroll(Ctx().get(), enroll, &enrolled).ok());
  EXPECT_EQ(enrolled.person().template_counts_size(), 2);

  v1::VerifyRequest verify;
  verify.set_subject_id(enrolled.person().subject_id());
  *verify.add_probes() = SyntheticFaceTemplate(model_, 60, 1);
  *verify.add_probes() = iris(61, 1);  // the wrong iris
  v1::VerifyResponse verdict;
  ASSERT_TRUE(match_->Verify(Ctx().get(), verify, &verdict).ok());
  ASSERT_EQ(verdict.modality_scores_size(), 2);
  EXPECT_EQ(verdict.modality_scores(0).modality(), v1::FACE);
  EXPECT_EQ(verdict.modality_scores(1).modality(), v1::IRIS);
  EXPECT_GT(verdict.modality_scores(0).score(), 0.4);
  EXPECT_LT(verdict.modality_scores(1).score(), 0.3);
  EXPECT_NEAR(verdict.score(),
              (verdict.modality_scores(0).score() +
               verdict.modality_scores(1).score()) /
                  2,
              1e-5);
  EXPECT_NEAR(verdict.threshold(), (0.40 + 0.45) / 2, 1e-5);
  EXPECT_FALSE(verdict.match());

  v1::IdentifyRequest identify;
  *identify.add_probes() = SyntheticFaceTemplate(model_, 60, 1);
  *identify.add_probes() = iris(60, 1);
  v1::IdentifyResponse found;
  ASSERT_TRUE(match_->Identify(Ctx().get(), identify, &found).ok());
  ASSERT_EQ(found.candidates_size(), 1);
  EXPECT_EQ(found.candidates(0).subject_id(), enrolled.person().subject_id());
  EXPECT_EQ(found.candidates(0).modality_scores_size(), 2);
  EXPECT_GE(found.candidates(0).score(), found.threshold());
}

TEST_F(ServerTest, IdentifyFindsMatedProbesAtRankOne) {
  constexpr int kEnrolled = 150;
  std::vector<std::string> subjects;
  for (int i = 0; i < kEnrolled; ++i) subjects.push_back(MustEnroll(i));

  for (int i = 0; i < kEnrolled; i += 5) {
    const v1::IdentifyResponse response = MustIdentify(i, /*capture=*/1);
    ASSERT_FALSE(response.candidates().empty());
    EXPECT_EQ(response.candidates(0).subject_id(), subjects[i]);
    EXPECT_EQ(response.candidates(0).rank(), 1u);
    EXPECT_GE(response.candidates(0).score(), response.threshold());
    EXPECT_EQ(response.candidates_size(), 10);
    for (int c = 1; c < response.candidates_size(); ++c) {
      EXPECT_LE(response.candidates(c).score(),
                response.candidates(c - 1).score());
      EXPECT_EQ(response.candidates(c).rank(), static_cast<uint32_t>(c + 1));
    }
  }
  // Non-mated probes (identities never enrolled) find no one above
  // threshold.
  for (int i = 1000; i < 1010; ++i) {
    const v1::IdentifyResponse response = MustIdentify(i, 1);
    ASSERT_FALSE(response.candidates().empty());
    EXPECT_LT(response.candidates(0).score(), response.threshold());
  }

  // max_candidates, min_score and gallery restriction.
  v1::IdentifyRequest request;
  *request.add_probes() = SyntheticFaceTemplate(model_, 42, 1);
  request.set_max_candidates(3);
  v1::IdentifyResponse response;
  ASSERT_TRUE(match_->Identify(Ctx().get(), request, &response).ok());
  EXPECT_EQ(response.candidates_size(), 3);
  request.set_min_score(response.threshold());
  ASSERT_TRUE(match_->Identify(Ctx().get(), request, &response).ok());
  ASSERT_EQ(response.candidates_size(), 1);
  EXPECT_EQ(response.candidates(0).subject_id(), subjects[42]);
  request.clear_min_score();
  request.add_gallery(subjects[7]);
  request.add_gallery(subjects[8]);
  ASSERT_TRUE(match_->Identify(Ctx().get(), request, &response).ok());
  ASSERT_EQ(response.candidates_size(), 2);
  for (const v1::Candidate& c : response.candidates()) {
    EXPECT_TRUE(c.subject_id() == subjects[7] || c.subject_id() == subjects[8]);
  }
  request.set_max_candidates(101);
  EXPECT_EQ(match_->Identify(Ctx().get(), request, &response).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

// Identify calls that arrive together share gallery scans (the scan pool
// batches the probes waiting at the same time); each still gets its own
// answer.
TEST_F(ServerTest, ConcurrentIdentifyCallsEachFindTheirSubject) {
  constexpr int kEnrolled = 120;
  constexpr int kClients = 8;
  constexpr int kCallsPerClient = 15;
  std::vector<std::string> subjects;
  for (int i = 0; i < kEnrolled; ++i) subjects.push_back(MustEnroll(i));
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kCallsPerClient; ++i) {
        const int identity = (c * kCallsPerClient + i * 7) % kEnrolled;
        const v1::IdentifyResponse response = MustIdentify(identity, 1);
        if (response.candidates().empty() ||
            response.candidates(0).subject_id() != subjects[identity] ||
            response.candidates_size() != 10) {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// The face gallery configured as HNSW: GetStats reports it and Identify
// finds mated probes at rank 1 through the graph (60 templates: more than a
// search re-ranks, so candidates come from the graph, not a full scan).
TEST(ServerIndexTest, HnswFromConfigReportsItsKindAndIdentifies) {
  const std::string data_dir = NewTempDir("hawiya-hnsw-test");
  ASSERT_FALSE(data_dir.empty());
  const std::string config = data_dir + "-config.textproto";
  std::ofstream(config) << "modalities { modality: FACE index { kind: "
                           "\"hnsw\" hnsw { m: 16 } } }\n";
  {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir,
                             {"--shutdown_grace=1s", "--config=" + config});
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = (*server)->NewChannel();
    auto enrollment = v1::EnrollmentService::NewStub(channel);
    auto match = v1::MatchService::NewStub(channel);
    auto admin = v1::AdminService::NewStub(channel);
    const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
    std::vector<std::string> subjects;
    for (uint64_t n = 0; n < 60; ++n) {
      v1::EnrollResponse response;
      grpc::Status status = enrollment->Enroll(
          Ctx().get(), MakeEnrollRequest(model, n), &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      subjects.push_back(response.person().subject_id());
    }
    v1::GetStatsResponse stats;
    ASSERT_TRUE(
        admin->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).ok());
    ASSERT_EQ(stats.galleries_size(), 3);
    EXPECT_EQ(stats.galleries(0).modality(), v1::FACE);
    EXPECT_EQ(stats.galleries(0).index_kind(), "hnsw");
    EXPECT_EQ(stats.galleries(0).templates(), 60);
    EXPECT_EQ(stats.galleries(1).index_kind(), "exact");
    for (uint64_t n = 0; n < 60; n += 7) {
      v1::IdentifyRequest request;
      *request.add_probes() = SyntheticFaceTemplate(model, n, 1);
      v1::IdentifyResponse response;
      ASSERT_TRUE(match->Identify(Ctx().get(), request, &response).ok());
      ASSERT_FALSE(response.candidates().empty());
      EXPECT_EQ(response.candidates(0).subject_id(), subjects[n]);
      EXPECT_EQ(response.candidates(0).rank(), 1u);
      EXPECT_GE(response.candidates(0).score(), response.threshold());
      EXPECT_EQ(response.candidates_size(), 10);
    }
  }
  std::filesystem::remove_all(data_dir);
  std::filesystem::remove(config);
}

TEST_F(ServerTest, RevokedAndErasedPersonsAreNeverMatched) {
  const std::string revoked = MustEnroll(20);
  const std::string erased = MustEnroll(21);
  MustEnroll(22);
  google::protobuf::Empty empty;
  v1::DeletePersonRequest remove;
  remove.set_reason("test");
  remove.set_subject_id(revoked);
  ASSERT_TRUE(enrollment_->DeletePerson(Ctx().get(), remove, &empty).ok());
  remove.set_subject_id(erased);
  remove.set_erase(true);
  ASSERT_TRUE(enrollment_->DeletePerson(Ctx().get(), remove, &empty).ok());

  for (uint64_t identity : {20, 21}) {
    const v1::IdentifyResponse response = MustIdentify(identity, 1);
    for (const v1::Candidate& c : response.candidates()) {
      EXPECT_NE(c.subject_id(), revoked);
      EXPECT_NE(c.subject_id(), erased);
    }
  }
  v1::VerifyRequest verify;
  verify.set_subject_id(revoked);
  *verify.add_probes() = SyntheticFaceTemplate(model_, 20, 1);
  v1::VerifyResponse verdict;
  grpc::Status status = match_->Verify(Ctx().get(), verify, &verdict);
  EXPECT_EQ(status.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("REVOKED"));
  verify.set_subject_id(erased);
  EXPECT_EQ(match_->Verify(Ctx().get(), verify, &verdict).error_code(),
            StatusCode::NOT_FOUND);

  v1::GetStatsResponse stats;
  ASSERT_TRUE(
      admin_->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.galleries(0).templates(), 1);

  // Replaying the erased person's enrollment does not bring it back.
  v1::EnrollResponse replayed;
  grpc::Status replay = enrollment_->Enroll(
      Ctx().get(), MakeEnrollRequest(model_, 21), &replayed);
  EXPECT_EQ(replay.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(replay.error_message(), StartsWith("request_id"));

  // The erased national id is free again, under a new request id.
  v1::EnrollRequest again = MakeEnrollRequest(model_, 21);
  again.set_request_id("re-enroll-21");
  v1::EnrollResponse response;
  EXPECT_TRUE(enrollment_->Enroll(Ctx().get(), again, &response).ok());
}

TEST_F(ServerTest, ReplaceTemplatesChangesWhoMatches) {
  const std::string subject = MustEnroll(30);
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("swap-30");
  replace.set_subject_id(subject);
  *replace.add_templates() = SyntheticFaceTemplate(model_, 31, 0);
  v1::Person person;
  ASSERT_TRUE(
      enrollment_->ReplaceTemplates(Ctx().get(), replace, &person).ok());

  v1::VerifyRequest verify;
  verify.set_subject_id(subject);
  *verify.add_probes() = SyntheticFaceTemplate(model_, 30, 1);
  v1::VerifyResponse verdict;
  ASSERT_TRUE(match_->Verify(Ctx().get(), verify, &verdict).ok());
  EXPECT_FALSE(verdict.match());
  *verify.mutable_probes(0) = SyntheticFaceTemplate(model_, 31, 1);
  ASSERT_TRUE(match_->Verify(Ctx().get(), verify, &verdict).ok());
  EXPECT_TRUE(verdict.match());
}

TEST_F(ServerTest, ListPersonsPagesCoverEveryPersonOnce) {
  std::set<std::string> enrolled;
  for (int i = 0; i < 7; ++i) enrolled.insert(MustEnroll(100 + i));
  v1::ListPersonsRequest request;
  request.set_page_size(3);
  std::set<std::string> seen;
  int pages = 0;
  do {
    v1::ListPersonsResponse response;
    ASSERT_TRUE(enrollment_->ListPersons(Ctx().get(), request, &response).ok());
    for (const v1::Person& p : response.persons()) {
      EXPECT_TRUE(seen.insert(p.subject_id()).second) << "listed twice";
    }
    request.set_page_token(response.next_page_token());
    ++pages;
  } while (!request.page_token().empty());
  EXPECT_EQ(seen, enrolled);
  EXPECT_EQ(pages, 3);

  request.set_page_token("not-a-token");
  v1::ListPersonsResponse response;
  grpc::Status status =
      enrollment_->ListPersons(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("page_token"));
}

TEST_F(ServerTest, SigtermDrainsAndRestartRebuildsGalleries) {
  const std::string subject = MustEnroll(50);
  MustEnroll(51);
  EXPECT_EQ(server_->Terminate(), 0);
  StartServer();
  EXPECT_EQ(PersonCount(), 2);
  EXPECT_EQ(MustIdentify(50, 1).candidates(0).subject_id(), subject);
}

// In process, to hold the loading phase open: health says NOT_SERVING and
// Hawiya RPCs are UNAVAILABLE until the galleries are loaded.
TEST(ServerLoadingTest, NotServingUntilGalleriesLoad) {
  const std::string data_dir = NewTempDir("hawiya-loading-test");
  absl::Notification release;
  services::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = data_dir;
  options.before_load = [&release] { release.WaitForNotification(); };
  absl::StatusOr<std::unique_ptr<services::Server>> server =
      services::Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                          grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto admin = v1::AdminService::NewStub(channel);

  grpc::health::v1::HealthCheckResponse status;
  ASSERT_TRUE(
      health
          ->Check(Ctx().get(), grpc::health::v1::HealthCheckRequest(), &status)
          .ok());
  EXPECT_EQ(status.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  v1::GetStatsResponse stats;
  EXPECT_EQ(
      admin->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).error_code(),
      StatusCode::UNAVAILABLE);

  release.Notify();
  ASSERT_TRUE((*server)->WaitUntilReady().ok());
  ASSERT_TRUE(
      health
          ->Check(Ctx().get(), grpc::health::v1::HealthCheckRequest(), &status)
          .ok());
  EXPECT_EQ(status.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(admin->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).ok());

  // The call refused while loading is in the audit log: held in memory
  // until the store opened, then written first.
  v1::ListAuditRecordsResponse audit;
  ASSERT_TRUE(
      v1::AuditService::NewStub(channel)
          ->ListAuditRecords(Ctx().get(), v1::ListAuditRecordsRequest(), &audit)
          .ok());
  ASSERT_EQ(audit.records_size(), 2);
  EXPECT_EQ(audit.records(0).method(), "/hawiya.v1.AdminService/GetStats");
  EXPECT_EQ(audit.records(0).outcome(), "UNAVAILABLE");
  EXPECT_EQ(audit.records(0).principal(), "hawiya://dev/insecure");
  EXPECT_EQ(audit.records(0).role(), "admin");
  EXPECT_EQ(audit.records(1).method(), "/hawiya.v1.AdminService/GetStats");
  EXPECT_EQ(audit.records(1).outcome(), "OK");
  (*server)->Shutdown(absl::Seconds(1));
  std::filesystem::remove_all(data_dir);
}

// The health port (health_listen): grpc.health.v1.Health alone, plaintext,
// with the main port's status, every call audited. In process, to hold the
// loading phase open.
class HealthPortTest : public ::testing::Test {
 protected:
  using HealthResponse = grpc::health::v1::HealthCheckResponse;

  void SetUp() override {
    data_dir_ = NewTempDir("hawiya-health-port-test");
    ASSERT_FALSE(data_dir_.empty());
    services::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.health_listen = "127.0.0.1:0";
    options.data_dir = data_dir_;
    options.before_load = [this] { release_.WaitForNotification(); };
    absl::StatusOr<std::unique_ptr<services::Server>> server =
        services::Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_NE(server_->health_port(), 0);
    ASSERT_NE(server_->health_port(), server_->port());
    main_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                grpc::InsecureChannelCredentials());
    health_port_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->health_port()),
                            grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (!release_.HasBeenNotified()) release_.Notify();
    server_.reset();
    std::filesystem::remove_all(data_dir_);
  }

  void Ready() {
    release_.Notify();
    ASSERT_TRUE(server_->WaitUntilReady().ok());
  }

  // Check on the health port: its status code, and the serving status.
  grpc::StatusCode CheckCode(const std::string& service,
                             HealthResponse::ServingStatus* serving) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    HealthResponse response;
    grpc::Status status = grpc::health::v1::Health::NewStub(health_port_)
                              ->Check(Ctx().get(), request, &response);
    *serving = response.status();
    return status.error_code();
  }

  // The serving status a Check that must succeed reports.
  HealthResponse::ServingStatus Check(const std::string& service = "") {
    HealthResponse::ServingStatus serving;
    EXPECT_EQ(CheckCode(service, &serving), StatusCode::OK);
    return serving;
  }

  StatusCode CheckCode(const std::string& service) {
    HealthResponse::ServingStatus serving;
    return CheckCode(service, &serving);
  }

  // One server reflection request (list_services) as a unary call.
  static grpc::Status ListServicesByReflection(
      const std::shared_ptr<grpc::Channel>& channel, std::string* response) {
    // ServerReflectionRequest{list_services: ""}: field 7, length 0.
    grpc::Slice request_bytes(std::string("\x3a\x00", 2));
    grpc::ByteBuffer request(&request_bytes, 1);
    grpc::ByteBuffer reply;
    grpc::GenericStub stub(channel);
    std::unique_ptr<grpc::ClientContext> ctx = Ctx();
    absl::Notification done;
    grpc::Status result;
    stub.UnaryCall(ctx.get(),
                   "/grpc.reflection.v1alpha.ServerReflection/"
                   "ServerReflectionInfo",
                   grpc::StubOptions(), &request, &reply,
                   [&](grpc::Status status) {
                     result = std::move(status);
                     done.Notify();
                   });
    done.WaitForNotification();
    std::vector<grpc::Slice> slices;
    response->clear();
    if (result.ok() && reply.Dump(&slices).ok()) {
      for (const grpc::Slice& slice : slices) {
        response->append(reinterpret_cast<const char*>(slice.begin()),
                         slice.size());
      }
    }
    return result;
  }

  // The audit records of calls on the health port, oldest first.
  std::vector<v1::AuditRecord> ProbeRecords() {
    v1::ListAuditRecordsRequest request;
    request.set_principal(std::string(services::kHealthProbePrincipal));
    v1::ListAuditRecordsResponse response;
    grpc::Status status = v1::AuditService::NewStub(main_)->ListAuditRecords(
        Ctx().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.records().begin(), response.records().end()};
  }

  std::string data_dir_;
  absl::Notification release_;
  std::unique_ptr<services::Server> server_;
  std::shared_ptr<grpc::Channel> main_;
  std::shared_ptr<grpc::Channel> health_port_;
};

TEST_F(HealthPortTest, ReportsTheServersStatus) {
  EXPECT_EQ(Check(), HealthResponse::NOT_SERVING);
  EXPECT_EQ(Check("hawiya.v1.MatchService"), HealthResponse::NOT_SERVING);
  Ready();
  EXPECT_EQ(Check(), HealthResponse::SERVING);
  EXPECT_EQ(Check("hawiya.v1.EnrollmentService"), HealthResponse::SERVING);
  EXPECT_EQ(CheckCode("no.such.Service"), StatusCode::NOT_FOUND);

  // A watcher sees SERVING, then NOT_SERVING once shutdown begins.
  grpc::health::v1::HealthCheckRequest request;
  std::unique_ptr<grpc::ClientContext> ctx = Ctx();
  std::unique_ptr<grpc::ClientReader<HealthResponse>> watch =
      grpc::health::v1::Health::NewStub(health_port_)
          ->Watch(ctx.get(), request);
  HealthResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthResponse::SERVING);
  std::thread shutdown([this] { server_->Shutdown(absl::Seconds(1)); });
  const bool updated = watch->Read(&update);
  shutdown.join();
  EXPECT_TRUE(updated);
  EXPECT_EQ(update.status(), HealthResponse::NOT_SERVING);
  ctx->TryCancel();
  watch->Finish();
}

TEST_F(HealthPortTest, ServesNothingButHealth) {
  Ready();
  v1::GetStatsResponse stats;
  EXPECT_EQ(v1::AdminService::NewStub(health_port_)
                ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                .error_code(),
            StatusCode::UNIMPLEMENTED);
  v1::ListAuditRecordsResponse audit;
  EXPECT_EQ(
      v1::AuditService::NewStub(health_port_)
          ->ListAuditRecords(Ctx().get(), v1::ListAuditRecordsRequest(), &audit)
          .error_code(),
      StatusCode::UNIMPLEMENTED);
  // Reflection answers on the main port, not on the health port.
  std::string services;
  grpc::Status main_reflection = ListServicesByReflection(main_, &services);
  ASSERT_TRUE(main_reflection.ok()) << main_reflection.error_message();
  EXPECT_THAT(services, HasSubstr("hawiya.v1.AdminService"));
  EXPECT_EQ(ListServicesByReflection(health_port_, &services).error_code(),
            StatusCode::UNIMPLEMENTED);
}

TEST_F(HealthPortTest, AuditsEveryCall) {
  Ready();
  ASSERT_EQ(Check(), HealthResponse::SERVING);
  v1::GetStatsResponse stats;
  ASSERT_EQ(v1::AdminService::NewStub(health_port_)
                ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                .error_code(),
            StatusCode::UNIMPLEMENTED);
  ASSERT_EQ(CheckCode("no.such.Service"), StatusCode::NOT_FOUND);

  const std::vector<v1::AuditRecord> records = ProbeRecords();
  ASSERT_EQ(records.size(), 3);
  EXPECT_EQ(records[0].method(), "/grpc.health.v1.Health/Check");
  EXPECT_EQ(records[0].outcome(), "OK");
  EXPECT_EQ(records[0].role(), "");
  EXPECT_EQ(records[1].method(), "/hawiya.v1.AdminService/GetStats");
  EXPECT_EQ(records[1].outcome(), "UNIMPLEMENTED");
  EXPECT_EQ(records[2].method(), "/grpc.health.v1.Health/Check");
  EXPECT_EQ(records[2].outcome(), "NOT_FOUND");
  // The probes are links of the same hash chain as every other record.
  v1::VerifyAuditLogResponse verified;
  ASSERT_TRUE(
      v1::AuditService::NewStub(main_)
          ->VerifyAuditLog(Ctx().get(), v1::VerifyAuditLogRequest(), &verified)
          .ok());
  EXPECT_TRUE(verified.intact());
}

TEST(HealthPortOptionsTest, NoHealthPortByDefault) {
  const std::string data_dir = NewTempDir("hawiya-health-default-test");
  services::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = data_dir;
  absl::StatusOr<std::unique_ptr<services::Server>> server =
      services::Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->health_port(), 0);
  server->reset();
  std::filesystem::remove_all(data_dir);
}

TEST(HealthPortOptionsTest, UnbindableHealthPortFailsStart) {
  const std::string data_dir = NewTempDir("hawiya-health-bind-test");
  services::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.health_listen = "not-an-address";
  options.data_dir = data_dir;
  absl::StatusOr<std::unique_ptr<services::Server>> server =
      services::Server::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()),
              StartsWith("health_listen"));
  std::filesystem::remove_all(data_dir);
// One server per data folder, refused before it writes anything there.
TEST(ServerLockTest, SecondServerOnTheDataDirIsRefused) {
  const std::string data_dir = NewTempDir("hawiya-lock-test");
  services::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = data_dir;
  absl::StatusOr<std::unique_ptr<services::Server>> first =
      services::Server::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->WaitUntilReady().ok());
  const std::string in_use =
      absl::StrCat("data_dir ", data_dir, " is in use by process ", getpid());
  absl::StatusOr<std::unique_ptr<services::Server>> second =
      services::Server::Start(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(in_use));
  // Over TLS it would first write the development PKI into the folder.
  options.insecure = false;
  second = services::Server::Start(options);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(in_use));
  EXPECT_FALSE(std::filesystem::exists(data_dir + "/pki"));

  // Free again once the first has stopped.
  first->reset();
  options.insecure = true;
  second = services::Server::Start(options);
  EXPECT_TRUE(second.ok()) << second.status();
  second->reset();
  std::filesystem::remove_all(data_dir);
}

// gRPC's default (SO_REUSEPORT) would let a second server bind the port
// and take half of its calls.
TEST(ServerLockTest, PortInUseIsRefused) {
  const std::string first_dir = NewTempDir("hawiya-port-test");
  const std::string second_dir = NewTempDir("hawiya-port-test");
  services::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = first_dir;
  absl::StatusOr<std::unique_ptr<services::Server>> first =
      services::Server::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  options.listen = absl::StrCat("127.0.0.1:", (*first)->port());
  options.data_dir = second_dir;
  absl::StatusOr<std::unique_ptr<services::Server>> second =
      services::Server::Start(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(second.status().message(),
            absl::StrCat("listen: ", options.listen, " is already in use"));
  first->reset();
  std::filesystem::remove_all(first_dir);
  std::filesystem::remove_all(second_dir);
}

TEST(ServerOptionsTest, PlaintextOnlyOnLoopback) {
  EXPECT_TRUE(services::IsLoopback("127.0.0.1:50051"));
  EXPECT_TRUE(services::IsLoopback("localhost:1"));
  EXPECT_TRUE(services::IsLoopback("[::1]:50051"));
  EXPECT_FALSE(services::IsLoopback("0.0.0.0:50051"));
  EXPECT_FALSE(services::IsLoopback("10.1.2.3:50051"));
  services::ServerOptions options;
  options.listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<services::Server>> server =
      services::Server::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()), StartsWith("listen"));
}

// A host name may resolve to any address: only literal loopback addresses
// and localhost pass, whatever the name looks like.
TEST(ServerOptionsTest, PlaintextRefusesHostNamesThatLookLikeLoopback) {
  EXPECT_TRUE(services::IsLoopback("127.255.0.9:1"));
  for (const char* listen :
       {"127.attacker.test:50051", "127.0.0.1.attacker.test:50051",
        "127.evil:50051", "localhost.attacker.test:50051", "localhost.:1",
        "[::1.attacker.test]:1", "::1.attacker.test:1", "127.1:50051",
        "[::ffff:10.0.0.1]:1", "[::]:1", "128.0.0.1:1", "attacker.test:1"}) {
    EXPECT_FALSE(services::IsLoopback(listen)) << listen;
  }
  services::ServerOptions options;
  options.listen = "127.attacker.test:0";
  absl::StatusOr<std::unique_ptr<services::Server>> server =
      services::Server::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition)
      << server.status();
  EXPECT_THAT(std::string(server.status().message()),
              StartsWith("listen: plaintext (--insecure) is only served on "
                         "loopback addresses, not 127.attacker.test:0"));
}

}  // namespace
}  // namespace hawiya

namespace hawiya {
namespace {

// Config files written by one test, removed when it ends.
class ConfigFiles {
 public:
  ConfigFiles() : dir_(testing::NewTempDir("hawiya-config-test")) {}
  ~ConfigFiles() { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", count_++, ".textproto");
    std::ofstream(path) << text;
    return path;
  }

 private:
  const std::string dir_;
  int count_ = 0;
};

TEST(ConfigTest, ExampleConfigSpellsOutTheDefaults) {
  absl::StatusOr<config::ServerConfig> config = services::LoadConfig(
      std::string(HAWIYA_SOURCE_DIR) + "/deploy/hawiya.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::vector<matcher::ModalitySpec>> specs =
      services::ModalitySpecs(*config);
  ASSERT_TRUE(specs.ok()) << specs.status();
  const std::vector<matcher::ModalitySpec> defaults =
      matcher::DefaultModalities();
  ASSERT_EQ(specs->size(), defaults.size());
  for (size_t i = 0; i < defaults.size(); ++i) {
    EXPECT_EQ((*specs)[i].modality, defaults[i].modality);
    EXPECT_EQ((*specs)[i].dimension, defaults[i].dimension);
    EXPECT_FLOAT_EQ((*specs)[i].threshold, defaults[i].threshold);
    const matcher::IndexOptions& index = (*specs)[i].index;
    const matcher::IndexOptions& want = defaults[i].index;
    EXPECT_EQ(index.kind, want.kind);
    EXPECT_EQ(index.hnsw.m, want.hnsw.m);
    EXPECT_EQ(index.hnsw.ef_construction, want.hnsw.ef_construction);
    EXPECT_EQ(index.hnsw.ef_search, want.hnsw.ef_search);
    EXPECT_EQ(index.hnsw.sq8_storage, want.hnsw.sq8_storage);
    EXPECT_EQ(index.rerank_factor, want.rerank_factor);
    EXPECT_EQ(index.auto_hnsw_min_templates, want.auto_hnsw_min_templates);
  }
  // The example spells the index section out for FACE.
  EXPECT_TRUE(config->modalities(0).has_index());
}

TEST(ConfigTest, IndexSectionSetsTheGalleryIndexAndNamesBadFields) {
  ConfigFiles files;
  absl::StatusOr<config::ServerConfig> config = services::LoadConfig(
      files.Write("modalities { modality: FINGERPRINT index { kind: \"hnsw\" "
                  "hnsw { m: 16 ef_search: 200 sq8_storage: true } "
                  "rerank_factor: 8 } }\n"
                  "modalities { modality: IRIS index { kind: \"auto\" "
                  "auto_hnsw_min_templates: 0 } }"));
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::vector<matcher::ModalitySpec>> specs =
      services::ModalitySpecs(*config);
  ASSERT_TRUE(specs.ok()) << specs.status();
  const matcher::IndexOptions& face = (*specs)[0].index;
  const matcher::IndexOptions& finger = (*specs)[1].index;
  const matcher::IndexOptions& iris = (*specs)[2].index;
  EXPECT_EQ(face.kind, matcher::IndexKind::kExact);
  EXPECT_EQ(finger.kind, matcher::IndexKind::kHnsw);
  EXPECT_EQ(finger.hnsw.m, 16);
  EXPECT_EQ(finger.hnsw.ef_construction, 40);  // default kept
  EXPECT_EQ(finger.hnsw.ef_search, 200);
  EXPECT_TRUE(finger.hnsw.sq8_storage);
  EXPECT_EQ(finger.rerank_factor, 8);
  EXPECT_EQ(iris.kind, matcher::IndexKind::kAuto);
  EXPECT_EQ(iris.auto_hnsw_min_templates, 0u);  // 0 is a value, not unset

  struct Bad {
    std::string text;
    std::string message;
  };
  const std::vector<Bad> bad = {
      {"index { kind: \"ivf\" }",
       "modalities[0].index.kind: unknown index kind \"ivf\""},
      {"index { hnsw { m: 1 } }",
       "modalities[0].index.hnsw.m: must be in [2, 256], got 1"},
      {"index { hnsw { m: 4294967295 } }",
       "modalities[0].index.hnsw.m: must be in [2, 256], got 2147483647"},
      {"index { hnsw { ef_construction: 0 } }",
       "modalities[0].index.hnsw.ef_construction: must be in [1, 10000]"},
      {"index { hnsw { ef_search: 0 } }",
       "modalities[0].index.hnsw.ef_search: must be in [1, 10000]"},
      {"index { rerank_factor: 0 }",
       "modalities[0].index.rerank_factor: must be in [1, 100]"},
  };
  for (const Bad& b : bad) {
    const absl::Status s =
        services::LoadConfig(files.Write(absl::StrCat(
                                 "modalities { modality: FACE ", b.text, " }")))
            .status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.text;
    EXPECT_THAT(std::string(s.message()), HasSubstr(b.message)) << b.text;
    EXPECT_THAT(std::string(s.message()), HasSubstr(".textproto: ")) << b.text;
  }
}

TEST(ConfigTest, ScanPoolFields) {
  absl::StatusOr<config::ServerConfig> example = services::LoadConfig(
      std::string(HAWIYA_SOURCE_DIR) + "/deploy/hawiya.textproto");
  ASSERT_TRUE(example.ok()) << example.status();
  const matcher::ScanPoolOptions defaults;
  matcher::ScanPoolOptions options = services::ScanPoolOptions(*example);
  EXPECT_EQ(options.threads, defaults.threads);
  EXPECT_EQ(options.max_batch, defaults.max_batch);
  EXPECT_EQ(options.max_wait, defaults.max_wait);

  ConfigFiles files;
  absl::StatusOr<config::ServerConfig> config = services::LoadConfig(
      files.Write("scan_threads: 3 scan_max_batch: 4 scan_max_wait_us: 500"));
  ASSERT_TRUE(config.ok()) << config.status();
  options = services::ScanPoolOptions(*config);
  EXPECT_EQ(options.threads, 3);
  EXPECT_EQ(options.max_batch, 4);
  EXPECT_EQ(options.max_wait, absl::Microseconds(500));

  absl::Status bad =
      services::LoadConfig(files.Write("scan_max_wait_us: 1001")).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("scan_max_wait_us: at most 1000"));
  bad = services::LoadConfig(files.Write("scan_max_batch: 65")).status();
  EXPECT_THAT(std::string(bad.message()), HasSubstr("scan_max_batch"));
  bad = services::LoadConfig(files.Write("scan_threads: 1000")).status();
  EXPECT_THAT(std::string(bad.message()), HasSubstr("scan_threads"));
}

TEST(ConfigTest, OverridesAndErrorsNameTheField) {
  ConfigFiles files;
  absl::StatusOr<config::ServerConfig> config =
      services::LoadConfig(files.Write(
          "modalities { modality: IRIS dimension: 128 threshold: 0.6 }"));
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::vector<matcher::ModalitySpec>> specs =
      services::ModalitySpecs(*config);
  ASSERT_TRUE(specs.ok());
  EXPECT_EQ((*specs)[2].modality, matcher::Modality::kIris);
  EXPECT_EQ((*specs)[2].dimension, 128);
  EXPECT_FLOAT_EQ((*specs)[2].threshold, 0.6f);
  EXPECT_EQ((*specs)[0].dimension, 512);  // FACE keeps its default

  absl::Status bad = services::LoadConfig(files.Write("bogus: 1")).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr(".textproto:1:6: "));
  bad = services::LoadConfig(files.Write("modalities { modality: FACE "
                                         "threshold: 2 }"))
            .status();
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("modalities[0].threshold: must be in [-1, 1]"));
  bad =
      services::LoadConfig(files.Write("max_receive_message_bytes: 4000000000"))
          .status();
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("max_receive_message_bytes: at most 1 GiB"));
  EXPECT_EQ(services::LoadConfig("/nonexistent.textproto").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hawiya
