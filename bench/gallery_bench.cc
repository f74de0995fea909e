// gallery_bench: micro-benchmarks of matcher::Gallery against raw FAISS
// IndexFlatIP on the same synthetic vectors (d = 512), and of Gallery::Add.
//
// Galleries are built once per size and cached across iterations and
// benchmarks. OpenMP (and so OpenBLAS-openmp) runs on --omp_threads threads,
// 1 by default: a single-query flat search is sequential anyway, and one
// thread gives per-core numbers for the batched search.
//
//   gallery_bench [--omp_threads=1] [--benchmark_filter=...] [...]

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "faiss/Index.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexIDMap.h"
#include "faiss/impl/IDSelector.h"
#include "faiss/utils/utils.h"
#include "matcher/gallery.h"
#include "matcher/synthetic.h"

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

// N enrolled identities (capture 0) in a Gallery and in a raw IndexFlatIP,
// plus kProbes mated probes (capture 1).
struct Fixture {
  std::unique_ptr<matcher::Gallery> gallery;
  std::unique_ptr<faiss::IndexFlatIP> flat;
  std::vector<std::vector<float>> probes;  // as a client sends them
  std::vector<float> flat_probes;          // normalised, contiguous
};

const Fixture& GetFixture(size_t n) {
  static auto* cache = new std::map<size_t, std::unique_ptr<Fixture>>();
  std::unique_ptr<Fixture>& fixture = (*cache)[n];
  if (fixture != nullptr) return *fixture;
  fixture = std::make_unique<Fixture>();
  const matcher::SyntheticModel model = Model();
  std::vector<matcher::GalleryEntry> entries(n);
  std::vector<float> flat_data(n * kDimension);
  for (size_t i = 0; i < n; ++i) {
    entries[i].label = static_cast<int64_t>(i);
    entries[i].subject_id = SubjectId(i);
    entries[i].vector = matcher::Normalized(model.Capture(i, 0));
    const std::vector<float> unit = matcher::Normalized(entries[i].vector);
    std::memcpy(flat_data.data() + i * kDimension, unit.data(),
                kDimension * sizeof(float));
  }
  fixture->gallery = *matcher::Gallery::Open({kDimension});
  if (absl::Status s = fixture->gallery->Add(entries); !s.ok()) {
    std::fprintf(stderr, "gallery_bench: Add: %s\n", s.ToString().c_str());
    std::abort();
  }
  fixture->flat = std::make_unique<faiss::IndexFlatIP>(kDimension);
  fixture->flat->add(static_cast<faiss::Index::idx_t>(n), flat_data.data());
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

BENCHMARK(BM_GallerySearch)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FlatIPSearch)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FlatIPSearchBatch)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GalleryAdd)->Arg(1)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GalleryRemoveAndReAdd)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_IdMap2RemoveAndReAdd)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace hawiya::bench

int main(int argc, char** argv) {
  // Our one flag; everything else is Google Benchmark's.
  int omp_threads = 1;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    constexpr const char kFlag[] = "--omp_threads=";
    if (std::strncmp(argv[i], kFlag, sizeof(kFlag) - 1) == 0) {
      if (!absl::SimpleAtoi(argv[i] + sizeof(kFlag) - 1, &omp_threads) ||
          omp_threads < 0) {
        std::fprintf(stderr, "gallery_bench: bad %s\n", argv[i]);
        return 2;
      }
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  if (omp_threads > 0) omp_set_num_threads(omp_threads);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("omp_threads",
                              absl::StrCat(omp_get_max_threads()));
  benchmark::AddCustomContext(
      "faiss", absl::StrCat(FAISS_VERSION_MAJOR, ".", FAISS_VERSION_MINOR, ".",
                            FAISS_VERSION_PATCH, " (",
                            faiss::get_compile_options(), ")"));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
