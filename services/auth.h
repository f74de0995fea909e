// Who the caller is and what it may call.
//
// The principal is read from the client certificate the TLS handshake
// verified: its first URI SAN (hawiya://partner/SAU-MOI), else its CN. The
// config (ServerConfig.principals, .methods; defaults below) maps principals
// to roles, and each full method name (/hawiya.v1.MatchService/Identify) to
// the roles that may call it. The check runs once per call, before any
// handler, in the AuthMetadataProcessor that MutualTlsCredentials installs:
// an unknown principal gets UNAUTHENTICATED, a known one calling a method
// none of its roles allows PERMISSION_DENIED, and one over its rate limit
// (services/rate_limit.h) RESOURCE_EXHAUSTED. Handlers (and the audit log)
// read the caller with AccessPolicy::CallerOf.
//
// Audit: the processor appends the audit record (enroll/audit_log.h) of
// every call it refuses, with the status it refuses it with, and of every
// call it lets through to a service that does not audit itself (health,
// reflection); a call whose record cannot be written is refused. The
// hawiya.v1 services audit the calls they serve.
#ifndef HAWIYA_SERVICES_AUTH_H_
#define HAWIYA_SERVICES_AUTH_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/server_credentials.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "enroll/audit_log.h"
#include "hawiya/config/config.pb.h"
#include "services/rate_limit.h"

namespace hawiya::services {

struct Caller {
  std::string principal;
  std::vector<std::string> roles;  // sorted
};

class AccessPolicy {
 public:
  // The config's principals and methods, each list replaced by the defaults
  // if empty. INVALID_ARGUMENT naming the field on an unknown role, a
  // malformed method name or a principal listed twice. `insecure`: every
  // caller is kInsecurePrincipal holding every role.
  static absl::StatusOr<AccessPolicy> FromConfig(
      const config::ServerConfig& config, bool insecure = false);

  // The defaults: hawiya://dev/R holds role R; methods as
  // deploy/hawiya.textproto spells out.
  static std::vector<config::PrincipalRoles> DefaultPrincipals();
  static std::vector<config::MethodRoles> DefaultMethods();

  // The principal a verified client certificate names (first URI SAN, else
  // CN); empty if none.
  static std::string PrincipalOf(const grpc::AuthContext& auth);

  // The caller of a connection: UNAUTHENTICATED if its principal is unknown.
  absl::StatusOr<Caller> Authenticate(const grpc::AuthContext& auth) const;

  // OK if one of the caller's roles may call `method` (a full method name);
  // PERMISSION_DENIED naming the principal, its roles and the method if not.
  absl::Status Authorize(const Caller& caller, absl::string_view method) const;

  // The caller's role that allows `method`, for the audit log: the first
  // (in name order) of its roles the method lists, "*" if the method is
  // open to any caller, "" if none allows it.
  std::string RoleFor(const Caller& caller, absl::string_view method) const;

  // The caller of a call the processor let through.
  absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase& ctx) const;

  bool insecure() const { return insecure_; }

 private:
  AccessPolicy() = default;

  // The roles that may call `method` (its own entry, else its service's
  // "/package.Service/*"); null if none is listed.
  const std::set<std::string>* RolesOf(absl::string_view method) const;

  bool insecure_ = false;
  std::map<std::string, std::vector<std::string>> principals_;
  // Full method name, or "/package.Service/*" for a whole service.
  std::map<std::string, std::set<std::string>> methods_;
};

// Server credentials for mutual TLS: serves `cert_pem` (chain) with
// `key_pem`, requires a client certificate that verifies against
// `client_ca_pem`, and checks every call against `policy` before it reaches
// a handler, then (if given) against the caller's rate limit in `limits`
// (RESOURCE_EXHAUSTED), appending to `audit_log` (if not null) as described
// above.
std::shared_ptr<grpc::ServerCredentials> MutualTlsCredentials(
    const std::string& cert_pem, const std::string& key_pem,
    const std::string& client_ca_pem,
    std::shared_ptr<const AccessPolicy> policy,
    std::shared_ptr<RateLimiter> limits = nullptr,
    std::shared_ptr<enroll::AuditLog> audit_log = nullptr);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_AUTH_H_
