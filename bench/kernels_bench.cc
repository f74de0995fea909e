// kernels_bench: the matcher/kernels.h batched inner products, per element
// type and ISA, scanning a base far larger than the caches (by default
// 100k x 512: float32 200 MB, fp16 100 MB, SQ8 50 MB), next to
//   - a plain AVX2 read of the same buffer (read/...), as one sequential
//     stream and as four side by side (the batched kernels' access
//     pattern): the memory-read limit of a scan on one core;
//   - FAISS on the same data: fvec_inner_products_ny for float32 and the
//     ScalarQuantizer distance computer (one virtual call per row) for fp16
//     and SQ8, i.e. what IndexFlatIP / IndexScalarQuantizer run per query.
// bytes_per_second counts the base bytes read (not the query). Rows that fit
// in cache (--rows=2000) show the compute limit instead.
//
// f32/multi/<isa>/q and sq8/multi/<isa>/q score q queries in one pass over
// the base (InnerProductsMulti): bytes_per_second is still the base bytes
// (each row is read once per pass), items_per_second is queries x rows.
//
//   kernels_bench [--rows=100000] [--dim=512] [--benchmark_filter=...]

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "faiss/Index.h"
#include "faiss/MetricType.h"
#include "faiss/impl/ScalarQuantizer.h"
#include "faiss/utils/distances.h"
#include "matcher/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hawiya::bench {
namespace {

using matcher::KernelIsa;

size_t rows = 100000;
size_t dim = 512;

// Queries for the multi-query kernels.
constexpr size_t kMaxQueries = 8;

struct Data {
  std::vector<float> query;
  std::vector<std::vector<float>> queries;  // kMaxQueries, queries[0] = query
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  std::vector<uint8_t> sq8;
  std::vector<float> vmin;
  std::vector<float> vdiff;
  std::unique_ptr<faiss::ScalarQuantizer> faiss_f16;
  std::unique_ptr<faiss::ScalarQuantizer> faiss_sq8;
};

const Data& GetData() {
  static const Data* data = [] {
    auto* d = new Data;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    d->query.resize(dim);
    for (float& x : d->query) x = uniform(rng);
    d->queries.push_back(d->query);
    while (d->queries.size() < kMaxQueries) {
      std::vector<float> q(dim);
      for (float& x : q) x = uniform(rng);
      d->queries.push_back(std::move(q));
    }
    d->f32.resize(rows * dim);
    for (float& x : d->f32) x = uniform(rng);
    d->f16.resize(rows * dim);
    for (size_t i = 0; i < d->f32.size(); ++i) {
      d->f16[i] = matcher::FloatToHalf(d->f32[i]);
    }
    // Train the FAISS SQ8 quantizer and take its ranges, so both sides
    // score the very same codes.
    d->faiss_sq8 = std::make_unique<faiss::ScalarQuantizer>(
        dim, faiss::ScalarQuantizer::QT_8bit);
    d->faiss_sq8->train(std::min<size_t>(rows, 10000), d->f32.data());
    d->vmin.assign(d->faiss_sq8->trained.begin(),
                   d->faiss_sq8->trained.begin() + dim);
    d->vdiff.assign(d->faiss_sq8->trained.begin() + dim,
                    d->faiss_sq8->trained.end());
    d->sq8.resize(rows * dim);
    for (size_t i = 0; i < rows; ++i) {
      matcher::EncodeSq8(d->f32.data() + i * dim, d->vmin.data(),
                         d->vdiff.data(), dim, d->sq8.data() + i * dim);
    }
    d->faiss_f16 = std::make_unique<faiss::ScalarQuantizer>(
        dim, faiss::ScalarQuantizer::QT_fp16);
    return d;
  }();
  return *data;
}

#if defined(__x86_64__)
// Reads bytes as `streams` sequential streams (equal parts of the buffer,
// read side by side), as the batched kernels read their four quarters.
// Integer adds, so arbitrary bit patterns cost the same; one chain per
// stream and two loads per step so the adds never limit the loads.
template <int kStreams>
__attribute__((target("avx2"))) uint64_t ReadAvx2(const void* data,
                                                  size_t bytes) {
  const char* p = static_cast<const char*>(data);
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
  uint64_t sum = static_cast<uint64_t>(_mm256_extract_epi64(s, 0)) ^
                 static_cast<uint64_t>(_mm256_extract_epi64(s, 3));
  for (size_t i = kStreams * part; i < bytes; ++i) {
    sum += static_cast<unsigned char>(p[i]);
  }
  return sum;
}
#endif

template <int kStreams>
void BM_Read(benchmark::State& state, const void* data, size_t bytes) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("no AVX2 on this CPU");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(ReadAvx2<kStreams>(data, bytes));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
#else
  state.SkipWithError("x86 only");
#endif
}

void Finish(benchmark::State& state, size_t bytes_per_row) {
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(rows));
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(rows * bytes_per_row));
}

bool CheckIsa(benchmark::State& state, KernelIsa isa) {
  if (matcher::IsaSupported(isa)) return true;
  state.SkipWithError(
      absl::StrCat(matcher::IsaName(isa), " not supported by this CPU")
          .c_str());
  return false;
}

void BM_F32(benchmark::State& state, KernelIsa isa) {
  if (!CheckIsa(state, isa)) return;
  const Data& d = GetData();
  std::vector<float> out(rows);
  for (auto _ : state) {
    matcher::InnerProducts(isa, d.query.data(), d.f32.data(), rows, dim,
                           out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim * sizeof(float));
}

// range(0) queries against the whole base in one pass.
void BM_F32Multi(benchmark::State& state, KernelIsa isa) {
  if (!CheckIsa(state, isa)) return;
  const Data& d = GetData();
  const size_t q = static_cast<size_t>(state.range(0));
  std::vector<const float*> queries;
  for (size_t k = 0; k < q; ++k) queries.push_back(d.queries[k].data());
  std::vector<float> out(q * rows);
  for (auto _ : state) {
    matcher::InnerProductsMulti(isa, queries.data(), q, d.f32.data(), rows, dim,
                                out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim * sizeof(float));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(q * rows));
}

// The whole base in batches of range(0) rows, as a scan that keeps each
// batch's scores in cache for top-k would call it.
void BM_F32Blocked(benchmark::State& state) {
  const Data& d = GetData();
  const size_t block = static_cast<size_t>(state.range(0));
  std::vector<float> out(block);
  for (auto _ : state) {
    for (size_t i = 0; i < rows; i += block) {
      matcher::InnerProducts(d.query.data(), d.f32.data() + i * dim,
                             std::min(block, rows - i), dim, out.data());
      benchmark::DoNotOptimize(out.data());
    }
    benchmark::ClobberMemory();
  }
  Finish(state, dim * sizeof(float));
}

// One InnerProduct call per row: what the batch saves.
void BM_F32PerRow(benchmark::State& state, KernelIsa isa) {
  if (!CheckIsa(state, isa)) return;
  const Data& d = GetData();
  std::vector<float> out(rows);
  for (auto _ : state) {
    for (size_t i = 0; i < rows; ++i) {
      out[i] = matcher::InnerProduct(isa, d.query.data(),
                                     d.f32.data() + i * dim, dim);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim * sizeof(float));
}

void BM_F32Faiss(benchmark::State& state) {
  const Data& d = GetData();
  std::vector<float> out(rows);
  for (auto _ : state) {
    faiss::fvec_inner_products_ny(out.data(), d.query.data(), d.f32.data(), dim,
                                  rows);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim * sizeof(float));
}

void BM_F16(benchmark::State& state, KernelIsa isa) {
  if (!CheckIsa(state, isa)) return;
  const Data& d = GetData();
  std::vector<float> out(rows);
  for (auto _ : state) {
    matcher::InnerProductsF16(isa, d.query.data(), d.f16.data(), rows, dim,
                              out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim * sizeof(uint16_t));
}

void BM_Sq8(benchmark::State& state, KernelIsa isa) {
  if (!CheckIsa(state, isa)) return;
  const Data& d = GetData();
  std::vector<float> out(rows);
  for (auto _ : state) {
    // Preparing is part of every query's cost.
    const matcher::Sq8Query prepared = matcher::PrepareSq8Query(
        d.query.data(), d.vmin.data(), d.vdiff.data(), dim);
    matcher::InnerProductsSq8(isa, prepared, d.sq8.data(), rows, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim);
}

void BM_Sq8Multi(benchmark::State& state, KernelIsa isa) {
  if (!CheckIsa(state, isa)) return;
  const Data& d = GetData();
  const size_t q = static_cast<size_t>(state.range(0));
  std::vector<float> out(q * rows);
  std::vector<matcher::Sq8Query> prepared(q);
  std::vector<const matcher::Sq8Query*> queries;
  for (size_t k = 0; k < q; ++k) queries.push_back(&prepared[k]);
  for (auto _ : state) {
    for (size_t k = 0; k < q; ++k) {
      prepared[k] = matcher::PrepareSq8Query(d.queries[k].data(), d.vmin.data(),
                                             d.vdiff.data(), dim);
    }
    matcher::InnerProductsSq8Multi(isa, queries.data(), q, d.sq8.data(), rows,
                                   out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, dim);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(q * rows));
}

// FAISS's ScalarQuantizer distance computer over our codes (same layout).
void BM_FaissSq(benchmark::State& state, const faiss::ScalarQuantizer* sq,
                const uint8_t* codes, size_t code_size) {
  const Data& d = GetData();
  std::unique_ptr<faiss::ScalarQuantizer::SQDistanceComputer> dc(
      sq->get_distance_computer(faiss::METRIC_INNER_PRODUCT));
  dc->codes = codes;
  dc->code_size = code_size;
  std::vector<float> out(rows);
  for (auto _ : state) {
    dc->set_query(d.query.data());
    for (size_t i = 0; i < rows; ++i) {
      out[i] = (*dc)(static_cast<faiss::Index::idx_t>(i));
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, code_size);
}

void Register() {
  const Data& d = GetData();
  const KernelIsa isas[] = {KernelIsa::kScalar, KernelIsa::kAvx2,
                            KernelIsa::kAvx512};
  auto name = [](const char* kernel, KernelIsa isa) {
    return absl::StrCat(kernel, "/", matcher::IsaName(isa));
  };
  auto unit = [](benchmark::internal::Benchmark* b) {
    b->Unit(benchmark::kMillisecond)->UseRealTime();
  };

  auto reads = [&](const char* kind, const void* data, size_t bytes) {
    unit(benchmark::RegisterBenchmark(
        absl::StrCat("read/", kind, "/1stream").c_str(), BM_Read<1>, data,
        bytes));
    unit(benchmark::RegisterBenchmark(
        absl::StrCat("read/", kind, "/4streams").c_str(), BM_Read<4>, data,
        bytes));
  };
  reads("f32", d.f32.data(), d.f32.size() * sizeof(float));
  for (KernelIsa isa : isas) {
    unit(benchmark::RegisterBenchmark(name("f32", isa).c_str(), BM_F32, isa));
  }
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    unit(benchmark::RegisterBenchmark(name("f32/multi", isa).c_str(),
                                      BM_F32Multi, isa)
             ->Arg(1)
             ->Arg(2)
             ->Arg(4)
             ->Arg(8));
  }
  unit(benchmark::RegisterBenchmark("f32/per_row/avx2", BM_F32PerRow,
                                    KernelIsa::kAvx2));
  for (int block : {256, 1024, 4096, 16384}) {
    unit(benchmark::RegisterBenchmark("f32/best/block", BM_F32Blocked)
             ->Arg(block));
  }
  unit(
      benchmark::RegisterBenchmark("f32/faiss_inner_products_ny", BM_F32Faiss));

  reads("f16", d.f16.data(), d.f16.size() * sizeof(uint16_t));
  for (KernelIsa isa : isas) {
    unit(benchmark::RegisterBenchmark(name("f16", isa).c_str(), BM_F16, isa));
  }
  unit(benchmark::RegisterBenchmark(
      "f16/faiss_sq_fp16", BM_FaissSq, d.faiss_f16.get(),
      reinterpret_cast<const uint8_t*>(d.f16.data()), dim * sizeof(uint16_t)));

  reads("sq8", d.sq8.data(), d.sq8.size());
  for (KernelIsa isa : isas) {
    unit(benchmark::RegisterBenchmark(name("sq8", isa).c_str(), BM_Sq8, isa));
  }
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    unit(benchmark::RegisterBenchmark(name("sq8/multi", isa).c_str(),
                                      BM_Sq8Multi, isa)
             ->Arg(1)
             ->Arg(2)
             ->Arg(4)
             ->Arg(8));
  }
  unit(benchmark::RegisterBenchmark("sq8/faiss_sq_8bit", BM_FaissSq,
                                    d.faiss_sq8.get(), d.sq8.data(), dim));
}

bool ParseSize(const char* arg, const char* flag, size_t* value) {
  const size_t len = std::strlen(flag);
  if (std::strncmp(arg, flag, len) != 0) return false;
  if (!absl::SimpleAtoi(arg + len, value) || *value == 0) {
    std::fprintf(stderr, "bad %s\n", arg);
    std::exit(2);
  }
  return true;
}

}  // namespace
}  // namespace hawiya::bench

int main(int argc, char** argv) {
  // Our flags out of argv first; Google Benchmark rejects unknown ones.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (hawiya::bench::ParseSize(argv[i], "--rows=", &hawiya::bench::rows) ||
        hawiya::bench::ParseSize(argv[i], "--dim=", &hawiya::bench::dim)) {
      continue;
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  // Everything here is single-threaded; keep FAISS that way too.
  omp_set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext(
      "kernels",
      absl::StrCat(
          "best=", hawiya::matcher::IsaName(hawiya::matcher::BestIsa()),
          " rows=", hawiya::bench::rows, " dim=", hawiya::bench::dim));
  hawiya::bench::Register();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
