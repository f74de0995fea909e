#include "services/server.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "enroll/data_dir_lock.h"
#include "enroll/registry.h"
#include "matcher/scan_pool.h"
#include "services/auth.h"
#include "services/config.h"
#include "services/grpc_services.h"
#include "services/health_server.h"
#include "services/log.h"
#include "services/metrics.h"
#include "services/pki.h"
#include "services/roles.h"
#include "services/work_queue.h"

namespace hawiya::services {
namespace {

constexpr int kStoreThreads = 4;

std::string HostOf(const std::string& listen) {
  if (absl::StartsWith(listen, "[")) {
    return listen.substr(1, listen.find(']') - 1);
  }
  return listen.substr(0, listen.rfind(':'));
}

// Whether another socket is bound to host:port, which is why gRPC (which
// logs the cause but returns none) could not listen there: a socket of our
// own, set up as gRPC's are (SO_REUSEADDR, no SO_REUSEPORT), is refused.
bool AddressInUse(const std::string& listen) {
  const std::string host = HostOf(listen);
  const std::string port = listen.substr(listen.rfind(':') + 1);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* addresses = nullptr;
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints,
                  &addresses) != 0) {
    return false;
  }
  bool in_use = false;
  for (addrinfo* a = addresses; a != nullptr && !in_use; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    in_use = bind(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE;
    close(fd);
  }
  freeaddrinfo(addresses);
  return in_use;
}

class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options,
             std::shared_ptr<const enroll::DataDirLock> data_dir_lock,
             std::shared_ptr<grpc::ServerCredentials> credentials,
             std::shared_ptr<const AccessPolicy> access,
             std::shared_ptr<enroll::AuditLog> audit_log)
      : data_dir_lock_(std::move(data_dir_lock)),
        options_(std::move(options)),
        credentials_(std::move(credentials)),
        access_(std::move(access)),
        audit_log_(std::move(audit_log)),
        call_metrics_(KnownMethods()),
        store_queue_(kStoreThreads),
        match_queue_(MatchThreads(options_.config)),
        enrollment_(&context_),
        match_(&context_),
        admin_(&context_),
        audit_(&context_),
        partner_(&context_),
        adjudication_(&context_) {
    context_.store_queue = &store_queue_;
    context_.match_queue = &match_queue_;
    context_.access = access_.get();
    context_.before_run = options_.before_call;
    context_.audit_log = audit_log_.get();
    if (options_.config.max_receive_message_bytes() > 0) {
      context_.max_request_bytes = options_.config.max_receive_message_bytes();
    }
  }

  ~ServerImpl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Bind() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    // gRPC sets SO_REUSEPORT by default, so a second server on a port in use
    // would bind too and share its calls with the first.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort(options_.listen, credentials_, &port_);
    // The handlers enforce the configured limit, on the record.
    builder.SetMaxReceiveMessageSize(
        TransportMaxReceiveBytes(context_.max_request_bytes));
    builder.RegisterService(&enrollment_);
    builder.RegisterService(&match_);
    builder.RegisterService(&admin_);
    builder.RegisterService(&audit_);
    builder.RegisterService(&partner_);
    builder.RegisterService(&adjudication_);
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(call_metrics_.InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      if (AddressInUse(options_.listen)) {
        return absl::UnavailableError(
            absl::StrCat("listen: ", options_.listen, " is already in use"));
      }
      return absl::UnavailableError(
          absl::StrCat("listen: cannot bind ", options_.listen));
    }
    // Each service is checkable by name as well as the whole server ("").
    const std::vector<std::string>& services = ApiServiceNames();
    server_->GetHealthCheckService()->SetServingStatus("", false);
    for (const std::string& name : services) {
      server_->GetHealthCheckService()->SetServingStatus(name, false);
    }
    if (!options_.health_listen.empty()) {
      absl::StatusOr<std::unique_ptr<HealthServer>> health =
          HealthServer::Start(options_.health_listen, services, audit_log_);
      if (!health.ok()) return health.status();
      health_ = *std::move(health);
    }
    if (!options_.metrics_listen.empty()) {
      absl::StatusOr<std::unique_ptr<MetricsEndpoint>> metrics =
          MetricsEndpoint::Start(options_.metrics_listen,
                                 [this] { return RenderMetrics(); });
      if (!metrics.ok()) return metrics.status();
      metrics_ = *std::move(metrics);
      Log("INFO", "metrics: http on port ", metrics_->port(), " /metrics");
    }
    loader_ = std::thread([this] { Load(); });
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  int metrics_port() const override {
    return metrics_ != nullptr ? metrics_->port() : 0;
  }

  int health_port() const override {
    return health_ != nullptr ? health_->port() : 0;
  }

  absl::Status WaitUntilReady() override {
    loaded_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return load_status_;
  }

  void Shutdown(absl::Duration grace) override {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
      shut_down_ = true;  // also stops the background snapshots
    }
    if (server_ != nullptr) {
      SetServing(false);
      server_->Shutdown(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(grace));
      server_->Wait();
    }
    // Before the store (and the audit log) closes: its calls are audited.
    if (health_ != nullptr) health_->Shutdown(absl::ZeroDuration());
    // Waits for a load, or a background snapshot, in progress.
    if (loader_.joinable()) loader_.join();
    // Every handler has finished: nothing changes the galleries any more.
    if (registry_ != nullptr && options_.snapshots) WriteSnapshot();
    // No scrape reads the registry once the endpoint has stopped.
    metrics_.reset();
    // The registry (and its store) can close.
    context_.registry.store(nullptr);
    registry_.reset();
  }

 private:
  // Thread budget. The cores do the scanning on the scan pool's threads
  // (one per core by default, matcher::ScanPool::Default()). A match thread
  // running an exact search only waits for its pass, using no CPU, so the
  // match threads are sized for what is in flight, not for the cores: as
  // many as a pass takes (scan_max_batch) so that concurrent Identify calls
  // can fill a batch, plus one per core for the CPU work between scans
  // (Verify, fusion, other index kinds). OpenMP is left to FAISS's bulk
  // work, with idle threads sleeping (OMP_WAIT_POLICY=PASSIVE, see
  // server_main.cc); the exact scans never enter it.
  static int MatchThreads(const config::ServerConfig& config) {
    if (config.match_threads() > 0) return config.match_threads();
    const int cores =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    return cores + ScanPoolOptions(config).max_batch;
  }

  // On the main port and the health port alike. Never SERVING once
  // shutdown has begun (a load finishing during the drain).
  void SetServing(bool serving) {
    absl::MutexLock lock(&mu_);
    if (serving && shut_down_) return;
    server_->GetHealthCheckService()->SetServingStatus(serving);
    if (health_ != nullptr) health_->SetServing(serving);
  }

  // The loading thread: loads the galleries, then writes background
  // snapshots until Shutdown.
  void Load() {
    if (options_.before_load) options_.before_load();
    absl::Status status;
    absl::StatusOr<std::vector<matcher::ModalitySpec>> specs =
        ModalitySpecs(options_.config);
    absl::StatusOr<matcher::FusionOptions> fusion =
        FusionOptions(options_.config);
    if (specs.ok() && !fusion.ok()) specs = fusion.status();
    if (specs.ok()) {
      enroll::RegistryOptions registry_options;
      registry_options.data_dir = options_.data_dir;
      registry_options.data_dir_lock = data_dir_lock_;
      registry_options.modalities = *specs;
      registry_options.fusion = *fusion;
      registry_options.snapshots = options_.snapshots;
      registry_options.key_file = options_.config.key_file();
      registry_options.audit_log = audit_log_;
      registry_options.dedup = DedupOptionsOf(options_.config);
      registry_options.limits = InputLimitsOf(options_.config);
      absl::StatusOr<enroll::PartnerPolicies> policies =
          enroll::PartnerPolicies::FromConfig(options_.config);
      if (policies.ok()) {
        registry_options.partner_policies = *std::move(policies);
      } else {
        status = policies.status();
      }
      absl::StatusOr<std::unique_ptr<enroll::Registry>> registry =
          status.ok()
              ? enroll::Registry::Open(registry_options)
              : absl::StatusOr<std::unique_ptr<enroll::Registry>>(status);
      if (registry.ok()) {
        registry_ = *std::move(registry);
        const enroll::KeyReport& keys = registry_->key_report();
        if (keys.key_file_created) {
          Log("WARNING", "created key file ", keys.key_file,
              ": a development key-encryption key, next to the data it "
              "protects; in production set key_file in the config to a key "
              "kept elsewhere (hawiya admin gen-key)");
        }
        Log("INFO", "key-encryption key: ", keys.key_file, " (key check ",
            keys.key_check, ")");
        if (keys.templates_encrypted > 0) {
          Log("INFO", "encrypted ", keys.templates_encrypted,
              " templates stored in plaintext by an older version");
        }
        Log("INFO", registry_->load_report().ToString());
        context_.registry.store(registry_.get());
        SetServing(true);
      } else {
        status = registry.status();
      }
    } else {
      status = specs.status();
    }
    {
      absl::MutexLock lock(&mu_);
      load_status_ = status;
    }
    loaded_.Notify();
    if (status.ok() && options_.snapshots) SnapshotLoop();
  }

  // Writes a snapshot when snapshot_min_changes changes are not in the
  // newest one, or snapshot_interval after it if any change is not. After a
  // rebuild from the store every change counts as not in one, so a large
  // store is snapshotted soon after start.
  void SnapshotLoop() {
    const absl::Duration interval = options_.snapshot_interval;
    const bool by_time =
        interval > absl::ZeroDuration() && interval != absl::InfiniteDuration();
    // Checking costs one indexed MAX query; a second keeps the trigger
    // prompt without measurable load.
    const absl::Duration tick =
        by_time ? std::min(interval, absl::Seconds(1)) : absl::Seconds(1);
    absl::Time last = absl::Now();  // the newest snapshot's age counts from
    absl::Time next_try = absl::InfinitePast();
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&shut_down_), tick)) return;
      }
      const absl::Time now = absl::Now();
      if (now < next_try) continue;
      absl::StatusOr<int64_t> pending = registry_->ChangesSinceSnapshot();
      if (!pending.ok() || *pending <= 0) continue;
      const bool enough = options_.snapshot_min_changes > 0 &&
                          *pending >= options_.snapshot_min_changes;
      if (!enough && !(by_time && now - last >= interval)) continue;
      if (WriteSnapshot()) {
        last = absl::Now();
      } else {
        // Not every tick: a full disk would otherwise be hit with a large
        // write every second.
        next_try = absl::Now() + (by_time ? interval : absl::Minutes(1));
      }
    }
  }

  // Logs the outcome; a failure only costs a slower next start.
  bool WriteSnapshot() {
    absl::StatusOr<enroll::SnapshotReport> report = registry_->WriteSnapshot();
    if (!report.ok()) {
      Log("WARNING", "snapshot not written: ", report.status().ToString());
      return false;
    }
    if (report->written) {
      Log("INFO", report->ToString());
      last_snapshot_unix_.store(absl::ToUnixSeconds(absl::Now()));
    }
    return true;
  }

  // The methods counted by name in hawiya_rpc_calls_total: those the
  // access policy knows.
  static std::set<std::string> KnownMethods() {
    std::set<std::string> methods;
    for (const config::MethodRoles& m : AccessPolicy::DefaultMethods()) {
      methods.insert(m.method());
    }
    return methods;
  }

  // One scrape: counters kept here, gauges read now.
  std::string RenderMetrics() {
    MetricsText out;
    call_metrics_.Write(&out);
    enroll::Registry* registry = context_.registry.load();
    out.Family("hawiya_serving", "gauge",
               "1 once the galleries are loaded and calls are served.");
    out.Sample("hawiya_serving", {}, registry != nullptr ? 1 : 0);
    if (registry != nullptr) {
      const enroll::RegistryGauges gauges = registry->Gauges();
      out.Family("hawiya_gallery_templates", "gauge",
                 "Searchable templates (ACTIVE persons), by modality.");
      for (const matcher::GalleryInfo& info : gauges.galleries) {
        out.Sample(
            "hawiya_gallery_templates",
            {{"modality",
              v1::Modality_Name(static_cast<v1::Modality>(info.spec.modality))},
             {"index", info.index_kind}},
            static_cast<double>(info.templates));
      }
      out.Family("hawiya_dedup_cases_opened_total", "counter",
                 "Persons held for adjudication by deduplication.");
      out.Sample("hawiya_dedup_cases_opened_total", {},
                 static_cast<double>(gauges.cases_opened));
      if (absl::StatusOr<int64_t> pending = registry->ChangesSinceSnapshot();
          pending.ok()) {
        out.Family("hawiya_snapshot_pending_changes", "gauge",
                   "Store changes not in the newest gallery snapshot: what "
                   "the next start replays.");
        out.Sample("hawiya_snapshot_pending_changes", {},
                   static_cast<double>(*pending));
      }
    }
    out.Family("hawiya_snapshot_last_write_timestamp_seconds", "gauge",
               "When this process last wrote a gallery snapshot (Unix time; "
               "0: not yet).");
    out.Sample("hawiya_snapshot_last_write_timestamp_seconds", {},
               static_cast<double>(last_snapshot_unix_.load()));
    out.Family("hawiya_scan_pool_queued", "gauge",
               "Exact-search queries waiting for a scan pass.");
    out.Sample("hawiya_scan_pool_queued", {},
               static_cast<double>(matcher::ScanPool::Default().queued()));
    const enroll::AuditLog::CommitStats audit = audit_log_->commit_stats();
    out.Family("hawiya_audit_commit_seconds", "summary",
               "Group commits of audit records (reads, matches, refusals): "
               "their number and total time.");
    out.Sample("hawiya_audit_commit_seconds_sum", {},
               absl::ToDoubleSeconds(audit.total));
    out.Sample("hawiya_audit_commit_seconds_count", {},
               static_cast<double>(audit.commits));
    out.Family("hawiya_audit_records_committed_total", "counter",
               "Audit records written by those group commits.");
    out.Sample("hawiya_audit_records_committed_total", {},
               static_cast<double>(audit.records));
    out.Family("hawiya_build_info", "gauge",
               "The running build: always 1, with its version, commit and "
               "build type as labels.");
    out.Sample("hawiya_build_info", options_.build_info, 1);
    return out.text();
  }

  // Declared first: held until everything else is gone.
  const std::shared_ptr<const enroll::DataDirLock> data_dir_lock_;
  const ServerOptions options_;
  const std::shared_ptr<grpc::ServerCredentials> credentials_;
  const std::shared_ptr<const AccessPolicy> access_;
  // Shared with the access check (TLS) and the registry, which attaches it
  // to the store as soon as the store is open.
  const std::shared_ptr<enroll::AuditLog> audit_log_;
  int port_ = 0;
  // Declared before the services and the gRPC server so that they are
  // destroyed after them.
  std::unique_ptr<enroll::Registry> registry_;
  ServiceContext context_;
  CallMetrics call_metrics_;
  WorkQueue store_queue_;
  WorkQueue match_queue_;
  EnrollmentServiceImpl enrollment_;
  MatchServiceImpl match_;
  AdminServiceImpl admin_;
  AuditServiceImpl audit_;
  PartnerServiceImpl partner_;
  AdjudicationServiceImpl adjudication_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HealthServer> health_;  // null without health_listen
  // Stopped in Shutdown before the registry closes: scrapes read it.
  std::unique_ptr<MetricsEndpoint> metrics_;
  std::atomic<int64_t> last_snapshot_unix_{0};
  std::thread loader_;
  absl::Notification loaded_;
  absl::Mutex mu_;
  absl::Status load_status_ ABSL_GUARDED_BY(mu_);
  // Also what the snapshot loop waits on.
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// The exact galleries scan on the process-wide matcher::ScanPool::Default();
// its options must be set before the first gallery opens. A later Server in
// the same process (tests) shares the pool the first one configured.
absl::Status ConfigureScanPool(const config::ServerConfig& config) {
  if (absl::Status s = CheckScanPool(config); !s.ok()) return s;
  const matcher::ScanPoolOptions options = ScanPoolOptions(config);
  absl::Status s = matcher::ScanPool::SetDefaultOptions(options);
  if (!absl::IsFailedPrecondition(s)) return s;
  const matcher::ScanPool& pool = matcher::ScanPool::Default();
  if ((options.threads > 0 && options.threads != pool.threads()) ||
      options.max_batch != pool.max_batch() ||
      options.max_wait != pool.max_wait()) {
    Log("WARNING", "scan pool already running with ", pool.threads(),
        " threads, batches of ", pool.max_batch(),
        ": this server's scan_* settings are not applied");
  }
  return absl::OkStatus();
}

// Mutual TLS from the given files, or from the development PKI.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(
    const ServerOptions& options, std::shared_ptr<const AccessPolicy> access,
    std::shared_ptr<RateLimiter> limits,
    std::shared_ptr<enroll::AuditLog> audit_log) {
  std::string cert = options.tls_cert;
  std::string key = options.tls_key;
  std::string ca = options.client_ca;
  const int given = !cert.empty() + !key.empty() + !ca.empty();
  if (given != 0 && given != 3) {
    return absl::InvalidArgumentError(
        "tls: --tls_cert, --tls_key and --client_ca go together");
  }
  if (given == 0) {
    const std::string dir = options.data_dir + "/pki";
    absl::StatusOr<bool> wrote = EnsureDevPki(dir);
    if (!wrote.ok()) return wrote.status();
    Log("WARNING", *wrote ? "wrote" : "using", " the development PKI in ", dir,
        ": for development only (its keys lie unencrypted beside the "
        "data); in production pass --tls_cert, --tls_key and --client_ca");
    const DevPkiPaths paths = DevPkiServerPaths(dir);
    cert = paths.cert;
    key = paths.key;
    ca = paths.ca;
  }
  absl::StatusOr<std::string> cert_pem = ReadFile(cert);
  absl::StatusOr<std::string> key_pem = ReadFile(key);
  absl::StatusOr<std::string> ca_pem = ReadFile(ca);
  for (const absl::StatusOr<std::string>* pem :
       {&cert_pem, &key_pem, &ca_pem}) {
    if (!pem->ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("tls: ", pem->status().message()));
    }
  }
  if (absl::Status s = CheckTlsFiles(*cert_pem, *key_pem, *ca_pem); !s.ok()) {
    return s;
  }
  Log("INFO", "mutual TLS: certificate ", cert, ", client CA ", ca);
  return MutualTlsCredentials(*cert_pem, *key_pem, *ca_pem, std::move(access),
                              std::move(limits), std::move(audit_log));
}

}  // namespace

bool IsLoopback(const std::string& listen) {
  const std::string host = HostOf(listen);
  // Literal addresses only: a host name (127.attacker.test) may resolve
  // anywhere. localhost is the one name; gRPC resolves it through the
  // system resolver (/etc/hosts), which maps it to loopback.
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 &&
         IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  // No --tls_* flags: the development PKI (TlsCredentials), or plaintext.
  const bool development_transport =
      options.insecure ||
      (options.tls_cert.empty() && options.tls_key.empty() &&
       options.client_ca.empty());
  const std::string development_partner = AddDevelopmentPartnerPolicy(
      development_transport, options.insecure, &options.config);
  absl::StatusOr<AccessPolicy> policy =
      AccessPolicy::FromConfig(options.config, options.insecure);
  if (!policy.ok()) return policy.status();
  auto access = std::make_shared<const AccessPolicy>(*std::move(policy));
  absl::StatusOr<std::unique_ptr<RateLimiter>> limits =
      RateLimiter::FromConfig(options.config);
  if (!limits.ok()) return limits.status();
  if (absl::Status s = CheckPartnerPolicies(options.config); !s.ok()) {
    return s;
  }
  auto audit_log = std::make_shared<enroll::AuditLog>();
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (options.insecure) {
    if (!options.tls_cert.empty() || !options.tls_key.empty() ||
        !options.client_ca.empty()) {
      return absl::InvalidArgumentError(
          "insecure: --insecure and --tls_cert/--tls_key/--client_ca "
          "exclude each other");
    }
    if (!IsLoopback(options.listen)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "listen: plaintext (--insecure) is only served on loopback "
          "addresses, not ",
          options.listen));
    }
    Log("WARNING", "plaintext (--insecure): every caller is ",
        kInsecurePrincipal, " holding every role");
    // The limits hang on the TLS credentials' access check, which plaintext
    // has none of; and every plaintext caller is the same principal.
    if ((*limits)->any_limit()) {
      Log("WARNING",
          "rate limits are not applied under --insecure (plaintext has no "
          "principals)");
    }
    credentials = grpc::InsecureServerCredentials();
  }
  // One server per data folder, locked before anything in it is opened or
  // written (the development PKI, the store).
  absl::StatusOr<std::unique_ptr<enroll::DataDirLock>> data_dir_lock =
      enroll::DataDirLock::Acquire(options.data_dir);
  if (!data_dir_lock.ok()) return data_dir_lock.status();
  if (credentials == nullptr) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> tls =
        TlsCredentials(options, access,
                       std::shared_ptr<RateLimiter>(*std::move(limits)),
                       audit_log);
    if (!tls.ok()) return tls.status();
    credentials = *std::move(tls);
  }
  if (absl::Status s = ConfigureScanPool(options.config); !s.ok()) return s;
  if (!development_partner.empty()) {
    Log("WARNING", "development partner policy for ", development_partner,
        " (the config has no partner_policies): every purpose and "
        "attribute, face probes, ",
        kDevelopmentPartnerDailyQuota,
        " answers a day; for development only, never given under "
        "--tls_cert/--tls_key/--client_ca");
  }
  auto server = std::make_unique<ServerImpl>(
      std::move(options), *std::move(data_dir_lock), std::move(credentials),
      std::move(access), std::move(audit_log));
  if (absl::Status s = server->Bind(); !s.ok()) return s;
  return server;
}

}  // namespace hawiya::services
