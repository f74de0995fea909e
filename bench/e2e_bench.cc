// hawiya-bench: end-to-end benchmark of a real hawiya-server process.
//
// For each gallery size N it starts a fresh server on a new data dir, enrolls
// N synthetic persons over gRPC from --clients concurrent clients, then times
// sequential 1:N Identify calls with mated probes. In the same run it builds
// the same N vectors in-process and times matcher::Gallery::Search and raw
// FAISS IndexFlatIP on the same probes, so the gRPC/server overhead and the
// search kernel can be read apart. Results go to stdout as markdown; progress
// goes to stderr.
//
// Latency percentiles are nearest-rank over the timed calls. "rank-1 gRPC =
// exact" compares each Identify's first candidate with the in-process exact
// gallery's on the same probe: the rank-1 agreement of an approximate server
// index against exact search.
//
// HNSW over gRPC on the hard (look-alike) data, as issue 3 measures it (the
// FACE gallery configured by bench/hnsw.textproto):
//
//   build/bench/hawiya-bench --sizes=1000000 --variant=hard
//     --server_args=--config=bench/hnsw.textproto
//     --wait_for_index_kind=hnsw --measure_restart=false
//
// With an "auto" index, --wait_for_index_kind=hnsw holds the timing until
// GetStats reports the switch (the background graph build swapped in).
// A "hnsw" gallery with fp32 storage inserts into its graph during each
// Enroll, so nothing is pending once enrolment returns; GetStats cannot show
// whether a background rebuild is still queued (sq8_storage's first graph,
// compaction), so do not time those configurations through gRPC.

#include <grpcpp/grpcpp.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "faiss/Index.h"
#include "faiss/IndexFlat.h"
#include "faiss/utils/utils.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/gallery.h"
#include "matcher/synthetic.h"
#include "services/help.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

#ifndef HAWIYA_SERVER_PATH
#define HAWIYA_SERVER_PATH "hawiya-server"
#endif

ABSL_FLAG(std::vector<std::string>, sizes,
          std::vector<std::string>({"10000", "100000"}),
          "Comma-separated gallery sizes N (persons enrolled per run).");
ABSL_FLAG(int, clients, 8, "Concurrent enrolling clients (threads).");
ABSL_FLAG(int, channels, 0,
          "gRPC channels (separate TCP connections) the enrolling clients "
          "share round-robin; 0 = one per client.");
ABSL_FLAG(int, queries, 500,
          "Mated Identify probes (capture 1 of random enrolled identities).");
ABSL_FLAG(int, warmup, 20,
          "Untimed calls before each timed loop (Identify, Gallery, FAISS).");
ABSL_FLAG(uint64_t, seed, 42, "Seed of the synthetic model and the probes.");
ABSL_FLAG(std::string, server_binary, HAWIYA_SERVER_PATH,
          "hawiya-server binary to benchmark.");
ABSL_FLAG(std::string, work_dir, "",
          "Parent of the per-size data dirs (work_dir/n<N>, must not exist); "
          "empty = a fresh temp dir.");
ABSL_FLAG(bool, keep_data, false,
          "Keep the per-size data dirs (default: delete them when done).");
ABSL_FLAG(int, omp_threads, 1,
          "OpenMP (and so OpenBLAS-openmp) threads for the in-process FAISS "
          "work of this process; 0 = leave the OpenMP default. The server "
          "process is not affected.");
ABSL_FLAG(int, batch_repeats, 3,
          "Runs of the batched IndexFlatIP search; the median is reported.");
ABSL_FLAG(absl::Duration, enroll_time_limit, absl::ZeroDuration(),
          "Stop enrolling after this long and measure the persons enrolled "
          "so far (0 = no limit).");
ABSL_FLAG(std::vector<std::string>, server_args, {},
          "Extra hawiya-server flags, comma-separated (e.g. "
          "--server_args=--config=bench/hnsw.textproto). Without a --config "
          "the server runs with deduplication off (see --dedup).");
ABSL_FLAG(bool, dedup, false,
          "Deduplicate each enrollment (the server's default). Off by default "
          "here: synthetic persons share one name and repeat their date of "
          "birth, so the demographic check would hold most of them for "
          "adjudication, out of the gallery being timed; the dedup cost is "
          "measured apart (docs/PERFORMANCE.md, \"Dedup cost\"). Only used "
          "when --server_args has no --config (a bench config sets dedup "
          "itself).");
ABSL_FLAG(std::vector<std::string>, identify_clients,
          std::vector<std::string>({"1", "4", "16"}),
          "Concurrent Identify clients for the throughput columns (each with "
          "its own connection); empty = skip.");
ABSL_FLAG(double, qps_seconds, 5.0,
          "Seconds per Identify throughput measurement.");
ABSL_FLAG(std::string, variant, "easy",
          "Synthetic data: easy (iid identities) or hard (clusters of "
          "--cluster_size look-alikes, docs/API.md), for enrolment and "
          "probes.");
ABSL_FLAG(int, cluster_size, 100, "Identities per look-alike cluster (hard).");
ABSL_FLAG(std::string, wait_for_index_kind, "",
          "After enrolling, poll GetStats until the FACE gallery reports this "
          "index kind (e.g. hnsw for an auto config) before timing; empty = "
          "do not wait.");
ABSL_FLAG(absl::Duration, index_wait_limit, absl::Hours(2),
          "Give up (the size fails) if --wait_for_index_kind is not reported "
          "within this long.");
ABSL_FLAG(bool, measure_restart, true,
          "After Identify, restart the server on the same data dir and time "
          "it to 'serving' (galleries rebuilt from the store).");

namespace hawiya::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDimension = 512;
constexpr size_t kTopK = 10;
constexpr uint64_t kQueryStream = 0x7175657279ULL;  // "query"

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// Nearest-rank percentile, p in (0, 100].
double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(
      std::ceil(p / 100.0 * static_cast<double>(values.size())));
  rank = std::clamp<size_t>(rank, 1, values.size());
  return values[rank - 1];
}

double Mean(const std::vector<double>& values) {
  if (values.empty()) return NAN;
  double sum = 0.0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string BlasInUse() {
  const std::filesystem::path blas = "/usr/lib/x86_64-linux-gnu/libblas.so.3";
  std::error_code error;
  const std::filesystem::path resolved =
      std::filesystem::canonical(blas, error);
  if (error) return absl::StrCat(blas.string(), " (", error.message(), ")");
  return absl::StrCat(blas.string(), " -> ", resolved.string());
}

std::string LoadAverage() { return ReadFirstLine("/proc/loadavg"); }

struct SizeResult {
  uint64_t requested = 0;
  uint64_t enrolled = 0;
  std::string error;  // non-empty: the size failed at some step
  double enroll_seconds = 0;
  double enroll_per_second = 0;
  std::vector<double> grpc_ms;
  int grpc_rank1 = 0;
  // First candidate of each timed Identify ("" if none).
  std::vector<std::string> grpc_top;
  // grpc_top == the in-process exact gallery's first subject.
  int grpc_exact_agreement = 0;
  std::string index_kind;           // the FACE gallery's, from GetStats
  double index_wait_seconds = NAN;  // --wait_for_index_kind
  std::vector<std::pair<int, double>> grpc_qps;  // (clients, calls/s)
  double restart_seconds = NAN;
  double gallery_add_per_second = 0;
  std::vector<double> gallery_ms;
  int gallery_rank1 = 0;
  std::vector<double> faiss_ms;
  int faiss_rank1 = 0;
  int agreement = 0;  // gallery rank-1 subject == raw FAISS rank-1 label
  double batched_ms_per_query = NAN;
  int batched_agreement = 0;  // batched rank-1 == single-query rank-1
  int queries = 0;
};

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address) {
  grpc::ChannelArguments args;
  // Without this, channels with equal arguments share one connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::Status WaitConnected(grpc::Channel& channel) {
  if (!channel.WaitForConnected(std::chrono::system_clock::now() +
                                std::chrono::seconds(10))) {
    return absl::UnavailableError("channel did not connect within 10 s");
  }
  return absl::OkStatus();
}

absl::Status FromGrpc(absl::string_view what, const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

// Enrolls persons 0..n-1; fills result->subject_ids-like vector.
absl::Status Enroll(const testing::ServerProcess& server,
                    const matcher::SyntheticModel& model, uint64_t n,
                    std::vector<std::string>* subject_ids, SizeResult* result) {
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const int channel_count = absl::GetFlag(FLAGS_channels) > 0
                                ? absl::GetFlag(FLAGS_channels)
                                : clients;
  const absl::Duration limit = absl::GetFlag(FLAGS_enroll_time_limit);

  // Requests are built before the clock starts: the rate measured is the
  // server's (and the RPC's), not the synthetic model's.
  const Clock::time_point build_start = Clock::now();
  std::vector<v1::EnrollRequest> requests(n);
  for (uint64_t i = 0; i < n; ++i) {
    requests[i] = testing::MakeEnrollRequest(model, i);
  }
  std::fprintf(stderr, "[N=%llu] built %llu Enroll requests in %.1f s\n",
               static_cast<unsigned long long>(n),
               static_cast<unsigned long long>(n),
               MillisSince(build_start) / 1000.0);

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < channel_count; ++c) {
    channels.push_back(NewChannel(server.address()));
    if (absl::Status s = WaitConnected(*channels.back()); !s.ok()) return s;
  }

  subject_ids->assign(n, std::string());
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::mutex error_mu;
  absl::Status first_error;

  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::unique_ptr<v1::EnrollmentService::Stub> stub =
          v1::EnrollmentService::NewStub(channels[c % channels.size()]);
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t i = next.fetch_add(1);
        if (i >= n) break;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
        v1::EnrollResponse response;
        const grpc::Status status =
            stub->Enroll(&context, requests[i], &response);
        if (!status.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (first_error.ok()) {
            first_error = FromGrpc(absl::StrCat("Enroll person ", i), status);
          }
          stop = true;
          break;
        }
        (*subject_ids)[i] = response.person().subject_id();
        done.fetch_add(1);
      }
    });
  }

  // Progress every 5% on stderr, with the rate over the last step, the
  // overall rate and an ETA from the overall rate.
  const uint64_t step = std::max<uint64_t>(1, n / 20);
  uint64_t next_report = step;
  uint64_t last_done = 0;
  Clock::time_point last_time = start;
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const uint64_t now_done = done.load();
    const bool finished = now_done >= n || stop.load();
    if (now_done >= next_report || finished) {
      const Clock::time_point now = Clock::now();
      const double elapsed = MillisSince(start) / 1000.0;
      const double window =
          std::chrono::duration<double>(now - last_time).count();
      const double window_rate =
          window > 0 ? static_cast<double>(now_done - last_done) / window : 0;
      const double rate =
          elapsed > 0 ? static_cast<double>(now_done) / elapsed : 0;
      std::fprintf(
          stderr,
          "[N=%llu] enroll %3.0f%% %llu/%llu  %.0f/s now, %.0f/s overall, "
          "elapsed %s, ETA %s  (load %s)\n",
          static_cast<unsigned long long>(n),
          100.0 * static_cast<double>(now_done) / static_cast<double>(n),
          static_cast<unsigned long long>(now_done),
          static_cast<unsigned long long>(n), window_rate, rate,
          FormatDuration(elapsed).c_str(),
          FormatDuration(rate > 0 ? static_cast<double>(n - now_done) / rate
                                  : NAN)
              .c_str(),
          LoadAverage().c_str());
      last_done = now_done;
      last_time = now;
      while (next_report <= now_done) next_report += step;
    }
    if (finished) break;
    if (limit > absl::ZeroDuration() &&
        absl::Milliseconds(MillisSince(start)) > limit) {
      std::fprintf(stderr, "[N=%llu] enroll time limit %s reached: stopping\n",
                   static_cast<unsigned long long>(n),
                   absl::FormatDuration(limit).c_str());
      stop = true;
    }
  }
  for (std::thread& t : threads) t.join();
  result->enroll_seconds = MillisSince(start) / 1000.0;
  if (!first_error.ok()) return first_error;
  // Every index handed out was enrolled, so the enrolled set is a prefix.
  result->enrolled = std::min<uint64_t>(next.load(), n);
  subject_ids->resize(result->enrolled);
  result->enroll_per_second =
      static_cast<double>(result->enrolled) / result->enroll_seconds;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> FaceTemplates(const testing::ServerProcess& server,
                                      std::string* index_kind = nullptr) {
  std::unique_ptr<v1::AdminService::Stub> stub =
      v1::AdminService::NewStub(server.NewChannel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  v1::GetStatsResponse stats;
  const grpc::Status status =
      stub->GetStats(&context, v1::GetStatsRequest(), &stats);
  if (!status.ok()) return FromGrpc("GetStats", status);
  for (const v1::GalleryStats& gallery : stats.galleries()) {
    if (gallery.modality() != v1::FACE) continue;
    if (index_kind != nullptr) *index_kind = gallery.index_kind();
    return gallery.templates();
  }
  return absl::NotFoundError("GetStats: no FACE gallery");
}

// Polls GetStats until the FACE gallery reports `kind` (progress on stderr
// every 10 s); DEADLINE_EXCEEDED after --index_wait_limit.
absl::Status WaitForIndexKind(const testing::ServerProcess& server,
                              const std::string& kind, uint64_t n,
                              SizeResult* result) {
  const Clock::time_point start = Clock::now();
  const double limit_ms =
      absl::ToDoubleMilliseconds(absl::GetFlag(FLAGS_index_wait_limit));
  double next_report_ms = 10000;
  while (true) {
    std::string reported;
    absl::StatusOr<int64_t> templates = FaceTemplates(server, &reported);
    if (!templates.ok()) return templates.status();
    const double elapsed_ms = MillisSince(start);
    if (reported == kind) {
      result->index_wait_seconds = elapsed_ms / 1000.0;
      std::fprintf(stderr, "[N=%llu] FACE index kind %s after %.1f s\n",
                   static_cast<unsigned long long>(n), kind.c_str(),
                   result->index_wait_seconds);
      return absl::OkStatus();
    }
    if (elapsed_ms > limit_ms) {
      return absl::DeadlineExceededError(absl::StrCat(
          "GetStats: FACE index kind still \"", reported, "\", not \"", kind,
          "\", after ", FormatDuration(elapsed_ms / 1000.0)));
    }
    if (elapsed_ms >= next_report_ms) {
      std::fprintf(
          stderr, "[N=%llu] waiting for FACE index kind %s (now %s), %s\n",
          static_cast<unsigned long long>(n), kind.c_str(), reported.c_str(),
          FormatDuration(elapsed_ms / 1000.0).c_str());
      next_report_ms += 10000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

absl::Status IdentifyOverGrpc(const testing::ServerProcess& server,
                              const matcher::SyntheticModel& model,
                              const std::vector<uint64_t>& identities,
                              const std::vector<std::string>& subject_ids,
                              SizeResult* result) {
  std::vector<v1::IdentifyRequest> requests(identities.size());
  for (size_t i = 0; i < identities.size(); ++i) {
    *requests[i].add_probes() =
        services::SyntheticFaceTemplate(model, identities[i], 1);
    requests[i].set_max_candidates(kTopK);
  }
  std::shared_ptr<grpc::Channel> channel = NewChannel(server.address());
  if (absl::Status s = WaitConnected(*channel); !s.ok()) return s;
  std::unique_ptr<v1::MatchService::Stub> stub =
      v1::MatchService::NewStub(channel);
  auto call = [&](size_t i, v1::IdentifyResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    return stub->Identify(&context, requests[i], response);
  };
  const int warmup = absl::GetFlag(FLAGS_warmup);
  for (int w = 0; w < warmup; ++w) {
    v1::IdentifyResponse response;
    const grpc::Status status = call(w % requests.size(), &response);
    if (!status.ok()) return FromGrpc("Identify (warm-up)", status);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    v1::IdentifyResponse response;
    const Clock::time_point start = Clock::now();
    const grpc::Status status = call(i, &response);
    result->grpc_ms.push_back(MillisSince(start));
    if (!status.ok()) {
      return FromGrpc(absl::StrCat("Identify probe ", i), status);
    }
    result->grpc_top.push_back(response.candidates_size() > 0
                                   ? response.candidates(0).subject_id()
                                   : std::string());
    if (result->grpc_top.back() == subject_ids[identities[i]]) {
      ++result->grpc_rank1;
    }
  }
  return absl::OkStatus();
}

// Identify calls per second from `clients` concurrent clients, each with its
// own connection, over --qps_seconds.
absl::StatusOr<double> IdentifyThroughput(
    const testing::ServerProcess& server, const matcher::SyntheticModel& model,
    const std::vector<uint64_t>& identities, int clients) {
  std::vector<v1::IdentifyRequest> requests(identities.size());
  for (size_t i = 0; i < identities.size(); ++i) {
    *requests[i].add_probes() =
        services::SyntheticFaceTemplate(model, identities[i], 1);
    requests[i].set_max_candidates(kTopK);
  }
  std::vector<std::unique_ptr<v1::MatchService::Stub>> stubs;
  for (int c = 0; c < clients; ++c) {
    std::shared_ptr<grpc::Channel> channel = NewChannel(server.address());
    if (absl::Status s = WaitConnected(*channel); !s.ok()) return s;
    stubs.push_back(v1::MatchService::NewStub(channel));
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> completed{0};
  std::mutex error_mu;
  grpc::Status error;
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (size_t i = c; !stop.load(std::memory_order_relaxed); ++i) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
        v1::IdentifyResponse response;
        const grpc::Status status = stubs[c]->Identify(
            &context, requests[i % requests.size()], &response);
        if (!status.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          error = status;
          stop = true;
          return;
        }
        completed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  const double limit_ms = absl::GetFlag(FLAGS_qps_seconds) * 1000.0;
  while (!stop && MillisSince(start) < limit_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (std::thread& t : threads) t.join();
  if (!error.ok()) return FromGrpc("Identify (throughput)", error);
  return static_cast<double>(completed) / (MillisSince(start) / 1000.0);
}

// The same vectors, in this process: matcher::Gallery and raw IndexFlatIP.
// The gallery is keyed by the subject ids the server issued (32 hex digits),
// as the server's is: their hashing and copying is part of Search's cost.
absl::Status InProcess(const matcher::SyntheticModel& model,
                       const std::vector<std::string>& subject_ids,
                       const std::vector<uint64_t>& identities,
                       SizeResult* result) {
  const uint64_t n = subject_ids.size();
  const size_t d = kDimension;
  // As the server stores them: the registry normalises each template, and
  // the gallery normalises again on Add. `flat_data` is therefore what the
  // server's IndexFlatIP holds, bit for bit.
  const Clock::time_point gen_start = Clock::now();
  std::vector<matcher::GalleryEntry> entries(n);
  std::vector<float> flat_data(n * d);
  for (uint64_t i = 0; i < n; ++i) {
    entries[i].label = static_cast<int64_t>(i);
    entries[i].subject_id = subject_ids[i];
    entries[i].vector = matcher::Normalized(model.Capture(i, 0));
    const std::vector<float> twice = matcher::Normalized(entries[i].vector);
    std::copy(twice.begin(), twice.end(), flat_data.begin() + i * d);
  }
  std::fprintf(stderr, "[N=%llu] regenerated %llu captures in %.1f s\n",
               static_cast<unsigned long long>(n),
               static_cast<unsigned long long>(n),
               MillisSince(gen_start) / 1000.0);

  absl::StatusOr<std::unique_ptr<matcher::Gallery>> gallery =
      matcher::Gallery::Open({kDimension});
  if (!gallery.ok()) return gallery.status();
  constexpr size_t kAddBatch = 1000;
  const Clock::time_point add_start = Clock::now();
  for (size_t i = 0; i < entries.size(); i += kAddBatch) {
    const size_t count = std::min(kAddBatch, entries.size() - i);
    if (absl::Status s =
            (*gallery)->Add(absl::MakeConstSpan(entries.data() + i, count));
        !s.ok()) {
      return s;
    }
  }
  result->gallery_add_per_second =
      static_cast<double>(n) / (MillisSince(add_start) / 1000.0);
  entries.clear();
  entries.shrink_to_fit();

  faiss::IndexFlatIP flat(kDimension);
  flat.add(static_cast<faiss::Index::idx_t>(n), flat_data.data());
  flat_data.clear();
  flat_data.shrink_to_fit();

  const size_t q = identities.size();
  std::vector<std::vector<float>> probes(q);
  std::vector<float> flat_probes(q * d);
  for (size_t i = 0; i < q; ++i) {
    probes[i] = model.Capture(identities[i], 1);
    const std::vector<float> unit = matcher::Normalized(probes[i]);
    std::copy(unit.begin(), unit.end(), flat_probes.begin() + i * d);
  }
  const int warmup = absl::GetFlag(FLAGS_warmup);

  // matcher::Gallery, one probe at a time.
  std::vector<std::string> gallery_top(q);
  for (int w = 0; w < warmup; ++w) {
    absl::StatusOr<std::vector<matcher::SubjectScore>> top =
        (*gallery)->Search(probes[w % q], kTopK);
    if (!top.ok()) return top.status();
  }
  for (size_t i = 0; i < q; ++i) {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<std::vector<matcher::SubjectScore>> top =
        (*gallery)->Search(probes[i], kTopK);
    result->gallery_ms.push_back(MillisSince(start));
    if (!top.ok()) return top.status();
    if (!top->empty()) gallery_top[i] = top->front().subject_id;
    if (gallery_top[i] == subject_ids[identities[i]]) ++result->gallery_rank1;
    if (i < result->grpc_top.size() && !gallery_top[i].empty() &&
        result->grpc_top[i] == gallery_top[i]) {
      ++result->grpc_exact_agreement;
    }
  }

  // Raw IndexFlatIP, one probe at a time.
  std::vector<float> scores(kTopK);
  std::vector<faiss::Index::idx_t> labels(kTopK);
  std::vector<faiss::Index::idx_t> faiss_top(q, -1);
  for (int w = 0; w < warmup; ++w) {
    flat.search(1, flat_probes.data() + (w % q) * d, kTopK, scores.data(),
                labels.data());
  }
  for (size_t i = 0; i < q; ++i) {
    const Clock::time_point start = Clock::now();
    flat.search(1, flat_probes.data() + i * d, kTopK, scores.data(),
                labels.data());
    result->faiss_ms.push_back(MillisSince(start));
    faiss_top[i] = labels[0];
    if (labels[0] == static_cast<faiss::Index::idx_t>(identities[i])) {
      ++result->faiss_rank1;
    }
    if (labels[0] >= 0 && gallery_top[i] == subject_ids[labels[0]]) {
      ++result->agreement;
    }
  }

  // Raw IndexFlatIP, every probe in one call (BLAS sgemm path).
  std::vector<float> batch_scores(q * kTopK);
  std::vector<faiss::Index::idx_t> batch_labels(q * kTopK);
  std::vector<double> per_query;
  const int repeats = std::max(1, absl::GetFlag(FLAGS_batch_repeats));
  for (int r = 0; r < repeats; ++r) {
    const Clock::time_point start = Clock::now();
    flat.search(static_cast<faiss::Index::idx_t>(q), flat_probes.data(), kTopK,
                batch_scores.data(), batch_labels.data());
    per_query.push_back(MillisSince(start) / static_cast<double>(q));
  }
  result->batched_ms_per_query = Percentile(per_query, 50);
  for (size_t i = 0; i < q; ++i) {
    if (batch_labels[i * kTopK] == faiss_top[i]) ++result->batched_agreement;
  }
  return absl::OkStatus();
}

SizeResult RunSize(uint64_t n, const std::string& work_dir) {
  SizeResult result;
  result.requested = n;
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  matcher::SyntheticOptions options;
  options.dimension = kDimension;
  options.seed = seed;
  options.hard = absl::GetFlag(FLAGS_variant) == "hard";
  options.cluster_size = absl::GetFlag(FLAGS_cluster_size);
  const matcher::SyntheticModel model(options);

  const std::string data_dir = absl::StrCat(work_dir, "/n", n);
  std::error_code error;
  if (std::filesystem::exists(data_dir, error)) {
    result.error = absl::StrCat(data_dir, " already exists; want a fresh one");
    return result;
  }
  const std::string binary = absl::GetFlag(FLAGS_server_binary);
  std::vector<std::string> server_args = absl::GetFlag(FLAGS_server_args);
  const bool has_config = std::any_of(
      server_args.begin(), server_args.end(),
      [](const std::string& arg) { return absl::StartsWith(arg, "--config"); });
  if (!has_config && !absl::GetFlag(FLAGS_dedup)) {
    const std::string config = data_dir + ".bench.textproto";
    std::ofstream(config, std::ios::trunc) << "dedup { enabled: false }\n";
    server_args.push_back("--config=" + config);
  }
  std::fprintf(stderr, "[N=%llu] starting %s --data_dir=%s\n",
               static_cast<unsigned long long>(n), binary.c_str(),
               data_dir.c_str());
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(binary, data_dir, server_args);
  if (!server.ok()) {
    result.error = server.status().ToString();
    return result;
  }

  auto finish = [&](absl::Status status) {
    if (!status.ok()) result.error = status.ToString();
    if (server.ok() && *server != nullptr) {
      const int exit_code = (*server)->Terminate();
      if (exit_code != 0) {
        std::fprintf(stderr, "[N=%llu] server exited with %d on SIGTERM\n",
                     static_cast<unsigned long long>(n), exit_code);
      }
      server->reset();
    }
    if (!absl::GetFlag(FLAGS_keep_data)) {
      std::error_code remove_error;
      std::filesystem::remove_all(data_dir, remove_error);
    }
    return result;
  };

  std::vector<std::string> subject_ids;
  if (absl::Status s = Enroll(**server, model, n, &subject_ids, &result);
      !s.ok()) {
    return finish(s);
  }
  const uint64_t enrolled = result.enrolled;
  std::fprintf(stderr, "[N=%llu] enrolled %llu persons in %.1f s: %.1f/s\n",
               static_cast<unsigned long long>(n),
               static_cast<unsigned long long>(enrolled), result.enroll_seconds,
               result.enroll_per_second);
  if (enrolled == 0) return finish(absl::InternalError("nothing enrolled"));
  absl::StatusOr<int64_t> templates =
      FaceTemplates(**server, &result.index_kind);
  if (!templates.ok()) return finish(templates.status());
  if (*templates != static_cast<int64_t>(enrolled)) {
    return finish(absl::InternalError(
        absl::StrCat("GetStats: FACE gallery holds ", *templates,
                     " templates, ", enrolled, " persons were enrolled")));
  }
  if (const std::string kind = absl::GetFlag(FLAGS_wait_for_index_kind);
      !kind.empty()) {
    if (absl::Status s = WaitForIndexKind(**server, kind, n, &result);
        !s.ok()) {
      return finish(s);
    }
    result.index_kind = kind;
  }

  const int queries = std::max(1, absl::GetFlag(FLAGS_queries));
  result.queries = queries;
  std::mt19937_64 rng(seed ^ kQueryStream);
  std::uniform_int_distribution<uint64_t> pick(0, enrolled - 1);
  std::vector<uint64_t> identities(queries);
  for (uint64_t& identity : identities) identity = pick(rng);

  std::fprintf(stderr, "[N=%llu] Identify: %d warm-up + %d timed calls\n",
               static_cast<unsigned long long>(n), absl::GetFlag(FLAGS_warmup),
               queries);
  if (absl::Status s =
          IdentifyOverGrpc(**server, model, identities, subject_ids, &result);
      !s.ok()) {
    return finish(s);
  }
  for (const std::string& text : absl::GetFlag(FLAGS_identify_clients)) {
    int clients = 0;
    if (!absl::SimpleAtoi(text, &clients) || clients <= 0) {
      return finish(absl::InvalidArgumentError(
          absl::StrCat("--identify_clients: bad count '", text, "'")));
    }
    std::fprintf(stderr, "[N=%llu] Identify throughput, %d clients\n",
                 static_cast<unsigned long long>(n), clients);
    absl::StatusOr<double> qps =
        IdentifyThroughput(**server, model, identities, clients);
    if (!qps.ok()) return finish(qps.status());
    result.grpc_qps.emplace_back(clients, *qps);
  }

  if (absl::GetFlag(FLAGS_measure_restart)) {
    const int exit_code = (*server)->Terminate();
    server->reset();
    if (exit_code != 0) {
      return finish(absl::InternalError(
          absl::StrCat("server exited with ", exit_code, " on SIGTERM")));
    }
    const Clock::time_point start = Clock::now();
    server = testing::ServerProcess::Start(binary, data_dir, server_args);
    if (!server.ok()) return finish(server.status());
    result.restart_seconds = MillisSince(start) / 1000.0;
    absl::StatusOr<int64_t> reloaded = FaceTemplates(**server);
    if (!reloaded.ok()) return finish(reloaded.status());
    if (*reloaded != static_cast<int64_t>(enrolled)) {
      return finish(absl::InternalError(absl::StrCat(
          "after restart the FACE gallery holds ", *reloaded, " templates")));
    }
    std::fprintf(stderr, "[N=%llu] restart to serving: %.1f s\n",
                 static_cast<unsigned long long>(n), result.restart_seconds);
  }
  // The server is not needed any more: stop it before the in-process part so
  // the two do not compete for the CPU.
  finish(absl::OkStatus());

  std::fprintf(stderr, "[N=%llu] in-process Gallery and IndexFlatIP\n",
               static_cast<unsigned long long>(n));
  if (absl::Status s = InProcess(model, subject_ids, identities, &result);
      !s.ok()) {
    result.error = s.ToString();
  }
  return result;
}

std::string Ms(double ms) {
  if (!std::isfinite(ms)) return "-";
  return ms < 1.0 ? absl::StrFormat("%.3f", ms) : absl::StrFormat("%.2f", ms);
}

std::string Ratio(int hits, int total) {
  if (total <= 0) return "-";
  return absl::StrFormat("%d/%d (%.1f%%)", hits, total,
                         100.0 * hits / static_cast<double>(total));
}

void PrintReport(const std::vector<SizeResult>& results,
                 const std::string& command, const std::string& load_start) {
  const char* omp_env = std::getenv("OMP_NUM_THREADS");
  std::printf("## hawiya-bench\n\n");
  std::printf("- command: `%s`\n", command.c_str());
  std::printf("- date: %s\n", absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                               absl::Now(), absl::UTCTimeZone())
                                  .c_str());
  std::printf("- machine: %ld CPUs (nproc), %s\n",
              sysconf(_SC_NPROCESSORS_ONLN), CpuModel().c_str());
  std::printf("- BLAS: %s\n", BlasInUse().c_str());
  std::printf("- FAISS %d.%d.%d, compile options: \"%s\"\n",
              FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR, FAISS_VERSION_PATCH,
              faiss::get_compile_options().c_str());
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  std::printf("- server environment: OMP_NUM_THREADS=%s, OMP_WAIT_POLICY=%s\n",
              omp_env != nullptr ? omp_env : "unset",
              wait_policy != nullptr ? wait_policy : "unset");
  std::printf(
      "- in-process OpenMP threads: %d (--omp_threads=%d; "
      "OMP_NUM_THREADS=%s)\n",
      omp_get_max_threads(), absl::GetFlag(FLAGS_omp_threads),
      omp_env != nullptr ? omp_env : "unset");
  std::printf(
      "- load average (1/5/15 min, runnable/total, last pid): start "
      "`%s`, end `%s`\n",
      load_start.c_str(), LoadAverage().c_str());
  std::printf(
      "- d=%d, k=%zu, %d enrolling clients, %d warm-up calls, seed %llu, "
      "%s data%s\n",
      kDimension, kTopK, absl::GetFlag(FLAGS_clients),
      absl::GetFlag(FLAGS_warmup),
      static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)),
      absl::GetFlag(FLAGS_variant).c_str(),
      absl::GetFlag(FLAGS_variant) == "hard"
          ? absl::StrCat(" (clusters of ", absl::GetFlag(FLAGS_cluster_size),
                         " look-alikes)")
                .c_str()
          : "");
  std::printf(
      "\nLatencies in ms, p50 / p99 (nearest rank) over the timed "
      "queries; \"rank-1\" is mated probes whose best candidate is "
      "their own identity; \"rank-1 gRPC = exact\" is Identify's first "
      "candidate equal to the in-process exact gallery's.\n\n");
  std::printf(
      "| N | enroll/s | Identify gRPC p50 / p99 (mean) | Gallery in-process "
      "p50 / p99 | IndexFlatIP p50 / p99 | IndexFlatIP batched, per query | "
      "rank-1 gRPC | rank-1 gRPC = exact | rank-1 Gallery = IndexFlatIP |\n");
  std::printf("|---:|---:|---|---|---|---:|---|---|---|\n");
  for (const SizeResult& r : results) {
    std::string n = absl::StrCat(r.enrolled);
    if (r.enrolled != r.requested) {
      absl::StrAppend(&n, " (of ", r.requested, ")");
    }
    if (r.grpc_ms.empty() && !r.error.empty()) {
      std::printf("| %s | failed: %s | | | | | | | |\n", n.c_str(),
                  r.error.c_str());
      continue;
    }
    std::printf(
        "| %s | %.0f | %s / %s (%s) | %s / %s | %s / %s | %s | %s | %s | %s "
        "|\n",
        n.c_str(), r.enroll_per_second, Ms(Percentile(r.grpc_ms, 50)).c_str(),
        Ms(Percentile(r.grpc_ms, 99)).c_str(), Ms(Mean(r.grpc_ms)).c_str(),
        Ms(Percentile(r.gallery_ms, 50)).c_str(),
        Ms(Percentile(r.gallery_ms, 99)).c_str(),
        Ms(Percentile(r.faiss_ms, 50)).c_str(),
        Ms(Percentile(r.faiss_ms, 99)).c_str(),
        Ms(r.batched_ms_per_query).c_str(),
        Ratio(r.grpc_rank1, static_cast<int>(r.grpc_ms.size())).c_str(),
        Ratio(r.grpc_exact_agreement,
              r.gallery_ms.empty() ? 0 : static_cast<int>(r.grpc_top.size()))
            .c_str(),
        Ratio(r.agreement, static_cast<int>(r.faiss_ms.size())).c_str());
  }
  std::printf("\nDetails:\n\n");
  for (const SizeResult& r : results) {
    std::printf("- N=%llu: enrolled %llu in %.1f s",
                static_cast<unsigned long long>(r.requested),
                static_cast<unsigned long long>(r.enrolled), r.enroll_seconds);
    if (!r.index_kind.empty()) {
      std::printf("; FACE index kind %s", r.index_kind.c_str());
    }
    if (std::isfinite(r.index_wait_seconds)) {
      std::printf(" (reported %.1f s after enrolment ended)",
                  r.index_wait_seconds);
    }
    for (const auto& [clients, qps] : r.grpc_qps) {
      std::printf("; Identify gRPC %.0f calls/s with %d clients", qps, clients);
    }
    if (std::isfinite(r.restart_seconds)) {
      std::printf("; restart to serving %.1f s", r.restart_seconds);
    }
    if (!r.gallery_ms.empty()) {
      std::printf(
          "; in-process Gallery::Add %.0f/s (batches of 1000); rank-1 Gallery "
          "%s, IndexFlatIP %s; batched = single-query rank-1 %s; Gallery mean "
          "%s ms, IndexFlatIP mean %s ms",
          r.gallery_add_per_second,
          Ratio(r.gallery_rank1, static_cast<int>(r.gallery_ms.size())).c_str(),
          Ratio(r.faiss_rank1, static_cast<int>(r.faiss_ms.size())).c_str(),
          Ratio(r.batched_agreement, static_cast<int>(r.faiss_ms.size()))
              .c_str(),
          Ms(Mean(r.gallery_ms)).c_str(), Ms(Mean(r.faiss_ms)).c_str());
    }
    if (!r.error.empty()) std::printf("; ERROR: %s", r.error.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  std::string command = "hawiya-bench";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&command, " ", argv[i]);
  services::HandleHelp(
      argc, argv,
      "End-to-end benchmark of hawiya-server: enrollment throughput over gRPC "
      "and Identify latency, with matcher::Gallery and raw FAISS IndexFlatIP "
      "timed in-process on the same vectors.\n"
      "Usage: hawiya-bench [--sizes=10000,100000] [--clients=8] "
      "[--queries=500] [--seed=42] [--variant=easy|hard] "
      "[--server_args=--config=FILE] [--wait_for_index_kind=hnsw] "
      "[--server_binary=PATH] [--work_dir=DIR]\n"
      "Prints a markdown report on stdout and progress on stderr. Each size "
      "starts a fresh server on WORK_DIR/n<N> and stops it when done.",
      "e2e_bench.cc");
  absl::ParseCommandLine(argc, argv);

  std::vector<uint64_t> sizes;
  for (const std::string& text : absl::GetFlag(FLAGS_sizes)) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(text, &n) || n == 0) {
      std::fprintf(stderr, "hawiya-bench: --sizes: bad size '%s'\n",
                   text.c_str());
      return 2;
    }
    sizes.push_back(n);
  }
  if (const std::string variant = absl::GetFlag(FLAGS_variant);
      variant != "easy" && variant != "hard") {
    std::fprintf(stderr, "hawiya-bench: --variant: '%s' (easy or hard)\n",
                 variant.c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_cluster_size) < 1) {
    std::fprintf(stderr, "hawiya-bench: --cluster_size must be >= 1\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_omp_threads) > 0) {
    omp_set_num_threads(absl::GetFlag(FLAGS_omp_threads));
  }
  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  const bool own_work_dir = work_dir.empty();
  if (own_work_dir) {
    work_dir = testing::NewTempDir("hawiya-bench");
    if (work_dir.empty()) {
      std::fprintf(stderr, "hawiya-bench: cannot create a temp dir\n");
      return 1;
    }
  } else {
    std::error_code error;
    std::filesystem::create_directories(work_dir, error);
    if (error) {
      std::fprintf(stderr, "hawiya-bench: --work_dir=%s: %s\n",
                   work_dir.c_str(), error.message().c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "hawiya-bench: work dir %s\n", work_dir.c_str());
  // Start servers as deploy/run-server.sh does: FAISS's idle OpenMP threads
  // wait passively instead of spinning (an explicit setting is kept).
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);

  const std::string load_start = LoadAverage();
  std::vector<SizeResult> results;
  bool failed = false;
  for (uint64_t n : sizes) {
    const Clock::time_point start = Clock::now();
    results.push_back(RunSize(n, work_dir));
    failed |= !results.back().error.empty();
    std::fprintf(stderr, "[N=%llu] done in %s%s\n",
                 static_cast<unsigned long long>(n),
                 FormatDuration(MillisSince(start) / 1000.0).c_str(),
                 results.back().error.empty()
                     ? ""
                     : absl::StrCat(": ", results.back().error).c_str());
  }
  if (own_work_dir && !absl::GetFlag(FLAGS_keep_data)) {
    std::error_code error;
    std::filesystem::remove_all(work_dir, error);
  }
  PrintReport(results, command, load_start);
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace hawiya::bench

int main(int argc, char** argv) { return hawiya::bench::Main(argc, argv); }
