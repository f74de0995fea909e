// hawiya-cold-start-bench: how long a real hawiya-server takes from start to
// "serving", with and without a gallery snapshot.
//
// For each size N it fills a data dir with N synthetic persons (one FACE
// template each, the matcher/synthetic.h model) in process, straight through
// enroll::Store::CreatePersons (much faster than gRPC), then times:
//   1. start -> serving with no snapshot (galleries rebuilt from SQLite);
//   2. SIGTERM -> exit, which writes the snapshot;
//   3. start -> serving from that snapshot;
//   4. start -> serving from that snapshot plus --replay_changes persons
//      added to the store after it (replayed at start).
// The server's own start-up and snapshot log lines are quoted in the report.
// It also times the snapshot checksum (XXH64) against SHA-256 on one buffer.
//
// Results go to stdout as markdown; progress goes to stderr. Page cache: the
// store and the snapshot were just written, so the starts read them from
// memory, as a restart on a running machine does; a first start after a
// reboot also waits on the disk.

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
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
#include "absl/strings/str_split.h"
#include "enroll/store.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/gallery.h"
#include "matcher/synthetic.h"
#include "matcher/xxh64.h"
#include "services/help.h"
#include "services/synthetic_requests.h"
#include "tests/testing/server_process.h"

#ifndef HAWIYA_SERVER_PATH
#define HAWIYA_SERVER_PATH "hawiya-server"
#endif

ABSL_FLAG(std::vector<std::string>, sizes,
          std::vector<std::string>({"100000", "1000000"}),
          "Comma-separated numbers of persons N (one FACE template each).");
ABSL_FLAG(std::string, work_dir, "",
          "Parent of the per-size data dirs (work_dir/n<N>). A data dir that "
          "already holds at least N persons is reused as it is (its filling "
          "takes minutes at 1M); empty = a fresh temp dir.");
ABSL_FLAG(bool, keep_data, false,
          "Keep the data dirs (default: delete them when done, unless "
          "--work_dir was given).");
ABSL_FLAG(int64_t, replay_changes, 10000,
          "Persons added to the store after the snapshot, replayed at the "
          "last start (0: skip that start).");
ABSL_FLAG(int, fill_batch, 5000, "Persons per store transaction when filling.");
ABSL_FLAG(uint64_t, seed, 42, "Seed of the synthetic model.");
ABSL_FLAG(int, hash_mib, 1024,
          "MiB hashed with XXH64 and SHA-256 to compare checksum speed "
          "(0: skip).");
ABSL_FLAG(std::string, server_binary, HAWIYA_SERVER_PATH,
          "hawiya-server binary to time.");

namespace hawiya::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Person n as the registry would store it: random-looking subject id,
// ACTIVE, one normalised FACE template (capture 0 of identity n).
enroll::NewPerson MakePerson(const matcher::SyntheticModel& model, uint64_t n,
                             uint64_t seed) {
  enroll::NewPerson p;
  p.key.request_id = absl::StrCat("fill-", n);
  p.key.method = "Enroll";
  p.key.fingerprint = absl::StrCat("fill-", seed, "-", n);
  p.person = services::SyntheticPerson(n);
  p.person.set_subject_id(
      absl::StrFormat("%016x%016x", Mix(seed ^ n), Mix((seed << 1) ^ ~n)));
  p.person.set_state(v1::ACTIVE);
  v1::Template t = services::SyntheticFaceTemplate(model, n, 0);
  const std::vector<float> unit = matcher::Normalized(t.vector());
  t.mutable_vector()->Assign(unit.begin(), unit.end());
  p.templates.push_back(std::move(t));
  return p;
}

// Adds persons [first, first + count) to the store: one thread generates
// the synthetic vectors, this one writes, a couple of batches apart.
absl::Status Fill(enroll::Store& store, uint64_t first, uint64_t count,
                  const char* what) {
  const matcher::SyntheticModel model{
      matcher::SyntheticOptions{512, absl::GetFlag(FLAGS_seed)}};
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const uint64_t batch = std::max(1, absl::GetFlag(FLAGS_fill_batch));
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<enroll::NewPerson>> ready;
  bool stop = false;
  std::thread producer([&] {
    for (uint64_t begin = first; begin < first + count; begin += batch) {
      std::vector<enroll::NewPerson> persons;
      for (uint64_t n = begin; n < std::min(first + count, begin + batch);
           ++n) {
        persons.push_back(MakePerson(model, n, seed));
      }
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return ready.size() < 2 || stop; });
      if (stop) return;
      ready.push_back(std::move(persons));
      cv.notify_all();
    }
  });
  const Clock::time_point start = Clock::now();
  Clock::time_point last_report = start;
  absl::Status status;
  for (uint64_t done = 0; done < count && status.ok();) {
    std::vector<enroll::NewPerson> persons;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !ready.empty(); });
      persons = std::move(ready.front());
      ready.pop_front();
      cv.notify_all();
    }
    absl::StatusOr<std::vector<enroll::WriteResult>> written =
        store.CreatePersons(persons);
    if (!written.ok()) status = written.status();
    done += persons.size();
    if (SecondsSince(last_report) > 10 || done == count) {
      last_report = Clock::now();
      const double elapsed = SecondsSince(start);
      std::fprintf(stderr, "  %s: %llu / %llu persons, %.0f/s, %.0f s left\n",
                   what, static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(count), done / elapsed,
                   (count - done) / (done / elapsed));
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  producer.join();
  return status;
}

absl::StatusOr<int64_t> Persons(enroll::Store& store) {
  absl::StatusOr<std::map<v1::PersonState, int64_t>> counts =
      store.CountPersons();
  if (!counts.ok()) return counts.status();
  int64_t total = 0;
  for (const auto& [state, count] : *counts) total += count;
  return total;
}

struct Start {
  double seconds = 0;
  std::string log;  // the server's stderr for this run
};

// Starts the server, times it to "serving", then stops it with SIGTERM and
// times that too (the shutdown snapshot).
absl::Status TimeStart(const std::string& data_dir, const std::string& log,
                       Start* started, Start* stopped) {
  const std::vector<std::string> args = {
      // No background snapshot during the timed phases; SIGTERM writes one.
      "--snapshot_min_changes=0", "--snapshot_interval=0"};
  fs::remove(log);
  const Clock::time_point start = Clock::now();
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(absl::GetFlag(FLAGS_server_binary),
                                    data_dir, args, log);
  if (!server.ok()) return server.status();
  started->seconds = SecondsSince(start);
  started->log = Slurp(log);
  const Clock::time_point stop = Clock::now();
  const int code = (*server)->Terminate();
  stopped->seconds = SecondsSince(stop);
  stopped->log = Slurp(log).substr(started->log.size());
  if (code != 0) {
    return absl::InternalError(absl::StrCat("server exited ", code));
  }
  return absl::OkStatus();
}

// The first log line containing `what`, without its timestamp.
std::string LogLine(const std::string& log, absl::string_view what) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find(what);
    if (at != absl::string_view::npos) return std::string(line.substr(at));
  }
  return "(none)";
}

struct SizeResult {
  uint64_t n = 0;
  double fill_seconds = -1;  // < 0: reused
  uint64_t db_bytes = 0;
  uint64_t snapshot_bytes = 0;
  Start rebuild, shutdown_write, from_snapshot, from_snapshot_replay;
  int64_t replayed = 0;
  std::string error;
};

uint64_t DbBytes(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code error;
  for (const char* name : {"hawiya.db", "hawiya.db-wal"}) {
    const fs::path path = fs::path(dir) / name;
    if (fs::exists(path, error)) bytes += fs::file_size(path, error);
  }
  return bytes;
}

uint64_t SnapshotBytes(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code error;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(fs::path(dir) / "snapshots", error)) {
    if (absl::EndsWith(entry.path().string(), ".hws")) {
      bytes = std::max<uint64_t>(bytes, entry.file_size(error));
    }
  }
  return bytes;
}

SizeResult RunSize(uint64_t n, const std::string& work_dir) {
  SizeResult r;
  r.n = n;
  const std::string dir = absl::StrCat(work_dir, "/n", n);
  const std::string log = absl::StrCat(work_dir, "/n", n, ".log");
  fs::create_directories(dir);
  {
    absl::StatusOr<std::unique_ptr<enroll::Store>> store =
        enroll::Store::Open({dir + "/hawiya.db"});
    if (!store.ok()) {
      r.error = store.status().ToString();
      return r;
    }
    absl::StatusOr<int64_t> have = Persons(**store);
    if (!have.ok()) {
      r.error = have.status().ToString();
      return r;
    }
    if (*have >= static_cast<int64_t>(n)) {
      std::fprintf(stderr, "[N=%llu] reusing %s (%lld persons)\n",
                   static_cast<unsigned long long>(n), dir.c_str(),
                   static_cast<long long>(*have));
    } else if (*have > 0) {
      r.error = absl::StrCat(dir, " holds ", *have, " persons, not ", n,
                             ": remove it or pick another --work_dir");
      return r;
    } else {
      std::fprintf(stderr, "[N=%llu] filling %s\n",
                   static_cast<unsigned long long>(n), dir.c_str());
      const Clock::time_point start = Clock::now();
      if (absl::Status s = Fill(**store, 0, n, "fill"); !s.ok()) {
        r.error = s.ToString();
        return r;
      }
      r.fill_seconds = SecondsSince(start);
    }
  }
  r.db_bytes = DbBytes(dir);

  fs::remove_all(fs::path(dir) / "snapshots");
  std::fprintf(stderr, "[N=%llu] start with no snapshot (rebuild)\n",
               static_cast<unsigned long long>(n));
  if (absl::Status s = TimeStart(dir, log, &r.rebuild, &r.shutdown_write);
      !s.ok()) {
    r.error = s.ToString();
    return r;
  }
  r.snapshot_bytes = SnapshotBytes(dir);
  std::fprintf(stderr, "[N=%llu] start from the snapshot\n",
               static_cast<unsigned long long>(n));
  Start unused;
  if (absl::Status s = TimeStart(dir, log, &r.from_snapshot, &unused);
      !s.ok()) {
    r.error = s.ToString();
    return r;
  }
  const int64_t changes = absl::GetFlag(FLAGS_replay_changes);
  if (changes > 0) {
    {
      absl::StatusOr<std::unique_ptr<enroll::Store>> store =
          enroll::Store::Open({dir + "/hawiya.db"});
      if (!store.ok()) {
        r.error = store.status().ToString();
        return r;
      }
      // New persons after every one the data dir may already hold.
      absl::StatusOr<int64_t> have = Persons(**store);
      if (!have.ok()) {
        r.error = have.status().ToString();
        return r;
      }
      std::fprintf(stderr, "[N=%llu] adding %lld persons after the snapshot\n",
                   static_cast<unsigned long long>(n),
                   static_cast<long long>(changes));
      if (absl::Status s = Fill(**store, 100000000 + *have,
                                static_cast<uint64_t>(changes), "changes");
          !s.ok()) {
        r.error = s.ToString();
        return r;
      }
    }
    std::fprintf(stderr, "[N=%llu] start from the snapshot + replay\n",
                 static_cast<unsigned long long>(n));
    if (absl::Status s = TimeStart(dir, log, &r.from_snapshot_replay, &unused);
        !s.ok()) {
      r.error = s.ToString();
      return r;
    }
    r.replayed = changes;
  }
  return r;
}

// GB/s (1e9 bytes) of XXH64 and SHA-256 over the same buffer, best of 3.
void HashSpeeds(double* xxh64, double* sha256) {
  const size_t bytes = static_cast<size_t>(absl::GetFlag(FLAGS_hash_mib)) << 20;
  std::vector<unsigned char> buffer(bytes);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(buffer.data() + i, &v, 8);
  }
  *xxh64 = *sha256 = 0;
  volatile uint64_t sink = 0;
  for (int run = 0; run < 3; ++run) {
    Clock::time_point start = Clock::now();
    sink = sink + matcher::Xxh64Hash(buffer.data(), bytes);
    *xxh64 = std::max(*xxh64, bytes / SecondsSince(start) / 1e9);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    start = Clock::now();
    EVP_Digest(buffer.data(), bytes, digest, &length, EVP_sha256(), nullptr);
    *sha256 = std::max(*sha256, bytes / SecondsSince(start) / 1e9);
    sink = sink + digest[0];
  }
}

std::string Seconds(const Start& s) {
  return absl::StrFormat("%.2f", s.seconds);
}

std::string GiB(uint64_t bytes) {
  return absl::StrFormat("%.2f GiB", bytes / double{1 << 30});
}

int Main(int argc, char** argv) {
  std::string command = "hawiya-cold-start-bench";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&command, " ", argv[i]);
  services::HandleHelp(
      argc, argv,
      "Times hawiya-server from start to 'serving' with and without a "
      "gallery snapshot, on data dirs filled with N synthetic persons.\n"
      "Usage: hawiya-cold-start-bench [--sizes=100000,1000000] "
      "[--work_dir=DIR] [--replay_changes=10000] [--hash_mib=1024]\n"
      "Prints a markdown report on stdout and progress on stderr. 1M persons "
      "need ~2 GiB of RAM in the server and ~7 GiB of disk (store, WAL, "
      "snapshot).",
      "cold_start_bench.cc");
  absl::ParseCommandLine(argc, argv);

  std::vector<uint64_t> sizes;
  for (const std::string& text : absl::GetFlag(FLAGS_sizes)) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(text, &n) || n == 0) {
      std::fprintf(stderr, "hawiya-cold-start-bench: --sizes: bad size '%s'\n",
                   text.c_str());
      return 2;
    }
    sizes.push_back(n);
  }
  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  const bool own_work_dir = work_dir.empty();
  if (own_work_dir) work_dir = testing::NewTempDir("hawiya-cold-start");
  std::error_code error;
  fs::create_directories(work_dir, error);
  if (work_dir.empty() || error) {
    std::fprintf(stderr, "hawiya-cold-start-bench: cannot use work dir '%s'\n",
                 work_dir.c_str());
    return 1;
  }
  std::fprintf(stderr, "hawiya-cold-start-bench: work dir %s\n",
               work_dir.c_str());
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);

  const std::string load_start = LoadAverage();
  double xxh64 = 0, sha256 = 0;
  if (absl::GetFlag(FLAGS_hash_mib) > 0) {
    std::fprintf(stderr, "hashing %d MiB with XXH64 and SHA-256\n",
                 absl::GetFlag(FLAGS_hash_mib));
    HashSpeeds(&xxh64, &sha256);
  }
  std::vector<SizeResult> results;
  bool failed = false;
  for (uint64_t n : sizes) {
    results.push_back(RunSize(n, work_dir));
    if (!results.back().error.empty()) {
      failed = true;
      std::fprintf(stderr, "[N=%llu] error: %s\n",
                   static_cast<unsigned long long>(n),
                   results.back().error.c_str());
    }
  }
  if (own_work_dir && !absl::GetFlag(FLAGS_keep_data)) {
    fs::remove_all(work_dir, error);
  }

  std::printf(
      "## Cold start\n\n`%s`, load average %s at the start, %s at "
      "the end.\n\n",
      command.c_str(), load_start.c_str(), LoadAverage().c_str());
  if (xxh64 > 0) {
    std::printf(
        "Checksum speed over %d MiB, best of 3: XXH64 %.2f GB/s, OpenSSL "
        "SHA-256 %.2f GB/s.\n\n",
        absl::GetFlag(FLAGS_hash_mib), xxh64, sha256);
  }
  std::printf(
      "| N | store | snapshot | fill (s) | no snapshot: start → serving (s) | "
      "SIGTERM → exit, writing the snapshot (s) | snapshot: start → serving "
      "(s) | snapshot + %lld changes: start → serving (s) |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|\n",
      static_cast<long long>(absl::GetFlag(FLAGS_replay_changes)));
  for (const SizeResult& r : results) {
    if (!r.error.empty()) {
      std::printf("| %llu | ERROR: %s |\n",
                  static_cast<unsigned long long>(r.n), r.error.c_str());
      continue;
    }
    std::printf("| %llu | %s | %s | %s | %s | %s | %s | %s |\n",
                static_cast<unsigned long long>(r.n), GiB(r.db_bytes).c_str(),
                GiB(r.snapshot_bytes).c_str(),
                r.fill_seconds < 0
                    ? "reused"
                    : absl::StrFormat("%.0f", r.fill_seconds).c_str(),
                Seconds(r.rebuild).c_str(), Seconds(r.shutdown_write).c_str(),
                Seconds(r.from_snapshot).c_str(),
                r.replayed > 0 ? Seconds(r.from_snapshot_replay).c_str() : "-");
  }
  std::printf("\nThe server's own lines:\n\n```\n");
  for (const SizeResult& r : results) {
    if (!r.error.empty()) continue;
    std::printf("N=%llu\n", static_cast<unsigned long long>(r.n));
    std::printf("  %s\n", LogLine(r.rebuild.log, "galleries:").c_str());
    std::printf("  %s\n", LogLine(r.shutdown_write.log, "snapshot:").c_str());
    std::printf("  %s\n", LogLine(r.from_snapshot.log, "galleries:").c_str());
    if (r.replayed > 0) {
      std::printf("  %s\n",
                  LogLine(r.from_snapshot_replay.log, "galleries:").c_str());
    }
  }
  std::printf("```\n");
  std::fflush(stdout);
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace hawiya::bench

int main(int argc, char** argv) { return hawiya::bench::Main(argc, argv); }
