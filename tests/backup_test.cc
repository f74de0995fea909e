// `hawiya admin backup` beside a server taking writes, and `admin restore`
// into a new folder: the restored server serves the same persons and
// templates, and its audit chain verifies.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::util::MessageDifferencer;
using ::hawiya::testing::Ctx;
using ::testing::HasSubstr;

testing::CommandResult Cli(const std::string& args) {
  return testing::RunCommand(absl::StrCat(HAWIYA_CLI_PATH, " ", args, " 2>&1"));
}

// The manifest's "key: value" lines.
std::map<std::string, std::string> ReadManifest(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "BACKUP");
  std::map<std::string, std::string> fields;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> kv =
        absl::StrSplit(line, absl::MaxSplits(": ", 1));
    if (kv.size() == 2) fields[kv[0]] = kv[1];
  }
  return fields;
}

int64_t ManifestInt(const std::map<std::string, std::string>& manifest,
                    const std::string& key) {
  int64_t value = -1;
  EXPECT_TRUE(manifest.count(key) && absl::SimpleAtoi(manifest.at(key), &value))
      << key;
  return value;
}

// Every person the server holds, by subject id.
std::map<std::string, v1::Person> AllPersons(
    v1::EnrollmentService::Stub& stub) {
  std::map<std::string, v1::Person> persons;
  v1::ListPersonsRequest request;
  request.set_page_size(1000);
  do {
    v1::ListPersonsResponse response;
    grpc::Status status = stub.ListPersons(Ctx().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) break;
    for (const v1::Person& p : response.persons()) persons[p.subject_id()] = p;
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return persons;
}

TEST(BackupTest, BackupUnderWritesRestoresTheSamePersons) {
  const std::string root = testing::NewTempDir("backup");
  const std::string data = root + "/data";
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(HAWIYA_SERVER_PATH, data);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::EnrollmentService::NewStub((*server)->NewChannel());
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};

  std::vector<std::string> before;
  for (uint64_t n = 0; n < 40; ++n) {
    v1::EnrollResponse response;
    grpc::Status status = stub->Enroll(
        Ctx().get(), testing::MakeEnrollRequest(model, n), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    before.push_back(response.person().subject_id());
  }

  // Writers keep enrolling while the backup reads: bounded, and stopped
  // once it is done.
  std::atomic<bool> stop{false};
  std::atomic<int> during{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t i = 0; i < 2000 && !stop.load(); ++i) {
        v1::EnrollResponse response;
        if (stub->Enroll(Ctx().get(),
                         testing::MakeEnrollRequest(model, 1000 + 2 * i + w),
                         &response)
                .ok()) {
          ++during;
        }
      }
    });
  }
  while (during.load() < 20) std::this_thread::yield();
  const std::string backup = root + "/backup";
  const testing::CommandResult backed_up =
      Cli(absl::StrCat("admin backup --data_dir=", data, " --out=", backup));
  stop = true;
  for (std::thread& t : writers) t.join();
  ASSERT_EQ(backed_up.exit_code, 0) << backed_up.out;
  EXPECT_THAT(backed_up.out, HasSubstr("not in the backup"));
  EXPECT_FALSE(fs::exists(fs::path(backup) / "keys"));
  const std::map<std::string, std::string> manifest = ReadManifest(backup);
  const int64_t backed_up_persons = ManifestInt(manifest, "persons");
  EXPECT_GE(backed_up_persons, 40 + 20);

  const std::string restored_dir = root + "/restored";
  const testing::CommandResult restored_out = Cli(absl::StrCat(
      "admin restore --from=", backup, " --data_dir=", restored_dir));
  ASSERT_EQ(restored_out.exit_code, 0) << restored_out.out;
  // The key-encryption key travels apart from the backup: here the
  // development key, where the server looks for it by default.
  fs::create_directories(restored_dir + "/keys");
  fs::copy_file(data + "/keys/kek.key", restored_dir + "/keys/kek.key");
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> restored =
      testing::ServerProcess::Start(HAWIYA_SERVER_PATH, restored_dir);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto restored_stub =
      v1::EnrollmentService::NewStub((*restored)->NewChannel());

  // Every person acknowledged before the backup began is there, identical;
  // nothing is there that the source never held.
  const std::map<std::string, v1::Person> source = AllPersons(*stub);
  const std::map<std::string, v1::Person> copy = AllPersons(*restored_stub);
  EXPECT_EQ(static_cast<int64_t>(copy.size()), backed_up_persons);
  for (const std::string& subject : before) {
    ASSERT_TRUE(copy.count(subject)) << subject;
  }
  for (const auto& [subject, person] : copy) {
    ASSERT_TRUE(source.count(subject)) << subject;
    EXPECT_TRUE(MessageDifferencer::Equals(person, source.at(subject)))
        << subject;
  }

  // The templates decrypt with the same key and are searchable.
  auto admin = v1::AdminService::NewStub((*restored)->NewChannel());
  v1::GetStatsResponse stats;
  ASSERT_TRUE(admin->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats).ok());
  int64_t templates = 0;
  for (const v1::GalleryStats& g : stats.galleries())
    templates += g.templates();
  EXPECT_EQ(templates, ManifestInt(manifest, "templates"));
  auto match = v1::MatchService::NewStub((*restored)->NewChannel());
  v1::IdentifyRequest identify;
  *identify.add_probes() = services::SyntheticFaceTemplate(model, 7, 1);
  v1::IdentifyResponse candidates;
  ASSERT_TRUE(match->Identify(Ctx().get(), identify, &candidates).ok());
  ASSERT_GT(candidates.candidates_size(), 0);
  EXPECT_EQ(candidates.candidates(0).subject_id(), before[7]);

  // The restored audit chain verifies, offline and through the server.
  EXPECT_EQ(Cli(absl::StrCat(
                    "audit verify --data_dir=", restored_dir,
                    " --anchor_sequence=", manifest.at("audit_head_sequence"),
                    " --anchor_hash=", manifest.at("audit_head_hash")))
                .exit_code,
            0);
  EXPECT_EQ(Cli(absl::StrCat("--insecure --server=", (*restored)->address(),
                             " audit verify"))
                .exit_code,
            0);
}

TEST(BackupTest, RestoreRefusesADamagedCopyAndAFolderInUse) {
  const std::string root = testing::NewTempDir("backup-refuse");
  const std::string data = root + "/data";
  {
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::Start(HAWIYA_SERVER_PATH, data);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = v1::EnrollmentService::NewStub((*server)->NewChannel());
    const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
    v1::EnrollResponse response;
    ASSERT_TRUE(stub->Enroll(Ctx().get(), testing::MakeEnrollRequest(model, 1),
                             &response)
                    .ok());
  }
  const std::string backup = root + "/backup";
  ASSERT_EQ(
      Cli(absl::StrCat("admin backup --data_dir=", data, " --out=", backup))
          .exit_code,
      0);
  // A backup never lands in an existing folder.
  EXPECT_EQ(
      Cli(absl::StrCat("admin backup --data_dir=", data, " --out=", backup))
          .exit_code,
      3);
  // A restore never overwrites a store.
  const testing::CommandResult over_live =
      Cli(absl::StrCat("admin restore --from=", backup, " --data_dir=", data));
  EXPECT_EQ(over_live.exit_code, 3);
  EXPECT_THAT(over_live.out, HasSubstr("not empty"));
  // One changed byte is caught before anything is installed.
  {
    std::fstream db(backup + "/hawiya.db",
                    std::ios::in | std::ios::out | std::ios::binary);
    db.seekp(5000);
    db.put('\x5a');
  }
  const std::string target = root + "/restored";
  const testing::CommandResult damaged = Cli(
      absl::StrCat("admin restore --from=", backup, " --data_dir=", target));
  EXPECT_EQ(damaged.exit_code, 3);
  EXPECT_THAT(damaged.out, HasSubstr("SHA-256"));
  EXPECT_FALSE(fs::exists(target + "/hawiya.db"));
  // Usage errors.
  EXPECT_EQ(Cli("admin backup --out=" + root + "/x").exit_code, 2);
  EXPECT_EQ(Cli("admin restore --data_dir=" + root + "/y").exit_code, 2);
}

}  // namespace
}  // namespace hawiya
