// Limits of the in-process server (issue 4, item 5): a call whose deadline
// passes while it waits in a work queue is not run and writes nothing (the
// queue is held busy through the before_call test seam, so nothing depends
// on timing), and requests over max_receive_message_bytes are refused.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "enroll/crypto.h"
#include "enroll/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "matcher/synthetic.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::grpc::StatusCode;
using ::hawiya::testing::Ctx;
using ::hawiya::testing::EnrollRequestWithFaces;
using ::hawiya::testing::InProcessServerTest;
using ::hawiya::testing::MakeEnrollRequest;
using ::hawiya::testing::NewTempDir;
using ::testing::AnyOf;
using ::testing::ElementsAre;

// Holds the work queue's thread of one method's first call until released,
// and then until the server has seen the call expire: the client's
// DEADLINE_EXCEEDED can come a little before the server's deadline (the
// request took time to arrive), and the test is about a call the server
// knows has expired.
class QueueGate {
 public:
  using Seam = std::function<void(const char*, const std::function<bool()>&)>;

  explicit QueueGate(std::string method) : method_(std::move(method)) {}

  Seam AsSeam() {
    return [this](const char* method, const std::function<bool()>& expired) {
      if (method_ != method || entered_.HasBeenNotified()) return;
      entered_.Notify();
      release_.WaitForNotification();
      // Bounded: gRPC's deadline timer fires within a moment.
      for (int i = 0; i < 60000 && !expired(); ++i) {
        absl::SleepFor(absl::Milliseconds(1));
      }
    };
  }
  bool WaitEntered() {
    return entered_.WaitForNotificationWithTimeout(absl::Seconds(60));
  }
  void Release() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }

 private:
  const std::string method_;
  absl::Notification entered_;
  absl::Notification release_;
};

class LimitsServerTest : public InProcessServerTest {
 protected:
  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
};

TEST_F(LimitsServerTest, EnrollWhoseDeadlinePassedInTheQueueWritesNothing) {
  QueueGate gate("/hawiya.v1.EnrollmentService/Enroll");
  Start(gate.AsSeam());
  const v1::EnrollRequest request = MakeEnrollRequest(model_, 1);
  v1::EnrollResponse response;
  // The queue's thread is held until the client has given up: the call
  // cannot finish before its deadline, whatever the timing.
  const grpc::Status status = enrollment_->Enroll(
      Ctx(absl::Milliseconds(300)).get(), request, &response);
  EXPECT_EQ(status.error_code(), StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(gate.WaitEntered());
  gate.Release();
  Restart();
  EXPECT_EQ(GetByNationalId(request.person()).error_code(),
            StatusCode::NOT_FOUND);
  EXPECT_EQ(PersonCount(), 0);
  // The abandoned call is audited all the same.
  EXPECT_THAT(AuditOutcomes("/hawiya.v1.EnrollmentService/Enroll"),
              ElementsAre(AnyOf("DEADLINE_EXCEEDED", "CANCELLED")));
  // The same request, in time, is written (nothing was half-done).
  EXPECT_TRUE(
      enrollment_->Enroll(Ctx(absl::Seconds(30)).get(), request, &response)
          .ok());
  EXPECT_TRUE(GetByNationalId(request.person()).ok());
}

TEST_F(LimitsServerTest, BatchEnrollWhoseDeadlinePassedWritesNothing) {
  QueueGate gate("/hawiya.v1.EnrollmentService/BatchEnroll");
  Start(gate.AsSeam());
  std::vector<v1::EnrollRequest> requests;
  for (uint64_t n = 10; n < 15; ++n) {
    requests.push_back(MakeEnrollRequest(model_, n));
  }
  {
    auto context = Ctx(absl::Milliseconds(300));
    v1::BatchEnrollResponse response;
    auto writer = enrollment_->BatchEnroll(context.get(), &response);
    for (const v1::EnrollRequest& request : requests) {
      if (!writer->Write(request)) break;
    }
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), StatusCode::DEADLINE_EXCEEDED);
  }
  ASSERT_TRUE(gate.WaitEntered());
  gate.Release();
  Restart();
  EXPECT_EQ(PersonCount(), 0);
  for (const v1::EnrollRequest& request : requests) {
    EXPECT_EQ(GetByNationalId(request.person()).error_code(),
              StatusCode::NOT_FOUND);
  }
  EXPECT_THAT(AuditOutcomes("/hawiya.v1.EnrollmentService/BatchEnroll"),
              ElementsAre(AnyOf("DEADLINE_EXCEEDED", "CANCELLED")));
}

TEST_F(LimitsServerTest, RotateKeyWhoseDeadlinePassedDoesNotRotate) {
  QueueGate gate("/hawiya.v1.AdminService/RotateKey");
  Start(gate.AsSeam());
  v1::EnrollResponse enrolled;
  ASSERT_TRUE(enrollment_
                  ->Enroll(Ctx(absl::Seconds(30)).get(),
                           MakeEnrollRequest(model_, 1), &enrolled)
                  .ok());
  v1::RotateKeyResponse rotated;
  EXPECT_EQ(admin_
                ->RotateKey(Ctx(absl::Milliseconds(300)).get(),
                            v1::RotateKeyRequest(), &rotated)
                .error_code(),
            StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(gate.WaitEntered());
  gate.Release();
  Restart();
  EXPECT_THAT(AuditOutcomes("/hawiya.v1.AdminService/RotateKey"),
              ElementsAre(AnyOf("DEADLINE_EXCEEDED", "CANCELLED")));
  // The abandoned rotation made no data key: the next one makes version 2.
  ASSERT_TRUE(admin_
                  ->RotateKey(Ctx(absl::Seconds(60)).get(),
                              v1::RotateKeyRequest(), &rotated)
                  .ok());
  EXPECT_EQ(rotated.key_version(), 2);
  EXPECT_EQ(rotated.templates_reencrypted(), 1);
}

TEST_F(LimitsServerTest, RequestOverMaxReceiveMessageBytesIsRefused) {
  config::ServerConfig config;
  config.set_max_receive_message_bytes(64 << 10);
  Start(nullptr, config);
  const v1::EnrollRequest large = EnrollRequestWithFaces(model_, 40);
  ASSERT_GT(large.ByteSizeLong(), size_t{64} << 10);
  v1::EnrollResponse response;
  const grpc::Status status =
      enrollment_->Enroll(Ctx(absl::Seconds(30)).get(), large, &response);
  EXPECT_EQ(status.error_code(), StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_EQ(PersonCount(), 0);
  // Under the limit it is served.
  const v1::EnrollRequest small = EnrollRequestWithFaces(model_, 2);
  ASSERT_LT(small.ByteSizeLong(), size_t{64} << 10);
  EXPECT_TRUE(
      enrollment_->Enroll(Ctx(absl::Seconds(30)).get(), small, &response).ok());
}

TEST_F(LimitsServerTest, DefaultLimitIs16MiB) {
  Start();
  // 17 MiB of templates (the server refuses it before validating anything).
  const v1::EnrollRequest large = EnrollRequestWithFaces(model_, 1);
  v1::EnrollRequest huge = large;
  while (huge.ByteSizeLong() <= size_t{17} << 20) {
    *huge.add_templates() = large.templates(0);
  }
  v1::EnrollResponse response;
  EXPECT_EQ(enrollment_->Enroll(Ctx(absl::Seconds(60)).get(), huge, &response)
                .error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(PersonCount(), 0);
}

// The registry's own checks, below the gRPC layer: a BatchEnroll whose
// caller has gone by the time it is validated writes nothing, and a
// cancelled key-encryption key rotation changes nothing.
TEST(RegistryLimitsTest, CancelledBatchEnrollAndKekRotationWriteNothing) {
  const std::string dir = NewTempDir("hawiya-limits-registry");
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  enroll::RegistryOptions options;
  options.data_dir = dir;
  options.snapshots = false;
  absl::StatusOr<std::unique_ptr<enroll::Registry>> registry =
      enroll::Registry::Open(options);
  ASSERT_TRUE(registry.ok()) << registry.status();
  std::vector<v1::EnrollRequest> requests = {MakeEnrollRequest(model, 1),
                                             MakeEnrollRequest(model, 2)};
  absl::StatusOr<v1::BatchEnrollResponse> batch =
      (*registry)->BatchEnroll(requests, [] { return true; });
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ((*registry)->GetStats()->persons(), 0);
  // Not cancelled: written.
  batch = (*registry)->BatchEnroll(requests, [] { return false; });
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ((*registry)->GetStats()->persons(), 2);

  const std::string new_key = dir + "/new.key";
  ASSERT_TRUE(enroll::CreateKeyFile(new_key).ok());
  v1::RotateKeyRequest rotate;
  rotate.set_new_key_file(new_key);
  EXPECT_EQ((*registry)->RotateKey(rotate, [] { return true; }).status().code(),
            absl::StatusCode::kCancelled);
  rotate.set_new_key_file("new.key");
  EXPECT_EQ((*registry)->RotateKey(rotate, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  registry->reset();
  // Still the old key: the cancelled rotation re-wrapped nothing.
  registry = enroll::Registry::Open(options);
  ASSERT_TRUE(registry.ok()) << registry.status();
  registry->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hawiya
