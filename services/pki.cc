#include "services/pki.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/roles.h"

namespace hawiya::services {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BnDeleter {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ExtDeleter {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using Cert = std::unique_ptr<X509, X509Deleter>;

// The failed step and OpenSSL's queued reason (the queue is emptied).
absl::Status OpenSslError(absl::string_view step) {
  std::string reason;
  while (unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof(text));
    reason = text;  // the last one is the outermost
  }
  return absl::InternalError(absl::StrCat("pki: ", step, " failed",
                                          reason.empty() ? "" : ": ", reason));
}

absl::StatusOr<Pkey> NewKey() {
  Pkey key(EVP_EC_gen("P-256"));
  if (key == nullptr) return OpenSslError("EC key generation");
  return key;
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid,
                          const std::string& value) {
  std::unique_ptr<X509_EXTENSION, ExtDeleter> ext(
      X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslError(absl::StrCat("extension ", OBJ_nid2sn(nid)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return OpenSslError("PEM certificate");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return OpenSslError("PEM key");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// A certificate for `key`, signed by `issuer_key`; `issuer` null means
// self-signed. `ca` makes it a CA certificate.
absl::StatusOr<Cert> MakeCert(const CertSpec& spec, EVP_PKEY* key, bool ca,
                              X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (cert == nullptr) return OpenSslError("X509_new");
  X509* x = cert.get();
  // 127 random bits: positive, unique in practice (RFC 5280 allows 20 bytes).
  std::unique_ptr<BIGNUM, BnDeleter> serial(BN_new());
  if (serial == nullptr ||
      BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x)) == nullptr) {
    return OpenSslError("serial number");
  }
  X509_NAME* name = X509_get_subject_name(x);
  if (X509_set_version(x, X509_VERSION_3) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(x), absl::ToTimeT(spec.not_before)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x), absl::ToTimeT(spec.not_after)) ==
          nullptr ||
      X509_set_pubkey(x, key) != 1 ||
      X509_NAME_add_entry_by_txt(
          name, "O", MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>("Hawiya"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(
          name, "CN", MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
          -1, 0) != 1 ||
      X509_set_issuer_name(
          x, issuer != nullptr ? X509_get_subject_name(issuer) : name) != 1) {
    return OpenSslError("certificate fields");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> extensions;
  if (ca) {
    extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                  {NID_subject_key_identifier, "hash"}};
  } else {
    extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, "critical,digitalSignature"},
                  {NID_subject_key_identifier, "hash"}};
    if (issuer != nullptr) {
      extensions.push_back({NID_authority_key_identifier, "keyid:always"});
    }
    std::vector<std::string> usages;
    if (spec.server) usages.push_back("serverAuth");
    if (spec.client) usages.push_back("clientAuth");
    if (!usages.empty()) {
      extensions.push_back({NID_ext_key_usage, absl::StrJoin(usages, ",")});
    }
    std::vector<std::string> names;
    for (const std::string& dns : spec.dns_names) {
      names.push_back(absl::StrCat("DNS:", dns));
    }
    for (const std::string& ip : spec.ip_addresses) {
      names.push_back(absl::StrCat("IP:", ip));
    }
    for (const std::string& uri : spec.uris) {
      names.push_back(absl::StrCat("URI:", uri));
    }
    for (const std::string& email : spec.emails) {
      names.push_back(absl::StrCat("email:", email));
    }
    if (!names.empty()) {
      extensions.push_back({NID_subject_alt_name, absl::StrJoin(names, ",")});
    }
  }
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = AddExtension(x, &ctx, nid, value); !s.ok()) return s;
  }
  if (X509_sign(x, issuer_key, EVP_sha256()) == 0) {
    return OpenSslError("signing");
  }
  return cert;
}

absl::StatusOr<KeyAndCert> ToPem(EVP_PKEY* key, X509* cert) {
  absl::StatusOr<std::string> key_pem = KeyPem(key);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = CertPem(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  return KeyAndCert{*std::move(key_pem), *std::move(cert_pem)};
}

std::string Errno(absl::string_view what, const std::string& path) {
  return absl::StrCat(what, " ", path, ": ", std::strerror(errno));
}

}  // namespace

struct CertificateAuthority::Keys {
  Pkey key;
  Cert cert;
};

CertificateAuthority::CertificateAuthority(std::unique_ptr<Keys> keys,
                                           std::string cert_pem)
    : keys_(std::move(keys)), cert_pem_(std::move(cert_pem)) {}
CertificateAuthority::CertificateAuthority(CertificateAuthority&&) noexcept =
    default;
CertificateAuthority& CertificateAuthority::operator=(
    CertificateAuthority&&) noexcept = default;
CertificateAuthority::~CertificateAuthority() = default;

absl::StatusOr<CertificateAuthority> CertificateAuthority::Create(
    const CertSpec& spec) {
  auto keys = std::make_unique<Keys>();
  absl::StatusOr<Pkey> key = NewKey();
  if (!key.ok()) return key.status();
  keys->key = *std::move(key);
  absl::StatusOr<Cert> cert =
      MakeCert(spec, keys->key.get(), /*ca=*/true, nullptr, keys->key.get());
  if (!cert.ok()) return cert.status();
  keys->cert = *std::move(cert);
  absl::StatusOr<std::string> pem = CertPem(keys->cert.get());
  if (!pem.ok()) return pem.status();
  return CertificateAuthority(std::move(keys), *std::move(pem));
}

absl::StatusOr<KeyAndCert> CertificateAuthority::Issue(
    const CertSpec& spec) const {
  absl::StatusOr<Pkey> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Cert> cert = MakeCert(spec, key->get(), /*ca=*/false,
                                       keys_->cert.get(), keys_->key.get());
  if (!cert.ok()) return cert.status();
  return ToPem(key->get(), cert->get());
}

absl::StatusOr<KeyAndCert> SelfSigned(const CertSpec& spec) {
  absl::StatusOr<Pkey> key = NewKey();
  if (!key.ok()) return key.status();
  absl::StatusOr<Cert> cert =
      MakeCert(spec, key->get(), /*ca=*/false, nullptr, key->get());
  if (!cert.ok()) return cert.status();
  return ToPem(key->get(), cert->get());
}

absl::Status CheckTlsFiles(const std::string& cert_pem,
                           const std::string& key_pem,
                           const std::string& ca_pem) {
  auto bio = [](const std::string& pem) {
    return std::unique_ptr<BIO, BioDeleter>(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  };
  Cert cert(PEM_read_bio_X509(bio(cert_pem).get(), nullptr, nullptr, nullptr));
  Pkey key(
      PEM_read_bio_PrivateKey(bio(key_pem).get(), nullptr, nullptr, nullptr));
  Cert ca(PEM_read_bio_X509(bio(ca_pem).get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError("tls_cert: no PEM certificate");
  }
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        "tls_key: no PEM private key (or it is encrypted)");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "tls_key: not the key of tls_cert's certificate");
  }
  if (ca == nullptr) {
    return absl::InvalidArgumentError("client_ca: no PEM certificate");
  }
  return absl::OkStatus();
}

DevPkiPaths DevPkiServerPaths(const std::string& dir) {
  return {dir + "/ca.pem", dir + "/server.pem", dir + "/server.key"};
}

DevPkiPaths DevPkiRolePaths(const std::string& dir, const std::string& role) {
  return {dir + "/ca.pem", absl::StrCat(dir, "/", role, ".pem"),
          absl::StrCat(dir, "/", role, ".key")};
}

absl::Status WriteFileAtomic(const std::string& path,
                             const std::string& contents, int mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return absl::InternalError(Errno("cannot create", tmp));
  // The umask may have taken bits away; never adds any to a key's 0600.
  bool ok = ::fchmod(fd, static_cast<mode_t>(mode)) == 0;
  size_t done = 0;
  while (ok && done < contents.size()) {
    const ssize_t n =
        ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const std::string failure = ok ? "" : Errno("cannot write", tmp);
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return absl::InternalError(failure);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = Errno("cannot rename into", path);
    ::unlink(tmp.c_str());
    return absl::InternalError(why);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status WriteDevPki(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::exists(dir, error)) {
    return absl::AlreadyExistsError(absl::StrCat(dir, " already exists"));
  }
  const fs::path parent = fs::path(dir).parent_path();
  if (!parent.empty()) fs::create_directories(parent, error);
  // mkdtemp makes it 0700, which the PKI folder keeps.
  std::string tmp = dir + ".tmp-XXXXXX";
  if (::mkdtemp(tmp.data()) == nullptr) {
    return absl::InternalError(Errno("cannot create", tmp));
  }
  auto written = [&]() -> absl::Status {
    CertSpec ca_spec;
    ca_spec.common_name = "Hawiya development CA";
    absl::StatusOr<CertificateAuthority> ca =
        CertificateAuthority::Create(ca_spec);
    if (!ca.ok()) return ca.status();
    std::vector<std::pair<std::string, KeyAndCert>> files;
    CertSpec server;
    server.common_name = "hawiya-server";
    server.dns_names = {"localhost"};
    server.ip_addresses = {"127.0.0.1", "::1"};
    server.server = true;
    absl::StatusOr<KeyAndCert> issued = ca->Issue(server);
    if (!issued.ok()) return issued.status();
    files.emplace_back("server", *std::move(issued));
    for (absl::string_view role : kRoles) {
      CertSpec client;
      client.common_name = std::string(role);
      client.uris = {DevPrincipal(role)};
      client.client = true;
      issued = ca->Issue(client);
      if (!issued.ok()) return issued.status();
      files.emplace_back(std::string(role), *std::move(issued));
    }
    if (absl::Status s = WriteFileAtomic(tmp + "/ca.pem", ca->cert_pem(), 0644);
        !s.ok()) {
      return s;
    }
    for (const auto& [name, pair] : files) {
      if (absl::Status s = WriteFileAtomic(absl::StrCat(tmp, "/", name, ".key"),
                                           pair.key_pem, 0600);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = WriteFileAtomic(absl::StrCat(tmp, "/", name, ".pem"),
                                           pair.cert_pem, 0644);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }();
  if (written.ok() && ::rename(tmp.c_str(), dir.c_str()) != 0) {
    written =
        errno == EEXIST || errno == ENOTEMPTY
            ? absl::AlreadyExistsError(absl::StrCat(dir, " already exists"))
            : absl::InternalError(Errno("cannot rename into", dir));
  }
  if (!written.ok()) fs::remove_all(tmp, error);
  return written;
}

absl::StatusOr<bool> EnsureDevPki(const std::string& dir) {
  bool wrote = false;
  if (!std::filesystem::exists(dir)) {
    absl::Status s = WriteDevPki(dir);
    // Another process may have written it meanwhile: use theirs.
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
    wrote = s.ok();
  }
  std::vector<std::string> needed = {"ca.pem", "server.pem", "server.key"};
  for (absl::string_view role : kRoles) {
    needed.push_back(absl::StrCat(role, ".pem"));
    needed.push_back(absl::StrCat(role, ".key"));
  }
  for (const std::string& name : needed) {
    if (!std::filesystem::exists(absl::StrCat(dir, "/", name))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "development PKI ", dir, " has no ", name,
          "; remove the folder to make a new one (every client then needs "
          "the new certificates)"));
    }
  }
  return wrote;
}

}  // namespace hawiya::services
