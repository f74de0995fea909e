// Request bodies the server cannot parse, sent as raw bytes through a
// generic client to every method of every hawiya.v1 service: each is
// refused INVALID_ARGUMENT naming the request type, audited, and writes
// nothing; a BatchEnroll with one such item commits none of the others; and
// a request over max_receive_message_bytes is RESOURCE_EXHAUSTED, audited.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "hawiya/v1/adjudication.grpc.pb.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "hawiya/v1/partner.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/grpc_services.h"
#include "services/server.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::ServiceDescriptor;
using ::grpc::StatusCode;
using ::hawiya::testing::Ctx;
using ::hawiya::testing::EnrollRequestWithFaces;
using ::hawiya::testing::InProcessServerTest;
using ::hawiya::testing::MakeEnrollRequest;
using ::testing::ElementsAre;

std::string MethodPath(const MethodDescriptor& method) {
  return absl::StrCat("/", method.service()->full_name(), "/", method.name());
}

// Whether `bytes` parse as a `type` (as the server's parser would).
bool Parses(const Descriptor& type, const std::string& bytes) {
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> message(
      factory.GetPrototype(&type)->New());
  return message->ParseFromString(bytes);
}

std::string Varint(uint64_t value) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.WriteVarint64(value);
  coded.Trim();
  return out;
}

std::string Tag(int field, int wire_type) {
  return Varint((static_cast<uint64_t>(field) << 3) | wire_type);
}

std::string LengthDelimited(int field, const std::string& payload) {
  return absl::StrCat(Tag(field, 2), Varint(payload.size()), payload);
}

// A path of fields from `type` down to a string field, if one is within a
// few levels.
bool FindStringField(const Descriptor& type, int depth,
                     std::vector<const FieldDescriptor*>* path) {
  if (depth == 0) return false;
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor* field = type.field(i);
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      path->push_back(field);
      return true;
    }
  }
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor* field = type.field(i);
    if (field->type() != FieldDescriptor::TYPE_MESSAGE) continue;
    path->push_back(field);
    if (FindStringField(*field->message_type(), depth - 1, path)) return true;
    path->pop_back();
  }
  return false;
}

// `value` in the string field at the end of `path`, wrapped in the
// messages leading to it.
std::string AtPath(const std::vector<const FieldDescriptor*>& path,
                   const std::string& value) {
  std::string bytes = value;
  for (auto field = path.rbegin(); field != path.rend(); ++field) {
    bytes = LengthDelimited((*field)->number(), bytes);
  }
  return bytes;
}

// `depth` nested groups of an unknown field: the parser recurses once per
// level, whatever the message type.
std::string NestedGroups(int depth) {
  constexpr int kUnknownField = 1999;
  std::string bytes;
  for (int i = 0; i < depth; ++i) bytes += Tag(kUnknownField, 3);
  for (int i = 0; i < depth; ++i) bytes += Tag(kUnknownField, 4);
  return bytes;
}

constexpr char kInvalidUtf8[] = "\xc3\x28";  // a lead byte, then no follower

struct BadBody {
  std::string what;
  std::string bytes;
};

// The malformed bodies for a request of `type`, each checked to fail to
// parse (and, where a near twin parses, for the reason it names).
std::vector<BadBody> BadBodiesFor(const Descriptor& type) {
  std::vector<BadBody> bodies;
  // Random bytes: the first of a fixed sequence that does not parse.
  std::mt19937 random(14);
  std::string noise;
  do {
    noise.clear();
    for (int i = 0; i < 64; ++i) noise.push_back(static_cast<char>(random()));
  } while (Parses(type, noise));
  bodies.push_back({"random bytes", noise});
  // Bad wire format.
  bodies.push_back({"truncated varint", Tag(1, 0) + "\xff\xff"});
  bodies.push_back({"length past the end", Tag(1, 2) + "\x05" + "ab"});
  bodies.push_back({"invalid wire type 7", Tag(1, 7)});
  bodies.push_back({"end-group tag with no group", Tag(1, 4)});
  bodies.push_back({"varint tag ff ff ff ff 0f", "\xff\xff\xff\xff\x0f"});
  // Nesting past protobuf's recursion limit (100); 50 levels parse.
  EXPECT_TRUE(Parses(type, NestedGroups(50))) << type.full_name();
  bodies.push_back({"groups nested 200 deep", NestedGroups(200)});
  // Invalid UTF-8 in a string field (a type without one cannot have it).
  std::vector<const FieldDescriptor*> path;
  if (FindStringField(type, 4, &path)) {
    EXPECT_TRUE(Parses(type, AtPath(path, "ok"))) << type.full_name();
    bodies.push_back({absl::StrCat("invalid UTF-8 in ", path.back()->name()),
                      AtPath(path, kInvalidUtf8)});
  }
  for (const BadBody& body : bodies) {
    EXPECT_FALSE(Parses(type, body.bytes)) << type.full_name() << body.what;
  }
  return bodies;
}

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Calls methods by name with bodies given as bytes.
class RawClient {
 public:
  explicit RawClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(std::move(channel)) {}

  grpc::Status Unary(const std::string& method, const std::string& body) {
    std::unique_ptr<grpc::ClientContext> ctx = Ctx();
    const grpc::ByteBuffer request = ToByteBuffer(body);
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    stub_.UnaryCall(ctx.get(), method, grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
    done.WaitForNotification();
    return status;
  }

  // A client-streaming call: writes `items` (until the server stops
  // taking them), half-closes, and returns the call's status.
  grpc::Status Stream(const std::string& method,
                      const std::vector<std::string>& items) {
    std::unique_ptr<grpc::ClientContext> ctx = Ctx();
    grpc::CompletionQueue cq;
    auto call = stub_.PrepareCall(ctx.get(), method, &cq);
    call->StartCall(OpTag());
    bool ok = Await(&cq);
    for (size_t i = 0; ok && i < items.size(); ++i) {
      call->Write(ToByteBuffer(items[i]), OpTag());
      ok = Await(&cq);
    }
    if (ok) {
      call->WritesDone(OpTag());
      Await(&cq);
    }
    grpc::ByteBuffer response;
    call->Read(&response, OpTag());
    Await(&cq);
    grpc::Status status;
    call->Finish(&status, OpTag());
    Await(&cq);
    cq.Shutdown();
    void* tag;
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

 private:
  void* OpTag() { return &tag_; }
  // Waits for the one operation in flight.
  static bool Await(grpc::CompletionQueue* cq) {
    void* tag = nullptr;
    bool ok = false;
    return cq->Next(&tag, &ok) && ok;
  }

  grpc::GenericStub stub_;
  int tag_ = 0;
};

class MalformedRequestTest : public InProcessServerTest {
 protected:
  void Start(config::ServerConfig config = {}) {
    InProcessServerTest::Start(nullptr, std::move(config));
    raw_ = std::make_unique<RawClient>(channel_);
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::unique_ptr<RawClient> raw_;
};

TEST_F(MalformedRequestTest, EveryMethodRefusesUnparsableBodiesOnTheRecord) {
  Start();
  std::map<std::string, size_t> sent;  // method -> bad bodies sent
  int methods = 0;
  // Every service of the API; their methods are read from the descriptors,
  // so a method added later is covered too.
  for (const std::string& service_name : services::ApiServiceNames()) {
    const ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            service_name);
    ASSERT_NE(service, nullptr) << service_name;
    for (int m = 0; m < service->method_count(); ++m) {
      const MethodDescriptor& method = *service->method(m);
      ++methods;
      const std::string path = MethodPath(method);
      const std::string field =
          method.client_streaming() ? "requests[0]" : "request";
      const std::string expected = absl::StrCat(
          field, ": cannot be parsed as ", method.input_type()->full_name());
      for (const BadBody& body : BadBodiesFor(*method.input_type())) {
        const grpc::Status status = method.client_streaming()
                                        ? raw_->Stream(path, {body.bytes})
                                        : raw_->Unary(path, body.bytes);
        EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT)
            << path << ", " << body.what << ": " << status.error_message();
        EXPECT_EQ(status.error_message(), expected)
            << path << ", " << body.what;
        ++sent[path];
      }
    }
  }
  EXPECT_GE(methods, 20);
  // Each refusal has its record, and nothing was written.
  for (const auto& [path, count] : sent) {
    const std::vector<std::string> outcomes = AuditOutcomes(path);
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "INVALID_ARGUMENT"),
              static_cast<std::ptrdiff_t>(count))
        << path;
  }
  EXPECT_EQ(PersonCount(), 0);
}

// The request_id field of EnrollRequest, holding invalid UTF-8: appended to
// a valid request, it overrides the valid id when parsed.
std::string WithInvalidRequestId(const v1::EnrollRequest& request) {
  const FieldDescriptor* request_id =
      v1::EnrollRequest::descriptor()->FindFieldByName("request_id");
  EXPECT_NE(request_id, nullptr);
  return request.SerializeAsString() +
         LengthDelimited(request_id->number(), kInvalidUtf8);
}

TEST_F(MalformedRequestTest, BatchEnrollWithAnUnparsableItemCommitsNone) {
  Start();
  const v1::EnrollRequest a = MakeEnrollRequest(model_, 1);
  const v1::EnrollRequest b = MakeEnrollRequest(model_, 2);
  const v1::EnrollRequest c = MakeEnrollRequest(model_, 3);
  const v1::EnrollRequest d = MakeEnrollRequest(model_, 4);
  ASSERT_FALSE(v1::EnrollRequest().ParseFromString(WithInvalidRequestId(d)));
  const std::string path = "/hawiya.v1.EnrollmentService/BatchEnroll";
  for (const std::string& bad :
       {std::string("\xff\xff\xff\xff\x0f"), WithInvalidRequestId(d)}) {
    const grpc::Status status =
        raw_->Stream(path, {a.SerializeAsString(), bad, b.SerializeAsString(),
                            c.SerializeAsString()});
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_EQ(status.error_message(),
              "requests[1]: cannot be parsed as hawiya.v1.EnrollRequest");
  }
  for (const v1::EnrollRequest* request : {&a, &b, &c, &d}) {
    EXPECT_EQ(GetByNationalId(request->person()).error_code(),
              StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(PersonCount(), 0);
  EXPECT_THAT(AuditOutcomes(path),
              ElementsAre("INVALID_ARGUMENT", "INVALID_ARGUMENT"));
  // The same stream without the bad item is committed whole.
  EXPECT_TRUE(raw_->Stream(path, {a.SerializeAsString(), b.SerializeAsString(),
                                  c.SerializeAsString()})
                  .ok());
  EXPECT_EQ(PersonCount(), 3);
}

TEST_F(MalformedRequestTest, OversizedRequestsAreRefusedOnTheRecord) {
  constexpr size_t kLimit = 64 << 10;
  config::ServerConfig config;
  config.set_max_receive_message_bytes(kLimit);
  Start(config);
  const std::string enroll = "/hawiya.v1.EnrollmentService/Enroll";
  const std::string batch = "/hawiya.v1.EnrollmentService/BatchEnroll";
  // Over the limit, within what the transport hands on (twice the limit).
  const v1::EnrollRequest large = EnrollRequestWithFaces(model_, 40);
  ASSERT_GT(large.ByteSizeLong(), kLimit);
  ASSERT_LT(large.ByteSizeLong(), 2 * kLimit);
  grpc::Status status = raw_->Unary(enroll, large.SerializeAsString());
  EXPECT_EQ(status.error_code(), StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_EQ(status.error_message(),
            absl::StrCat("request: ", large.ByteSizeLong(),
                         " bytes, over the limit of 65536 "
                         "(max_receive_message_bytes)"));
  // A streamed item over the limit refuses its call.
  const v1::EnrollRequest small = EnrollRequestWithFaces(model_, 2);
  ASSERT_LT(small.ByteSizeLong(), kLimit);
  status = raw_->Stream(batch,
                        {small.SerializeAsString(), large.SerializeAsString()});
  EXPECT_EQ(status.error_code(), StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), ::testing::StartsWith("requests[1]: "));
  // Beyond twice the limit gRPC refuses it before any handler runs: no
  // record (docs/SECURITY.md, "Message size").
  const v1::EnrollRequest huge = EnrollRequestWithFaces(model_, 80);
  ASSERT_GT(huge.ByteSizeLong(), 2 * kLimit);
  EXPECT_EQ(raw_->Unary(enroll, huge.SerializeAsString()).error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(AuditOutcomes(enroll), ElementsAre("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(AuditOutcomes(batch), ElementsAre("RESOURCE_EXHAUSTED"));
  EXPECT_EQ(PersonCount(), 0);
  // Under the limit it is served.
  EXPECT_TRUE(raw_->Unary(enroll, small.SerializeAsString()).ok());
  EXPECT_EQ(PersonCount(), 1);
}

}  // namespace
}  // namespace hawiya
