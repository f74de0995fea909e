// The audit log end to end, against the real hawiya-server on mutual TLS:
// allowed calls (recorded by the services, with resource and candidates)
// and refused ones (recorded by the access check, with the status it
// refused them with) appear in AuditService.ListAuditRecords with the right
// principal, role, method, resource and outcome; pagination and filters
// work; VerifyAuditLog finds the chain intact; and `hawiya audit verify
// --data_dir` agrees offline once the server has stopped, and detects a
// tampered copy.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/pki.h"
#include "services/roles.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/raw_db.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_pki.h"

namespace hawiya {
namespace {

using ::hawiya::testing::Ctx;

namespace fs = std::filesystem;
using ::grpc::StatusCode;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

class AuditProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::NewTempDir("hawiya-audit-process");
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<testing::TestPki> pki = testing::TestPki::Create(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<testing::TestPki>(*std::move(pki));
    for (const char* role : {"registrar", "border", "auditor", "admin"}) {
      clients_[role] = Issue(services::DevPrincipal(role));
    }
    // The auditor's files, for the CLI.
    WriteFile(dir_ + "/auditor.pem", clients_["auditor"].cert_pem);
    WriteFile(dir_ + "/auditor.key", clients_["auditor"].key_pem);
    fs::permissions(dir_ + "/auditor.key",
                    fs::perms::owner_read | fs::perms::owner_write);
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> started =
        testing::ServerProcess::StartTls(HAWIYA_SERVER_PATH, Data(),
                                         pki_->ServerArgs());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  std::string Data() const { return dir_ + "/data"; }

  services::KeyAndCert Issue(const std::string& uri) {
    absl::StatusOr<services::KeyAndCert> issued = pki_->Issue(uri);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return issued.ok() ? *issued : services::KeyAndCert();
  }

  std::shared_ptr<grpc::Channel> As(const services::KeyAndCert& client) {
    return server_->NewChannel(pki_->Credentials(&client));
  }
  std::shared_ptr<grpc::Channel> As(const std::string& role) {
    return As(clients_[role]);
  }

  // Every record (as the auditor), following next_page_token.
  std::vector<v1::AuditRecord> List(v1::ListAuditRecordsRequest request) {
    std::vector<v1::AuditRecord> records;
    auto stub = v1::AuditService::NewStub(As("auditor"));
    while (true) {
      v1::ListAuditRecordsResponse page;
      const grpc::Status status =
          stub->ListAuditRecords(Ctx().get(), request, &page);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      records.insert(records.end(), page.records().begin(),
                     page.records().end());
      if (page.next_page_token().empty()) break;
      request.set_page_token(page.next_page_token());
    }
    return records;
  }

  testing::CommandResult Cli(const std::string& args) {
    return testing::RunCommand(
        absl::StrCat(HAWIYA_CLI_PATH, " ", args, " 2>/dev/null"));
  }

  std::string dir_;
  std::unique_ptr<testing::TestPki> pki_;
  std::map<std::string, services::KeyAndCert> clients_;
  std::unique_ptr<testing::ServerProcess> server_;
  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
};

// The record of the call to `method` by `principal` (the last one, if
// several); a default record if none.
v1::AuditRecord Find(const std::vector<v1::AuditRecord>& records,
                     const std::string& principal, const std::string& method) {
  v1::AuditRecord found;
  for (const v1::AuditRecord& record : records) {
    if (record.principal() == principal && record.method() == method) {
      found = record;
    }
  }
  return found;
}

// Only a URI SAN names a principal (else the CN): a certificate from the
// trusted CA whose DNS or email SAN spells an admin principal is not the
// admin, and the audit log names it by its CN.
TEST_F(AuditProcessTest, OnlyAUriSanOrTheCnNamesThePrincipal) {
  const std::string admin = services::DevPrincipal("admin");
  struct Case {
    const char* kind;
    services::CertSpec spec;
    bool is_admin;
  };
  std::vector<Case> cases(4);
  cases[0].kind = "DNS SAN";
  cases[0].spec.common_name = "spoof-dns";
  cases[0].spec.dns_names = {admin};
  cases[1].kind = "email SAN";
  cases[1].spec.common_name = "spoof-email";
  cases[1].spec.emails = {admin};
  cases[2].kind = "URI SAN";
  cases[2].spec.common_name = "real-uri";
  cases[2].spec.uris = {admin};
  cases[2].is_admin = true;
  cases[3].kind = "CN only";
  cases[3].spec.common_name = admin;
  cases[3].is_admin = true;
  for (Case& c : cases) {
    SCOPED_TRACE(c.kind);
    c.spec.client = true;
    absl::StatusOr<services::KeyAndCert> cert = pki_->ca().Issue(c.spec);
    ASSERT_TRUE(cert.ok()) << cert.status();
    v1::GetStatsResponse stats;
    const grpc::Status status = v1::AdminService::NewStub(As(*cert))->GetStats(
        Ctx().get(), v1::GetStatsRequest(), &stats);
    if (c.is_admin) {
      EXPECT_TRUE(status.ok()) << status.error_message();
    } else {
      EXPECT_EQ(status.error_code(), StatusCode::UNAUTHENTICATED);
      EXPECT_EQ(status.error_message(),
                absl::StrCat("principal ", c.spec.common_name,
                             " is not known to this server"));
    }
  }
  const std::vector<v1::AuditRecord> all = List({});
  for (const Case& c : cases) {
    if (c.is_admin) continue;
    SCOPED_TRACE(c.kind);
    const v1::AuditRecord record =
        Find(all, c.spec.common_name, "/hawiya.v1.AdminService/GetStats");
    EXPECT_EQ(record.outcome(), "UNAUTHENTICATED");
    EXPECT_EQ(record.role(), "");
  }
  // The admin's records are the two genuine calls only.
  v1::ListAuditRecordsRequest as_admin;
  as_admin.set_principal(admin);
  const std::vector<v1::AuditRecord> admin_records = List(as_admin);
  ASSERT_EQ(admin_records.size(), 2u);
  for (const v1::AuditRecord& record : admin_records) {
    EXPECT_EQ(record.outcome(), "OK");
    EXPECT_EQ(record.role(), "admin");
  }
}

TEST_F(AuditProcessTest, RecordsAllowedAndRefusedCallsAndVerifiesOffline) {
  const std::string e = "/hawiya.v1.EnrollmentService/";
  // Allowed: an enrolment, a 1:1 and a 1:N search, a read.
  v1::EnrollResponse enrolled;
  ASSERT_TRUE(v1::EnrollmentService::NewStub(As("registrar"))
                  ->Enroll(Ctx().get(), testing::MakeEnrollRequest(model_, 1),
                           &enrolled)
                  .ok());
  const std::string subject = enrolled.person().subject_id();
  v1::IdentifyRequest identify;
  *identify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  v1::IdentifyResponse found;
  ASSERT_TRUE(v1::MatchService::NewStub(As("border"))
                  ->Identify(Ctx().get(), identify, &found)
                  .ok());
  ASSERT_GE(found.candidates_size(), 1);
  v1::VerifyRequest verify;
  verify.set_national_id("N1");
  verify.set_issuing_country("KWT");
  *verify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  v1::VerifyResponse verified;
  ASSERT_TRUE(v1::MatchService::NewStub(As("border"))
                  ->Verify(Ctx().get(), verify, &verified)
                  .ok());
  grpc::health::v1::HealthCheckResponse health;
  ASSERT_TRUE(
      grpc::health::v1::Health::NewStub(As("admin"))
          ->Check(Ctx().get(), grpc::health::v1::HealthCheckRequest(), &health)
          .ok());
  // Refused by the access check: a role outside its methods, a principal
  // the server does not know.
  v1::EnrollResponse not_enrolled;
  EXPECT_EQ(v1::EnrollmentService::NewStub(As("border"))
                ->Enroll(Ctx().get(), testing::MakeEnrollRequest(model_, 2),
                         &not_enrolled)
                .error_code(),
            StatusCode::PERMISSION_DENIED);
  v1::GetStatsResponse stats;
  EXPECT_EQ(v1::AdminService::NewStub(As(Issue("hawiya://dev/nobody")))
                ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                .error_code(),
            StatusCode::UNAUTHENTICATED);
  // The audit service is for auditors only.
  v1::VerifyAuditLogResponse not_verified;
  EXPECT_EQ(v1::AuditService::NewStub(As("admin"))
                ->VerifyAuditLog(Ctx().get(), v1::VerifyAuditLogRequest(),
                                 &not_verified)
                .error_code(),
            StatusCode::PERMISSION_DENIED);

  const std::vector<v1::AuditRecord> all = List({});
  // One unbroken numbering.
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].sequence(), static_cast<int64_t>(i + 1));
    if (i > 0) {
      EXPECT_EQ(all[i].prev_hash(), all[i - 1].hash());
    }
  }

  const v1::AuditRecord enroll =
      Find(all, "hawiya://dev/registrar", e + "Enroll");
  EXPECT_EQ(enroll.role(), "registrar");
  EXPECT_EQ(enroll.subject_id(), subject);
  EXPECT_EQ(enroll.national_id(), "KWT/N1");
  EXPECT_EQ(enroll.request_id(), "enroll-1");
  EXPECT_EQ(enroll.outcome(), "OK");

  const v1::AuditRecord search =
      Find(all, "hawiya://dev/border", "/hawiya.v1.MatchService/Identify");
  EXPECT_EQ(search.role(), "border");
  EXPECT_EQ(search.outcome(), "OK");
  ASSERT_EQ(search.subject_ids_size(), found.candidates_size());
  for (int i = 0; i < found.candidates_size(); ++i) {
    EXPECT_EQ(search.subject_ids(i), found.candidates(i).subject_id());
  }
  const v1::AuditRecord one_to_one =
      Find(all, "hawiya://dev/border", "/hawiya.v1.MatchService/Verify");
  EXPECT_EQ(one_to_one.subject_id(), subject);
  EXPECT_EQ(one_to_one.national_id(), "KWT/N1");

  const v1::AuditRecord checked =
      Find(all, "hawiya://dev/admin", "/grpc.health.v1.Health/Check");
  EXPECT_EQ(checked.role(), "*");  // open to any authenticated caller
  EXPECT_EQ(checked.outcome(), "OK");

  const v1::AuditRecord denied = Find(all, "hawiya://dev/border", e + "Enroll");
  EXPECT_EQ(denied.outcome(), "PERMISSION_DENIED");
  EXPECT_EQ(denied.outcome_code(), 7);
  EXPECT_EQ(denied.role(), "");
  const v1::AuditRecord stranger =
      Find(all, "hawiya://dev/nobody", "/hawiya.v1.AdminService/GetStats");
  EXPECT_EQ(stranger.outcome(), "UNAUTHENTICATED");
  const v1::AuditRecord not_auditor =
      Find(all, "hawiya://dev/admin", "/hawiya.v1.AuditService/VerifyAuditLog");
  EXPECT_EQ(not_auditor.outcome(), "PERMISSION_DENIED");

  // Pages of 2 give the same records; a principal filter only its own.
  v1::ListAuditRecordsRequest paged;
  paged.set_page_size(2);
  const std::vector<v1::AuditRecord> pages = List(paged);
  ASSERT_GE(pages.size(), all.size());  // later List calls are recorded too
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(pages[i].hash(), all[i].hash());
  }
  v1::ListAuditRecordsRequest border_only;
  border_only.set_principal("hawiya://dev/border");
  border_only.set_page_size(1);
  const std::vector<v1::AuditRecord> border = List(border_only);
  ASSERT_EQ(border.size(), 3u);  // Identify, Verify, the refused Enroll
  for (const v1::AuditRecord& record : border) {
    EXPECT_EQ(record.principal(), "hawiya://dev/border");
  }
  // A time window: from the enrolment's record up to (not including) the
  // Identify's.
  v1::ListAuditRecordsRequest window;
  *window.mutable_start_time() = enroll.time();
  *window.mutable_end_time() = search.time();
  const std::vector<v1::AuditRecord> in_window = List(window);
  ASSERT_FALSE(in_window.empty());
  EXPECT_EQ(in_window.front().sequence(), enroll.sequence());
  for (const v1::AuditRecord& record : in_window) {
    EXPECT_LT(record.sequence(), search.sequence());
  }

  v1::VerifyAuditLogResponse online;
  ASSERT_TRUE(
      v1::AuditService::NewStub(As("auditor"))
          ->VerifyAuditLog(Ctx().get(), v1::VerifyAuditLogRequest(), &online)
          .ok());
  EXPECT_TRUE(online.intact()) << online.reason();
  EXPECT_GT(online.head_sequence(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(online.head_hash().size(), 64u);

  // The CLI over TLS, as the auditor.
  const std::string tls = absl::StrCat(
      " --server=", server_->address(), " --cert=", dir_, "/auditor.pem",
      " --key=", dir_, "/auditor.key", " --ca=", dir_, "/ca.pem");
  testing::CommandResult listed =
      Cli("audit list --principal=hawiya://dev/registrar" + tls);
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_THAT(listed.out, HasSubstr(subject));
  EXPECT_THAT(listed.out, ::testing::Not(HasSubstr("hawiya://dev/border")));
  testing::CommandResult online_cli = Cli("audit verify" + tls);
  EXPECT_EQ(online_cli.exit_code, 0) << online_cli.out;
  EXPECT_THAT(online_cli.out, HasSubstr("audit log intact"));

  // Offline, after the server has stopped: the head the server reported
  // is still in the chain (as an anchor), and the chain goes on past it.
  EXPECT_EQ(server_->Terminate(), 0);
  const std::string anchor =
      absl::StrCat(" --anchor_sequence=", online.head_sequence(),
                   " --anchor_hash=", online.head_hash());
  testing::CommandResult offline =
      Cli("audit verify --data_dir=" + Data() + anchor);
  EXPECT_EQ(offline.exit_code, 0) << offline.out;
  EXPECT_THAT(offline.out, HasSubstr("audit log intact"));

  // A tampered copy: one outcome rewritten, a denial turned into success.
  const std::string copy = dir_ + "/copy";
  fs::copy(Data(), copy, fs::copy_options::recursive);
  testing::RawDb(copy + "/hawiya.db")
      .Exec(absl::StrCat("UPDATE audit SET outcome = 0 WHERE seq = ",
                         denied.sequence()));
  testing::CommandResult tampered = Cli("audit verify --data_dir=" + copy);
  EXPECT_EQ(tampered.exit_code, 1);
  EXPECT_THAT(tampered.out,
              HasSubstr(absl::StrCat("BROKEN at record ", denied.sequence())));
  // The denial's principal cast to a BLOB: same bytes, same hash, but no
  // longer found by a principal filter.
  const std::string cast = dir_ + "/cast";
  fs::copy(Data(), cast, fs::copy_options::recursive);
  testing::RawDb(cast + "/hawiya.db")
      .Exec(absl::StrCat(
          "UPDATE audit SET principal = CAST(principal AS BLOB) WHERE seq = ",
          denied.sequence()));
  testing::CommandResult recast = Cli("audit verify --data_dir=" + cast);
  EXPECT_EQ(recast.exit_code, 1);
  EXPECT_THAT(recast.out,
              HasSubstr(absl::StrCat("BROKEN at record ", denied.sequence())));
  EXPECT_THAT(recast.out, HasSubstr("principal is stored as BLOB"));
  // Its tail cut off: a valid shorter chain, caught by the anchor.
  const std::string cut = dir_ + "/cut";
  fs::copy(Data(), cut, fs::copy_options::recursive);
  testing::RawDb(cut + "/hawiya.db")
      .Exec(absl::StrCat("DELETE FROM audit WHERE seq >= ",
                         online.head_sequence()));
  EXPECT_EQ(Cli("audit verify --data_dir=" + cut).exit_code, 0);
  testing::CommandResult truncated =
      Cli("audit verify --data_dir=" + cut + anchor);
  EXPECT_EQ(truncated.exit_code, 1);
  EXPECT_THAT(truncated.out, HasSubstr("missing"));
  // No database there: an input error.
  EXPECT_EQ(Cli("audit verify --data_dir=" + dir_ + "/none").exit_code, 3);
}

}  // namespace
}  // namespace hawiya
