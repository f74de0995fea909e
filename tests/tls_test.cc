// Mutual TLS and access control against the real hawiya-server binary:
// handshakes accepted and refused, the role matrix of the default config,
// the development PKI written on first start, and the CLI over TLS.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hawiya/v1/adjudication.grpc.pb.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "hawiya/v1/partner.grpc.pb.h"
#include "reflection_client.grpc.pb.h"
#include "services/pki.h"
#include "services/roles.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_pki.h"

namespace hawiya {
namespace {

using ::hawiya::testing::Ctx;

using ::grpc::StatusCode;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::shared_ptr<grpc::ChannelCredentials> ClientCredentials(
    const std::string& ca_pem, const services::KeyAndCert* client) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem;
  if (client != nullptr) {
    options.pem_private_key = client->key_pem;
    options.pem_cert_chain = client->cert_pem;
  }
  return grpc::SslCredentials(options);
}

grpc::Status Health(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::health::v1::HealthCheckResponse response;
  return grpc::health::v1::Health::NewStub(channel)->Check(
      Ctx().get(), grpc::health::v1::HealthCheckRequest(), &response);
}

// Every Hawiya RPC, called with a request that is harmless whoever makes
// it (empty or naming nobody): the status says whether the call got past
// access control.
using Channel = std::shared_ptr<grpc::Channel>;
std::map<std::string, std::function<grpc::Status(const Channel&)>> AllRpcs() {
  auto enrollment = [](const Channel& c) {
    return v1::EnrollmentService::NewStub(c);
  };
  auto match = [](const Channel& c) { return v1::MatchService::NewStub(c); };
  const std::string e = "/hawiya.v1.EnrollmentService/";
  const std::string m = "/hawiya.v1.MatchService/";
  return {
      {e + "Enroll",
       [=](const Channel& c) {
         v1::EnrollResponse r;
         return enrollment(c)->Enroll(Ctx().get(), v1::EnrollRequest(), &r);
       }},
      {e + "BatchEnroll",
       [=](const Channel& c) {
         v1::BatchEnrollResponse r;
         auto context = Ctx();
         auto writer = enrollment(c)->BatchEnroll(context.get(), &r);
         writer->WritesDone();
         return writer->Finish();
       }},
      {e + "GetPerson",
       [=](const Channel& c) {
         v1::GetPersonRequest q;
         q.set_subject_id("nobody");
         v1::Person r;
         return enrollment(c)->GetPerson(Ctx().get(), q, &r);
       }},
      {e + "UpdatePerson",
       [=](const Channel& c) {
         v1::Person r;
         return enrollment(c)->UpdatePerson(Ctx().get(),
                                            v1::UpdatePersonRequest(), &r);
       }},
      {e + "ReplaceTemplates",
       [=](const Channel& c) {
         v1::Person r;
         return enrollment(c)->ReplaceTemplates(
             Ctx().get(), v1::ReplaceTemplatesRequest(), &r);
       }},
      {e + "DeletePerson",
       [=](const Channel& c) {
         google::protobuf::Empty r;
         return enrollment(c)->DeletePerson(Ctx().get(),
                                            v1::DeletePersonRequest(), &r);
       }},
      {e + "ListPersons",
       [=](const Channel& c) {
         v1::ListPersonsResponse r;
         return enrollment(c)->ListPersons(Ctx().get(),
                                           v1::ListPersonsRequest(), &r);
       }},
      {m + "Verify",
       [=](const Channel& c) {
         v1::VerifyResponse r;
         return match(c)->Verify(Ctx().get(), v1::VerifyRequest(), &r);
       }},
      {m + "Identify",
       [=](const Channel& c) {
         v1::IdentifyResponse r;
         return match(c)->Identify(Ctx().get(), v1::IdentifyRequest(), &r);
       }},
      {"/hawiya.v1.AdminService/GetStats",
       [](const Channel& c) {
         v1::GetStatsResponse r;
         return v1::AdminService::NewStub(c)->GetStats(
             Ctx().get(), v1::GetStatsRequest(), &r);
       }},
      // Harmless too: rotating the data key of an empty store.
      {"/hawiya.v1.AdminService/RotateKey",
       [](const Channel& c) {
         v1::RotateKeyResponse r;
         return v1::AdminService::NewStub(c)->RotateKey(
             Ctx().get(), v1::RotateKeyRequest(), &r);
       }},
      {"/hawiya.v1.AdminService/GetSigningKeys",
       [](const Channel& c) {
         v1::GetSigningKeysResponse r;
         return v1::AdminService::NewStub(c)->GetSigningKeys(
             Ctx().get(), v1::GetSigningKeysRequest(), &r);
       }},
      {"/hawiya.v1.AdminService/RotateSigningKey",
       [](const Channel& c) {
         v1::RotateSigningKeyResponse r;
         return v1::AdminService::NewStub(c)->RotateSigningKey(
             Ctx().get(), v1::RotateSigningKeyRequest(), &r);
       }},
      // Past the access check, a partner without a data-sharing policy (the
      // default config has none) is PERMISSION_DENIED by the registry, with
      // another message than the access check's.
      {"/hawiya.v1.PartnerService/VerifyCivilStatus",
       [](const Channel& c) {
         v1::VerifyCivilStatusResponse r;
         return v1::PartnerService::NewStub(c)->VerifyCivilStatus(
             Ctx().get(), v1::VerifyCivilStatusRequest(), &r);
       }},
      {"/hawiya.v1.PartnerService/VerifyCivilStatusBatch",
       [](const Channel& c) {
         v1::VerifyCivilStatusBatchResponse r;
         return v1::PartnerService::NewStub(c)->VerifyCivilStatusBatch(
             Ctx().get(), v1::VerifyCivilStatusBatchRequest(), &r);
       }},
      {"/hawiya.v1.AdjudicationService/ListCases",
       [](const Channel& c) {
         v1::ListCasesResponse r;
         return v1::AdjudicationService::NewStub(c)->ListCases(
             Ctx().get(), v1::ListCasesRequest(), &r);
       }},
      {"/hawiya.v1.AdjudicationService/GetCase",
       [](const Channel& c) {
         v1::Case r;
         return v1::AdjudicationService::NewStub(c)->GetCase(
             Ctx().get(), v1::GetCaseRequest(), &r);
       }},
      {"/hawiya.v1.AdjudicationService/DecideCase",
       [](const Channel& c) {
         v1::Case r;
         return v1::AdjudicationService::NewStub(c)->DecideCase(
             Ctx().get(), v1::DecideCaseRequest(), &r);
       }},
      {"/hawiya.v1.AuditService/ListAuditRecords",
       [](const Channel& c) {
         v1::ListAuditRecordsResponse r;
         return v1::AuditService::NewStub(c)->ListAuditRecords(
             Ctx().get(), v1::ListAuditRecordsRequest(), &r);
       }},
      {"/hawiya.v1.AuditService/VerifyAuditLog",
       [](const Channel& c) {
         v1::VerifyAuditLogResponse r;
         return v1::AuditService::NewStub(c)->VerifyAuditLog(
             Ctx().get(), v1::VerifyAuditLogRequest(), &r);
       }},
  };
}

// The defaults of the issue, written out independently of the code.
bool Allowed(const std::string& role, const std::string& method) {
  if (method == "/hawiya.v1.EnrollmentService/GetPerson") {
    return role == "registrar" || role == "border";
  }
  if (absl::StartsWith(method, "/hawiya.v1.EnrollmentService/")) {
    return role == "registrar";
  }
  if (absl::StartsWith(method, "/hawiya.v1.MatchService/")) {
    return role == "border";
  }
  if (method == "/hawiya.v1.AdminService/GetSigningKeys") return true;
  if (absl::StartsWith(method, "/hawiya.v1.AdminService/")) {
    return role == "admin";
  }
  if (absl::StartsWith(method, "/hawiya.v1.PartnerService/")) {
    return role == "partner";
  }
  if (absl::StartsWith(method, "/hawiya.v1.AuditService/")) {
    return role == "auditor";
  }
  if (absl::StartsWith(method, "/hawiya.v1.AdjudicationService/")) {
    return role == "adjudicator";
  }
  return false;
}

// A server on mutual TLS with its own CA (made here, so that the tests can
// also sign certificates the development PKI would never hold).
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::NewTempDir("hawiya-tls-test");
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<testing::TestPki> pki = testing::TestPki::Create(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<testing::TestPki>(*std::move(pki));
    for (absl::string_view role : services::kRoles) {
      clients_[std::string(role)] = MustIssue(services::DevPrincipal(role));
    }
  }

  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = pki_->ServerArgs();
    args.insert(args.end(), extra.begin(), extra.end());
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::StartTls(HAWIYA_SERVER_PATH, dir_ + "/data",
                                         args);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  services::KeyAndCert MustIssue(const std::string& uri,
                                 const std::string& cn = "client") {
    absl::StatusOr<services::KeyAndCert> issued = pki_->Issue(uri, cn);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return issued.ok() ? *issued : services::KeyAndCert();
  }

  std::shared_ptr<grpc::Channel> ChannelAs(const services::KeyAndCert* client) {
    return server_->NewChannel(pki_->Credentials(client));
  }

  std::string dir_;
  std::unique_ptr<testing::TestPki> pki_;
  std::map<std::string, services::KeyAndCert> clients_;
  std::unique_ptr<testing::ServerProcess> server_;
};

TEST_F(TlsTest, EachRoleIsAcceptedAndMayCallHealthAndReflection) {
  StartServer();
  for (const auto& [role, client] : clients_) {
    SCOPED_TRACE(role);
    auto channel = ChannelAs(&client);
    const grpc::Status health = Health(channel);
    EXPECT_TRUE(health.ok())
        << health.error_code() << " " << health.error_message();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    auto stream = grpc::reflection::v1alpha::ServerReflection::NewStub(channel)
                      ->ServerReflectionInfo(&context);
    grpc::reflection::v1alpha::ServerReflectionRequest request;
    request.set_list_services("");
    grpc::reflection::v1alpha::ServerReflectionResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->Read(&response));
    stream->WritesDone();
    const grpc::Status reflection = stream->Finish();
    EXPECT_TRUE(reflection.ok()) << reflection.error_message();
  }
}

TEST_F(TlsTest, RoleMatrixOfTheDefaultConfig) {
  StartServer();
  const auto rpcs = AllRpcs();
  for (const auto& [role, client] : clients_) {
    auto channel = ChannelAs(&client);
    for (const auto& [method, call] : rpcs) {
      SCOPED_TRACE(absl::StrCat(role, " ", method));
      const grpc::Status status = call(channel);
      if (Allowed(role, method)) {
        // Past access control: the handler answered (INVALID_ARGUMENT,
        // NOT_FOUND, OK...).
        if (absl::StartsWith(method, "/hawiya.v1.PartnerService/")) {
          EXPECT_EQ(status.error_message(),
                    "no data-sharing policy for principal "
                    "hawiya://dev/partner (ServerConfig.partner_policies)");
        } else {
          EXPECT_NE(status.error_code(), StatusCode::PERMISSION_DENIED)
              << status.error_message();
        }
        EXPECT_NE(status.error_code(), StatusCode::UNAUTHENTICATED);
        EXPECT_NE(status.error_code(), StatusCode::UNAVAILABLE);
      } else {
        EXPECT_EQ(status.error_code(), StatusCode::PERMISSION_DENIED);
        EXPECT_EQ(status.error_message(),
                  absl::StrCat("principal hawiya://dev/", role,
                               " (roles: ", role, ") may not call ", method));
      }
    }
  }
}

TEST_F(TlsTest, UnknownPrincipalIsUnauthenticated) {
  StartServer();
  for (const services::KeyAndCert& client :
       {MustIssue("hawiya://dev/nobody"),
        // No URI SAN: the CN is the principal, and no CN is mapped.
        MustIssue("", "admin")}) {
    auto channel = ChannelAs(&client);
    const grpc::Status health = Health(channel);
    EXPECT_EQ(health.error_code(), StatusCode::UNAUTHENTICATED)
        << health.error_message();
    v1::GetStatsResponse stats;
    EXPECT_EQ(v1::AdminService::NewStub(channel)
                  ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                  .error_code(),
              StatusCode::UNAUTHENTICATED);
  }
}

TEST_F(TlsTest, ConfiguredPrincipalGetsItsRoles) {
  const std::string config = dir_ + "/access.textproto";
  WriteFile(config,
            "principals { principal: \"hawiya://partner/SAU-MOI\" "
            "roles: \"partner\" roles: \"admin\" }\n"
            "principals { principal: \"gate-7\" roles: \"border\" }\n");
  StartServer({"--config=" + config});
  const services::KeyAndCert moi = MustIssue("hawiya://partner/SAU-MOI");
  v1::GetStatsResponse stats;
  EXPECT_TRUE(v1::AdminService::NewStub(ChannelAs(&moi))
                  ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                  .ok());
  const grpc::Status denied =
      AllRpcs()["/hawiya.v1.MatchService/Identify"](ChannelAs(&moi));
  EXPECT_EQ(denied.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied.error_message(),
            "principal hawiya://partner/SAU-MOI (roles: admin, partner) may "
            "not call /hawiya.v1.MatchService/Identify");
  // A CN principal (no URI SAN).
  const services::KeyAndCert gate = MustIssue("", "gate-7");
  EXPECT_EQ(AllRpcs()["/hawiya.v1.MatchService/Identify"](ChannelAs(&gate))
                .error_code(),
            StatusCode::INVALID_ARGUMENT);  // empty request, past the check
  // The development principals are not in this config.
  EXPECT_EQ(Health(ChannelAs(&clients_["admin"])).error_code(),
            StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, HandshakeRefusesMissingSelfSignedAndExpiredCertificates) {
  StartServer();
  services::CertSpec spec;
  spec.common_name = "admin";
  spec.uris = {services::DevPrincipal("admin")};
  spec.client = true;
  absl::StatusOr<services::KeyAndCert> self_signed = services::SelfSigned(spec);
  ASSERT_TRUE(self_signed.ok());
  spec.not_before = absl::Now() - absl::Hours(48);
  spec.not_after = absl::Now() - absl::Hours(24);
  absl::StatusOr<services::KeyAndCert> expired = pki_->ca().Issue(spec);
  ASSERT_TRUE(expired.ok());

  struct Case {
    const char* name;
    const services::KeyAndCert* client;
  };
  for (const Case& c :
       {Case{"no client certificate", nullptr},
        Case{"self-signed", &*self_signed}, Case{"expired", &*expired}}) {
    SCOPED_TRACE(c.name);
    const grpc::Status status = Health(ChannelAs(c.client));
    // The handshake fails: the call never reaches the server.
    EXPECT_EQ(status.error_code(), StatusCode::UNAVAILABLE)
        << status.error_message();
  }
  // Plaintext to a TLS port fails too.
  EXPECT_EQ(Health(server_->NewChannel()).error_code(),
            StatusCode::UNAVAILABLE);
  // ... while the same server still serves a good certificate.
  EXPECT_TRUE(Health(ChannelAs(&clients_["auditor"])).ok());
}

// Runs a command line; returns its exit code.
int RunShell(const std::string& command) {
  const int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(TlsServerTest, FlagsAreChecked) {
  const std::string dir = testing::NewTempDir("hawiya-tls-flags");
  const std::string server =
      absl::StrCat(HAWIYA_SERVER_PATH, " --data_dir=", dir, "/data --listen=");
  EXPECT_EQ(RunShell(server + "0.0.0.0:0 --insecure"), 2);
  EXPECT_EQ(RunShell(server + "127.0.0.1:0 --insecure --tls_cert=x.pem"), 2);
  EXPECT_EQ(RunShell(server + "127.0.0.1:0 --tls_cert=x.pem"), 2);
  EXPECT_EQ(
      RunShell(server + "127.0.0.1:0 --tls_cert=x --tls_key=y --client_ca=z"),
      2);
  // None of them wrote a development PKI.
  EXPECT_FALSE(std::filesystem::exists(dir + "/data/pki"));
  std::filesystem::remove_all(dir);
}

TEST(TlsServerTest, DevelopmentPkiWrittenOnFirstStartAndReused) {
  const std::string dir = testing::NewTempDir("hawiya-dev-pki");
  const std::string data = dir + "/data";
  const std::string pki = data + "/pki";
  const std::string log = dir + "/server.log";
  std::string ca_pem;
  for (int start = 0; start < 2; ++start) {
    SCOPED_TRACE(start);
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::StartTls(HAWIYA_SERVER_PATH, data, {}, log);
    ASSERT_TRUE(server.ok()) << server.status();
    absl::StatusOr<std::string> ca = services::ReadFile(pki + "/ca.pem");
    ASSERT_TRUE(ca.ok());
    if (start == 0) ca_pem = *ca;
    EXPECT_EQ(*ca, ca_pem);  // the second start reuses it
    for (absl::string_view role : services::kRoles) {
      const services::DevPkiPaths paths =
          services::DevPkiRolePaths(pki, std::string(role));
      services::KeyAndCert client{*services::ReadFile(paths.key),
                                  *services::ReadFile(paths.cert)};
      EXPECT_TRUE(
          Health((*server)->NewChannel(ClientCredentials(ca_pem, &client)))
              .ok())
          << role;
    }
    const services::DevPkiPaths admin = services::DevPkiRolePaths(pki, "admin");
    services::KeyAndCert client{*services::ReadFile(admin.key),
                                *services::ReadFile(admin.cert)};
    v1::GetStatsResponse stats;
    EXPECT_TRUE(v1::AdminService::NewStub(
                    (*server)->NewChannel(ClientCredentials(ca_pem, &client)))
                    ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                    .ok());
  }
  const std::string text = *services::ReadFile(log);
  EXPECT_THAT(text, HasSubstr("wrote the development PKI in " + pki));
  EXPECT_THAT(text, HasSubstr("using the development PKI in " + pki));
  std::filesystem::remove_all(dir);
}

TEST(TlsCliTest, DevPkiCommandAndRoleOfEachCommand) {
  const std::string dir = testing::NewTempDir("hawiya-tls-cli");
  const std::string cli = HAWIYA_CLI_PATH;
  EXPECT_EQ(RunShell(cli + " dev-pki"), 2);
  ASSERT_EQ(RunShell(cli + " dev-pki --out=" + dir + "/made"), 0);
  EXPECT_EQ(RunShell(cli + " dev-pki --out=" + dir + "/made"), 2);  // exists
  for (const char* name : {"ca.pem", "server.pem", "server.key", "admin.pem",
                           "admin.key", "registrar.key", "partner.pem"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/made/" + name)) << name;
  }

  // The server uses that folder through the TLS flags; the CLI finds its
  // certificates with --pki_dir.
  const std::string made = dir + "/made";
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::StartTls(HAWIYA_SERVER_PATH, dir + "/data",
                                       {"--tls_cert=" + made + "/server.pem",
                                        "--tls_key=" + made + "/server.key",
                                        "--client_ca=" + made + "/ca.pem"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string at =
      absl::StrCat(" --server=", (*server)->address(), " --pki_dir=", made);
  const std::string person =
      absl::StrCat(HAWIYA_SOURCE_DIR, "/deploy/examples/person.json");
  EXPECT_EQ(RunShell(cli + " health" + at), 0);
  EXPECT_EQ(RunShell(cli + " stats" + at), 0);
  EXPECT_EQ(RunShell(cli + " enroll --person=" + person + at), 0);  // registrar
  EXPECT_EQ(
      RunShell(cli + " get --national_id=289031501234 --country=KWT" + at), 0);
  EXPECT_EQ(RunShell(cli + " list" + at), 0);
  // Another role's certificate: PERMISSION_DENIED (7).
  EXPECT_EQ(RunShell(cli + " stats --role=border" + at), 10 + 7);
  EXPECT_EQ(RunShell(cli +
                     " get --role=border --national_id=289031501234 "
                     "--country=KWT" +
                     at),
            0);
  // Explicit files.
  EXPECT_EQ(
      RunShell(cli + " stats --server=" + (*server)->address() +
               " --cert=" + made + "/admin.pem --key=" + made +
               "/admin.key --ca=" + made + "/ca.pem --pki_dir=/nonexistent"),
      0);
  EXPECT_EQ(RunShell(cli + " stats --cert=" + made + "/admin.pem" + at), 2);
  EXPECT_EQ(RunShell(cli + " stats --role=nobody" + at), 2);
  // No certificates where it looks: an input error, not a plaintext retry.
  EXPECT_EQ(RunShell(cli + " stats --server=" + (*server)->address() +
                     " --pki_dir=" + dir + "/none"),
            3);
  // Plaintext to the TLS server: UNAVAILABLE (14).
  EXPECT_EQ(RunShell(cli + " health --insecure --timeout=5s --server=" +
                     (*server)->address()),
            10 + 14);
  server->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hawiya
