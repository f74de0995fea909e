// Durability: kill -9 the server while writes are in flight, restart it on
// the same data dir, and find every write that was acknowledged.
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::hawiya::services::SyntheticFaceTemplate;
using ::hawiya::testing::Ctx;
using ::hawiya::testing::MakeEnrollRequest;
using ::hawiya::testing::NewTempDir;
using ::hawiya::testing::ServerProcess;

struct Acked {
  std::string subject_id;
  bool married = false;  // an UpdatePerson to MARRIED was acknowledged
};

TEST(CrashTest, KillNineLosesNothingAcknowledged) {
  const std::string data_dir = NewTempDir("hawiya-crash-test");
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir);
  ASSERT_TRUE(server.ok()) << server.status();

  constexpr int kWriters = 4;
  constexpr int kAcksBeforeKill = 80;
  absl::Mutex mu;
  std::map<uint64_t, Acked> acked;  // by person number
  std::atomic<int> ack_count{0};
  absl::Notification enough;
  std::vector<std::thread> writers;
  auto channel = (*server)->NewChannel();
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto stub = v1::EnrollmentService::NewStub(channel);
      // Each writer enrolls its own person numbers until the server dies.
      for (uint64_t n = w;; n += kWriters) {
        v1::EnrollResponse enrolled;
        if (!stub->Enroll(Ctx().get(), MakeEnrollRequest(model, n), &enrolled)
                 .ok()) {
          return;
        }
        {
          absl::MutexLock lock(&mu);
          acked[n].subject_id = enrolled.person().subject_id();
        }
        v1::UpdatePersonRequest update;
        update.mutable_person()->set_subject_id(enrolled.person().subject_id());
        update.mutable_person()->set_civil_status(v1::MARRIED);
        update.mutable_update_mask()->add_paths("civil_status");
        update.set_expected_version(1);
        v1::Person updated;
        if (!stub->UpdatePerson(Ctx().get(), update, &updated).ok()) return;
        {
          absl::MutexLock lock(&mu);
          acked[n].married = true;
        }
        if (++ack_count == kAcksBeforeKill) enough.Notify();
      }
    });
  }
  // Bounded: writers that all fail (a broken server) never notify, and the
  // test must fail rather than hang until ctest's timeout.
  const bool acknowledged =
      enough.WaitForNotificationWithTimeout(absl::Minutes(3));
  (*server)->Kill9();  // writers are mid-request; each stops on its error
  for (std::thread& t : writers) t.join();
  ASSERT_TRUE(acknowledged) << "fewer than " << kAcksBeforeKill
                            << " writes acknowledged in 3 minutes";

  server = ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir);
  ASSERT_TRUE(server.ok()) << server.status();
  auto enrollment = v1::EnrollmentService::NewStub((*server)->NewChannel());
  auto match = v1::MatchService::NewStub((*server)->NewChannel());
  absl::MutexLock lock(&mu);
  ASSERT_GE(acked.size(), static_cast<size_t>(kAcksBeforeKill));
  for (const auto& [n, ack] : acked) {
    SCOPED_TRACE(absl::StrCat("person ", n));
    v1::GetPersonRequest get;
    get.set_subject_id(ack.subject_id);
    v1::Person person;
    ASSERT_TRUE(enrollment->GetPerson(Ctx().get(), get, &person).ok());
    if (ack.married) {
      EXPECT_EQ(person.civil_status(), v1::MARRIED);
    }
    // The rebuilt gallery holds its template.
    v1::VerifyRequest verify;
    verify.set_subject_id(ack.subject_id);
    *verify.add_probes() = SyntheticFaceTemplate(model, n, 1);
    v1::VerifyResponse verdict;
    ASSERT_TRUE(match->Verify(Ctx().get(), verify, &verdict).ok());
    EXPECT_TRUE(verdict.match());
  }
  server->reset();
  std::filesystem::remove_all(data_dir);
}

}  // namespace
}  // namespace hawiya
