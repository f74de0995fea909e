// X.509 certificates for mutual TLS (OpenSSL 3), and the development PKI:
// a CA, a server certificate for loopback and one client certificate per
// role. The development PKI is for a laptop or a test, never production:
// its keys sit unencrypted beside the data.
#ifndef HAWIYA_SERVICES_PKI_H_
#define HAWIYA_SERVICES_PKI_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hawiya::services {

// What a certificate says. Keys are ECDSA P-256, signatures SHA-256.
struct CertSpec {
  std::string common_name;
  std::vector<std::string> dns_names;     // SAN DNS
  std::vector<std::string> ip_addresses;  // SAN IP, "127.0.0.1" or "::1"
  std::vector<std::string> uris;          // SAN URI, "hawiya://dev/admin"
  std::vector<std::string> emails;        // SAN email (rfc822Name)
  bool server = false;                    // extendedKeyUsage serverAuth
  bool client = false;                    // extendedKeyUsage clientAuth
  absl::Time not_before = absl::Now() - absl::Hours(1);
  absl::Time not_after = absl::Now() + absl::Hours(24 * 3650);
};

// PEM text of a private key (PKCS#8) and its certificate.
struct KeyAndCert {
  std::string key_pem;
  std::string cert_pem;
};

// A certificate authority held in memory.
class CertificateAuthority {
 public:
  // A new key and a self-signed CA certificate (spec's SANs and key usages
  // are ignored).
  static absl::StatusOr<CertificateAuthority> Create(const CertSpec& spec);

  CertificateAuthority(CertificateAuthority&&) noexcept;
  CertificateAuthority& operator=(CertificateAuthority&&) noexcept;
  ~CertificateAuthority();

  const std::string& cert_pem() const { return cert_pem_; }

  // A new key and a certificate for it, signed by this CA.
  absl::StatusOr<KeyAndCert> Issue(const CertSpec& spec) const;

 private:
  struct Keys;
  CertificateAuthority(std::unique_ptr<Keys> keys, std::string cert_pem);

  std::unique_ptr<Keys> keys_;
  std::string cert_pem_;
};

// A new key and a self-signed end-entity certificate (no CA behind it).
absl::StatusOr<KeyAndCert> SelfSigned(const CertSpec& spec);

// The development PKI's files in `dir`: ca.pem; server.pem, server.key
// (SAN DNS localhost, IP 127.0.0.1 and ::1); and for each role R of
// roles.h, R.pem and R.key (URI SAN hawiya://dev/R, CN R). Keys are 0600.
// The CA's key is not kept: nothing more can be signed by it.
struct DevPkiPaths {
  std::string ca;
  std::string cert;
  std::string key;
};
DevPkiPaths DevPkiServerPaths(const std::string& dir);
DevPkiPaths DevPkiRolePaths(const std::string& dir, const std::string& role);

// Writes a new development PKI into `dir`, which must not exist (it is
// built in a sibling folder and renamed into place, so a crash leaves no
// half PKI). ALREADY_EXISTS if `dir` exists.
absl::Status WriteDevPki(const std::string& dir);

// Uses the development PKI in `dir`, writing one if `dir` does not exist.
// Returns true if it wrote one. FAILED_PRECONDITION naming the file if
// `dir` exists without every file.
absl::StatusOr<bool> EnsureDevPki(const std::string& dir);

// OK if `cert_pem` starts with a certificate whose key is `key_pem`, and
// `ca_pem` holds at least one certificate; INVALID_ARGUMENT saying which
// is wrong otherwise (gRPC itself would only fail to listen).
absl::Status CheckTlsFiles(const std::string& cert_pem,
                           const std::string& key_pem,
                           const std::string& ca_pem);

// Writes `contents` to `path` atomically with the given mode (a temporary
// file renamed into place).
absl::Status WriteFileAtomic(const std::string& path,
                             const std::string& contents, int mode);

// The whole of a file; NOT_FOUND naming it if unreadable.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_PKI_H_
