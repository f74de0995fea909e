// Limits and key-encryption key rotation through the real binaries (issue 4,
// item 5, and the KEK rotation left over from item 3): per-principal rate
// limits under mutual TLS, no PII or template in the server's log, and
// `hawiya admin rotate-key --new_key_file` followed by restarts with the old
// and the new key file.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "google/protobuf/field_mask.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "hawiya/v1/partner.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/pki.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

namespace fs = std::filesystem;
using ::grpc::StatusCode;
using ::hawiya::services::SyntheticFaceTemplate;
using ::hawiya::testing::Ctx;
using ::hawiya::testing::MakeEnrollRequest;
using ::hawiya::testing::NewTempDir;
using ::hawiya::testing::ReadFileBytes;
using ::hawiya::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::Not;

// How many times `needle` occurs in `text`.
int Count(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

// A server on mutual TLS with the development PKI (DATA_DIR/pki), its
// stderr in a file; channels present a role's development certificate.
class DevTlsServer {
 public:
  DevTlsServer() : dir_(NewTempDir("hawiya-limits")) {}
  ~DevTlsServer() {
    server_.reset();
    fs::remove_all(dir_);
  }

  absl::Status Start(const std::string& config_text = "") {
    std::vector<std::string> args = {"--shutdown_grace=1s"};
    if (!config_text.empty()) {
      const std::string config = dir_ + "/config.textproto";
      std::ofstream(config) << config_text;
      args.push_back("--config=" + config);
    }
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::StartTls(HAWIYA_SERVER_PATH, dir_ + "/data", args,
                                log_path());
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    return absl::OkStatus();
  }

  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& role) {
    const std::string pki = dir_ + "/data/pki";
    const services::DevPkiPaths paths = services::DevPkiRolePaths(pki, role);
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = *services::ReadFile(pki + "/ca.pem");
    options.pem_private_key = *services::ReadFile(paths.key);
    options.pem_cert_chain = *services::ReadFile(paths.cert);
    return server_->NewChannel(grpc::SslCredentials(options));
  }

  ServerProcess& process() { return *server_; }
  std::string log_path() const { return dir_ + "/server.log"; }
  std::string log() const { return ReadFileBytes(log_path()); }

 private:
  const std::string dir_;
  std::unique_ptr<ServerProcess> server_;
};

grpc::Status GetNobody(const std::shared_ptr<grpc::Channel>& channel) {
  v1::GetPersonRequest request;
  request.set_subject_id("nobody");
  v1::Person person;
  return v1::EnrollmentService::NewStub(channel)->GetPerson(Ctx().get(),
                                                            request, &person);
}

grpc::Status Health(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::health::v1::HealthCheckResponse response;
  return grpc::health::v1::Health::NewStub(channel)->Check(
      Ctx().get(), grpc::health::v1::HealthCheckRequest(), &response);
}

TEST(RateLimitProcessTest, PrincipalOverItsLimitIsRefusedOthersAreNot) {
  DevTlsServer server;
  // One call per 1000 s after a burst of 2: no refill during the test.
  ASSERT_TRUE(server
                  .Start("rate_limits { principal: \"hawiya://dev/border\" "
                         "requests_per_second: 0.001 burst: 2 }\n"
                         "default_rate_limit { requests_per_second: 1000 "
                         "burst: 1000 }\n")
                  .ok());
  auto border = server.ChannelAs("border");
  auto registrar = server.ChannelAs("registrar");
  // Past access control: the handler answers NOT_FOUND.
  EXPECT_EQ(GetNobody(border).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(GetNobody(border).error_code(), StatusCode::NOT_FOUND);
  for (int i = 0; i < 3; ++i) {
    const grpc::Status refused = GetNobody(border);
    EXPECT_EQ(refused.error_code(), StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(refused.error_message(),
              "principal hawiya://dev/border is over its rate limit of 0.001 "
              "requests/s (burst 2); retry later");
  }
  // Its health checks are never refused.
  EXPECT_TRUE(Health(border).ok());
  // Another principal has its own bucket.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(GetNobody(registrar).error_code(), StatusCode::NOT_FOUND) << i;
  }
  // A run of refusals is logged once, but each refusal is audited.
  EXPECT_EQ(Count(server.log(), "is over its rate limit"), 1);
  v1::ListAuditRecordsRequest request;
  request.set_principal("hawiya://dev/border");
  request.set_page_size(1000);
  v1::ListAuditRecordsResponse page;
  ASSERT_TRUE(v1::AuditService::NewStub(server.ChannelAs("auditor"))
                  ->ListAuditRecords(Ctx().get(), request, &page)
                  .ok());
  std::map<std::string, int> outcomes;
  for (const v1::AuditRecord& record : page.records()) {
    if (record.method() == "/hawiya.v1.EnrollmentService/GetPerson") {
      ++outcomes[record.outcome()];
    }
  }
  EXPECT_EQ(outcomes, (std::map<std::string, int>{{"NOT_FOUND", 2},
                                                  {"RESOURCE_EXHAUSTED", 3}}));
}

TEST(RateLimitProcessTest, NotAppliedUnderInsecureAndSaysSo) {
  const std::string dir = NewTempDir("hawiya-limits-insecure");
  const std::string config = dir + "/config.textproto";
  std::ofstream(config) << "default_rate_limit { requests_per_second: 0.001 "
                           "burst: 1 }\n";
  const std::string log = dir + "/server.log";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      HAWIYA_SERVER_PATH, dir + "/data", {"--config=" + config}, log);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = (*server)->NewChannel();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(GetNobody(channel).error_code(), StatusCode::NOT_FOUND);
  }
  EXPECT_THAT(ReadFileBytes(log),
              HasSubstr("rate limits are not applied under --insecure"));
  server->reset();
  fs::remove_all(dir);
}

// The ways a template's components could be printed.
std::vector<std::string> AsText(const v1::Template& t) {
  std::vector<std::string> texts;
  for (float f : t.vector()) {
    texts.push_back(absl::StrCat(f));
    texts.push_back(absl::StrFormat("%.9g", f));
  }
  return texts;
}

std::string RawBytes(const v1::Template& t) {
  return std::string(reinterpret_cast<const char*>(t.vector().data()),
                     t.vector_size() * sizeof(float));
}

// Drives every kind of call, failing ones included, with a distinctive
// person, then reads the server's whole log: none of the person's fields
// nor the template (as text or as bytes) may be in it.
TEST(LogPolicyProcessTest, NoPiiOrTemplateInTheServerLog) {
  DevTlsServer server;
  // The partner may verify (PartnerService), faces included.
  ASSERT_TRUE(server
                  .Start("partner_policies { principal: "
                         "\"hawiya://dev/partner\" allowed_purposes: "
                         "\"BORDER_CROSSING\" disclosable_attributes: "
                         "[\"name\", \"date_of_birth\", \"state\"] "
                         "biometric_allowed: true }\n")
                  .ok());
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  auto registrar =
      v1::EnrollmentService::NewStub(server.ChannelAs("registrar"));
  auto border_enrollment =
      v1::EnrollmentService::NewStub(server.ChannelAs("border"));
  auto border = v1::MatchService::NewStub(server.ChannelAs("border"));
  auto partner = v1::MatchService::NewStub(server.ChannelAs("partner"));

  const std::vector<std::string> pii = {
      "QXPII7731904",  "Zubaydaqx",  "Fitzgeraldqx",   "Wazzanqx",
      "Renamedqx",     "زبيدةقص",    "Lowestoftqx",    "PXPII5521",
      "1961-07-23",    "19610723",   "23/07/1961",     "year: 1961",
      "reason-qx-pii", "dup-req-qx", "purpose-qx-pii", "partner-req-qx"};
  v1::EnrollRequest enroll = MakeEnrollRequest(model, 7);
  v1::Person& person = *enroll.mutable_person();
  person.set_national_id("QXPII7731904");
  person.mutable_name_latin()->set_given("Zubaydaqx");
  person.mutable_name_latin()->set_father("Fitzgeraldqx");
  person.mutable_name_latin()->set_family("Wazzanqx");
  person.mutable_name_ar()->set_given("زبيدةقص");
  person.set_place_of_birth("Lowestoftqx");
  person.mutable_documents(0)->set_number("PXPII5521");
  person.mutable_date_of_birth()->set_year(1961);
  person.mutable_date_of_birth()->set_month(7);
  person.mutable_date_of_birth()->set_day(23);
  const v1::Template& face = enroll.templates(0);

  v1::EnrollResponse enrolled;
  ASSERT_TRUE(registrar->Enroll(Ctx().get(), enroll, &enrolled).ok());
  const std::string subject = enrolled.person().subject_id();
  // The same national id again: ALREADY_EXISTS naming it (to the client).
  v1::EnrollRequest duplicate = enroll;
  duplicate.set_request_id("dup-req-qx");
  v1::EnrollResponse ignored;
  const grpc::Status conflict =
      registrar->Enroll(Ctx().get(), duplicate, &ignored);
  EXPECT_EQ(conflict.error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(conflict.error_message(), HasSubstr("QXPII7731904"));
  // Invalid: a date that does not exist, and a non-Arabic Arabic name.
  v1::EnrollRequest invalid = duplicate;
  invalid.mutable_person()->mutable_date_of_birth()->set_month(13);
  invalid.mutable_person()->mutable_name_ar()->set_given("Zubaydaqx");
  EXPECT_EQ(registrar->Enroll(Ctx().get(), invalid, &ignored).error_code(),
            StatusCode::INVALID_ARGUMENT);
  // Denied: a border post may not enroll (PERMISSION_DENIED, logged).
  EXPECT_EQ(
      border_enrollment->Enroll(Ctx().get(), duplicate, &ignored).error_code(),
      StatusCode::PERMISSION_DENIED);

  v1::GetPersonRequest get;
  get.set_national_id("QXPII7731904");
  get.set_issuing_country(person.issuing_country());
  v1::Person got;
  ASSERT_TRUE(registrar->GetPerson(Ctx().get(), get, &got).ok());
  ASSERT_TRUE(border_enrollment->GetPerson(Ctx().get(), get, &got).ok());

  v1::UpdatePersonRequest update;
  update.mutable_person()->set_subject_id(subject);
  update.mutable_person()->mutable_name_latin()->set_given("Renamedqx");
  update.mutable_person()->mutable_name_latin()->set_family("Wazzanqx");
  update.mutable_update_mask()->add_paths("name_latin");
  update.set_expected_version(got.version());
  v1::Person updated;
  ASSERT_TRUE(registrar->UpdatePerson(Ctx().get(), update, &updated).ok());
  // Stale version: ABORTED.
  EXPECT_EQ(registrar->UpdatePerson(Ctx().get(), update, &updated).error_code(),
            StatusCode::ABORTED);

  v1::VerifyRequest verify;
  verify.set_national_id("QXPII7731904");
  verify.set_issuing_country(person.issuing_country());
  *verify.add_probes() = face;  // the enrolled capture itself
  v1::VerifyResponse verdict;
  ASSERT_TRUE(border->Verify(Ctx().get(), verify, &verdict).ok());
  EXPECT_TRUE(verdict.match());
  v1::IdentifyRequest identify;
  *identify.add_probes() = face;
  v1::IdentifyResponse candidates;
  ASSERT_TRUE(border->Identify(Ctx().get(), identify, &candidates).ok());
  // Denied: a partner may not identify.
  EXPECT_EQ(partner->Identify(Ctx().get(), identify, &candidates).error_code(),
            StatusCode::PERMISSION_DENIED);
  // A partner's verification (names, date, face), one outside its policy
  // (purpose) and one malformed (a bad date): answered or refused, never
  // logged with what they carried.
  auto partner_service =
      v1::PartnerService::NewStub(server.ChannelAs("partner"));
  v1::VerifyCivilStatusRequest claim;
  claim.set_request_id("partner-req-qx");
  claim.set_purpose(v1::BORDER_CROSSING);
  claim.set_purpose_text("purpose-qx-pii");
  claim.set_national_id("QXPII7731904");
  claim.set_issuing_country(person.issuing_country());
  *claim.mutable_name_latin() = updated.name_latin();  // as renamed
  *claim.mutable_date_of_birth() = person.date_of_birth();
  *claim.add_probes() = face;
  v1::VerifyCivilStatusResponse answer;
  ASSERT_TRUE(
      partner_service->VerifyCivilStatus(Ctx().get(), claim, &answer).ok());
  EXPECT_EQ(answer.decision(), v1::VerifyCivilStatusResponse::MATCH);
  v1::VerifyCivilStatusRequest other_purpose = claim;
  other_purpose.set_purpose(v1::SOCIAL_BENEFITS);
  EXPECT_EQ(
      partner_service->VerifyCivilStatus(Ctx().get(), other_purpose, &answer)
          .error_code(),
      StatusCode::PERMISSION_DENIED);
  v1::VerifyCivilStatusRequest bad_date = claim;
  bad_date.mutable_date_of_birth()->set_month(13);
  EXPECT_EQ(partner_service->VerifyCivilStatus(Ctx().get(), bad_date, &answer)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  // A probe of the wrong dimension: INVALID_ARGUMENT.
  v1::IdentifyRequest wrong = identify;
  wrong.mutable_probes(0)->mutable_vector()->Truncate(100);
  EXPECT_EQ(border->Identify(Ctx().get(), wrong, &candidates).error_code(),
            StatusCode::INVALID_ARGUMENT);

  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(subject);
  revoke.set_reason("reason-qx-pii");
  google::protobuf::Empty empty;
  ASSERT_TRUE(registrar->DeletePerson(Ctx().get(), revoke, &empty).ok());
  revoke.set_erase(true);
  ASSERT_TRUE(registrar->DeletePerson(Ctx().get(), revoke, &empty).ok());
  EXPECT_EQ(registrar->GetPerson(Ctx().get(), get, &got).error_code(),
            StatusCode::NOT_FOUND);
  // Shutdown logs too (the snapshot).
  EXPECT_EQ(server.process().Terminate(), 0);

  const std::string log = server.log();
  // The log did record the calls that were refused.
  ASSERT_THAT(log, HasSubstr("access denied"));
  for (const std::string& value : pii) {
    EXPECT_THAT(log, Not(HasSubstr(value))) << value;
  }
  int floats_found = 0;
  for (const std::string& text : AsText(face)) {
    if (log.find(text) != std::string::npos) ++floats_found;
  }
  EXPECT_EQ(floats_found, 0);
  const std::string bytes = RawBytes(face);
  for (size_t at = 0; at + 16 <= bytes.size(); at += 16) {
    ASSERT_EQ(log.find(bytes.substr(at, 16)), std::string::npos) << at;
  }
}

// `hawiya admin rotate-key --new_key_file` on a serving (plaintext) server,
// then restarts: the old key file is refused with a clear message, the new
// one opens every template.
TEST(KekRotationProcessTest, RotateThenRestartWithOldAndNewKeyFile) {
  const std::string dir = NewTempDir("hawiya-kek-rotation");
  const std::string data = dir + "/data";
  const std::string old_key = dir + "/old.key";
  const std::string new_key = dir + "/new.key";
  const std::string log = dir + "/server.log";
  const std::string cli = HAWIYA_CLI_PATH;
  auto run = [&](const std::string& args) {
    return ::hawiya::testing::RunCommand(cli + " " + args + " 2>/dev/null");
  };
  ASSERT_EQ(run("admin gen-key --out=" + old_key).exit_code, 0);
  ASSERT_EQ(run("admin gen-key --out=" + new_key).exit_code, 0);
  auto config_for = [&](const std::string& key) {
    const std::string path =
        dir + "/" + fs::path(key).stem().string() + ".textproto";
    std::ofstream(path) << "key_file: \"" << key << "\"\n";
    return "--config=" + path;
  };
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  constexpr int kPersons = 5;
  {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(HAWIYA_SERVER_PATH, data,
                             {config_for(old_key), "--shutdown_grace=1s"}, log);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = v1::EnrollmentService::NewStub((*server)->NewChannel());
    for (int n = 0; n < kPersons - 1; ++n) {
      v1::EnrollResponse response;
      ASSERT_TRUE(
          stub->Enroll(Ctx().get(), MakeEnrollRequest(model, n), &response)
              .ok());
    }
    const std::string at = " --insecure --server=" + (*server)->address();
    // The path is the server's: a relative one is refused.
    EXPECT_EQ(run("admin rotate-key --new_key_file=new.key" + at).exit_code,
              10 + 3);
    const ::hawiya::testing::CommandResult rotated =
        run("admin rotate-key --new_key_file=" + new_key + at);
    ASSERT_EQ(rotated.exit_code, 0) << rotated.out;
    EXPECT_THAT(rotated.out, HasSubstr("\"dataKeysRewrapped\": \"1\""));
    EXPECT_THAT(rotated.out, HasSubstr("\"keyCheck\""));
    // Again: it is the key in use now.
    EXPECT_EQ(run("admin rotate-key --new_key_file=" + new_key + at).exit_code,
              10 + 9);
    // Writes go on, with data keys wrapped by the new key.
    v1::EnrollResponse response;
    ASSERT_TRUE(stub->Enroll(Ctx().get(),
                             MakeEnrollRequest(model, kPersons - 1), &response)
                    .ok());
    ASSERT_EQ(run("admin rotate-key" + at).exit_code, 0);
    EXPECT_EQ((*server)->Terminate(), 0);
  }
  const std::string first_log = ReadFileBytes(log);
  EXPECT_THAT(first_log, HasSubstr("key-encryption key rotated"));
  // The start named the key it used, by its check value.
  EXPECT_THAT(first_log,
              HasSubstr("key-encryption key: " + old_key + " (key check "));

  fs::remove(log);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      HAWIYA_SERVER_PATH, data, {config_for(old_key)}, log);
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(ReadFileBytes(log),
              HasSubstr("that a key-encryption key rotation replaced"));

  server = ServerProcess::Start(HAWIYA_SERVER_PATH, data, {config_for(new_key)},
                                log);
  ASSERT_TRUE(server.ok()) << server.status();
  auto match = v1::MatchService::NewStub((*server)->NewChannel());
  for (int n = 0; n < kPersons; ++n) {
    const v1::EnrollRequest enrolled = MakeEnrollRequest(model, n);
    const v1::Person& person = enrolled.person();
    v1::VerifyRequest verify;
    verify.set_national_id(person.national_id());
    verify.set_issuing_country(person.issuing_country());
    *verify.add_probes() = SyntheticFaceTemplate(model, n, 1);
    v1::VerifyResponse verdict;
    ASSERT_TRUE(match->Verify(Ctx().get(), verify, &verdict).ok()) << n;
    EXPECT_TRUE(verdict.match()) << n;
  }
  server->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace hawiya
