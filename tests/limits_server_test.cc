// Limits of the in-process server (issue 4, item 5): a call whose deadline
// passes while it waits in a work queue is not run and writes nothing (the
// queue is held busy through the before_call test seam, so nothing depends
// on timing), and requests over max_receive_message_bytes are refused.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
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
#include "services/config.h"
#include "services/server.h"
#include "services/synthetic_requests.h"
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

// A client with gRPC's default 4 MiB receive limit lists every person,
// however large the records: a page ends early (with a next_page_token)
// before it would cross the limit. 12 persons of 10,000 documents (~0.43 MB
// each, under a raised limit) would make one page of 5.2 MB.
TEST_F(LimitsServerTest, DefaultClientListsPersonsWithManyDocuments) {
  config::ServerConfig config;
  config.mutable_limits()->set_max_documents(10000);
  Start(nullptr, config);
  constexpr int kPersons = 12;
  std::vector<std::string> enrolled;
  for (int n = 0; n < kPersons; ++n) {
    v1::EnrollRequest request = services::SyntheticEnrollRequest(model_, n);
    request.set_request_id(absl::StrCat("enroll-", n));
    request.mutable_person()->clear_documents();
    for (int i = 0; i < 10000; ++i) {
      v1::Document* document = request.mutable_person()->add_documents();
      document->set_type(v1::PASSPORT);
      document->set_number(
          absl::StrCat("P", std::string(23, '0'), 10000000 + i));
      document->set_issuing_country("KWT");
    }
    v1::EnrollResponse response;
    const grpc::Status status =
        enrollment_->Enroll(Ctx(absl::Seconds(60)).get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    enrolled.push_back(response.person().subject_id());
  }
  std::sort(enrolled.begin(), enrolled.end());
  std::vector<std::string> listed;
  v1::ListPersonsRequest request;
  request.set_page_size(100);
  int pages = 0;
  while (true) {
    v1::ListPersonsResponse page;
    const grpc::Status status =
        enrollment_->ListPersons(Ctx(absl::Seconds(60)).get(), request, &page);
    ASSERT_TRUE(status.ok())
        << status.error_code() << " " << status.error_message();
    ++pages;
    for (const v1::Person& person : page.persons()) {
      listed.push_back(person.subject_id());
    }
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(listed, enrolled);
  EXPECT_GE(pages, 2);
  // More documents than the configured limit are refused, naming the field.
  v1::EnrollRequest over = services::SyntheticEnrollRequest(model_, 99);
  over.set_request_id("enroll-99");
  over.mutable_person()->clear_documents();
  for (int i = 0; i < 10001; ++i) {
    v1::Document* document = over.mutable_person()->add_documents();
    document->set_type(v1::PASSPORT);
    document->set_number(absl::StrCat("P", i));
    document->set_issuing_country("KWT");
  }
  v1::EnrollResponse response;
  const grpc::Status refused =
      enrollment_->Enroll(Ctx(absl::Seconds(60)).get(), over, &response);
  EXPECT_EQ(refused.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.error_message(),
            "person.documents: at most 10000, not 10001");
}

TEST(InputLimitsConfigTest, DefaultsOverridesAndErrorsNameTheField) {
  absl::StatusOr<config::ServerConfig> example = services::LoadConfig(
      std::string(HAWIYA_SOURCE_DIR) + "/deploy/hawiya.textproto");
  ASSERT_TRUE(example.ok()) << example.status();
  const enroll::InputLimits defaults;
  enroll::InputLimits limits = services::InputLimitsOf(*example);
  EXPECT_EQ(limits.max_documents, defaults.max_documents);
  EXPECT_EQ(limits.max_faces, defaults.max_faces);
  EXPECT_EQ(limits.max_fingerprints, defaults.max_fingerprints);
  EXPECT_EQ(limits.max_irises, defaults.max_irises);
  EXPECT_EQ(defaults.max_documents, 16u);
  EXPECT_EQ(defaults.max_faces, 5u);

  const std::string dir = NewTempDir("hawiya-limits-config");
  const std::string path = dir + "/config.textproto";
  const auto load = [&path](const std::string& text) {
    std::ofstream(path) << text;
    return services::LoadConfig(path);
  };
  absl::StatusOr<config::ServerConfig> config =
      load("limits { max_documents: 100 max_faces: 1 max_irises: 1 }");
  ASSERT_TRUE(config.ok()) << config.status();
  limits = services::InputLimitsOf(*config);
  EXPECT_EQ(limits.max_documents, 100u);
  EXPECT_EQ(limits.max_faces, 1u);
  EXPECT_EQ(limits.max_fingerprints, 10u);
  EXPECT_EQ(limits.max_irises, 1u);
  for (const auto& [text, error] :
       std::vector<std::pair<std::string, std::string>>{
           {"limits { max_documents: 10001 }",
            "limits.max_documents: 10001 is more than 10000"},
           {"limits { max_faces: 101 }",
            "limits.max_faces: 101 is more than 100"},
           {"limits { max_fingerprints: 11 }",
            "limits.max_fingerprints: 11 is more than 10"},
           {"limits { max_irises: 3 }",
            "limits.max_irises: 3 is more than 2"}}) {
    const absl::Status bad = load(text).status();
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(bad.message()), ::testing::HasSubstr(error));
  }
  std::filesystem::remove_all(dir);
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
