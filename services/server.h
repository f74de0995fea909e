// Server: the Hawiya gRPC server. Serves EnrollmentService, MatchService,
// AdminService, AuditService, PartnerService, AdjudicationService,
// grpc.health.v1.Health and server reflection; optionally grpc.health.v1.Health
// alone on a plaintext port of its own (health_listen,
// services/health_server.h). Every call is audited (enroll/audit.h) from the
// moment the store opens; calls refused before it opens are held in memory and
// written then.
//
// Start binds at once and reports NOT_SERVING (Hawiya RPCs UNAVAILABLE) while
// the galleries load (from a snapshot plus the store's later changes, or from
// the store alone) in the background, then SERVING. While serving it writes
// gallery snapshots in the background, and one more on Shutdown.
#ifndef HAWIYA_SERVICES_SERVER_H_
#define HAWIYA_SERVICES_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hawiya/config/config.pb.h"

namespace hawiya::services {

struct ServerOptions {
  // host:port; port 0 picks a free one (see Server::port()).
  std::string listen = "127.0.0.1:50051";
  std::string data_dir = "./hawiya-data";
  config::ServerConfig config;
  // Plaintext, loopback addresses only; every caller then holds every role,
  // and no rate limit applies (config rate limits hang on the TLS access
  // check; a warning is logged if any is configured).
  // True by default for in-process tests; hawiya-server defaults to false.
  bool insecure = true;
  // Mutual TLS (insecure false): PEM files of the server's certificate
  // chain and key, and of the CA(s) that client certificates must chain to.
  // All three empty: the development PKI in DATA_DIR/pki (services/pki.h),
  // written on first start.
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  // host:port of a plaintext port serving grpc.health.v1.Health alone, with
  // the main port's serving status, for probes that cannot present a client
  // certificate (Kubernetes); any address, since probes come from the node.
  // Port 0 picks a free one (see Server::health_port()). Empty: no such
  // port.
  std::string health_listen;
  // Test seam: runs on the loading thread before the galleries load.
  std::function<void()> before_load;
  // Test seam: runs on a work queue's thread before each queued call is
  // checked for cancellation/deadline and run, with the method name
  // ("Enroll", "BatchEnroll", ...) and a function saying whether the call
  // has expired (its client cancelled it, or its deadline passed) by now.
  // Blocking in it keeps that thread busy.
  std::function<void(const char*, const std::function<bool()>&)> before_call;

  // Gallery snapshots under DATA_DIR/snapshots (enroll/registry.h): loaded
  // at start, written in the background and on Shutdown. False rebuilds the
  // galleries from the store at every start and writes none.
  bool snapshots = true;
  // A background snapshot is written once this many store changes are not
  // in the newest one (<= 0: never on that ground)...
  int64_t snapshot_min_changes = 50000;
  // ...or once any change is not, and the newest one is this old (zero or
  // infinite: never on that ground).
  absl::Duration snapshot_interval = absl::Minutes(10);

  // host:port of the Prometheus endpoint (GET /metrics, plain HTTP; port 0
  // picks a free one, see Server::metrics_port()); empty: none. Metrics
  // carry no personal data (services/metrics.h).
  std::string metrics_listen;
  // The labels of hawiya_build_info (version, commit, build type).
  std::vector<std::pair<std::string, std::string>> build_info;
};

// Whether host:port names a loopback address: a literal IPv4 address in
// 127.0.0.0/8, ::1 (as [::1]:port), or localhost. Any other host name is
// refused whatever it resolves to (no DNS at start-up).
bool IsLoopback(const std::string& listen);

class Server {
 public:
  // Takes the data folder's lock (enroll/data_dir_lock.h) before anything
  // in the folder is opened, holding it until the server is destroyed:
  // FAILED_PRECONDITION naming the folder and the process holding it if
  // another server (or registry) has it. UNAVAILABLE "listen: H:P is already
  // in use" if another socket is bound to the address (SO_REUSEPORT is off,
  // so two servers never share a port).
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);

  // Shuts down (as Shutdown with a zero grace period) if still running.
  virtual ~Server() = default;

  // The bound port.
  virtual int port() const = 0;
  // The metrics endpoint's port; 0 without ServerOptions::metrics_listen.
  virtual int metrics_port() const = 0;

  // The bound health port; 0 without health_listen.
  virtual int health_port() const = 0;

  // Blocks until the galleries have loaded; returns the load's status.
  virtual absl::Status WaitUntilReady() = 0;

  // Reports NOT_SERVING, stops accepting calls, lets in-flight calls finish
  // for up to `grace` (then cancels them), writes a snapshot if snapshots are
  // on and anything changed since the last one, and closes the store.
  // Idempotent.
  virtual void Shutdown(absl::Duration grace) = 0;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_SERVER_H_
