// Template encryption through the real binaries: the development key made at
// first start, `hawiya admin rotate-key` on a serving server, and a server
// that refuses to start, saying why, with a wrong or missing key file.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
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

using Result = ::hawiya::testing::CommandResult;

Result RunCli(const std::string& args) {
  return ::hawiya::testing::RunCommand(
      absl::StrCat(HAWIYA_CLI_PATH, " ", args, " 2>/dev/null"));
}

std::string ReadAll(const std::string& path) {
  return ::hawiya::testing::ReadFileBytes(path);
}

TEST(KeyProcessTest, RotatesOnlineAndRefusesToStartWithoutItsKey) {
  const std::string data_dir = NewTempDir("hawiya-key-test");
  const std::string log = data_dir + ".stderr";
  const std::string key_file = data_dir + "/keys/kek.key";
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  constexpr int kPersons = 6;
  {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir, {}, log);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_THAT(ReadAll(log), HasSubstr("development key"));
    EXPECT_TRUE(fs::exists(key_file));
    auto stub = v1::EnrollmentService::NewStub((*server)->NewChannel());
    for (int n = 0; n < kPersons; ++n) {
      v1::EnrollResponse response;
      ASSERT_TRUE(
          stub->Enroll(Ctx().get(), MakeEnrollRequest(model, n), &response)
              .ok());
    }
    const Result rotated = RunCli(absl::StrCat(
        "admin rotate-key --insecure --server=", (*server)->address()));
    EXPECT_EQ(rotated.exit_code, 0) << rotated.out;
    EXPECT_THAT(rotated.out, HasSubstr("\"keyVersion\": \"2\""));
    EXPECT_THAT(rotated.out,
                HasSubstr(absl::StrCat("\"templatesReencrypted\": \"", kPersons,
                                       "\"")));
    EXPECT_EQ((*server)->Terminate(), 0);
  }
  const std::string good_key = ReadAll(key_file);

  // Another key: `hawiya admin gen-key` makes one (and never overwrites).
  EXPECT_EQ(RunCli(absl::StrCat("admin gen-key --out=", key_file)).exit_code,
            3);
  fs::remove(key_file);
  EXPECT_EQ(RunCli(absl::StrCat("admin gen-key --out=", key_file)).exit_code,
            0);
  EXPECT_EQ(fs::status(key_file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  fs::remove(log);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir, {}, log);
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(ReadAll(log), HasSubstr("does not unwrap"));

  // No key at all: not silently re-created.
  fs::remove(key_file);
  fs::remove(log);
  server = ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir, {}, log);
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(ReadAll(log), HasSubstr("no such file"));
  EXPECT_FALSE(fs::exists(key_file));

  // The key back, kept elsewhere and named in the config.
  const std::string elsewhere = data_dir + ".key";
  { std::ofstream(elsewhere, std::ios::binary) << good_key; }
  fs::permissions(elsewhere, fs::perms::owner_read | fs::perms::owner_write);
  const std::string config = data_dir + ".textproto";
  std::ofstream(config) << "key_file: \"" << elsewhere << "\"\n";
  server = ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir,
                                {absl::StrCat("--config=", config)}, log);
  ASSERT_TRUE(server.ok()) << server.status();
  auto match = v1::MatchService::NewStub((*server)->NewChannel());
  auto enrollment = v1::EnrollmentService::NewStub((*server)->NewChannel());
  for (int n = 0; n < kPersons; ++n) {
    v1::GetPersonRequest get;
    get.set_national_id(MakeEnrollRequest(model, n).person().national_id());
    get.set_issuing_country(
        MakeEnrollRequest(model, n).person().issuing_country());
    v1::Person person;
    ASSERT_TRUE(enrollment->GetPerson(Ctx().get(), get, &person).ok());
    v1::VerifyRequest verify;
    verify.set_subject_id(person.subject_id());
    *verify.add_probes() = SyntheticFaceTemplate(model, n, 1);
    v1::VerifyResponse verdict;
    ASSERT_TRUE(match->Verify(Ctx().get(), verify, &verdict).ok());
    EXPECT_TRUE(verdict.match()) << n;
  }
  server->reset();
  fs::remove_all(data_dir);
  fs::remove(log);
  fs::remove(elsewhere);
  fs::remove(config);
}

}  // namespace
}  // namespace hawiya
