// The server answers gRPC server reflection, so stock tools (grpcurl,
// grpc_cli, Postman) can discover and call the API without our .proto files.
#include <filesystem>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "gtest/gtest.h"
#include "reflection_client.grpc.pb.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::grpc::reflection::v1alpha::ServerReflection;
using ::grpc::reflection::v1alpha::ServerReflectionRequest;
using ::grpc::reflection::v1alpha::ServerReflectionResponse;
using ::testing::IsSupersetOf;

TEST(ReflectionTest, ListsServicesAndServesTheirDescriptors) {
  const std::string data_dir = testing::NewTempDir("hawiya-reflection-test");
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(HAWIYA_SERVER_PATH, data_dir);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = ServerReflection::NewStub((*server)->NewChannel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  auto stream = stub->ServerReflectionInfo(&context);

  ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& service : response.list_services_response().service()) {
    services.insert(service.name());
  }
  EXPECT_THAT(
      services,
      IsSupersetOf({"hawiya.v1.EnrollmentService", "hawiya.v1.MatchService",
                    "hawiya.v1.AdminService", "hawiya.v1.AuditService",
                    "hawiya.v1.PartnerService",
                    "hawiya.v1.AdjudicationService"}));

  request.set_file_containing_symbol("hawiya.v1.MatchService");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.has_file_descriptor_response())
      << response.error_response().error_message();
  std::set<std::string> files;
  for (const std::string& bytes :
       response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    files.insert(file.name());
  }
  EXPECT_THAT(files, IsSupersetOf({"hawiya/v1/match.proto"}));

  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  server->reset();
  std::filesystem::remove_all(data_dir);
}

}  // namespace
}  // namespace hawiya
