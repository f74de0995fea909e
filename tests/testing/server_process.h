// Runs the real hawiya-server binary as a child process on a free loopback
// port, for integration and crash tests. Readiness is read from the server's
// own stdout ("listening on", then "serving"), never guessed with sleeps.
#ifndef HAWIYA_TESTS_TESTING_SERVER_PROCESS_H_
#define HAWIYA_TESTS_TESTING_SERVER_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hawiya::testing {

// A client context whose deadline is `timeout` from now: long enough for a
// loaded CI machine, short enough that a hung call fails the test.
inline std::unique_ptr<grpc::ClientContext> Ctx(
    absl::Duration timeout = absl::Seconds(60)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(timeout));
  return context;
}

class ServerProcess {
 public:
  // Starts `binary --insecure --listen=127.0.0.1:0 --data_dir=data_dir
  // extra_args...` and returns once it reports "serving". Its stderr is
  // appended to stderr_path if one is given, else shared with ours.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& binary, const std::string& data_dir,
      const std::vector<std::string>& extra_args = {},
      const std::string& stderr_path = "");

  // As Start, but without --insecure: the server serves mutual TLS, from
  // the --tls_* flags in extra_args or else from DATA_DIR/pki.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartTls(
      const std::string& binary, const std::string& data_dir,
      const std::vector<std::string>& extra_args = {},
      const std::string& stderr_path = "");

  // SIGKILLs the server if it still runs.
  ~ServerProcess();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const;
  std::shared_ptr<grpc::Channel> NewChannel() const;
  std::shared_ptr<grpc::Channel> NewChannel(
      std::shared_ptr<grpc::ChannelCredentials> credentials) const;

  // kill -9, then reaps the process.
  void Kill9();
  // SIGTERM; returns the exit status once it has exited (-1 if by signal).
  int Terminate();

 private:
  ServerProcess(pid_t pid, FILE* out) : pid_(pid), out_(out) {}

  static absl::StatusOr<std::unique_ptr<ServerProcess>> Launch(
      std::vector<std::string> args, const std::string& stderr_path);

  pid_t pid_;
  FILE* out_;
  int port_ = 0;
};

// A fresh, empty folder for one test (unique even across parallel tests).
std::string NewTempDir(const std::string& prefix);

// What a shell command printed on stdout, and its exit code (-1 if it did
// not exit normally).
struct CommandResult {
  int exit_code = -1;
  std::string out;
};
CommandResult RunCommand(const std::string& command);

// The whole file, as bytes; empty if it cannot be read.
std::string ReadFileBytes(const std::string& path);

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_SERVER_PROCESS_H_
