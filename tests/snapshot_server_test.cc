// Gallery snapshots through the real hawiya-server binary: written on
// SIGTERM and in the background, loaded at start with the store's later
// changes replayed, and refused (rebuilt from the store, still answering
// correctly) when damaged. The start-up log line says which and why.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/server.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

namespace fs = std::filesystem;
using ::hawiya::services::SyntheticFaceTemplate;
using ::hawiya::testing::Ctx;
using ::hawiya::testing::MakeEnrollRequest;
using ::hawiya::testing::NewTempDir;
using ::hawiya::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// "snapshot-<20 digits>.hws", as enroll/snapshots.h names them.
std::string SnapshotName(int sequence) {
  std::string digits = std::to_string(sequence);
  return "snapshot-" + std::string(20 - digits.size(), '0') + digits + ".hws";
}

class SnapshotServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = NewTempDir("hawiya-snapshot-server-test");
    ASSERT_FALSE(root_.empty());
    data_dir_ = root_ + "/data";
  }

  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }

  // Starts the server; its stderr goes to a fresh log file (Log()).
  void Start(const std::vector<std::string>& extra_args = {}) {
    log_ = absl::StrCat(root_, "/server-", starts_++, ".log");
    std::vector<std::string> args = {"--shutdown_grace=1s"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir_, args, log_);
    ASSERT_TRUE(server.ok()) << server.status() << "\n" << Log();
    server_ = *std::move(server);
    auto channel = server_->NewChannel();
    enrollment_ = v1::EnrollmentService::NewStub(channel);
    match_ = v1::MatchService::NewStub(channel);
  }

  std::string Log() const { return Slurp(log_); }
  std::string SnapshotPath(int sequence) const {
    return data_dir_ + "/snapshots/" + SnapshotName(sequence);
  }

  std::string Enroll(uint64_t n) {
    v1::EnrollResponse response;
    grpc::Status status = enrollment_->Enroll(
        Ctx().get(), MakeEnrollRequest(model_, n), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.person().subject_id();
  }

  // The subject Identify puts first for a fresh capture of `identity`, or
  // "" if none passes the threshold.
  std::string IdentifyFirst(uint64_t identity) {
    v1::IdentifyRequest request;
    *request.add_probes() = SyntheticFaceTemplate(model_, identity, 9);
    request.set_min_score(0.4f);
    v1::IdentifyResponse response;
    grpc::Status status = match_->Identify(Ctx().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.candidates().empty() ? ""
                                         : response.candidates(0).subject_id();
  }

  // Waits for a background snapshot to appear (a liveness bound, not a
  // performance assertion).
  bool WaitForFile(const std::string& path) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      if (fs::exists(path)) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string root_;
  std::string data_dir_;
  std::string log_;
  int starts_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollment_;
  std::unique_ptr<v1::MatchService::Stub> match_;
};

TEST_F(SnapshotServerTest, SigtermSnapshotsAndKill9RestartReplays) {
  Start();
  EXPECT_THAT(Log(), HasSubstr("galleries: rebuilt from the store at change 0 "
                               "(no snapshot)"));
  std::vector<std::string> subjects;
  for (uint64_t n = 0; n < 5; ++n) subjects.push_back(Enroll(n));
  EXPECT_EQ(server_->Terminate(), 0);
  EXPECT_THAT(Log(), HasSubstr("snapshot: wrote"));
  ASSERT_TRUE(fs::exists(SnapshotPath(5)));

  Start();
  EXPECT_THAT(Log(), HasSubstr("galleries: loaded " + SnapshotName(5) +
                               " (change 5) and replayed 0 subjects"));
  for (uint64_t n = 0; n < 5; ++n) EXPECT_EQ(IdentifyFirst(n), subjects[n]);
  // Changes after the snapshot, then kill -9: no snapshot for them.
  for (uint64_t n = 5; n < 8; ++n) subjects.push_back(Enroll(n));
  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(subjects[0]);
  revoke.set_reason("test");
  google::protobuf::Empty empty;
  ASSERT_TRUE(enrollment_->DeletePerson(Ctx().get(), revoke, &empty).ok());
  v1::ReplaceTemplatesRequest replace;
  replace.set_request_id("replace-1");
  replace.set_subject_id(subjects[1]);
  *replace.add_templates() = SyntheticFaceTemplate(model_, 900, 0);
  v1::Person replaced;
  ASSERT_TRUE(
      enrollment_->ReplaceTemplates(Ctx().get(), replace, &replaced).ok());
  server_->Kill9();

  Start();
  EXPECT_THAT(Log(), HasSubstr("galleries: loaded " + SnapshotName(5) +
                               " (change 5) and replayed 5 subjects changed "
                               "up to change 10"));
  EXPECT_EQ(IdentifyFirst(0), "");             // revoked
  EXPECT_EQ(IdentifyFirst(1), "");             // its face was replaced...
  EXPECT_EQ(IdentifyFirst(900), subjects[1]);  // ...by identity 900's
  for (uint64_t n = 2; n < 8; ++n) EXPECT_EQ(IdentifyFirst(n), subjects[n]);
}

TEST_F(SnapshotServerTest, DamagedSnapshotIsRebuiltAndAnswersCorrectly) {
  Start();
  std::vector<std::string> subjects;
  for (uint64_t n = 0; n < 6; ++n) subjects.push_back(Enroll(n));
  ASSERT_EQ(server_->Terminate(), 0);
  const std::string path = SnapshotPath(6);
  const std::string good = Slurp(path);
  ASSERT_GT(good.size(), 6u * 512 * 4);

  struct Damage {
    const char* what;
    std::string bytes;
    const char* why;
  };
  auto flip = [&good](size_t i) {
    std::string bytes = good;
    bytes[i] ^= 0x40;
    return bytes;
  };
  for (const Damage& damage : std::vector<Damage>{
           {"header", flip(30), "checksum mismatch"},
           {"body", flip(good.size() / 2), "checksum mismatch"},
           {"trailer", flip(good.size() - 3), "checksum mismatch"},
           {"truncated", good.substr(0, good.size() - 100),
            "truncated or extended"},
       }) {
    SCOPED_TRACE(damage.what);
    Spit(path, damage.bytes);
    Start();
    EXPECT_THAT(Log(), HasSubstr(absl::StrCat(
                           "galleries: rebuilt from the store at change 6 (",
                           SnapshotName(6), ": ", damage.why)));
    for (uint64_t n = 0; n < 6; ++n) EXPECT_EQ(IdentifyFirst(n), subjects[n]);
    server_->Kill9();  // no new snapshot over the damaged one
  }
  // A clean shutdown replaces the damaged file; the next start uses it.
  Start();
  ASSERT_EQ(server_->Terminate(), 0);
  Start();
  EXPECT_THAT(Log(), HasSubstr("galleries: loaded " + SnapshotName(6)));
  EXPECT_THAT(Log(), Not(HasSubstr("not used")));
}

TEST_F(SnapshotServerTest, BackgroundSnapshotsAfterChangesOrTime) {
  Start({"--snapshot_min_changes=3", "--snapshot_interval=0"});
  for (uint64_t n = 0; n < 3; ++n) Enroll(n);
  ASSERT_TRUE(WaitForFile(SnapshotPath(3)));
  server_->Kill9();
  Start({"--snapshot_min_changes=0", "--snapshot_interval=100ms"});
  EXPECT_THAT(Log(), HasSubstr("galleries: loaded " + SnapshotName(3) +
                               " (change 3) and replayed 0 subjects"));
  Enroll(3);
  ASSERT_TRUE(WaitForFile(SnapshotPath(4)));
  server_->Kill9();
  Start();
  EXPECT_THAT(Log(), HasSubstr("galleries: loaded " + SnapshotName(4)));
  // The newest and one older are kept.
  EXPECT_TRUE(fs::exists(SnapshotPath(3)));
}

TEST_F(SnapshotServerTest, SnapshotsOffRebuildsAndWritesNone) {
  Start({"--snapshots=false"});
  EXPECT_THAT(Log(), HasSubstr("(snapshots disabled)"));
  const std::string subject = Enroll(0);
  ASSERT_EQ(server_->Terminate(), 0);
  EXPECT_FALSE(fs::exists(SnapshotPath(1)));
  Start({"--snapshots=false"});
  EXPECT_EQ(IdentifyFirst(0), subject);
}

TEST(SnapshotServerHelpTest, HelpDocumentsTheFlags) {
  const std::string out = NewTempDir("hawiya-help") + "/help.txt";
  ASSERT_EQ(
      std::system(absl::StrCat(HAWIYA_SERVER_PATH, " --help > ", out).c_str()),
      0);
  const std::string help = Slurp(out);
  EXPECT_THAT(help, HasSubstr("--snapshots"));
  EXPECT_THAT(help, HasSubstr("--snapshot_min_changes"));
  EXPECT_THAT(help, HasSubstr("--snapshot_interval"));
  fs::remove_all(fs::path(out).parent_path());
}

// In process, to hold the loading phase open: NOT_SERVING until the
// snapshot is loaded, then SERVING with its galleries.
TEST(SnapshotLoadingTest, NotServingUntilTheSnapshotIsLoaded) {
  const std::string data_dir = NewTempDir("hawiya-snapshot-loading-test");
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  services::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = data_dir;
  std::string subject;
  {
    absl::StatusOr<std::unique_ptr<services::Server>> first =
        services::Server::Start(options);
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_TRUE((*first)->WaitUntilReady().ok());
    auto enrollment = v1::EnrollmentService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*first)->port()),
                            grpc::InsecureChannelCredentials()));
    v1::EnrollResponse enrolled;
    ASSERT_TRUE(
        enrollment->Enroll(Ctx().get(), MakeEnrollRequest(model, 1), &enrolled)
            .ok());
    subject = enrolled.person().subject_id();
    (*first)->Shutdown(absl::Seconds(1));  // writes the snapshot
  }
  ASSERT_TRUE(fs::exists(data_dir + "/snapshots/" + SnapshotName(1)));

  absl::Notification release;
  options.before_load = [&release] { release.WaitForNotification(); };
  ::testing::internal::CaptureStderr();
  absl::StatusOr<std::unique_ptr<services::Server>> server =
      services::Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                          grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto match = v1::MatchService::NewStub(channel);
  grpc::health::v1::HealthCheckResponse status;
  ASSERT_TRUE(
      health
          ->Check(Ctx().get(), grpc::health::v1::HealthCheckRequest(), &status)
          .ok());
  EXPECT_EQ(status.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  v1::IdentifyRequest identify;
  *identify.add_probes() = SyntheticFaceTemplate(model, 1, 1);
  v1::IdentifyResponse found;
  EXPECT_EQ(match->Identify(Ctx().get(), identify, &found).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  release.Notify();
  ASSERT_TRUE((*server)->WaitUntilReady().ok());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("galleries: loaded " + SnapshotName(1)));
  ASSERT_TRUE(
      health
          ->Check(Ctx().get(), grpc::health::v1::HealthCheckRequest(), &status)
          .ok());
  EXPECT_EQ(status.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  ASSERT_TRUE(match->Identify(Ctx().get(), identify, &found).ok());
  ASSERT_GT(found.candidates_size(), 0);
  EXPECT_EQ(found.candidates(0).subject_id(), subject);
  (*server)->Shutdown(absl::Seconds(1));
  fs::remove_all(data_dir);
}

}  // namespace
}  // namespace hawiya
