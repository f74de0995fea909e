// A certificate authority made for one test: it writes the server's files
// (ca.pem, server.pem, server.key) into a folder and issues client
// certificates on demand, including ones the development PKI never holds.
// Header-only: for tests that link hawiya_pki.
#ifndef HAWIYA_TESTS_TESTING_TEST_PKI_H_
#define HAWIYA_TESTS_TESTING_TEST_PKI_H_

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "services/pki.h"

namespace hawiya::testing {

class TestPki {
 public:
  // A new CA, and a server certificate for localhost / 127.0.0.1 written
  // with it to dir/ca.pem, dir/server.pem and dir/server.key.
  static absl::StatusOr<TestPki> Create(const std::string& dir) {
    services::CertSpec ca_spec;
    ca_spec.common_name = "test CA";
    absl::StatusOr<services::CertificateAuthority> ca =
        services::CertificateAuthority::Create(ca_spec);
    if (!ca.ok()) return ca.status();
    services::CertSpec server_spec;
    server_spec.common_name = "hawiya-server";
    server_spec.dns_names = {"localhost"};
    server_spec.ip_addresses = {"127.0.0.1"};
    server_spec.server = true;
    absl::StatusOr<services::KeyAndCert> server = ca->Issue(server_spec);
    if (!server.ok()) return server.status();
    TestPki pki(dir, *std::move(ca));
    std::ofstream(pki.ca_path(), std::ios::trunc) << pki.ca_->cert_pem();
    std::ofstream(dir + "/server.pem", std::ios::trunc) << server->cert_pem;
    std::ofstream(dir + "/server.key", std::ios::trunc) << server->key_pem;
    return pki;
  }

  // The hawiya-server flags that serve these files.
  std::vector<std::string> ServerArgs() const {
    return {"--tls_cert=" + dir_ + "/server.pem",
            "--tls_key=" + dir_ + "/server.key", "--client_ca=" + ca_path()};
  }

  std::string ca_path() const { return dir_ + "/ca.pem"; }
  const services::CertificateAuthority& ca() const { return *ca_; }

  // A client certificate with URI SAN `uri` (none if empty) and CN `cn`.
  absl::StatusOr<services::KeyAndCert> Issue(
      const std::string& uri, const std::string& cn = "client") const {
    services::CertSpec spec;
    spec.common_name = cn;
    if (!uri.empty()) spec.uris = {uri};
    spec.client = true;
    return ca_->Issue(spec);
  }

  // Credentials that trust this CA and present `client` (none if null).
  std::shared_ptr<grpc::ChannelCredentials> Credentials(
      const services::KeyAndCert* client) const {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ca_->cert_pem();
    if (client != nullptr) {
      options.pem_private_key = client->key_pem;
      options.pem_cert_chain = client->cert_pem;
    }
    return grpc::SslCredentials(options);
  }

 private:
  TestPki(std::string dir, services::CertificateAuthority ca)
      : dir_(std::move(dir)),
        ca_(std::make_unique<services::CertificateAuthority>(std::move(ca))) {}

  std::string dir_;
  std::unique_ptr<services::CertificateAuthority> ca_;
};

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_TEST_PKI_H_
