// Server: the Hawiya gRPC server. Serves EnrollmentService, MatchService,
// AdminService, grpc.health.v1.Health and server reflection.
//
// Start binds at once and reports NOT_SERVING (Hawiya RPCs UNAVAILABLE) while
// the galleries load from the store in the background, then SERVING.
#ifndef HAWIYA_SERVICES_SERVER_H_
#define HAWIYA_SERVICES_SERVER_H_

#include <functional>
#include <memory>
#include <string>

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
  // Plaintext. REQUIRES: true, until TLS lands (issue 4).
  bool insecure = true;
  // Test seam: runs on the loading thread before the galleries load.
  std::function<void()> before_load;
};

// Whether host:port names a loopback address (127.0.0.0/8, ::1, localhost).
bool IsLoopback(const std::string& listen);

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);

  // Shuts down (as Shutdown with a zero grace period) if still running.
  virtual ~Server() = default;

  // The bound port.
  virtual int port() const = 0;

  // Blocks until the galleries have loaded; returns the load's status.
  virtual absl::Status WaitUntilReady() = 0;

  // Reports NOT_SERVING, stops accepting calls, lets in-flight calls finish
  // for up to `grace` (then cancels them), and closes the store. Idempotent.
  virtual void Shutdown(absl::Duration grace) = 0;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_SERVER_H_
