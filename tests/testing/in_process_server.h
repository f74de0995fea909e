// A test fixture running the server in this process (services::Server) on
// a loopback port, plaintext, with a fresh data dir: for tests of the
// service layer that need its test seams or to read what it recorded.
// Header-only: hawiya_testing does not link the server.
#ifndef HAWIYA_TESTS_TESTING_IN_PROCESS_SERVER_H_
#define HAWIYA_TESTS_TESTING_IN_PROCESS_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "services/server.h"
#include "tests/testing/server_process.h"

namespace hawiya::testing {

class InProcessServerTest : public ::testing::Test {
 protected:
  // services::ServerOptions::before_call.
  using Seam = std::function<void(const char*, const std::function<bool()>&)>;

  void SetUp() override {
    data_dir_ = NewTempDir("hawiya-in-process-server");
    ASSERT_FALSE(data_dir_.empty());
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    std::filesystem::remove_all(data_dir_);
  }

  void Start(Seam before_call = nullptr, config::ServerConfig config = {}) {
    services::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = data_dir_;
    options.snapshots = false;
    options.config = std::move(config);
    options.before_call = std::move(before_call);
    absl::StatusOr<std::unique_ptr<services::Server>> server =
        services::Server::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->WaitUntilReady().ok());
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    enrollment_ = v1::EnrollmentService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
    audit_ = v1::AuditService::NewStub(channel_);
  }

  // Shuts the server down (which waits for every call to finish) and
  // starts a fresh one on the same data dir.
  void Restart() {
    server_->Shutdown(absl::Seconds(5));
    server_.reset();
    Start();
  }

  // The outcomes of the audit records of `method`, oldest first.
  std::vector<std::string> AuditOutcomes(const std::string& method) {
    v1::ListAuditRecordsRequest request;
    request.set_page_size(1000);
    v1::ListAuditRecordsResponse page;
    EXPECT_TRUE(
        audit_->ListAuditRecords(Ctx(absl::Seconds(30)).get(), request, &page)
            .ok());
    std::vector<std::string> outcomes;
    for (const v1::AuditRecord& record : page.records()) {
      if (record.method() == method) outcomes.push_back(record.outcome());
    }
    return outcomes;
  }

  grpc::Status GetByNationalId(const v1::Person& person) {
    v1::GetPersonRequest request;
    request.set_national_id(person.national_id());
    request.set_issuing_country(person.issuing_country());
    v1::Person found;
    return enrollment_->GetPerson(Ctx(absl::Seconds(30)).get(), request,
                                  &found);
  }

  int64_t PersonCount() {
    v1::GetStatsResponse stats;
    EXPECT_TRUE(admin_
                    ->GetStats(Ctx(absl::Seconds(30)).get(),
                               v1::GetStatsRequest(), &stats)
                    .ok());
    return stats.persons();
  }

  std::string data_dir_;
  std::unique_ptr<services::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollment_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::AuditService::Stub> audit_;
};

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_IN_PROCESS_SERVER_H_
