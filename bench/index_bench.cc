// hawiya-index-bench: every gallery index kind against raw FAISS, in process,
// on the same synthetic data in the same run (issue 3's benchmark matrix).
//
// For each gallery size N and data variant (easy, hard look-alikes) it draws
// N identities (capture 0 enrolled, one template per identity), mated probes
// (capture 1 of random enrolled identities) and non-mated probes (identities
// that were never enrolled), computes the exact answers by brute force, then
// for each contender: build time, resident memory per identity, single-query
// latency (p50/p99), queries per second at several concurrent callers,
// rank-1 agreement and recall@10 against exact search, FNIR and FPIR at the
// threshold, and for scans the bytes scanned per second as a fraction of the
// memory-read limit measured on the same machine in the same run.
//
// HNSW contenders (hnsw, hnsw_sq8, auto once it switches, faiss_hnsw) are
// built once and measured at every --ef_search value, one row each ("hnsw
// ef=64"): a graph over 1M identities takes many minutes to build. Build
// time includes the background graph builds our galleries start (hnsw_sq8's
// first graph once its SQ8 ranges are trained, auto's switch), and each
// row's detail names the search path in use then (graph fp32 / graph sq8 /
// exact scan); an hnsw or hnsw_sq8 row that is not graph-backed is an error.
//
// Results go to stdout as markdown; progress (every 10% or 10 s of each long
// phase) goes to stderr.
//
// The HNSW sweep issue 3 asks for, at 1M identities (run on a quiet machine):
//
//   build/bench/hawiya-index-bench --sizes=1000000 --variants=hard
//     --contenders=exact,hnsw,hnsw_sq8,faiss_hnsw
//     --ef_search=16,32,64,128,256

#include <emmintrin.h>
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
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
#include "faiss/Index.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexHNSW.h"
#include "faiss/IndexScalarQuantizer.h"
#include "faiss/impl/FaissException.h"
#include "matcher/approximate_testing.h"
#include "matcher/gallery.h"
#include "matcher/kernels.h"
#include "matcher/synthetic.h"
#include "matcher/top_hits.h"
#include "services/help.h"

ABSL_FLAG(std::vector<std::string>, sizes, std::vector<std::string>({"100000"}),
          "Comma-separated gallery sizes N (identities, one template each).");
ABSL_FLAG(std::vector<std::string>, variants,
          std::vector<std::string>({"easy", "hard"}),
          "Synthetic data variants: easy, hard (clustered look-alikes).");
ABSL_FLAG(std::vector<std::string>, contenders,
          std::vector<std::string>({"exact", "exact_sq8", "hnsw", "hnsw_sq8",
                                    "faiss_flat", "faiss_sq8", "faiss_hnsw"}),
          "What to measure: our gallery kinds (exact, exact_sq8, hnsw, "
          "hnsw_sq8, auto) and raw FAISS (faiss_flat = IndexFlatIP, faiss_sq8 "
          "= IndexScalarQuantizer QT_8bit, faiss_hnsw = IndexHNSWFlat).");
ABSL_FLAG(int, dimension, 512, "Vector dimension.");
ABSL_FLAG(int, queries, 500, "Mated probes (and as many non-mated ones).");
ABSL_FLAG(int, latency_queries, 200,
          "Probes timed one at a time for p50/p99 (<= --queries).");
ABSL_FLAG(std::vector<std::string>, clients,
          std::vector<std::string>({"1", "4", "16"}),
          "Concurrent callers for the throughput columns.");
ABSL_FLAG(double, qps_seconds, 3.0, "Seconds per throughput measurement.");
ABSL_FLAG(int, k, 10, "Candidates per search.");
ABSL_FLAG(double, threshold, 0.40, "Decision threshold for FNIR / FPIR.");
ABSL_FLAG(int, hnsw_m, 32, "HNSW M (ours and FAISS's).");
ABSL_FLAG(int, ef_construction, 40, "HNSW efConstruction.");
ABSL_FLAG(std::vector<std::string>, ef_search, std::vector<std::string>({"64"}),
          "HNSW efSearch values, comma-separated: each HNSW contender is "
          "built once and measured at each (ours raise it per search to the "
          "k x rerank_factor candidates they re-rank, FAISS to k).");
ABSL_FLAG(uint64_t, auto_hnsw_min_templates, 0,
          "The auto contender's switch to HNSW (templates); 0 = the gallery "
          "size, so it scans exactly until the last batch and then builds "
          "its graph in the background.");
ABSL_FLAG(int, rerank_factor, 4, "Our approximate kinds' re-rank factor.");
ABSL_FLAG(int, build_threads, 2,
          "OpenMP threads while building (FAISS HNSW adds in parallel).");
ABSL_FLAG(uint64_t, seed, 42, "Seed of the synthetic model and the probes.");

namespace hawiya::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Progress of one long phase on stderr: a line whenever another tenth of
// `total` is done or 10 s have passed since the last line. Thread-safe.
class Progress {
 public:
  Progress(std::string label, size_t total)
      : label_(std::move(label)), total_(total), start_(Clock::now()) {}

  void Update(size_t done) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t tenth = total_ == 0 ? 0 : done * 10 / total_;
    const double elapsed = SecondsSince(start_);
    if (tenth <= last_tenth_ && elapsed < last_print_ + 10.0) return;
    last_tenth_ = std::max(last_tenth_, tenth);
    last_print_ = elapsed;
    std::fprintf(stderr, "    %s: %zu/%zu (%.0f%%), %.0f s\n", label_.c_str(),
                 done, total_, total_ == 0 ? 100.0 : 100.0 * done / total_,
                 elapsed);
  }

  // For phases without a count: a line every 10 s.
  void Tick(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    const double elapsed = SecondsSince(start_);
    if (elapsed < last_print_ + 10.0) return;
    last_print_ = elapsed;
    std::fprintf(stderr, "    %s: %s, %.0f s\n", label_.c_str(), what.c_str(),
                 elapsed);
  }

 private:
  const std::string label_;
  const size_t total_;
  const Clock::time_point start_;
  std::mutex mu_;
  size_t last_tenth_ = 0;
  double last_print_ = 0;
};

// Bytes allocated with malloc and still in use (heap and mmapped chunks).
// Unlike the resident set size, this does not depend on what the allocator
// kept from earlier contenders.
size_t AllocatedBytes() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

struct Dataset {
  std::string variant;
  size_t n = 0;
  int d = 0;
  std::vector<float> base;   // n x d, unit norm: capture 0 of identity i
  std::vector<float> mated;  // q x d: capture 1 of mated_identity[j]
  std::vector<int64_t> mated_identity;
  std::vector<float> non_mated;  // q x d: capture 0 of identity n + j
  // Exact answers (brute force): top-k identities of each mated probe.
  std::vector<std::vector<int64_t>> exact_top;

  const float* mated_probe(size_t j) const { return &mated[j * d]; }
  const float* non_mated_probe(size_t j) const { return &non_mated[j * d]; }
  size_t queries() const { return mated_identity.size(); }
};

// Runs fn(i) for i in [0, n) on `threads` threads.
void ParallelFor(size_t n, int threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (size_t i = next++; i < n; i = next++) fn(i);
    });
  }
  for (std::thread& w : workers) w.join();
}

int Cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// The exact top-k rows of each of the q probes (best first, ties by row,
// as matcher::BetterHit), by brute force with our kernels: the rows are
// split across Cores() threads, and each thread reads its rows in blocks
// that stay in its L2 cache while InnerProductsMulti scores groups of 8
// probes against them, so memory sees about one pass over the base instead
// of one per probe (1M x 500 probes: seconds, not minutes). Scores are bit
// for bit InnerProducts' (kernels.h).
std::vector<std::vector<int64_t>> ExactTops(const float* probes, size_t q,
                                            const float* base, size_t n, int d,
                                            size_t k, Progress* progress) {
  const size_t dim = static_cast<size_t>(d);
  constexpr size_t kGroup = 8;
  const size_t block_rows = std::max<size_t>(64, (256 << 10) / (dim * 4));
  const int threads = Cores();
  k = std::min(k, n);
  // best[t][j]: thread t's best rows of probe j (matcher::AddToTop).
  std::vector<std::vector<std::vector<matcher::ScanHit>>> best(
      threads, std::vector<std::vector<matcher::ScanHit>>(q));
  std::atomic<size_t> rows_done{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const size_t first = n * t / threads;
      const size_t last = n * (t + 1) / threads;
      std::vector<float> scores(kGroup * block_rows);
      std::vector<const float*> group(kGroup);
      for (size_t begin = first; begin < last; begin += block_rows) {
        const size_t rows = std::min(block_rows, last - begin);
        for (size_t g = 0; g < q; g += kGroup) {
          const size_t m = std::min(kGroup, q - g);
          for (size_t i = 0; i < m; ++i) group[i] = probes + (g + i) * dim;
          matcher::InnerProductsMulti(group.data(), m, base + begin * dim, rows,
                                      dim, scores.data());
          for (size_t i = 0; i < m; ++i) {
            matcher::AddToTop(scores.data() + i * rows, rows, begin,
                              /*live=*/nullptr, k, &best[t][g + i]);
          }
        }
        if (progress != nullptr) progress->Update(rows_done += rows);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  std::vector<std::vector<int64_t>> tops(q);
  for (size_t j = 0; j < q; ++j) {
    std::vector<matcher::ScanHit> all;
    for (int t = 0; t < threads; ++t) {
      all.insert(all.end(), best[t][j].begin(), best[t][j].end());
    }
    matcher::SortBest(k, &all);
    for (size_t r = 0; r < all.size(); ++r) {
      tops[j].push_back(static_cast<int64_t>(all[r].row));
    }
  }
  return tops;
}

Dataset MakeDataset(const std::string& variant, size_t n, int d, size_t q,
                    size_t k, uint64_t seed) {
  Dataset data;
  data.variant = variant;
  data.n = n;
  data.d = d;
  matcher::SyntheticOptions options;
  options.dimension = d;
  options.seed = seed;
  options.hard = variant == "hard";
  const matcher::SyntheticModel model(options);
  const size_t dim = static_cast<size_t>(d);
  data.base.resize(n * dim);
  const Clock::time_point start = Clock::now();
  std::atomic<size_t> done{0};
  Progress generated("synthetic captures", n);
  ParallelFor((n + 999) / 1000, Cores(), [&](size_t chunk) {
    const size_t end = std::min(n, (chunk + 1) * 1000);
    for (size_t i = chunk * 1000; i < end; ++i) {
      const std::vector<float> v = model.Capture(i, 0);
      std::copy(v.begin(), v.end(), data.base.begin() + i * dim);
    }
    generated.Update(done += end - chunk * 1000);
  });
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  data.mated.resize(q * dim);
  data.non_mated.resize(q * dim);
  for (size_t j = 0; j < q; ++j) {
    const size_t identity = pick(rng);
    data.mated_identity.push_back(static_cast<int64_t>(identity));
    const std::vector<float> mated = model.Capture(identity, 1);
    std::copy(mated.begin(), mated.end(), data.mated.begin() + j * dim);
    const std::vector<float> other = model.Capture(n + j, 0);
    std::copy(other.begin(), other.end(), data.non_mated.begin() + j * dim);
  }
  std::fprintf(stderr, "  [%s N=%zu] data in %.1f s\n", variant.c_str(), n,
               SecondsSince(start));
  const Clock::time_point exact_start = Clock::now();
  Progress scanned(
      absl::StrCat("exact answers (rows scanned for ", q, " probes)"), n);
  data.exact_top =
      ExactTops(data.mated.data(), q, data.base.data(), n, d, k, &scanned);
  std::fprintf(stderr, "  [%s N=%zu] exact answers in %.1f s\n",
               variant.c_str(), n, SecondsSince(exact_start));
  return data;
}

// Reads a 1 GiB buffer (far beyond any cache) with `threads` threads (SSE2
// loads, four streams per thread as our scan kernels read); returns bytes per
// second, the best of three passes.
double MemoryReadBytesPerSecond(int threads) {
  constexpr size_t bytes = size_t{1} << 30;
  const size_t floats = bytes / sizeof(float);
  const std::vector<float> buffer(floats, 1.0f);
  const float* data = buffer.data();
  double best = 0.0;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<float> sinks(threads);
    const Clock::time_point start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = floats * t / threads / 64 * 64;
        const size_t end = floats * (t + 1) / threads / 64 * 64;
        const size_t quarter = (end - begin) / 4 / 16 * 16;
        const float* s[4];
        for (int i = 0; i < 4; ++i) s[i] = data + begin + i * quarter;
        __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(),
                         _mm_setzero_ps()};
        for (size_t j = 0; j < quarter; j += 16) {
          for (int i = 0; i < 4; ++i) {
            const float* p = s[i] + j;
            acc[i] = _mm_add_ps(
                acc[i],
                _mm_add_ps(
                    _mm_add_ps(_mm_loadu_ps(p), _mm_loadu_ps(p + 4)),
                    _mm_add_ps(_mm_loadu_ps(p + 8), _mm_loadu_ps(p + 12))));
          }
        }
        float out[4];
        _mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(acc[0], acc[1]),
                                      _mm_add_ps(acc[2], acc[3])));
        sinks[t] = out[0] + out[1] + out[2] + out[3];
      });
    }
    for (std::thread& w : workers) w.join();
    const double seconds = SecondsSince(start);
    volatile float sink = sinks[0];
    (void)sink;
    best = std::max(best, static_cast<double>(bytes) / seconds);
  }
  return best;
}

// Something that searches the dataset's base vectors.
class Contender {
 public:
  virtual ~Contender() = default;
  // Indexes data.base (row i = identity i).
  virtual absl::Status Build(const Dataset& data) = 0;
  // The k best identities and their scores, best first. Thread-safe.
  virtual absl::Status Search(const float* probe, size_t k,
                              std::vector<int64_t>* ids,
                              std::vector<float>* scores) const = 0;
  // Bytes a single search reads when it scans everything; 0 if it doesn't.
  virtual size_t ScanBytes() const { return 0; }
  // How it searches, for our galleries: the kind in use, and for hnsw and
  // auto whether a graph (fp32 or SQ8 storage) or an exact scan serves.
  virtual std::string Detail() const { return ""; }
  // Whether SetEfSearch applies (HNSW contenders).
  virtual bool HasEfSearch() const { return false; }
  // Searches from now on use efSearch `ef`; not concurrently with Search.
  // REQUIRES: HasEfSearch(), 1 <= ef <= matcher::kMaxHnswEf.
  virtual absl::Status SetEfSearch(int ef) {
    return absl::UnimplementedError(absl::StrCat("efSearch ", ef));
  }
  // The efSearch a search for k results runs with when set to `ef`.
  virtual int EffectiveEf(int ef, size_t k) const {
    (void)k;
    return ef;
  }
};

class GalleryContender final : public Contender {
 public:
  GalleryContender(std::string name, matcher::GalleryOptions options)
      : name_(std::move(name)), options_(std::move(options)) {}

  absl::Status Build(const Dataset& data) override {
    absl::StatusOr<std::unique_ptr<matcher::Gallery>> gallery =
        matcher::Gallery::Open(options_);
    if (!gallery.ok()) return gallery.status();
    gallery_ = *std::move(gallery);
    const size_t dim = static_cast<size_t>(data.d);
    constexpr size_t kBatch = 10000;
    std::vector<matcher::GalleryEntry> batch;
    Progress added(absl::StrCat(name_, ": templates added"), data.n);
    for (size_t start = 0; start < data.n; start += kBatch) {
      batch.clear();
      for (size_t i = start; i < std::min(data.n, start + kBatch); ++i) {
        batch.push_back(matcher::GalleryEntry{
            static_cast<int64_t>(i), absl::StrCat(i),
            std::vector<float>(data.base.begin() + i * dim,
                               data.base.begin() + (i + 1) * dim)});
      }
      if (absl::Status s = gallery_->Add(batch); !s.ok()) return s;
      added.Update(start + batch.size());
    }
    if (HasEfSearch()) {
      if (absl::Status s = AwaitGraph(); !s.ok()) return s;
    } else {
      detail_ = gallery_->index_kind();
    }
    bytes_per_row_ = options_.index.kind == matcher::IndexKind::kExactSq8 ? dim
                     : options_.index.kind == matcher::IndexKind::kExact
                         ? dim * sizeof(float)
                         : 0;
    rows_ = data.n;
    return absl::OkStatus();
  }

  absl::Status Search(const float* probe, size_t k, std::vector<int64_t>* ids,
                      std::vector<float>* scores) const override {
    absl::StatusOr<std::vector<matcher::SubjectScore>> top = gallery_->Search(
        absl::MakeConstSpan(probe, static_cast<size_t>(options_.dimension)), k);
    if (!top.ok()) return top.status();
    ids->clear();
    scores->clear();
    for (const matcher::SubjectScore& s : *top) {
      int64_t id = -1;
      if (!absl::SimpleAtoi(s.subject_id, &id)) {
        return absl::InternalError(absl::StrCat("bad subject ", s.subject_id));
      }
      ids->push_back(id);
      scores->push_back(s.score);
    }
    return absl::OkStatus();
  }

  size_t ScanBytes() const override { return bytes_per_row_ * rows_; }
  std::string Detail() const override { return detail_; }
  bool HasEfSearch() const override {
    return options_.index.kind == matcher::IndexKind::kHnsw ||
           options_.index.kind == matcher::IndexKind::kAuto;
  }
  absl::Status SetEfSearch(int ef) override {
    return matcher::SetHnswEfSearch(*gallery_, ef);
  }
  // One template per identity: a search for k subjects re-ranks
  // k x rerank_factor graph hits (HnswOptions::ef_search).
  int EffectiveEf(int ef, size_t k) const override {
    return std::max(ef, static_cast<int>(k) * options_.index.rerank_factor);
  }

 private:
  // Waits for the background graph builds Add started (hnsw_sq8's first
  // graph once its ranges are trained, auto's switch): they are part of the
  // build. An hnsw gallery must then search through a graph.
  absl::Status AwaitGraph() {
    Progress waiting(absl::StrCat(name_, ": background graph build"), 0);
    while (true) {
      absl::StatusOr<matcher::ApproximateIndexState> state =
          matcher::GetApproximateIndexState(*gallery_);
      if (!state.ok()) return state.status();
      if (!state->rebuilding) break;
      waiting.Tick("running");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    matcher::WaitForRebuilds(*gallery_);
    absl::StatusOr<matcher::ApproximateIndexState> state =
        matcher::GetApproximateIndexState(*gallery_);
    if (!state.ok()) return state.status();
    if (!state->last_rebuild_error.ok()) return state->last_rebuild_error;
    detail_ = !state->graph ? "exact scan"
              : state->sq8  ? "graph sq8"
                            : "graph fp32";
    if (options_.index.kind == matcher::IndexKind::kHnsw && !state->graph) {
      return absl::FailedPreconditionError(
          "the hnsw gallery has no graph after its build");
    }
    if (options_.index.hnsw.sq8_storage && state->graph && !state->sq8) {
      return absl::InternalError("sq8_storage set but the graph is fp32");
    }
    return absl::OkStatus();
  }

  const std::string name_;
  const matcher::GalleryOptions options_;
  std::unique_ptr<matcher::Gallery> gallery_;
  std::string detail_;
  size_t bytes_per_row_ = 0;
  size_t rows_ = 0;
};

class FaissContender final : public Contender {
 public:
  enum class Kind { kFlat, kSq8, kHnsw };
  FaissContender(Kind kind, int m, int ef_search)
      : kind_(kind), m_(m), ef_search_(ef_search) {}

  absl::Status Build(const Dataset& data) override {
    try {
      switch (kind_) {
        case Kind::kFlat:
          index_ = std::make_unique<faiss::IndexFlatIP>(data.d);
          break;
        case Kind::kSq8:
          index_ = std::make_unique<faiss::IndexScalarQuantizer>(
              data.d, faiss::ScalarQuantizer::QT_8bit,
              faiss::METRIC_INNER_PRODUCT);
          break;
        case Kind::kHnsw: {
          auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(
              data.d, m_, faiss::METRIC_INNER_PRODUCT);
          hnsw->hnsw.efConstruction = absl::GetFlag(FLAGS_ef_construction);
          hnsw->hnsw.efSearch = ef_search_;
          index_ = std::move(hnsw);
          break;
        }
      }
      const faiss::Index::idx_t n = static_cast<faiss::Index::idx_t>(data.n);
      if (!index_->is_trained) index_->train(n, data.base.data());
      constexpr size_t kBatch = 50000;
      Progress added("faiss: vectors added", data.n);
      for (size_t start = 0; start < data.n; start += kBatch) {
        const size_t count = std::min(kBatch, data.n - start);
        index_->add(static_cast<faiss::Index::idx_t>(count),
                    data.base.data() + start * data.d);
        added.Update(start + count);
      }
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("faiss: ", e.what()));
    }
    scan_bytes_ = kind_ == Kind::kFlat  ? data.n * data.d * sizeof(float)
                  : kind_ == Kind::kSq8 ? data.n * data.d
                                        : 0;
    return absl::OkStatus();
  }

  absl::Status Search(const float* probe, size_t k, std::vector<int64_t>* ids,
                      std::vector<float>* scores) const override {
    ids->assign(k, -1);
    scores->assign(k, 0.0f);
    try {
      index_->search(1, probe, static_cast<faiss::Index::idx_t>(k),
                     scores->data(), ids->data());
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("faiss: ", e.what()));
    }
    while (!ids->empty() && ids->back() < 0) {
      ids->pop_back();
      scores->pop_back();
    }
    return absl::OkStatus();
  }

  size_t ScanBytes() const override { return scan_bytes_; }
  bool HasEfSearch() const override { return kind_ == Kind::kHnsw; }
  absl::Status SetEfSearch(int ef) override {
    auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index_.get());
    if (hnsw == nullptr) return absl::FailedPreconditionError("not built");
    hnsw->hnsw.efSearch = ef;
    return absl::OkStatus();
  }
  // IndexHNSW searches with max(efSearch, k).
  int EffectiveEf(int ef, size_t k) const override {
    return std::max(ef, static_cast<int>(k));
  }

 private:
  const Kind kind_;
  const int m_;
  const int ef_search_;
  std::unique_ptr<faiss::Index> index_;
  size_t scan_bytes_ = 0;
};

// `ef_search`: the first value of the sweep (SetEfSearch changes it).
absl::StatusOr<std::unique_ptr<Contender>> MakeContender(
    const std::string& name, const Dataset& data, int ef_search) {
  const int m = absl::GetFlag(FLAGS_hnsw_m);
  if (name == "faiss_flat") {
    return std::make_unique<FaissContender>(FaissContender::Kind::kFlat, m,
                                            ef_search);
  }
  if (name == "faiss_sq8") {
    return std::make_unique<FaissContender>(FaissContender::Kind::kSq8, m,
                                            ef_search);
  }
  if (name == "faiss_hnsw") {
    return std::make_unique<FaissContender>(FaissContender::Kind::kHnsw, m,
                                            ef_search);
  }
  matcher::GalleryOptions options;
  options.dimension = data.d;
  options.index.auto_hnsw_min_templates =
      absl::GetFlag(FLAGS_auto_hnsw_min_templates) > 0
          ? absl::GetFlag(FLAGS_auto_hnsw_min_templates)
          : data.n;
  options.index.rerank_factor = absl::GetFlag(FLAGS_rerank_factor);
  options.index.hnsw.m = m;
  options.index.hnsw.ef_construction = absl::GetFlag(FLAGS_ef_construction);
  options.index.hnsw.ef_search = ef_search;
  std::string kind_name = name;
  if (name == "hnsw_sq8") {
    kind_name = "hnsw";
    options.index.hnsw.sq8_storage = true;
  }
  absl::StatusOr<matcher::IndexKind> kind = matcher::ParseIndexKind(kind_name);
  if (!kind.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--contenders: unknown contender \"", name, "\""));
  }
  options.index.kind = *kind;
  return std::make_unique<GalleryContender>(name, options);
}

struct Row {
  std::string name;
  std::string detail;
  std::string error;
  double build_seconds = 0;
  double bytes_per_identity = 0;
  double p50_ms = 0, p99_ms = 0;
  std::vector<double> qps;  // per --clients entry
  double rank1_agreement = 0, recall_at_k = 0, fnir = 0, fpir = 0;
  double scan_fraction = -1;  // of the memory-read limit; < 0 = n/a
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * values.size()));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Makes and builds the contender: the row's build time, memory and detail,
// or its error (then *out is null).
Row BuildContender(const std::string& name, const Dataset& data, int ef_search,
                   std::unique_ptr<Contender>* out) {
  Row row;
  row.name = name;
  absl::StatusOr<std::unique_ptr<Contender>> made =
      MakeContender(name, data, ef_search);
  if (!made.ok()) {
    row.error = std::string(made.status().message());
    return row;
  }
  std::unique_ptr<Contender> contender = *std::move(made);
  omp_set_num_threads(absl::GetFlag(FLAGS_build_threads));
  const size_t rss_before = AllocatedBytes();
  const Clock::time_point build_start = Clock::now();
  if (absl::Status s = contender->Build(data); !s.ok()) {
    row.error = std::string(s.message());
    return row;
  }
  row.build_seconds = SecondsSince(build_start);
  const size_t rss_after = AllocatedBytes();
  row.bytes_per_identity =
      rss_after > rss_before
          ? static_cast<double>(rss_after - rss_before) / data.n
          : 0;
  row.detail = contender->Detail();
  std::fprintf(stderr, "    %s: built in %.1f s%s%s\n", name.c_str(),
               row.build_seconds, row.detail.empty() ? "" : ", ",
               row.detail.c_str());
  *out = std::move(contender);
  return row;
}

// Fills the row's search columns: accuracy, latency, throughput.
void MeasureSearches(const Contender& contender, const Dataset& data,
                     const std::vector<int>& clients, double read_limit,
                     Row* out) {
  Row& row = *out;
  const size_t k = static_cast<size_t>(absl::GetFlag(FLAGS_k));
  // Searches run one probe per call; OpenMP inside FAISS would only add
  // thread hand-offs.
  omp_set_num_threads(1);

  // Accuracy over every mated and non-mated probe.
  std::vector<int64_t> ids;
  std::vector<float> scores;
  size_t rank1 = 0, recalled = 0, false_negatives = 0, false_positives = 0;
  const float threshold = static_cast<float>(absl::GetFlag(FLAGS_threshold));
  for (size_t j = 0; j < data.queries(); ++j) {
    if (absl::Status s =
            contender.Search(data.mated_probe(j), k, &ids, &scores);
        !s.ok()) {
      row.error = std::string(s.message());
      return;
    }
    const std::vector<int64_t>& exact = data.exact_top[j];
    if (!ids.empty() && !exact.empty() && ids[0] == exact[0]) ++rank1;
    for (int64_t id : exact) {
      if (std::find(ids.begin(), ids.end(), id) != ids.end()) ++recalled;
    }
    bool hit = false;
    for (size_t r = 0; r < ids.size(); ++r) {
      hit |= ids[r] == data.mated_identity[j] && scores[r] >= threshold;
    }
    if (!hit) ++false_negatives;
    if (absl::Status s =
            contender.Search(data.non_mated_probe(j), k, &ids, &scores);
        !s.ok()) {
      row.error = std::string(s.message());
      return;
    }
    if (!scores.empty() && scores[0] >= threshold) ++false_positives;
  }
  const double q = static_cast<double>(data.queries());
  row.rank1_agreement = rank1 / q;
  row.recall_at_k = recalled / (q * std::min(k, data.n));
  row.fnir = false_negatives / q;
  row.fpir = false_positives / q;

  // Single-query latency, after the accuracy pass warmed caches and pages.
  const size_t timed = std::min<size_t>(
      data.queries(),
      static_cast<size_t>(absl::GetFlag(FLAGS_latency_queries)));
  std::vector<double> millis;
  for (size_t j = 0; j < timed; ++j) {
    const Clock::time_point start = Clock::now();
    (void)contender.Search(data.mated_probe(j), k, &ids, &scores);
    millis.push_back(SecondsSince(start) * 1e3);
  }
  row.p50_ms = Percentile(millis, 0.50);
  row.p99_ms = Percentile(millis, 0.99);
  if (contender.ScanBytes() > 0 && read_limit > 0) {
    row.scan_fraction = contender.ScanBytes() / (row.p50_ms / 1e3) / read_limit;
  }

  // Throughput: `c` callers, each searching mated probes round-robin.
  const double seconds = absl::GetFlag(FLAGS_qps_seconds);
  for (int c : clients) {
    std::atomic<size_t> completed{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> callers;
    const Clock::time_point start = Clock::now();
    for (int t = 0; t < c; ++t) {
      callers.emplace_back([&, t] {
        std::vector<int64_t> local_ids;
        std::vector<float> local_scores;
        for (size_t j = t; !stop.load(std::memory_order_relaxed); ++j) {
          (void)contender.Search(data.mated_probe(j % data.queries()), k,
                                 &local_ids, &local_scores);
          completed.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    while (SecondsSince(start) < seconds) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop = true;
    for (std::thread& caller : callers) caller.join();
    row.qps.push_back(completed / SecondsSince(start));
  }
  std::fprintf(stderr, "    %s: p50 %.2f ms, p99 %.2f ms, rank-1 %.4f\n",
               row.name.c_str(), row.p50_ms, row.p99_ms, row.rank1_agreement);
}

std::string Format(double value, const char* format) {
  return absl::StrFormat(format, value);
}

void PrintTable(const Dataset& data, const std::vector<Row>& rows,
                const std::vector<int>& clients, double read_limit) {
  std::printf("\n### N = %zu, %s data (d = %d)\n\n", data.n,
              data.variant.c_str(), data.d);
  std::printf(
      "Memory-read limit measured in this run: %.1f GB/s (%d threads reading "
      "1 GiB).\n\n",
      read_limit / 1e9, Cores());
  std::string header = "| index | build s | bytes/identity | p50 ms | p99 ms |";
  std::string rule = "|---|---:|---:|---:|---:|";
  for (int c : clients) {
    absl::StrAppend(&header, " QPS@", c, " |");
    absl::StrAppend(&rule, "---:|");
  }
  absl::StrAppend(&header,
                  " rank-1 = exact | recall@10 | FNIR | FPIR | scan/read "
                  "limit |");
  absl::StrAppend(&rule, "---:|---:|---:|---:|---:|");
  std::printf("%s\n%s\n", header.c_str(), rule.c_str());
  for (const Row& row : rows) {
    std::string name = row.name;
    if (!row.detail.empty() && row.detail != row.name) {
      absl::StrAppend(&name, " (", row.detail, ")");
    }
    if (!row.error.empty()) {
      std::printf("| %s | error: %s |\n", name.c_str(), row.error.c_str());
      continue;
    }
    std::string line = absl::StrCat(
        "| ", name, " | ", Format(row.build_seconds, "%.1f"), " | ",
        Format(row.bytes_per_identity, "%.0f"), " | ",
        Format(row.p50_ms, "%.2f"), " | ", Format(row.p99_ms, "%.2f"), " |");
    for (double qps : row.qps)
      absl::StrAppend(&line, " ", Format(qps, "%.0f"), " |");
    absl::StrAppend(
        &line, " ", Format(100 * row.rank1_agreement, "%.2f%%"), " | ",
        Format(row.recall_at_k, "%.4f"), " | ", Format(row.fnir, "%.4f"), " | ",
        Format(row.fpir, "%.4f"), " | ",
        row.scan_fraction < 0 ? std::string("n/a")
                              : Format(100 * row.scan_fraction, "%.0f%%"),
        " |");
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  std::string command = "hawiya-index-bench";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&command, " ", argv[i]);
  services::HandleHelp(
      argc, argv,
      "Every gallery index kind against raw FAISS, in process, on the same "
      "synthetic data: build time, memory, latency, throughput, accuracy "
      "against exact search.\n"
      "Usage: hawiya-index-bench [--sizes=100000,1000000] "
      "[--variants=easy,hard] [--contenders=exact,hnsw,faiss_flat,...] "
      "[--ef_search=16,32,64,128,256]\n"
      "HNSW contenders are built once and measured at each --ef_search "
      "value (one row each).\n"
      "Prints a markdown report on stdout and progress on stderr.",
      "index_bench.cc");
  absl::ParseCommandLine(argc, argv);

  std::vector<size_t> sizes;
  for (const std::string& text : absl::GetFlag(FLAGS_sizes)) {
    size_t n = 0;
    if (!absl::SimpleAtoi(text, &n) || n == 0) {
      std::fprintf(stderr, "hawiya-index-bench: --sizes: bad size '%s'\n",
                   text.c_str());
      return 2;
    }
    sizes.push_back(n);
  }
  std::vector<int> clients;
  for (const std::string& text : absl::GetFlag(FLAGS_clients)) {
    int c = 0;
    if (!absl::SimpleAtoi(text, &c) || c <= 0) {
      std::fprintf(stderr, "hawiya-index-bench: --clients: bad count '%s'\n",
                   text.c_str());
      return 2;
    }
    clients.push_back(c);
  }
  for (const std::string& variant : absl::GetFlag(FLAGS_variants)) {
    if (variant != "easy" && variant != "hard") {
      std::fprintf(stderr, "hawiya-index-bench: --variants: '%s'\n",
                   variant.c_str());
      return 2;
    }
  }
  std::vector<int> ef_values;
  for (const std::string& text : absl::GetFlag(FLAGS_ef_search)) {
    int ef = 0;
    if (!absl::SimpleAtoi(text, &ef) || ef < 1 || ef > matcher::kMaxHnswEf) {
      std::fprintf(stderr,
                   "hawiya-index-bench: --ef_search: bad value '%s' (1..%d)\n",
                   text.c_str(), matcher::kMaxHnswEf);
      return 2;
    }
    ef_values.push_back(ef);
  }
  if (ef_values.empty()) {
    std::fprintf(stderr, "hawiya-index-bench: --ef_search: no value\n");
    return 2;
  }
  const int d = absl::GetFlag(FLAGS_dimension);
  const size_t q =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_queries)));
  const size_t k = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_k)));

  std::printf("# hawiya-index-bench\n\n`%s`\n\nKernels: %s. %d cores.\n",
              command.c_str(),
              std::string(matcher::IsaName(matcher::BestIsa())).c_str(),
              Cores());
  bool failed = false;
  for (size_t n : sizes) {
    for (const std::string& variant : absl::GetFlag(FLAGS_variants)) {
      std::fprintf(stderr, "[%s N=%zu] generating data\n", variant.c_str(), n);
      const Dataset data =
          MakeDataset(variant, n, d, q, k, absl::GetFlag(FLAGS_seed));
      const double read_limit = MemoryReadBytesPerSecond(Cores());
      std::vector<Row> rows;
      for (const std::string& name : absl::GetFlag(FLAGS_contenders)) {
        std::fprintf(stderr, "[%s N=%zu] %s\n", variant.c_str(), n,
                     name.c_str());
        std::unique_ptr<Contender> contender;
        const Row built = BuildContender(name, data, ef_values[0], &contender);
        std::vector<Row> measured;
        if (contender == nullptr || !contender->HasEfSearch()) {
          measured.push_back(built);
          if (contender != nullptr) {
            MeasureSearches(*contender, data, clients, read_limit,
                            &measured.back());
          }
        } else {
          // One build, one row per efSearch.
          for (int ef : ef_values) {
            Row row = built;
            row.name = absl::StrCat(name, " ef=", ef);
            const int effective = contender->EffectiveEf(ef, k);
            if (effective != ef) {
              absl::StrAppend(&row.detail, row.detail.empty() ? "" : ", ",
                              "searches at ef ", effective);
            }
            if (absl::Status s = contender->SetEfSearch(ef); !s.ok()) {
              row.error = std::string(s.message());
            } else {
              MeasureSearches(*contender, data, clients, read_limit, &row);
            }
            measured.push_back(std::move(row));
          }
        }
        // Freed before the next contender builds (its memory column).
        contender.reset();
        for (Row& row : measured) {
          if (!row.error.empty()) {
            failed = true;
            std::fprintf(stderr, "    %s: %s\n", row.name.c_str(),
                         row.error.c_str());
          }
          rows.push_back(std::move(row));
        }
      }
      PrintTable(data, rows, clients, read_limit);
    }
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace hawiya::bench

int main(int argc, char** argv) { return hawiya::bench::Main(argc, argv); }
