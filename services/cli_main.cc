// hawiya: command-line client of the Hawiya v1 API.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hawiya/config/config.pb.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/help.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "Server address.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "Deadline per call.");
ABSL_FLAG(std::string, person, "", "enroll: person file (proto3 JSON).");
ABSL_FLAG(std::string, templates, "",
          "enroll: template file (JSON {\"templates\": [...]}, e.g. from "
          "`hawiya synth`).");
ABSL_FLAG(std::string, probes, "",
          "verify/identify: probe template file (same format).");
ABSL_FLAG(std::string, request_id, "",
          "enroll: idempotency key; a random one if empty. Reuse it to "
          "retry safely.");
ABSL_FLAG(std::string, subject_id, "", "get/verify/delete: subject id.");
ABSL_FLAG(std::string, national_id, "", "get/verify: national id.");
ABSL_FLAG(std::string, country, "",
          "get/verify: issuing country of --national_id (e.g. KWT).");
ABSL_FLAG(uint32_t, max_candidates, 10, "identify: candidates (1-100).");
ABSL_FLAG(double, min_score, -1.0,
          "identify: drop candidates below this score (-1: keep all).");
ABSL_FLAG(std::string, state, "",
          "list: only this state (ACTIVE, REVOKED, ...).");
ABSL_FLAG(std::string, reason, "", "delete: why (required).");
ABSL_FLAG(bool, erase, false, "delete: erase every trace instead of revoking.");
ABSL_FLAG(uint64_t, identity, 0, "synth: identity number.");
ABSL_FLAG(uint64_t, capture, 0,
          "synth: capture number (enroll one capture, probe another).");
ABSL_FLAG(std::string, modality, "FACE", "synth: FACE, FINGERPRINT or IRIS.");
ABSL_FLAG(int, dimension, 0, "synth: dimension (0: 512 face, 256 others).");
ABSL_FLAG(uint64_t, seed, 42, "synth: seed of the synthetic population.");
ABSL_FLAG(bool, hard, false, "synth: clustered look-alike population.");

namespace {

namespace v1 = hawiya::v1;
using google::protobuf::Message;

constexpr char kUsage[] =
    "command-line client of the Hawiya identity service.\n"
    "\n"
    "Usage: hawiya COMMAND [--server=127.0.0.1:50051] [flags]\n"
    "\n"
    "Commands:\n"
    "  enroll    --person=P.json [--templates=T.json] [--request_id=ID]\n"
    "  get       --subject_id=S | --national_id=N --country=C\n"
    "  verify    (--subject_id=S | --national_id=N --country=C) "
    "--probes=T.json\n"
    "  identify  --probes=T.json [--max_candidates=10] [--min_score=S]\n"
    "  list      [--state=ACTIVE]\n"
    "  delete    --subject_id=S --reason=TEXT [--erase]\n"
    "  stats\n"
    "  health\n"
    "  synth     --identity=I [--capture=K] [--modality=FACE] [--hard]\n"
    "            writes a synthetic template file (DESIGN.md model)\n"
    "\n"
    "Responses are printed as proto3 JSON on stdout.\n"
    "Exit codes: 0 success (verify: match; identify: a candidate at or above\n"
    "the threshold); 1 verify no match / identify no hit; 2 usage error;\n"
    "3 unreadable or invalid input file; 10+N the server answered gRPC\n"
    "status code N (13 INVALID_ARGUMENT, 15 NOT_FOUND, 16 ALREADY_EXISTS,\n"
    "19 FAILED_PRECONDITION, 20 ABORTED, 24 UNAVAILABLE).";

constexpr int kExitNegative = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInput = 3;
constexpr int kExitRpcBase = 10;

int Usage(const std::string& problem) {
  std::fprintf(stderr, "hawiya: %s\n\nhawiya: %s\n", problem.c_str(), kUsage);
  return kExitUsage;
}

void Print(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::fputs(json.c_str(), stdout);
}

// Reads a proto3 JSON file into `message`; false (with a message) on error.
bool ReadJson(const std::string& path, Message* message) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "hawiya: cannot read %s\n", path.c_str());
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  const auto status =
      google::protobuf::util::JsonStringToMessage(text.str(), message);
  if (!status.ok()) {
    std::fprintf(stderr, "hawiya: %s: %s\n", path.c_str(),
                 std::string(status.message()).c_str());
    return false;
  }
  return true;
}

int RpcFailed(const grpc::Status& status) {
  std::fprintf(stderr, "hawiya: %s: %s\n",
               absl::StrFormat("code %d", status.error_code()).c_str(),
               status.error_message().c_str());
  return kExitRpcBase + status.error_code();
}

class Client {
 public:
  explicit Client(const std::string& server)
      : channel_(
            grpc::CreateChannel(server, grpc::InsecureChannelCredentials())) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(
        std::chrono::system_clock::now() +
        absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_timeout)));
    return context;
  }
  v1::EnrollmentService::Stub& enrollment() { return *enrollment_; }
  v1::MatchService::Stub& match() { return *match_; }
  v1::AdminService::Stub& admin() { return *admin_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollment_ =
      v1::EnrollmentService::NewStub(channel_);
  std::unique_ptr<v1::MatchService::Stub> match_ =
      v1::MatchService::NewStub(channel_);
  std::unique_ptr<v1::AdminService::Stub> admin_ =
      v1::AdminService::NewStub(channel_);
  std::unique_ptr<grpc::health::v1::Health::Stub> health_ =
      grpc::health::v1::Health::NewStub(channel_);
};

std::string RandomRequestId() {
  absl::BitGen gen;
  return absl::StrFormat("cli-%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

// Reads --flag's template file into `out`.
bool ReadTemplates(const std::string& path,
                   google::protobuf::RepeatedPtrField<v1::Template>* out) {
  hawiya::config::TemplateFile file;
  if (!ReadJson(path, &file)) return false;
  *out = file.templates();
  return true;
}

int Enroll(Client& client) {
  v1::EnrollRequest request;
  if (absl::GetFlag(FLAGS_person).empty()) return Usage("enroll: --person");
  if (!ReadJson(absl::GetFlag(FLAGS_person), request.mutable_person())) {
    return kExitInput;
  }
  if (!absl::GetFlag(FLAGS_templates).empty() &&
      !ReadTemplates(absl::GetFlag(FLAGS_templates),
                     request.mutable_templates())) {
    return kExitInput;
  }
  request.set_request_id(absl::GetFlag(FLAGS_request_id).empty()
                             ? RandomRequestId()
                             : absl::GetFlag(FLAGS_request_id));
  v1::EnrollResponse response;
  grpc::Status status =
      client.enrollment().Enroll(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

bool HasClaim() {
  return !absl::GetFlag(FLAGS_subject_id).empty() ||
         !absl::GetFlag(FLAGS_national_id).empty();
}

int Get(Client& client) {
  if (!HasClaim()) return Usage("get: --subject_id or --national_id");
  v1::GetPersonRequest request;
  request.set_subject_id(absl::GetFlag(FLAGS_subject_id));
  request.set_national_id(absl::GetFlag(FLAGS_national_id));
  request.set_issuing_country(absl::GetFlag(FLAGS_country));
  v1::Person response;
  grpc::Status status =
      client.enrollment().GetPerson(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

int Verify(Client& client) {
  if (!HasClaim()) return Usage("verify: --subject_id or --national_id");
  if (absl::GetFlag(FLAGS_probes).empty()) return Usage("verify: --probes");
  v1::VerifyRequest request;
  request.set_subject_id(absl::GetFlag(FLAGS_subject_id));
  request.set_national_id(absl::GetFlag(FLAGS_national_id));
  request.set_issuing_country(absl::GetFlag(FLAGS_country));
  if (!ReadTemplates(absl::GetFlag(FLAGS_probes), request.mutable_probes())) {
    return kExitInput;
  }
  v1::VerifyResponse response;
  grpc::Status status =
      client.match().Verify(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return response.match() ? 0 : kExitNegative;
}

int Identify(Client& client) {
  if (absl::GetFlag(FLAGS_probes).empty()) return Usage("identify: --probes");
  v1::IdentifyRequest request;
  if (!ReadTemplates(absl::GetFlag(FLAGS_probes), request.mutable_probes())) {
    return kExitInput;
  }
  request.set_max_candidates(absl::GetFlag(FLAGS_max_candidates));
  if (absl::GetFlag(FLAGS_min_score) > -1.0) {
    request.set_min_score(static_cast<float>(absl::GetFlag(FLAGS_min_score)));
  }
  v1::IdentifyResponse response;
  grpc::Status status =
      client.match().Identify(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  const bool hit = response.candidates_size() > 0 &&
                   response.candidates(0).score() >= response.threshold();
  return hit ? 0 : kExitNegative;
}

int List(Client& client) {
  v1::ListPersonsRequest request;
  const std::string state = absl::GetFlag(FLAGS_state);
  if (!state.empty()) {
    v1::PersonState value;
    if (!v1::PersonState_Parse(state, &value)) {
      return Usage(
          "list: --state must be ACTIVE, PENDING_ADJUDICATION, "
          "REVOKED or DECEASED");
    }
    request.set_state(value);
  }
  request.set_page_size(1000);
  do {
    v1::ListPersonsResponse response;
    grpc::Status status = client.enrollment().ListPersons(
        client.Context().get(), request, &response);
    if (!status.ok()) return RpcFailed(status);
    Print(response);
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return 0;
}

int Delete(Client& client) {
  if (absl::GetFlag(FLAGS_subject_id).empty()) {
    return Usage("delete: --subject_id");
  }
  v1::DeletePersonRequest request;
  request.set_subject_id(absl::GetFlag(FLAGS_subject_id));
  request.set_reason(absl::GetFlag(FLAGS_reason));
  request.set_erase(absl::GetFlag(FLAGS_erase));
  google::protobuf::Empty response;
  grpc::Status status = client.enrollment().DeletePerson(client.Context().get(),
                                                         request, &response);
  if (!status.ok()) return RpcFailed(status);
  return 0;
}

int Stats(Client& client) {
  v1::GetStatsResponse response;
  grpc::Status status = client.admin().GetStats(
      client.Context().get(), v1::GetStatsRequest(), &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

int Health(Client& client) {
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status =
      client.health().Check(client.Context().get(),
                            grpc::health::v1::HealthCheckRequest(), &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : kExitNegative;
}

int Synth() {
  v1::Modality modality;
  if (!v1::Modality_Parse(absl::GetFlag(FLAGS_modality), &modality) ||
      modality == v1::MODALITY_UNSPECIFIED) {
    return Usage("synth: --modality must be FACE, FINGERPRINT or IRIS");
  }
  hawiya::matcher::SyntheticOptions options;
  options.dimension = absl::GetFlag(FLAGS_dimension) > 0
                          ? absl::GetFlag(FLAGS_dimension)
                          : (modality == v1::FACE ? 512 : 256);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.hard = absl::GetFlag(FLAGS_hard);
  const hawiya::matcher::SyntheticModel model(options);
  const std::vector<float> vector = model.Capture(absl::GetFlag(FLAGS_identity),
                                                  absl::GetFlag(FLAGS_capture));
  hawiya::config::TemplateFile file;
  v1::Template* t = file.add_templates();
  t->set_modality(modality);
  t->set_position(modality == v1::FACE ? 0 : 1);
  t->mutable_vector()->Assign(vector.begin(), vector.end());
  t->set_quality(90);
  t->set_algorithm("hawiya-synthetic/1");
  Print(file);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  hawiya::services::HandleHelp(argc, argv, kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    return Usage(args.size() < 2 ? "missing COMMAND" : "one COMMAND only");
  }
  const std::string command = args[1];
  if (command == "synth") return Synth();
  Client client(absl::GetFlag(FLAGS_server));
  if (command == "enroll") return Enroll(client);
  if (command == "get") return Get(client);
  if (command == "verify") return Verify(client);
  if (command == "identify") return Identify(client);
  if (command == "list") return List(client);
  if (command == "delete") return Delete(client);
  if (command == "stats") return Stats(client);
  if (command == "health") return Health(client);
  return Usage("unknown COMMAND '" + command + "'");
}
