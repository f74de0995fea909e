// HealthServer: grpc.health.v1.Health (Check, Watch) alone on a plaintext
// port of its own, for probes that cannot present a client certificate
// (Kubernetes' native gRPC probes). Nothing else is served there: every
// other method, hawiya.v1 and server reflection included, is UNIMPLEMENTED.
// The owner mirrors the main server's serving status onto it.
//
// Every call on the port is audited (principal kHealthProbePrincipal, no
// role, the method and the status it ends with), before its status is sent;
// a call whose record cannot be written fails UNAVAILABLE, as on the main
// port.
#ifndef HAWIYA_SERVICES_HEALTH_SERVER_H_
#define HAWIYA_SERVICES_HEALTH_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "enroll/audit_log.h"

namespace hawiya::services {

// Who the audit log says called the health port: its callers are not
// authenticated.
inline constexpr absl::string_view kHealthProbePrincipal =
    "hawiya://health-probe";

class HealthServer {
 public:
  // Binds `listen` (host:port; port 0 picks a free one) and serves
  // NOT_SERVING for the whole server ("") and for each of `services` until
  // SetServing(true). `audit_log` must outlive Shutdown.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(
      const std::string& listen, const std::vector<std::string>& services,
      std::shared_ptr<enroll::AuditLog> audit_log);

  // Shuts down (as Shutdown with a zero grace period) if still running.
  virtual ~HealthServer() = default;

  // The bound port.
  virtual int port() const = 0;

  // Sets the status of "" and of every service named at Start.
  virtual void SetServing(bool serving) = 0;

  // Reports NOT_SERVING (ending Watch streams), stops accepting calls and
  // waits up to `grace` for calls in flight. Idempotent.
  virtual void Shutdown(absl::Duration grace) = 0;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_HEALTH_SERVER_H_
