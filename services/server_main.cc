// hawiya-server: the Hawiya gRPC server.
#include <omp.h>
#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "matcher/scan_pool.h"
#include "services/config.h"
#include "services/flag_check.h"
#include "services/help.h"
#include "services/log.h"
#include "services/server.h"
#include "services/systemd_notify.h"
#include "services/version.h"

namespace {

// OpenMP (libgomp, which FAISS brings in) reads OMP_* from the environment
// once, while the dynamic loader runs its initialisers, before main: a
// setenv in main comes too late. A function in the executable's
// .preinit_array runs before any shared library's initialisers, so it can
// give the server its own default and still leave a value the operator set
// alone.
//
// PASSIVE: OpenMP threads that wait for work sleep instead of spinning
// (libgomp's default spins for a while), so FAISS's bulk work (index
// builds) does not steal the cores from the scan pool, gRPC and SQLite
// between its parallel regions. The exact scans do not use OpenMP at all;
// see MatchThreads in services/server.cc for the thread budget.
//
// glibc hands main the environment it started with, so main sets the same
// default again: the process then shows (and children inherit) what libgomp
// read.
void SetOpenMpDefaults(int /*argc*/ = 0, char** /*argv*/ = nullptr,
                       char** /*envp*/ = nullptr) {
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
}

__attribute__((section(".preinit_array"),
               used)) void (*const kSetOpenMpDefaults)(int, char**, char**) =
    &SetOpenMpDefaults;

}  // namespace

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on, host:port (port 0 picks a free port).");
ABSL_FLAG(std::string, data_dir, "./hawiya-data",
          "Folder of the embedded SQLite store; created if absent.");
ABSL_FLAG(std::string, config, "",
          "Text-format hawiya.config.ServerConfig file (see "
          "deploy/hawiya.textproto); empty for the defaults.");
ABSL_FLAG(bool, insecure, false,
          "Serve plaintext gRPC, every caller holding every role (as "
          "principal hawiya://dev/insecure). Refused on non-loopback "
          "addresses.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain the server presents (mutual TLS). With "
          "--tls_key and --client_ca; without all three (and without "
          "--insecure) the development PKI in DATA_DIR/pki is used, and "
          "written on first start.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, client_ca, "",
          "PEM CA certificate(s): a client must present a certificate that "
          "chains to one of them.");
ABSL_FLAG(std::string, health_listen, "",
          "Address (host:port) of a plaintext port serving "
          "grpc.health.v1.Health alone, with the main port's status, for "
          "probes that cannot present a client certificate (Kubernetes gRPC "
          "probes); every call on it is audited. Empty: no such port.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM/SIGINT, how long in-flight calls may take to finish.");
ABSL_FLAG(bool, snapshots, true,
          "Keep gallery snapshots in DATA_DIR/snapshots: start from the newest "
          "usable one plus the store's later changes, write one in the "
          "background and on SIGTERM/SIGINT. false rebuilds the galleries "
          "from the store at every start and writes none.");
ABSL_FLAG(int64_t, snapshot_min_changes, 50000,
          "Write a background snapshot once this many store changes are not "
          "in the newest one (the next start replays each, ~0.1 ms apiece on "
          "a busy 2-core machine); 0 never on that ground.");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port of a Prometheus endpoint (GET /metrics, plain HTTP; "
          "no personal data), e.g. 127.0.0.1:9464; empty for none.");
ABSL_FLAG(std::string, log_format, "text",
          "text: one line per event, \"TIME LEVEL message\"; json: one "
          "JSON object per line with time, level, component (server, grpc) "
          "and message. gRPC's own lines use the same format.");
ABSL_FLAG(std::string, log_level, "info",
          "Lowest level logged: debug, info, warning or error. gRPC logs "
          "only its errors unless this is debug.");
ABSL_FLAG(absl::Duration, snapshot_interval, absl::Minutes(10),
          "Write a background snapshot once the newest one is this old and "
          "any change is not in it; 0 never on that ground.");

int main(int argc, char** argv) {
  hawiya::services::HandleVersion(argc, argv, "hawiya-server");
  hawiya::services::HandleHelp(
      argc, argv,
      "the Hawiya civil identity and biometric matching server.\n"
      "Usage: hawiya-server [--tls_cert=F --tls_key=F --client_ca=F | "
      "--insecure] [--listen=127.0.0.1:50051] [--data_dir=./hawiya-data] "
      "[--config=FILE] [--health_listen=HOST:PORT]\n"
      "Serves mutual TLS: every caller presents a client certificate from "
      "--client_ca, and its principal (URI SAN, else CN) must hold a role "
      "the config allows for the method. With no TLS flags, uses (and on "
      "first start writes) the development PKI in DATA_DIR/pki.\n"
      "Prints 'listening on HOST:PORT' once bound and 'serving' once the "
      "galleries are loaded (stderr says whether from a snapshot, and why "
      "not). SIGTERM or SIGINT drains in-flight calls, writes a snapshot "
      "and closes the store.");
  SetOpenMpDefaults();
  if (const std::string problem = hawiya::services::FlagProblem(
          argc, argv, "server_main", /*positional=*/nullptr);
      !problem.empty()) {
    std::fprintf(stderr, "hawiya-server: %s (see 'hawiya-server --help')\n",
                 problem.c_str());
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  using hawiya::services::Log;
  {
    absl::StatusOr<hawiya::services::LogFormat> format =
        hawiya::services::ParseLogFormat(absl::GetFlag(FLAGS_log_format));
    absl::StatusOr<hawiya::services::LogLevel> level =
        hawiya::services::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
    for (const absl::Status& s : {format.status(), level.status()}) {
      if (!s.ok()) {
        std::fprintf(stderr, "hawiya-server: %s\n",
                     std::string(s.message()).c_str());
        return 2;
      }
    }
    hawiya::services::ConfigureLogging({*format, *level});
  }
  using hawiya::services::NotifySystemd;
  Log("INFO", hawiya::services::VersionLine("hawiya-server"));

  // Block the stop signals in every thread (threads inherit the mask) so the
  // main thread alone receives them, through sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<hawiya::config::ServerConfig> config =
      hawiya::services::LoadConfig(absl::GetFlag(FLAGS_config));
  if (!config.ok()) {
    std::fprintf(stderr, "hawiya-server: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  hawiya::services::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.config = *config;
  options.insecure = absl::GetFlag(FLAGS_insecure);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.client_ca = absl::GetFlag(FLAGS_client_ca);
  options.health_listen = absl::GetFlag(FLAGS_health_listen);
  options.snapshots = absl::GetFlag(FLAGS_snapshots);
  options.snapshot_min_changes = absl::GetFlag(FLAGS_snapshot_min_changes);
  options.snapshot_interval = absl::GetFlag(FLAGS_snapshot_interval);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  {
    const hawiya::services::BuildInfo& build = hawiya::services::GetBuildInfo();
    options.build_info = {{"version", build.version},
                          {"commit", build.commit},
                          {"build_type", build.build_type}};
  }
  absl::StatusOr<std::unique_ptr<hawiya::services::Server>> server =
      hawiya::services::Server::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "hawiya-server: %s\n",
                 std::string(server.status().message()).c_str());
    return 2;
  }
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::printf("hawiya-server: listening on %s:%d\n", host.c_str(),
              (*server)->port());
  if ((*server)->health_port() != 0) {
    const std::string& health = options.health_listen;
    std::printf("hawiya-server: health on %s:%d\n",
                health.substr(0, health.rfind(':')).c_str(),
                (*server)->health_port());
  }
  if ((*server)->metrics_port() != 0) {
    const std::string& metrics = options.metrics_listen;
    std::printf("hawiya-server: metrics on %s:%d\n",
                metrics.substr(0, metrics.rfind(':')).c_str(),
                (*server)->metrics_port());
  }
  std::fflush(stdout);
  Log("INFO", "loading galleries from ", options.data_dir);
  if (absl::Status s = (*server)->WaitUntilReady(); !s.ok()) {
    std::fprintf(stderr, "hawiya-server: cannot load %s: %s\n",
                 options.data_dir.c_str(), s.ToString().c_str());
    // A wrong key file, a store newer than this binary, a bad config value:
    // a restart would only repeat it, so it exits as a usage error does
    // (the systemd unit does not restart on 2). Anything else may pass.
    return absl::IsFailedPrecondition(s) || absl::IsInvalidArgument(s) ? 2 : 1;
  }
  const char* omp_threads_env = std::getenv("OMP_NUM_THREADS");
  const hawiya::matcher::ScanPool& scan_pool =
      hawiya::matcher::ScanPool::Default();
  Log("INFO", "threads: scan pool ", scan_pool.threads(), " (batches of ",
      scan_pool.max_batch(), ", wait ",
      absl::FormatDuration(scan_pool.max_wait()), "); OpenMP ",
      omp_get_max_threads(), " (OMP_NUM_THREADS=",
      omp_threads_env != nullptr ? omp_threads_env : "unset",
      ", OMP_WAIT_POLICY=", std::getenv("OMP_WAIT_POLICY"), ")");
  std::printf("hawiya-server: serving\n");
  std::fflush(stdout);
  Log("INFO", "serving on port ", (*server)->port());
  // Under systemd (Type=notify, deploy/systemd/hawiya.service) the unit is
  // started only now: units ordered after it find the galleries loaded.
  if (absl::Status s = NotifySystemd("READY=1\nSTATUS=serving"); !s.ok()) {
    Log("WARNING", "systemd: ", s.ToString());
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  Log("INFO", "signal ", signal_number,
      ": draining in-flight calls, then the last snapshot");
  NotifySystemd("STOPPING=1\nSTATUS=draining calls, writing snapshot")
      .IgnoreError();
  (*server)->Shutdown(absl::GetFlag(FLAGS_shutdown_grace));
  server->reset();
  Log("INFO", "stopped; store closed");
  return 0;
}
