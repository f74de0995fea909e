// gallery_bench: micro-benchmarks of matcher::Gallery against raw FAISS
// IndexFlatIP on the same synthetic vectors (d = 512), of Gallery::Add, and
// of the exact scan on matcher::ScanPool:
//   - read/N/T: the memory-read limit, T threads reading the N x 512 fp32
//     rows (each its share, as four sequential streams), measured in the
//     same run on the same buffer;
//   - pool/N/T: one query at a time through a ScanPool of T threads (the
//     gallery's scan without the collapse to subjects);
//   - pool_throughput/N/batch/wait_us/threads:C: C callers searching at once
//     on a pool of --scan_threads threads whose passes take up to `batch`
//     queries (1 = no coalescing) and wait up to wait_us for them;
//   - batch/N/B, batch_loop/N/B, flat_batch/N/B: B probes per call through
//     Gallery::SearchBatch, through B calls of Gallery::Search on the calling
//     thread, and through one raw IndexFlatIP::search (FAISS takes its BLAS
//     path for B >= 20); "qps" is probes per second.
//
// Galleries are built once per size and cached across iterations and
// benchmarks. Sizes above --max_rows (default 100000) are not registered:
// --max_rows=1000000 adds 1M (about 4 GB and a minute or two to build). The
// galleries scan on the default ScanPool, --scan_threads threads (0 = one
// per core). OpenMP (and so OpenBLAS-openmp) runs on --omp_threads threads,
// 1 by default: a single-query FAISS flat search is sequential anyway, and
// one thread gives per-core numbers for the batched search.
//
//   gallery_bench [--omp_threads=1] [--scan_threads=0] [--max_rows=100000]
//                 [--benchmark_filter=...] [...]

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "faiss/Index.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexIDMap.h"
#include "faiss/impl/IDSelector.h"
#include "faiss/utils/utils.h"
#include "matcher/gallery.h"
#include "matcher/kernels.h"
#include "matcher/scan_pool.h"
#include "matcher/synthetic.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hawiya::bench {
namespace {

constexpr int kDimension = 512;
constexpr size_t kTopK = 10;
constexpr size_t kProbes = 256;

// Shaped like the server's subject ids (32 hex digits, beyond the
// small-string buffer), so hashing and copying them costs what it does there.
std::string SubjectId(size_t i) {
  return absl::StrFormat("%016x%016x", i * 0x9E3779B97F4A7C15ull, i);
}

matcher::SyntheticModel Model() {
  matcher::SyntheticOptions options;
  options.dimension = kDimension;
  options.seed = 42;
  return matcher::SyntheticModel(options);
}

int scan_threads = 0;      // --scan_threads
size_t max_rows = 100000;  // --max_rows

// N enrolled identities (capture 0) in a Gallery and in a raw IndexFlatIP,
// plus kProbes mated probes (capture 1).
struct Fixture {
  std::unique_ptr<matcher::Gallery> gallery;
  std::unique_ptr<faiss::IndexFlatIP> flat;
  std::vector<std::vector<float>> probes;  // as a client sends them
  std::vector<float> flat_probes;          // normalised, contiguous
};

const Fixture& GetFixture(size_t n) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  static auto* cache = new std::map<size_t, std::unique_ptr<Fixture>>();
  std::unique_ptr<Fixture>& fixture = (*cache)[n];
  if (fixture != nullptr) return *fixture;
  if (n >= 1000000) {
    std::fprintf(stderr, "gallery_bench: building the %zu-row fixture...\n", n);
  }
  fixture = std::make_unique<Fixture>();
  const matcher::SyntheticModel model = Model();
  fixture->gallery = *matcher::Gallery::Open({kDimension});
  fixture->flat = std::make_unique<faiss::IndexFlatIP>(kDimension);
  // In slices, so that a large N never holds a third copy of the vectors.
  constexpr size_t kSlice = 65536;
  std::vector<matcher::GalleryEntry> entries;
  std::vector<float> flat_data;
  for (size_t first = 0; first < n; first += kSlice) {
    const size_t count = std::min(kSlice, n - first);
    entries.resize(count);
    flat_data.resize(count * kDimension);
    for (size_t j = 0; j < count; ++j) {
      const size_t i = first + j;
      entries[j].label = static_cast<int64_t>(i);
      entries[j].subject_id = SubjectId(i);
      entries[j].vector = model.Capture(i, 0);
      const std::vector<float> unit = matcher::Normalized(entries[j].vector);
      std::memcpy(flat_data.data() + j * kDimension, unit.data(),
                  kDimension * sizeof(float));
    }
    if (absl::Status s = fixture->gallery->Add(entries); !s.ok()) {
      std::fprintf(stderr, "gallery_bench: Add: %s\n", s.ToString().c_str());
      std::abort();
    }
    fixture->flat->add(static_cast<faiss::Index::idx_t>(count),
                       flat_data.data());
  }
  fixture->flat_probes.resize(kProbes * kDimension);
  for (size_t i = 0; i < kProbes; ++i) {
    // Spread the probes over the whole gallery.
    fixture->probes.push_back(model.Capture((i * 7919) % n, 1));
    const std::vector<float> unit = matcher::Normalized(fixture->probes[i]);
    std::memcpy(fixture->flat_probes.data() + i * kDimension, unit.data(),
                kDimension * sizeof(float));
  }
  return *fixture;
}

const float* FlatProbe(const Fixture& f, size_t i) {
  return f.flat_probes.data() + (i % kProbes) * kDimension;
}

#if defined(__x86_64__)
// Reads bytes as four sequential streams (its quarters, side by side), as
// the scan kernels read a chunk. Integer adds, two loads per step per
// stream, so the adds never limit the loads.
__attribute__((target("avx2"))) uint64_t ReadAvx2(const char* p, size_t bytes) {
  constexpr int kStreams = 4;
  const size_t part = bytes / kStreams / 64 * 64;
  __m256i sums[kStreams];
  for (int k = 0; k < kStreams; ++k) sums[k] = _mm256_setzero_si256();
  for (size_t i = 0; i < part; i += 64) {
    for (int k = 0; k < kStreams; ++k) {
      const char* at = p + k * part + i;
      sums[k] = _mm256_add_epi32(
          sums[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)));
      sums[k] = _mm256_add_epi32(
          sums[k],
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 32)));
    }
  }
  __m256i s = sums[0];
  for (int k = 1; k < kStreams; ++k) s = _mm256_add_epi32(s, sums[k]);
  return static_cast<uint64_t>(_mm256_extract_epi64(s, 0)) ^
         static_cast<uint64_t>(_mm256_extract_epi64(s, 3));
}
#endif

// The memory-read limit of a scan: range(1) threads read the fixture's
// N x 512 fp32 rows, each a contiguous share as four streams.
void BM_ReadLimit(benchmark::State& state) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("no AVX2 on this CPU");
    return;
  }
  const size_t n = static_cast<size_t>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const Fixture& f = GetFixture(n);
  const char* base = reinterpret_cast<const char*>(f.flat->get_xb());
  const size_t bytes = n * kDimension * sizeof(float);
  const size_t share = bytes / static_cast<size_t>(threads) / 256 * 256;
  std::atomic<uint64_t> sink{0};
  for (auto _ : state) {
    std::vector<std::thread> readers;
    for (int t = 1; t < threads; ++t) {
      readers.emplace_back(
          [&, t] { sink += ReadAvx2(base + t * share, share); });
    }
    sink += ReadAvx2(base, share);
    for (std::thread& r : readers) r.join();
  }
  benchmark::DoNotOptimize(sink.load());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(share * threads));
#else
  state.SkipWithError("x86 only");
#endif
}

// Pools by (threads, max_batch, max_wait), shared by the benchmarks and
// their threads, never destroyed.
matcher::ScanPool& Pool(int threads, int max_batch, int wait_us) {
  static std::mutex mu;
  static auto* pools =
      new std::map<std::tuple<int, int, int>, matcher::ScanPool*>();
  std::lock_guard<std::mutex> lock(mu);
  matcher::ScanPool*& pool = (*pools)[{threads, max_batch, wait_us}];
  if (pool == nullptr) {
    pool = new matcher::ScanPool(matcher::ScanPoolOptions{
        threads, max_batch, absl::Microseconds(wait_us)});
  }
  return *pool;
}

// The fetch of a one-template-per-subject gallery searched for the top 10.
constexpr size_t kFetch = kTopK + 1;

// One query at a time on a pool of range(1) threads: the scan's latency.
void BM_PoolSearch(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Fixture& f = GetFixture(n);
  matcher::ScanPool& pool = Pool(static_cast<int>(state.range(1)), 8, 0);
  const matcher::F32RowsSource rows(&f, f.flat->get_xb(), n, kDimension);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.Search(rows, FlatProbe(f, i++), kFetch));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(n * kDimension * sizeof(float)));
}

// state.threads() callers at once on a pool of --scan_threads threads with
// batches of up to range(1) queries and a wait of range(2) us. items/s is
// queries/s over all callers; "batch" the mean queries per pass.
void BM_PoolThroughput(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Fixture& f = GetFixture(n);
  matcher::ScanPool& pool = Pool(scan_threads, static_cast<int>(state.range(1)),
                                 static_cast<int>(state.range(2)));
  const matcher::F32RowsSource rows(&f, f.flat->get_xb(), n, kDimension);
  const matcher::ScanPool::Stats before = pool.stats();
  size_t i = static_cast<size_t>(state.thread_index()) * 31;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.Search(rows, FlatProbe(f, i++), kFetch));
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    const matcher::ScanPool::Stats after = pool.stats();
    const double passes = static_cast<double>(after.passes - before.passes);
    state.counters["batch"] =
        passes > 0
            ? static_cast<double>(after.queries - before.queries) / passes
            : 0.0;
  }
}

void BM_GallerySearch(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    absl::StatusOr<std::vector<matcher::SubjectScore>> top =
        f.gallery->Search(f.probes[i++ % kProbes], kTopK);
    benchmark::DoNotOptimize(top);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_FlatIPSearch(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  std::vector<float> scores(kTopK);
  std::vector<faiss::Index::idx_t> labels(kTopK);
  size_t i = 0;
  for (auto _ : state) {
    f.flat->search(1, f.flat_probes.data() + (i++ % kProbes) * kDimension,
                   kTopK, scores.data(), labels.data());
    benchmark::DoNotOptimize(labels.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

// All kProbes probes in one call: FAISS takes its BLAS (sgemm) path.
void BM_FlatIPSearchBatch(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  std::vector<float> scores(kProbes * kTopK);
  std::vector<faiss::Index::idx_t> labels(kProbes * kTopK);
  for (auto _ : state) {
    f.flat->search(kProbes, f.flat_probes.data(), kTopK, scores.data(),
                   labels.data());
    benchmark::DoNotOptimize(labels.data());
    benchmark::ClobberMemory();
  }
  // items/s is probes per second.
  state.SetItemsProcessed(state.iterations() * kProbes);
}

// range(1) probes per iteration, cycling through the fixture's probes.
std::vector<std::vector<float>> BatchProbes(const Fixture& f, size_t b) {
  std::vector<std::vector<float>> probes(b);
  for (size_t i = 0; i < b; ++i) probes[i] = f.probes[i % kProbes];
  return probes;
}

void SetQps(benchmark::State& state, size_t batch) {
  state.counters["qps"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch),
                         benchmark::Counter::kIsRate);
}

// Gallery::SearchBatch of range(1) probes over range(0) rows.
void BM_GallerySearchBatch(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  const size_t batch = static_cast<size_t>(state.range(1));
  const std::vector<std::vector<float>> probes = BatchProbes(f, batch);
  for (auto _ : state) {
    absl::StatusOr<std::vector<std::vector<matcher::SubjectScore>>> top =
        f.gallery->SearchBatch(probes, kTopK);
    if (!top.ok()) {
      state.SkipWithError(std::string(top.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(top);
  }
  SetQps(state, batch);
}

// The same probes through Gallery::Search, one after the other.
void BM_GallerySearchLoop(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  const size_t batch = static_cast<size_t>(state.range(1));
  const std::vector<std::vector<float>> probes = BatchProbes(f, batch);
  for (auto _ : state) {
    for (const std::vector<float>& probe : probes) {
      absl::StatusOr<std::vector<matcher::SubjectScore>> top =
          f.gallery->Search(probe, kTopK);
      benchmark::DoNotOptimize(top);
    }
  }
  SetQps(state, batch);
}

// The same probes (normalised) through one IndexFlatIP::search.
void BM_FlatIPSearchBatchOf(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  const size_t batch = static_cast<size_t>(state.range(1));
  std::vector<float> probes(batch * kDimension);
  for (size_t i = 0; i < batch; ++i) {
    std::memcpy(probes.data() + i * kDimension, FlatProbe(f, i),
                kDimension * sizeof(float));
  }
  std::vector<float> scores(batch * kTopK);
  std::vector<faiss::Index::idx_t> labels(batch * kTopK);
  for (auto _ : state) {
    f.flat->search(static_cast<faiss::Index::idx_t>(batch), probes.data(),
                   kTopK, scores.data(), labels.data());
    benchmark::DoNotOptimize(labels.data());
    benchmark::ClobberMemory();
  }
  SetQps(state, batch);
}

// Gallery::Add of range(0) entries per call (validation, normalisation,
// label bookkeeping, FAISS append). The gallery is reopened, untimed, every
// kAddPool entries so that labels stay fresh and the gallery stays small.
void BM_GalleryAdd(benchmark::State& state) {
  constexpr size_t kAddPool = 10000;
  static const std::vector<matcher::GalleryEntry>* pool = [] {
    const matcher::SyntheticModel model = Model();
    auto* entries = new std::vector<matcher::GalleryEntry>(kAddPool);
    for (size_t i = 0; i < kAddPool; ++i) {
      (*entries)[i].label = static_cast<int64_t>(i);
      (*entries)[i].subject_id = SubjectId(i);
      (*entries)[i].vector = model.Capture(i, 0);
    }
    return entries;
  }();
  const size_t batch = static_cast<size_t>(state.range(0));
  std::unique_ptr<matcher::Gallery> gallery;
  size_t next = kAddPool;
  for (auto _ : state) {
    if (next + batch > kAddPool) {
      state.PauseTiming();
      gallery = *matcher::Gallery::Open({kDimension});
      next = 0;
      state.ResumeTiming();
    }
    absl::Status s =
        gallery->Add(absl::MakeConstSpan(pool->data() + next, batch));
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    next += batch;
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

// Removing one subject and enrolling it again, as a revoke or a template
// replacement does, in a gallery of N.
void BM_GalleryRemoveAndReAdd(benchmark::State& state) {
  const Fixture& f = GetFixture(static_cast<size_t>(state.range(0)));
  const size_t n = static_cast<size_t>(state.range(0));
  size_t i = 0;
  for (auto _ : state) {
    const size_t victim = (i++ * 7919) % n;
    const std::string subject = SubjectId(victim);
    // The vector itself does not matter for the cost; a probe has the size.
    const matcher::GalleryEntry entry{static_cast<int64_t>(victim), subject,
                                      f.probes[i % kProbes]};
    benchmark::DoNotOptimize(f.gallery->RemoveSubject(subject));
    if (absl::Status s = f.gallery->Add({entry}); !s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// The same on raw FAISS: IndexIDMap2::remove_ids then add_with_ids.
void BM_IdMap2RemoveAndReAdd(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const Fixture& f = GetFixture(n);
  static auto* indexes =
      new std::map<size_t, std::unique_ptr<faiss::IndexIDMap2>>();
  static auto* storage =
      new std::map<size_t, std::unique_ptr<faiss::IndexFlatIP>>();
  std::unique_ptr<faiss::IndexIDMap2>& index = (*indexes)[n];
  if (index == nullptr) {
    auto& flat = (*storage)[n];
    flat = std::make_unique<faiss::IndexFlatIP>(kDimension);
    index = std::make_unique<faiss::IndexIDMap2>(flat.get());
    std::vector<faiss::Index::idx_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(i);
    index->add_with_ids(static_cast<faiss::Index::idx_t>(n), f.flat->get_xb(),
                        ids.data());
  }
  size_t i = 0;
  for (auto _ : state) {
    const faiss::Index::idx_t victim =
        static_cast<faiss::Index::idx_t>((i++ * 7919) % n);
    faiss::IDSelectorBatch selector(1, &victim);
    index->remove_ids(selector);
    index->add_with_ids(1, f.flat_probes.data(), &victim);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_GalleryAdd)->Arg(1)->Arg(1000)->Unit(benchmark::kMicrosecond);

// Everything sized by N, for the sizes up to --max_rows.
void RegisterSized() {
  std::vector<int64_t> sizes;
  for (int64_t n : {10000, 100000, 1000000}) {
    if (static_cast<size_t>(n) <= max_rows) sizes.push_back(n);
  }
  const int cores =
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  for (int64_t n : sizes) {
    for (int threads = 1; threads <= cores; ++threads) {
      benchmark::RegisterBenchmark("read", BM_ReadLimit)
          ->Args({n, threads})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark("BM_GallerySearch", BM_GallerySearch)
        ->Arg(n)
        ->Unit(benchmark::kMillisecond);
    for (int threads = 1; threads <= cores; ++threads) {
      benchmark::RegisterBenchmark("pool", BM_PoolSearch)
          ->Args({n, threads})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark("BM_FlatIPSearch", BM_FlatIPSearch)
        ->Arg(n)
        ->Unit(benchmark::kMillisecond);
    // All kProbes probes per iteration: seconds at 1M, so only up to 100k.
    if (n <= 100000) {
      benchmark::RegisterBenchmark("BM_FlatIPSearchBatch", BM_FlatIPSearchBatch)
          ->Arg(n)
          ->Unit(benchmark::kMillisecond);
    }
    // Batch sizes around the BLAS threshold (20) and well beyond. The
    // per-probe loop and 1000-probe batches only up to 100k (seconds each
    // at 1M).
    for (int64_t batch : {1, 8, 16, 19, 20, 32, 100, 1000}) {
      if (n > 100000 && batch > 100) continue;
      benchmark::RegisterBenchmark("batch", BM_GallerySearchBatch)
          ->Args({n, batch})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      if (n <= 100000 && batch <= 100) {
        benchmark::RegisterBenchmark("batch_loop", BM_GallerySearchLoop)
            ->Args({n, batch})
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
      benchmark::RegisterBenchmark("flat_batch", BM_FlatIPSearchBatchOf)
          ->Args({n, batch})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
    for (int callers : {1, 4, 16}) {
      // No coalescing, natural batching, natural batching + 0.5 ms wait.
      for (auto [batch, wait_us] :
           {std::pair{1, 0}, std::pair{8, 0}, std::pair{8, 500}}) {
        benchmark::RegisterBenchmark("pool_throughput", BM_PoolThroughput)
            ->Args({n, batch, wait_us})
            ->Threads(callers)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
    if (n <= 100000) {
      benchmark::RegisterBenchmark("BM_GalleryRemoveAndReAdd",
                                   BM_GalleryRemoveAndReAdd)
          ->Arg(n)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("BM_IdMap2RemoveAndReAdd",
                                   BM_IdMap2RemoveAndReAdd)
          ->Arg(n)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace hawiya::bench

int main(int argc, char** argv) {
  // Our flags; everything else is Google Benchmark's.
  int omp_threads = 1;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const auto flag = [&](const char* name, auto* value) {
      const size_t len = std::strlen(name);
      if (std::strncmp(argv[i], name, len) != 0) return false;
      if (!absl::SimpleAtoi(argv[i] + len, value) || *value < 0) {
        std::fprintf(stderr, "gallery_bench: bad %s\n", argv[i]);
        std::exit(2);
      }
      return true;
    };
    if (!flag("--omp_threads=", &omp_threads) &&
        !flag("--scan_threads=", &hawiya::bench::scan_threads) &&
        !flag("--max_rows=", &hawiya::bench::max_rows)) {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  if (omp_threads > 0) omp_set_num_threads(omp_threads);
  // The galleries' pool; before any gallery opens.
  hawiya::matcher::ScanPoolOptions scan_options;
  scan_options.threads = hawiya::bench::scan_threads;
  if (absl::Status s =
          hawiya::matcher::ScanPool::SetDefaultOptions(scan_options);
      !s.ok()) {
    std::fprintf(stderr, "gallery_bench: %s\n", s.ToString().c_str());
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  hawiya::bench::RegisterSized();
  benchmark::AddCustomContext("omp_threads",
                              absl::StrCat(omp_get_max_threads()));
  benchmark::AddCustomContext(
      "scan_threads",
      absl::StrCat(hawiya::matcher::ScanPool::Default().threads()));
  benchmark::AddCustomContext(
      "kernels",
      std::string(hawiya::matcher::IsaName(hawiya::matcher::BestIsa())));
  benchmark::AddCustomContext(
      "faiss", absl::StrCat(FAISS_VERSION_MAJOR, ".", FAISS_VERSION_MINOR, ".",
                            FAISS_VERSION_PATCH, " (",
                            faiss::get_compile_options(), ")"));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
