// The roles of docs/ARCHITECTURE.md ("Who calls it") and the development
// principals that stand for them. Header-only: the CLI and the server share
// it.
#ifndef HAWIYA_SERVICES_ROLES_H_
#define HAWIYA_SERVICES_ROLES_H_

#include <array>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace hawiya::services {

inline constexpr std::array<absl::string_view, 6> kRoles = {
    "registrar", "border", "partner", "adjudicator", "auditor", "admin"};

// In a method's roles: any authenticated caller, whatever its roles.
inline constexpr absl::string_view kAnyRole = "*";

// Every caller under --insecure (loopback only) is this principal, holding
// every role.
inline constexpr absl::string_view kInsecurePrincipal = "hawiya://dev/insecure";

inline bool IsRole(absl::string_view name) {
  for (absl::string_view role : kRoles) {
    if (role == name) return true;
  }
  return false;
}

// The URI SAN of the development PKI's certificate for `role`.
inline std::string DevPrincipal(absl::string_view role) {
  return absl::StrCat("hawiya://dev/", role);
}

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_ROLES_H_
