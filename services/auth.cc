#include "services/auth.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "services/log.h"
#include "services/roles.h"

namespace hawiya::services {
namespace {

config::MethodRoles Method(const std::string& method,
                           std::vector<std::string> roles) {
  config::MethodRoles entry;
  entry.set_method(method);
  for (std::string& role : roles) entry.add_roles(std::move(role));
  return entry;
}

// "/package.Service/Method" (or ".../*"): two non-empty parts.
bool IsMethodName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "/")) return false;
  const size_t slash = name.find('/');
  return slash != absl::string_view::npos && slash > 0 &&
         slash + 1 < name.size() &&
         name.find('/', slash + 1) == absl::string_view::npos;
}

std::string RoleList(const std::vector<std::string>& roles) {
  return roles.empty() ? "none" : absl::StrJoin(roles, ", ");
}

// Runs the policy on every call, before gRPC hands it to a handler (or to
// the health and reflection services). gRPC passes the call's initial
// metadata, pseudo-headers included, so ":path" is the full method name.
class AccessProcessor final : public grpc::AuthMetadataProcessor {
 public:
  AccessProcessor(std::shared_ptr<const AccessPolicy> policy,
                  std::shared_ptr<RateLimiter> limits,
                  std::shared_ptr<enroll::AuditLog> audit_log)
      : policy_(std::move(policy)),
        limits_(std::move(limits)),
        audit_log_(std::move(audit_log)) {}

  // Without an audit log, a few map lookups and a token bucket: inline on
  // gRPC's thread. An audit record waits for its commit (an fsync), so then
  // gRPC runs Process on a thread of its own pool instead.
  bool IsBlocking() const override { return audit_log_ != nullptr; }

  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* /*consumed_auth_metadata*/,
                       OutputMetadata* /*response_metadata*/) override {
    auto path = auth_metadata.find(":path");
    // Fails closed if a gRPC version ever stops passing it.
    const std::string method =
        path == auth_metadata.end()
            ? std::string("(unknown method)")
            : std::string(path->second.data(), path->second.size());
    absl::StatusOr<Caller> caller = policy_->Authenticate(*context);
    absl::Status status =
        caller.ok() ? policy_->Authorize(*caller, method) : caller.status();
    // Rate limits count only calls the policy lets through: an unknown or
    // unauthorised caller cannot use up a principal's budget.
    bool log = true;
    if (status.ok() && limits_ != nullptr) {
      status = limits_->Admit(caller->principal, method, &log);
    }
    // Every check that may refuse the call comes before this point: the
    // audit records the status the call ends with. A principal over its
    // limit is logged once per run of refusals (each refusal is audited).
    if (!status.ok() && log) {
      Log("WARNING", "access denied: ", status.ToString());
    }
    if (audit_log_ != nullptr && (!status.ok() || !AuditsItself(method))) {
      enroll::AuditEvent event;
      event.principal =
          caller.ok() ? caller->principal : AccessPolicy::PrincipalOf(*context);
      if (status.ok()) event.role = policy_->RoleFor(*caller, method);
      event.method = method;
      event.outcome = static_cast<int>(status.code());
      absl::Status written = audit_log_->Append(std::move(event));
      if (!written.ok() && status.ok()) {
        Log("ERROR", "audit: ", written.ToString());
        status = absl::UnavailableError(absl::StrCat(
            "audit: the call's audit record could not be written, so the "
            "call is refused: ",
            written.message()));
      }
    }
    if (status.ok()) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                        std::string(status.message()));
  }

 private:
  // The hawiya.v1 services audit the calls they serve (with the resource
  // and outcome only they know); health and reflection do not.
  static bool AuditsItself(absl::string_view method) {
    return absl::StartsWith(method, "/hawiya.v1.");
  }

  const std::shared_ptr<const AccessPolicy> policy_;
  const std::shared_ptr<RateLimiter> limits_;          // may be null
  const std::shared_ptr<enroll::AuditLog> audit_log_;  // may be null
};

}  // namespace

std::vector<config::PrincipalRoles> AccessPolicy::DefaultPrincipals() {
  std::vector<config::PrincipalRoles> principals;
  for (absl::string_view role : kRoles) {
    config::PrincipalRoles entry;
    entry.set_principal(DevPrincipal(role));
    entry.add_roles(std::string(role));
    principals.push_back(std::move(entry));
  }
  return principals;
}

std::vector<config::MethodRoles> AccessPolicy::DefaultMethods() {
  const std::string enrollment = "/hawiya.v1.EnrollmentService/";
  const std::string match = "/hawiya.v1.MatchService/";
  const std::string any(kAnyRole);
  // Method by method, so that a method added later is denied until it is
  // given roles here.
  return {
      Method(enrollment + "Enroll", {"registrar"}),
      Method(enrollment + "BatchEnroll", {"registrar"}),
      Method(enrollment + "GetPerson", {"registrar", "border"}),
      Method(enrollment + "UpdatePerson", {"registrar"}),
      Method(enrollment + "ReplaceTemplates", {"registrar"}),
      Method(enrollment + "DeletePerson", {"registrar"}),
      Method(enrollment + "ListPersons", {"registrar"}),
      Method(match + "Verify", {"border"}),
      Method(match + "Identify", {"border"}),
      Method("/hawiya.v1.AdminService/GetStats", {"admin"}),
      Method("/hawiya.v1.AdminService/RotateKey", {"admin"}),
      // Public keys: any caller may fetch them to check receipts.
      Method("/hawiya.v1.AdminService/GetSigningKeys", {any}),
      Method("/hawiya.v1.AdminService/RotateSigningKey", {"admin"}),
      Method("/hawiya.v1.PartnerService/VerifyCivilStatus", {"partner"}),
      Method("/hawiya.v1.PartnerService/VerifyCivilStatusBatch", {"partner"}),
      Method("/hawiya.v1.AdjudicationService/ListCases", {"adjudicator"}),
      Method("/hawiya.v1.AdjudicationService/GetCase", {"adjudicator"}),
      Method("/hawiya.v1.AdjudicationService/DecideCase", {"adjudicator"}),
      Method("/hawiya.v1.AuditService/ListAuditRecords", {"auditor"}),
      Method("/hawiya.v1.AuditService/VerifyAuditLog", {"auditor"}),
      Method("/grpc.health.v1.Health/Check", {any}),
      Method("/grpc.health.v1.Health/Watch", {any}),
      Method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
             {any}),
  };
}

absl::StatusOr<AccessPolicy> AccessPolicy::FromConfig(
    const config::ServerConfig& config, bool insecure) {
  AccessPolicy policy;
  policy.insecure_ = insecure;
  std::vector<config::PrincipalRoles> principals(config.principals().begin(),
                                                 config.principals().end());
  const bool default_principals = principals.empty();
  if (default_principals) principals = DefaultPrincipals();
  for (size_t i = 0; i < principals.size(); ++i) {
    const std::string field = absl::StrCat("principals[", i, "]");
    const config::PrincipalRoles& entry = principals[i];
    if (entry.principal().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".principal: empty"));
    }
    std::vector<std::string> roles;
    for (const std::string& role : entry.roles()) {
      if (!IsRole(role)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".roles: unknown role '", role, "' (one of ",
                         absl::StrJoin(kRoles, ", "), ")"));
      }
      roles.push_back(role);
    }
    std::sort(roles.begin(), roles.end());
    roles.erase(std::unique(roles.begin(), roles.end()), roles.end());
    if (!policy.principals_.emplace(entry.principal(), std::move(roles))
             .second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".principal: ", entry.principal(), " is listed twice"));
    }
  }
  std::vector<config::MethodRoles> methods(config.methods().begin(),
                                           config.methods().end());
  if (methods.empty()) methods = DefaultMethods();
  for (size_t i = 0; i < methods.size(); ++i) {
    const std::string field = absl::StrCat("methods[", i, "]");
    const config::MethodRoles& entry = methods[i];
    if (!IsMethodName(entry.method())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".method: '", entry.method(),
          "' is not /package.Service/Method or /package.Service/*"));
    }
    std::set<std::string> roles;
    for (const std::string& role : entry.roles()) {
      if (!IsRole(role) && role != kAnyRole) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".roles: unknown role '", role, "' (one of ",
            absl::StrJoin(kRoles, ", "), ", or * for any caller)"));
      }
      roles.insert(role);
    }
    if (!policy.methods_.emplace(entry.method(), std::move(roles)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".method: ", entry.method(), " is listed twice"));
    }
  }
  return policy;
}

std::string AccessPolicy::PrincipalOf(const grpc::AuthContext& auth) {
  if (!auth.IsPeerAuthenticated()) return "";
  // peer_uri holds the URI SANs only. Never x509_subject_alternative_name:
  // it mixes DNS, email, IP and URI SANs, so a DNS or email SAN spelled
  // hawiya://dev/admin would pass for a URI.
  std::vector<grpc::string_ref> uris =
      auth.FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME);
  if (!uris.empty()) return std::string(uris[0].data(), uris[0].size());
  std::vector<grpc::string_ref> cn =
      auth.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  return cn.empty() ? "" : std::string(cn[0].data(), cn[0].size());
}

absl::StatusOr<Caller> AccessPolicy::Authenticate(
    const grpc::AuthContext& auth) const {
  if (insecure_) {
    return Caller{std::string(kInsecurePrincipal),
                  std::vector<std::string>(kRoles.begin(), kRoles.end())};
  }
  std::string principal = PrincipalOf(auth);
  if (principal.empty()) {
    return absl::UnauthenticatedError(
        "the client certificate names no principal (no URI SAN, no CN)");
  }
  auto it = principals_.find(principal);
  if (it == principals_.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("principal ", principal, " is not known to this server"));
  }
  return Caller{std::move(principal), it->second};
}

const std::set<std::string>* AccessPolicy::RolesOf(
    absl::string_view method) const {
  auto it = methods_.find(std::string(method));
  if (it == methods_.end()) {
    const size_t slash = method.rfind('/');
    if (slash != absl::string_view::npos) {
      it = methods_.find(absl::StrCat(method.substr(0, slash + 1), "*"));
    }
  }
  return it == methods_.end() ? nullptr : &it->second;
}

std::string AccessPolicy::RoleFor(const Caller& caller,
                                  absl::string_view method) const {
  const std::set<std::string>* allowed = RolesOf(method);
  if (allowed == nullptr) return "";
  // caller.roles is sorted: the first match is the first by name.
  for (const std::string& role : caller.roles) {
    if (allowed->count(role) > 0) return role;
  }
  if (allowed->count(std::string(kAnyRole)) > 0) return std::string(kAnyRole);
  return "";
}

absl::Status AccessPolicy::Authorize(const Caller& caller,
                                     absl::string_view method) const {
  if (!RoleFor(caller, method).empty()) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "principal ", caller.principal, " (roles: ", RoleList(caller.roles),
      ") may not call ", method));
}

absl::StatusOr<Caller> AccessPolicy::CallerOf(
    const grpc::ServerContextBase& ctx) const {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr && !insecure_) {
    return absl::UnauthenticatedError("no authentication context");
  }
  if (insecure_) {
    return Caller{std::string(kInsecurePrincipal),
                  std::vector<std::string>(kRoles.begin(), kRoles.end())};
  }
  return Authenticate(*auth);
}

std::shared_ptr<grpc::ServerCredentials> MutualTlsCredentials(
    const std::string& cert_pem, const std::string& key_pem,
    const std::string& client_ca_pem,
    std::shared_ptr<const AccessPolicy> policy,
    std::shared_ptr<RateLimiter> limits,
    std::shared_ptr<enroll::AuditLog> audit_log) {
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = client_ca_pem;
  options.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::SslServerCredentials(options);
  credentials->SetAuthMetadataProcessor(std::make_shared<AccessProcessor>(
      std::move(policy), std::move(limits), std::move(audit_log)));
  return credentials;
}

}  // namespace hawiya::services
