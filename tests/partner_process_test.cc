// PartnerService through the real binaries under mutual TLS with the
// development PKI: a complete partner call with the CLI (`hawiya partner
// verify`), the receipt checked offline (`hawiya receipt verify` against
// `hawiya admin signing-keys --out`), broken by a changed byte, still valid
// after `hawiya admin rotate-signing-key`; policy refusals, the daily quota
// and the policy's rate limit as gRPC statuses; and the Python grpcio
// example of docs/PARTNERS.md, built only from proto/, against the same
// server with the partner certificate.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/partner.grpc.pb.h"
#include "matcher/synthetic.h"
#include "services/pki.h"
#include "services/synthetic_requests.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

namespace fs = std::filesystem;
using ::grpc::StatusCode;
using ::hawiya::testing::NewTempDir;
using ::hawiya::testing::ReadFileBytes;
using ::hawiya::testing::RunCommand;
using ::hawiya::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::Not;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
  return context;
}

// The development partner's policy: border crossings, names, date of birth
// and state; faces allowed; 6 answers a day; 2 calls at once then one per
// 1000 s (tests that need more calls use their own server).
constexpr char kPolicy[] =
    "partner_policies { principal: \"hawiya://dev/partner\" "
    "allowed_purposes: \"BORDER_CROSSING\" "
    "disclosable_attributes: [\"name\", \"date_of_birth\", \"state\"] "
    "biometric_allowed: true daily_quota: 6 }\n";

class PartnerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = NewTempDir("hawiya-partner"); }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  void Start(const std::string& config_text) {
    const std::string config = dir_ + "/config.textproto";
    std::ofstream(config) << config_text;
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::StartTls(HAWIYA_SERVER_PATH, dir_ + "/data",
                                {"--shutdown_grace=1s", "--config=" + config},
                                dir_ + "/server.log");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string pki() const { return dir_ + "/data/pki"; }

  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& role) {
    const services::DevPkiPaths paths = services::DevPkiRolePaths(pki(), role);
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = *services::ReadFile(pki() + "/ca.pem");
    options.pem_private_key = *services::ReadFile(paths.key);
    options.pem_cert_chain = *services::ReadFile(paths.cert);
    return server_->NewChannel(grpc::SslCredentials(options));
  }

  // Person n of the synthetic model (national id N<n>, KWT), with a face.
  void EnrollPerson(uint64_t n) {
    v1::EnrollRequest request = services::SyntheticEnrollRequest(model_, n);
    request.set_request_id(absl::StrCat("enroll-", n));
    v1::EnrollResponse response;
    const grpc::Status status =
        v1::EnrollmentService::NewStub(ChannelAs("registrar"))
            ->Enroll(Ctx().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // `hawiya` against the server with the development PKI.
  testing::CommandResult Cli(const std::string& args) {
    return RunCommand(absl::StrCat(
        HAWIYA_CLI_PATH, " --server=", server_->address(), " --pki_dir=", pki(),
        " ", args, " 2>>", dir_, "/cli.err"));
  }

  // The partner verify arguments for person n, as recorded.
  static std::string Claim(uint64_t n) {
    const v1::Person person = services::SyntheticPerson(n);
    return absl::StrCat("partner verify --national_id=", person.national_id(),
                        " --country=", person.issuing_country(),
                        " --purpose=BORDER_CROSSING --purpose_text=gate-7",
                        " --name_latin=", person.name_latin().given(), ",",
                        person.name_latin().family(),
                        " --date_of_birth=", person.date_of_birth().year(), "-",
                        person.date_of_birth().month(), "-",
                        person.date_of_birth().day());
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(PartnerProcessTest, CliCallAndOfflineReceiptCheckAcrossKeyRotation) {
  Start(kPolicy);
  EnrollPerson(5);
  const std::string receipt = dir_ + "/receipt.pb";
  testing::CommandResult verified =
      Cli(Claim(5) + " --request_id=case-5 --receipt_out=" + receipt);
  ASSERT_EQ(verified.exit_code, 0)
      << verified.out << ReadFileBytes(dir_ + "/cli.err");
  EXPECT_THAT(verified.out, HasSubstr("\"decision\": \"MATCH\""));
  EXPECT_THAT(verified.out, HasSubstr("\"state\": \"ACTIVE\""));
  EXPECT_THAT(verified.out, HasSubstr("\"signature\""));

  // Any caller may fetch the public keys; the partner saves them.
  const std::string keys = dir_ + "/keys.textproto";
  ASSERT_EQ(Cli("admin signing-keys --role=partner --out=" + keys).exit_code,
            0);
  testing::CommandResult checked =
      Cli("receipt verify --receipt=" + receipt + " --keys=" + keys);
  EXPECT_EQ(checked.exit_code, 0) << ReadFileBytes(dir_ + "/cli.err");
  EXPECT_THAT(checked.out, HasSubstr("\"requestId\": \"case-5\""));
  EXPECT_THAT(checked.out,
              HasSubstr("\"principal\": \"hawiya://dev/partner\""));

  // One changed byte anywhere in the receipt file: refused.
  const std::string bytes = ReadFileBytes(receipt);
  for (size_t at : {size_t{5}, bytes.size() / 2, bytes.size() - 3}) {
    std::string changed = bytes;
    changed[at] ^= 0x04;
    const std::string path = dir_ + "/changed.pb";
    std::ofstream(path, std::ios::binary | std::ios::trunc) << changed;
    EXPECT_NE(
        Cli("receipt verify --receipt=" + path + " --keys=" + keys).exit_code,
        0)
        << "byte " << at;
  }

  // Rotation: new receipts under the new key, the old one still verifies
  // against the keys fetched after it.
  ASSERT_EQ(Cli("admin rotate-signing-key").exit_code, 0);
  const std::string receipt2 = dir_ + "/receipt2.pb";
  ASSERT_EQ(Cli(Claim(5) + " --receipt_out=" + receipt2).exit_code, 0);
  // The keys saved before the rotation do not know the new key.
  EXPECT_EQ(
      Cli("receipt verify --receipt=" + receipt2 + " --keys=" + keys).exit_code,
      1);
  ASSERT_EQ(Cli("admin signing-keys --out=" + keys).exit_code, 0);
  EXPECT_EQ(
      Cli("receipt verify --receipt=" + receipt + " --keys=" + keys).exit_code,
      0);
  EXPECT_EQ(
      Cli("receipt verify --receipt=" + receipt2 + " --keys=" + keys).exit_code,
      0);
  // The name in Arabic script (recorded محمد عبدالله الصباح): MATCH.
  testing::CommandResult arabic =
      Cli("partner verify --national_id=N5 --country=KWT "
          "--purpose=BORDER_CROSSING --purpose_text=gate-7 "
          "--name_ar=محمد,الصباح");
  EXPECT_EQ(arabic.exit_code, 0) << arabic.out;
  EXPECT_THAT(arabic.out, HasSubstr("\"result\": \"MATCH\""));
  // A batch over the wire: a match, an unknown id and an invalid item.
  v1::VerifyCivilStatusBatchRequest batch;
  v1::VerifyCivilStatusRequest* item = batch.add_requests();
  item->set_request_id("b-1");
  item->set_purpose(v1::BORDER_CROSSING);
  item->set_purpose_text("gate-7");
  item->set_national_id("N5");
  item->set_issuing_country("KWT");
  item->mutable_name_latin()->set_given("Muhammad");
  item->mutable_name_latin()->set_family("Al-Sabah");
  *batch.add_requests() = *item;
  batch.mutable_requests(1)->set_request_id("b-2");
  batch.mutable_requests(1)->set_national_id("N404");
  *batch.add_requests() = *item;
  batch.mutable_requests(2)->set_request_id("b-3");
  batch.mutable_requests(2)->set_issuing_country("kwt");
  v1::VerifyCivilStatusBatchResponse answers;
  const grpc::Status status =
      v1::PartnerService::NewStub(ChannelAs("partner"))
          ->VerifyCivilStatusBatch(Ctx().get(), batch, &answers);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(answers.results_size(), 3);
  EXPECT_EQ(answers.results(0).response().decision(),
            v1::VerifyCivilStatusResponse::MATCH);
  EXPECT_EQ(answers.results(1).response().decision(),
            v1::VerifyCivilStatusResponse::NOT_FOUND);
  EXPECT_EQ(answers.results(2).error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(answers.results(2).error_message(),
              HasSubstr("requests[2].issuing_country"));
  // Usage errors.
  EXPECT_EQ(Cli("receipt verify --receipt=" + receipt).exit_code, 2);
  EXPECT_EQ(Cli("partner verify --national_id=N5").exit_code, 2);
}

TEST_F(PartnerProcessTest, PolicyRefusalsQuotaAndDecisionsAsExitCodes) {
  Start(kPolicy);
  EnrollPerson(5);
  // Another purpose: PERMISSION_DENIED (7) naming the rule.
  testing::CommandResult denied =
      Cli(Claim(5) + " --purpose=MARRIAGE_REGISTRATION");
  EXPECT_EQ(denied.exit_code, 10 + 7);
  EXPECT_THAT(ReadFileBytes(dir_ + "/cli.err"),
              HasSubstr("allowed_purposes: the data-sharing policy of "
                        "hawiya://dev/partner does not allow purpose "
                        "MARRIAGE_REGISTRATION"));
  // A border post is not a partner: the access check refuses it.
  EXPECT_EQ(Cli(Claim(5) + " --role=border").exit_code, 10 + 7);
  // Decisions: unknown id (NOT_FOUND decision, exit 1), a wrong date of
  // birth (NO_MATCH, exit 1), a face of someone else (NO_MATCH).
  testing::CommandResult unknown =
      Cli("partner verify --national_id=N404 --country=KWT "
          "--purpose=BORDER_CROSSING --purpose_text=gate-7");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.out, HasSubstr("\"decision\": \"NOT_FOUND\""));
  testing::CommandResult wrong = Cli(Claim(5) + " --date_of_birth=1950-1-1");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.out, HasSubstr("\"decision\": \"NO_MATCH\""));
  ASSERT_EQ(RunCommand(absl::StrCat(HAWIYA_CLI_PATH,
                                    " synth --identity=99 --capture=1 > ", dir_,
                                    "/stranger.json"))
                .exit_code,
            0);
  testing::CommandResult stranger =
      Cli(Claim(5) + " --probes=" + dir_ + "/stranger.json");
  EXPECT_EQ(stranger.exit_code, 1);
  EXPECT_THAT(stranger.out, HasSubstr("\"decision\": \"NO_MATCH\""));
  EXPECT_THAT(stranger.out, HasSubstr("\"biometric\""));
  // Three answers so far, of 6 a day; refused calls counted nothing.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Cli(Claim(5)).exit_code, 0);
  testing::CommandResult spent = Cli(Claim(5));
  EXPECT_EQ(spent.exit_code, 10 + 8);  // RESOURCE_EXHAUSTED
  EXPECT_THAT(ReadFileBytes(dir_ + "/cli.err"),
              HasSubstr("daily_quota: principal hawiya://dev/partner has "
                        "used 6 of its 6"));
  // Survives a restart.
  server_.reset();
  Start(kPolicy);
  EXPECT_EQ(Cli(Claim(5)).exit_code, 10 + 8);

  // Each answer is in the audit log with its purpose and disclosure.
  testing::CommandResult audit =
      Cli("audit list --principal=hawiya://dev/partner");
  ASSERT_EQ(audit.exit_code, 0);
  EXPECT_THAT(audit.out, HasSubstr("\"purpose\": \"BORDER_CROSSING: gate-7\""));
  EXPECT_THAT(audit.out, HasSubstr("\"decision\": \"NO_MATCH\""));
  EXPECT_THAT(audit.out,
              HasSubstr("\"disclosedAttributes\": [\n    \"state\""));
}

TEST_F(PartnerProcessTest, NoPolicyIsDeniedAndPolicyRateLimitApplies) {
  // The partner's rate limit lives in its policy: 2 calls, then 1 per
  // 1000 s.
  Start(
      "partner_policies { principal: \"hawiya://dev/partner\" "
      "allowed_purposes: \"BORDER_CROSSING\" requests_per_second: 0.001 "
      "burst: 2 }\n");
  auto stub = v1::PartnerService::NewStub(ChannelAs("partner"));
  v1::VerifyCivilStatusRequest request;
  request.set_request_id("r");
  request.set_purpose(v1::BORDER_CROSSING);
  request.set_purpose_text("t");
  request.set_national_id("N1");
  request.set_issuing_country("KWT");
  v1::VerifyCivilStatusResponse response;
  for (int i = 0; i < 2; ++i) {
    const grpc::Status status =
        stub->VerifyCivilStatus(Ctx().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.decision(), v1::VerifyCivilStatusResponse::NOT_FOUND);
  }
  const grpc::Status limited =
      stub->VerifyCivilStatus(Ctx().get(), request, &response);
  EXPECT_EQ(limited.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(),
              HasSubstr("principal hawiya://dev/partner is over its rate "
                        "limit of 0.001 requests/s (burst 2)"));

  // A bad policy is refused at start, naming the field.
  server_.reset();
  const std::string config = dir_ + "/bad.textproto";
  std::ofstream(config) << "partner_policies { principal: \"x\" }\n";
  testing::CommandResult bad =
      RunCommand(absl::StrCat(HAWIYA_SERVER_PATH, " --data_dir=", dir_,
                              "/data --config=", config, " 2>&1"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out,
              HasSubstr("partner_policies[0].allowed_purposes: at least one "
                        "purpose is required"));
}

// The README's partner example on the README's own server (the example
// config, the development PKI): the development partner has a development
// policy, said by a warning; the same server with --tls_* flags (production)
// gives it none.
TEST_F(PartnerProcessTest, DevelopmentServerAnswersTheDevelopmentPartner) {
  Start(ReadFileBytes(
      absl::StrCat(HAWIYA_SOURCE_DIR, "/deploy/hawiya.textproto")));
  EXPECT_THAT(ReadFileBytes(dir_ + "/server.log"),
              HasSubstr("WARNING development partner policy for "
                        "hawiya://dev/partner"));
  ASSERT_EQ(Cli(absl::StrCat("enroll --person=", HAWIYA_SOURCE_DIR,
                             "/deploy/examples/person.json"))
                .exit_code,
            0);
  const std::string receipt = dir_ + "/case-42.receipt";
  const std::string claim =
      "partner verify --national_id=289031501234 --country=KWT "
      "--purpose=BORDER_CROSSING --purpose_text=\"gate 7, case 42\" "
      "--name_latin=\"Fatima,Al-Ali\" --receipt_out=";
  testing::CommandResult verified = Cli(claim + receipt);
  ASSERT_EQ(verified.exit_code, 0) << ReadFileBytes(dir_ + "/cli.err");
  EXPECT_THAT(verified.out, HasSubstr("\"decision\": \"MATCH\""));
  const std::string keys = dir_ + "/keys.textproto";
  ASSERT_EQ(Cli("admin signing-keys --role=partner --out=" + keys).exit_code,
            0);
  EXPECT_EQ(
      Cli("receipt verify --receipt=" + receipt + " --keys=" + keys).exit_code,
      0);

  // Production: the same certificates, named by flags.
  server_.reset();
  absl::StatusOr<std::unique_ptr<ServerProcess>> production =
      ServerProcess::StartTls(HAWIYA_SERVER_PATH, dir_ + "/data",
                              {"--tls_cert=" + pki() + "/server.pem",
                               "--tls_key=" + pki() + "/server.key",
                               "--client_ca=" + pki() + "/ca.pem",
                               absl::StrCat("--config=", HAWIYA_SOURCE_DIR,
                                            "/deploy/hawiya.textproto")},
                              dir_ + "/production.log");
  ASSERT_TRUE(production.ok()) << production.status();
  server_ = *std::move(production);
  EXPECT_THAT(ReadFileBytes(dir_ + "/production.log"),
              Not(HasSubstr("development partner policy")));
  EXPECT_EQ(Cli(claim + dir_ + "/refused.receipt").exit_code, 10 + 7);
  EXPECT_THAT(ReadFileBytes(dir_ + "/cli.err"),
              HasSubstr("no data-sharing policy for principal "
                        "hawiya://dev/partner"));
}

// docs/PARTNERS.md's Python example: stock grpcio, stubs generated from
// proto/ at run time, mutual TLS with the partner's development
// certificate, and the receipt checked in Python.
TEST_F(PartnerProcessTest, PythonGrpcioClientFromTheProtoFiles) {
  Start(kPolicy);
  EnrollPerson(5);
  const v1::Person person = services::SyntheticPerson(5);
  const services::DevPkiPaths paths =
      services::DevPkiRolePaths(pki(), "partner");
  testing::CommandResult python = RunCommand(absl::StrCat(
      "/usr/bin/python3 ", HAWIYA_SOURCE_DIR,
      "/docs/examples/partner_client.py --server=", server_->address(),
      " --proto_dir=", HAWIYA_SOURCE_DIR, "/proto --ca=", pki(),
      "/ca.pem --cert=", paths.cert, " --key=", paths.key, " --national_id=",
      person.national_id(), " --country=", person.issuing_country(),
      // Recorded as Mohammed; the partner's passport reads Muhammad.
      " --given_latin=Muhammad",
      " --family_latin=", person.name_latin().family(), " --date_of_birth=",
      person.date_of_birth().year(), "-", person.date_of_birth().month(), "-",
      person.date_of_birth().day(), " --request_id=py-7 2>&1"));
  EXPECT_EQ(python.exit_code, 0) << python.out;
  EXPECT_THAT(python.out, HasSubstr("decision: MATCH"));
  EXPECT_THAT(python.out, HasSubstr("name_latin     MATCH"));
  EXPECT_THAT(python.out, HasSubstr("receipt: verified, key ed25519:"));
  EXPECT_THAT(python.out, HasSubstr("request py-7, decision MATCH"));
  // An unknown id: the decision, with exit 1.
  testing::CommandResult unknown = RunCommand(absl::StrCat(
      "/usr/bin/python3 ", HAWIYA_SOURCE_DIR,
      "/docs/examples/partner_client.py --server=", server_->address(),
      " --proto_dir=", HAWIYA_SOURCE_DIR, "/proto --ca=", pki(),
      "/ca.pem --cert=", paths.cert, " --key=", paths.key,
      " --national_id=N404 --country=KWT 2>&1"));
  EXPECT_EQ(unknown.exit_code, 1) << unknown.out;
  EXPECT_THAT(unknown.out, HasSubstr("decision: NOT_FOUND"));
}

}  // namespace
}  // namespace hawiya
