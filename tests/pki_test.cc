// The development PKI (services/pki.h) checked with OpenSSL's own
// verifier, and the access policy (services/auth.h) on its own.
#include "services/pki.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/auth.h"
#include "services/config.h"
#include "services/roles.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr ParseCert(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::string MustRead(const std::string& path) {
  absl::StatusOr<std::string> text = services::ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

// X509_V_OK if `cert_pem` chains to `ca_pem` for `purpose`
// (X509_PURPOSE_SSL_CLIENT / _SERVER), else OpenSSL's verify error.
int Verify(const std::string& ca_pem, const std::string& cert_pem,
           int purpose) {
  X509Ptr ca = ParseCert(ca_pem);
  X509Ptr cert = ParseCert(cert_pem);
  if (ca == nullptr || cert == nullptr) return -1;
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(
      X509_STORE_new(), &X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(
      X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  if (X509_verify_cert(ctx.get()) == 1) return X509_V_OK;
  return X509_STORE_CTX_get_error(ctx.get());
}

// "DNS:localhost", "IP:127.0.0.1", "URI:hawiya://dev/admin".
std::vector<std::string> Sans(const std::string& cert_pem) {
  std::vector<std::string> sans;
  X509Ptr cert = ParseCert(cert_pem);
  if (cert == nullptr) return sans;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return sans;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    int type = 0;
    ASN1_STRING* value =
        static_cast<ASN1_STRING*>(GENERAL_NAME_get0_value(name, &type));
    const std::string bytes(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
        static_cast<size_t>(ASN1_STRING_length(value)));
    if (type == GEN_DNS) sans.push_back("DNS:" + bytes);
    if (type == GEN_URI) sans.push_back("URI:" + bytes);
    if (type == GEN_IPADD) {
      sans.push_back(
          bytes.size() == 4
              ? absl::StrCat(
                    "IP:", static_cast<int>(static_cast<uint8_t>(bytes[0])),
                    ".", static_cast<int>(static_cast<uint8_t>(bytes[1])), ".",
                    static_cast<int>(static_cast<uint8_t>(bytes[2])), ".",
                    static_cast<int>(static_cast<uint8_t>(bytes[3])))
              : "IP:v6");
    }
  }
  GENERAL_NAMES_free(names);
  return sans;
}

int Mode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 0777);
}

class DevPkiTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::NewTempDir("hawiya-pki-test"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(DevPkiTest, FilesModesChainsAndSans) {
  const std::string pki = dir_ + "/data/pki";  // parents made as needed
  ASSERT_TRUE(services::WriteDevPki(pki).ok());
  EXPECT_EQ(Mode(pki), 0700);
  const std::string ca = MustRead(pki + "/ca.pem");
  EXPECT_EQ(Mode(pki + "/ca.pem"), 0644);
  // The CA's key is not kept.
  EXPECT_FALSE(std::filesystem::exists(pki + "/ca.key"));

  const services::DevPkiPaths server = services::DevPkiServerPaths(pki);
  EXPECT_EQ(Mode(server.key), 0600);
  const std::string server_pem = MustRead(server.cert);
  EXPECT_EQ(Verify(ca, server_pem, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_THAT(Sans(server_pem),
              ElementsAre("DNS:localhost", "IP:127.0.0.1", "IP:v6"));

  for (absl::string_view role : services::kRoles) {
    SCOPED_TRACE(role);
    const services::DevPkiPaths paths =
        services::DevPkiRolePaths(pki, std::string(role));
    EXPECT_EQ(Mode(paths.key), 0600);
    EXPECT_EQ(Mode(paths.cert), 0644);
    const std::string pem = MustRead(paths.cert);
    EXPECT_EQ(Verify(ca, pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    // A client certificate is not a server's.
    EXPECT_NE(Verify(ca, pem, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    EXPECT_THAT(Sans(pem), ElementsAre("URI:" + services::DevPrincipal(role)));
    // The key belongs to the certificate.
    const std::string key_pem = MustRead(paths.key);
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())),
        &BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr),
        &EVP_PKEY_free);
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(X509_check_private_key(ParseCert(pem).get(), key.get()), 1);
  }
}

TEST_F(DevPkiTest, EnsureWritesOnceThenReuses) {
  const std::string pki = dir_ + "/pki";
  absl::StatusOr<bool> wrote = services::EnsureDevPki(pki);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote);
  const std::string ca = MustRead(pki + "/ca.pem");
  const std::string admin = MustRead(pki + "/admin.key");
  wrote = services::EnsureDevPki(pki);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_FALSE(*wrote);
  EXPECT_EQ(MustRead(pki + "/ca.pem"), ca);
  EXPECT_EQ(MustRead(pki + "/admin.key"), admin);
  EXPECT_EQ(services::WriteDevPki(pki).code(),
            absl::StatusCode::kAlreadyExists);
  // No temporary folder is left beside it.
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1);

  std::filesystem::remove(pki + "/auditor.key");
  wrote = services::EnsureDevPki(pki);
  EXPECT_EQ(wrote.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(wrote.status().message()), HasSubstr("auditor.key"));
}

TEST(PkiTest, ExpiredSelfSignedAndForeignCertificatesDoNotVerify) {
  services::CertSpec ca_spec;
  ca_spec.common_name = "test CA";
  absl::StatusOr<services::CertificateAuthority> ca =
      services::CertificateAuthority::Create(ca_spec);
  ASSERT_TRUE(ca.ok()) << ca.status();
  services::CertSpec spec;
  spec.common_name = "admin";
  spec.uris = {"hawiya://dev/admin"};
  spec.client = true;
  absl::StatusOr<services::KeyAndCert> good = ca->Issue(spec);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(Verify(ca->cert_pem(), good->cert_pem, X509_PURPOSE_SSL_CLIENT),
            X509_V_OK);

  spec.not_before = absl::Now() - absl::Hours(48);
  spec.not_after = absl::Now() - absl::Hours(24);
  absl::StatusOr<services::KeyAndCert> expired = ca->Issue(spec);
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(Verify(ca->cert_pem(), expired->cert_pem, X509_PURPOSE_SSL_CLIENT),
            X509_V_ERR_CERT_HAS_EXPIRED);

  services::CertSpec fresh;
  fresh.common_name = "admin";
  fresh.uris = {"hawiya://dev/admin"};
  fresh.client = true;
  absl::StatusOr<services::KeyAndCert> self = services::SelfSigned(fresh);
  ASSERT_TRUE(self.ok());
  EXPECT_NE(Verify(ca->cert_pem(), self->cert_pem, X509_PURPOSE_SSL_CLIENT),
            X509_V_OK);
  absl::StatusOr<services::CertificateAuthority> other =
      services::CertificateAuthority::Create(ca_spec);
  ASSERT_TRUE(other.ok());
  absl::StatusOr<services::KeyAndCert> foreign = other->Issue(fresh);
  ASSERT_TRUE(foreign.ok());
  EXPECT_NE(Verify(ca->cert_pem(), foreign->cert_pem, X509_PURPOSE_SSL_CLIENT),
            X509_V_OK);
}

TEST(PkiTest, CheckTlsFilesSaysWhichIsWrong) {
  services::CertSpec spec;
  spec.common_name = "test CA";
  absl::StatusOr<services::CertificateAuthority> ca =
      services::CertificateAuthority::Create(spec);
  ASSERT_TRUE(ca.ok());
  spec.server = true;
  absl::StatusOr<services::KeyAndCert> a = ca->Issue(spec);
  absl::StatusOr<services::KeyAndCert> b = ca->Issue(spec);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(
      services::CheckTlsFiles(a->cert_pem, a->key_pem, ca->cert_pem()).ok());
  EXPECT_THAT(std::string(services::CheckTlsFiles(a->cert_pem, b->key_pem,
                                                  ca->cert_pem())
                              .message()),
              HasSubstr("tls_key: not the key"));
  EXPECT_THAT(std::string(services::CheckTlsFiles(a->key_pem, a->key_pem,
                                                  ca->cert_pem())
                              .message()),
              HasSubstr("tls_cert"));
  EXPECT_THAT(
      std::string(
          services::CheckTlsFiles(a->cert_pem, a->key_pem, "junk").message()),
      HasSubstr("client_ca"));
}

// An AuthContext holding given properties, as the TLS handshake would.
class FakeAuthContext : public grpc::AuthContext {
 public:
  explicit FakeAuthContext(std::multimap<std::string, std::string> properties)
      : properties_(std::move(properties)) {}
  bool IsPeerAuthenticated() const override { return !properties_.empty(); }
  std::vector<grpc::string_ref> GetPeerIdentity() const override { return {}; }
  std::string GetPeerIdentityPropertyName() const override { return ""; }
  std::vector<grpc::string_ref> FindPropertyValues(
      const std::string& name) const override {
    std::vector<grpc::string_ref> values;
    auto [begin, end] = properties_.equal_range(name);
    for (auto it = begin; it != end; ++it) values.emplace_back(it->second);
    return values;
  }
  grpc::AuthPropertyIterator begin() const override { return Iterator(); }
  grpc::AuthPropertyIterator end() const override { return Iterator(); }
  void AddProperty(const std::string&, const grpc::string_ref&) override {}
  bool SetPeerIdentityPropertyName(const std::string&) override {
    return false;
  }

 private:
  struct Iterator : grpc::AuthPropertyIterator {};
  std::multimap<std::string, std::string> properties_;
};

FakeAuthContext Auth(
    std::initializer_list<std::pair<const std::string, std::string>> p) {
  return FakeAuthContext(std::multimap<std::string, std::string>(p));
}

TEST(AccessPolicyTest, PrincipalIsFirstUriSanElseCommonName) {
  EXPECT_EQ(services::AccessPolicy::PrincipalOf(
                Auth({{"peer_uri", "hawiya://partner/SAU-MOI"},
                      {"peer_uri", "hawiya://dev/admin"},
                      {"x509_common_name", "moi"}})),
            "hawiya://partner/SAU-MOI");
  // x509_subject_alternative_name holds every SAN kind (a DNS or email SAN
  // may spell a URI): never read. Without a URI SAN the CN is the principal.
  EXPECT_EQ(services::AccessPolicy::PrincipalOf(
                Auth({{"x509_subject_alternative_name", "gate1.example"},
                      {"x509_subject_alternative_name", "hawiya://dev/admin"},
                      {"peer_dns", "hawiya://dev/admin"},
                      {"peer_email", "hawiya://dev/admin"},
                      {"x509_common_name", "gate1"}})),
            "gate1");
  EXPECT_EQ(services::AccessPolicy::PrincipalOf(
                Auth({{"x509_common_name", "gate1"}})),
            "gate1");
  EXPECT_EQ(services::AccessPolicy::PrincipalOf(Auth({})), "");
}

TEST(AccessPolicyTest, DefaultsAuthenticateDevPrincipalsAndAuthorize) {
  absl::StatusOr<services::AccessPolicy> policy =
      services::AccessPolicy::FromConfig(config::ServerConfig());
  ASSERT_TRUE(policy.ok()) << policy.status();
  absl::StatusOr<services::Caller> border =
      policy->Authenticate(Auth({{"peer_uri", "hawiya://dev/border"}}));
  ASSERT_TRUE(border.ok());
  EXPECT_EQ(border->principal, "hawiya://dev/border");
  EXPECT_THAT(border->roles, ElementsAre("border"));
  EXPECT_TRUE(
      policy->Authorize(*border, "/hawiya.v1.MatchService/Identify").ok());
  EXPECT_TRUE(
      policy->Authorize(*border, "/hawiya.v1.EnrollmentService/GetPerson")
          .ok());
  EXPECT_TRUE(policy->Authorize(*border, "/grpc.health.v1.Health/Check").ok());
  const absl::Status denied =
      policy->Authorize(*border, "/hawiya.v1.EnrollmentService/Enroll");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.message(),
            "principal hawiya://dev/border (roles: border) may not call "
            "/hawiya.v1.EnrollmentService/Enroll");
  // Methods nobody listed are denied.
  EXPECT_EQ(
      policy->Authorize(*border, "/hawiya.v1.MatchService/Frobnicate").code(),
      absl::StatusCode::kPermissionDenied);

  EXPECT_EQ(policy->Authenticate(Auth({{"peer_uri", "hawiya://dev/nobody"}}))
                .status()
                .code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(policy->Authenticate(Auth({})).status().code(),
            absl::StatusCode::kUnauthenticated);
}

// The role an audit record names: the caller's role the method lists, "*"
// for a method open to any caller, none when refused.
TEST(AccessPolicyTest, RoleForNamesTheRoleThatAllowsTheCall) {
  config::ServerConfig config;
  config::PrincipalRoles* both = config.add_principals();
  both->set_principal("hawiya://ops/both");
  both->add_roles("auditor");
  both->add_roles("admin");
  absl::StatusOr<services::AccessPolicy> policy =
      services::AccessPolicy::FromConfig(config);
  ASSERT_TRUE(policy.ok()) << policy.status();
  const services::Caller caller{"hawiya://ops/both", {"admin", "auditor"}};
  EXPECT_EQ(policy->RoleFor(caller, "/hawiya.v1.AdminService/GetStats"),
            "admin");
  EXPECT_EQ(policy->RoleFor(caller, "/hawiya.v1.AuditService/ListAuditRecords"),
            "auditor");
  EXPECT_EQ(policy->RoleFor(caller, "/grpc.health.v1.Health/Check"), "*");
  EXPECT_EQ(policy->RoleFor(caller, "/hawiya.v1.MatchService/Identify"), "");
  EXPECT_EQ(policy->RoleFor(caller, "/hawiya.v1.MatchService/Frobnicate"), "");
}

TEST(AccessPolicyTest, ConfigReplacesDefaultsAndIsChecked) {
  config::ServerConfig config;
  config::PrincipalRoles* moi = config.add_principals();
  moi->set_principal("hawiya://partner/SAU-MOI");
  moi->add_roles("partner");
  moi->add_roles("border");
  config::MethodRoles* service = config.add_methods();
  service->set_method("/hawiya.v1.MatchService/*");
  service->add_roles("partner");
  config::MethodRoles* identify = config.add_methods();
  identify->set_method("/hawiya.v1.MatchService/Identify");
  identify->add_roles("admin");
  absl::StatusOr<services::AccessPolicy> policy =
      services::AccessPolicy::FromConfig(config);
  ASSERT_TRUE(policy.ok()) << policy.status();
  // The dev principals are gone once principals are configured.
  EXPECT_EQ(policy->Authenticate(Auth({{"peer_uri", "hawiya://dev/admin"}}))
                .status()
                .code(),
            absl::StatusCode::kUnauthenticated);
  absl::StatusOr<services::Caller> caller =
      policy->Authenticate(Auth({{"peer_uri", "hawiya://partner/SAU-MOI"}}));
  ASSERT_TRUE(caller.ok());
  EXPECT_THAT(caller->roles, ElementsAre("border", "partner"));
  EXPECT_TRUE(
      policy->Authorize(*caller, "/hawiya.v1.MatchService/Verify").ok());
  // The full name wins over the service's wildcard.
  EXPECT_THAT(
      std::string(policy->Authorize(*caller, "/hawiya.v1.MatchService/Identify")
                      .message()),
      HasSubstr("(roles: border, partner)"));
  // Health is not listed any more: denied.
  EXPECT_FALSE(policy->Authorize(*caller, "/grpc.health.v1.Health/Check").ok());

  config::ServerConfig bad = config;
  bad.mutable_principals(0)->add_roles("superuser");
  EXPECT_THAT(
      std::string(services::AccessPolicy::FromConfig(bad).status().message()),
      HasSubstr("principals[0].roles: unknown role 'superuser'"));
  bad = config;
  *bad.add_principals() = config.principals(0);
  EXPECT_THAT(
      std::string(services::AccessPolicy::FromConfig(bad).status().message()),
      HasSubstr("principals[1].principal"));
  bad = config;
  bad.mutable_methods(0)->set_method("hawiya.v1.MatchService.Verify");
  EXPECT_THAT(
      std::string(services::AccessPolicy::FromConfig(bad).status().message()),
      HasSubstr("methods[0].method"));
}

TEST(AccessPolicyTest, InsecureCallerHoldsEveryRole) {
  absl::StatusOr<services::AccessPolicy> policy =
      services::AccessPolicy::FromConfig(config::ServerConfig(),
                                         /*insecure=*/true);
  ASSERT_TRUE(policy.ok());
  absl::StatusOr<services::Caller> caller = policy->Authenticate(Auth({}));
  ASSERT_TRUE(caller.ok());
  EXPECT_EQ(caller->principal, "hawiya://dev/insecure");
  EXPECT_THAT(caller->roles, UnorderedElementsAreArray(services::kRoles.begin(),
                                                       services::kRoles.end()));
}

TEST(AccessPolicyTest, DeployConfigSpellsOutTheDefaults) {
  absl::StatusOr<config::ServerConfig> config = services::LoadConfig(
      absl::StrCat(HAWIYA_SOURCE_DIR, "/deploy/hawiya.textproto"));
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<std::string> principals;
  for (const config::PrincipalRoles& p : config->principals()) {
    principals.push_back(p.ShortDebugString());
  }
  std::vector<std::string> defaults;
  for (const config::PrincipalRoles& p :
       services::AccessPolicy::DefaultPrincipals()) {
    defaults.push_back(p.ShortDebugString());
  }
  EXPECT_THAT(principals, UnorderedElementsAreArray(defaults));
  std::vector<std::string> methods;
  for (const config::MethodRoles& m : config->methods()) {
    methods.push_back(m.ShortDebugString());
  }
  defaults.clear();
  for (const config::MethodRoles& m :
       services::AccessPolicy::DefaultMethods()) {
    defaults.push_back(m.ShortDebugString());
  }
  EXPECT_THAT(methods, UnorderedElementsAreArray(defaults));
}

}  // namespace
}  // namespace hawiya
