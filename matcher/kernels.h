// Inner-product kernels over float32, IEEE fp16 and 8-bit scalar-quantised
// (FAISS QT_8bit layout) vectors, the inner loops of a flat scan.
//
// Each kernel has a scalar, an AVX2/FMA and an AVX-512 variant, picked at run
// time from the CPU (the binary is built for baseline x86-64, so it runs
// anywhere). The overloads without a KernelIsa use BestIsa(); those with one
// exist so tests and benchmarks can compare the variants.
//
// Results are float sums whose order differs between ISAs: expect the
// variants (and FAISS) to differ in the last bits, not bit-identical scores.
// Within one ISA a batched kernel's out[i] is bit for bit the single-row
// kernel's result for row i, and so is a multi-query kernel's result for
// each (query, row) pair; every call is deterministic.
//
// No pointer needs any alignment. All functions are thread-safe.
#ifndef HAWIYA_MATCHER_KERNELS_H_
#define HAWIYA_MATCHER_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace hawiya::matcher {

enum class KernelIsa { kScalar, kAvx2, kAvx512 };

// The fastest ISA this CPU (and OS) supports; detected once.
KernelIsa BestIsa();
// kScalar always; kAvx2 needs AVX2, FMA and F16C; kAvx512 needs AVX-512F.
bool IsaSupported(KernelIsa isa);
// "scalar", "avx2", "avx512".
absl::string_view IsaName(KernelIsa isa);

// ---- float32 ----

// sum_j a[j] * b[j]. REQUIRES: a and b hold d floats.
float InnerProduct(const float* a, const float* b, size_t d);
// REQUIRES: as above, and IsaSupported(isa).
float InnerProduct(KernelIsa isa, const float* a, const float* b, size_t d);

// out[i] = InnerProduct(query, base + i * d, d) for i < n: the query against
// n contiguous rows. REQUIRES: query holds d floats, base n * d, out n; out
// does not overlap the inputs.
//
// The batch is read as four sequential streams (its quarters), which is what
// reaches full memory bandwidth on one core; give it thousands of rows per
// call (see bench/kernels_bench.cc) rather than a few. The same holds for
// the fp16 and SQ8 batches.
void InnerProducts(const float* query, const float* base, size_t n, size_t d,
                   float* out);
// REQUIRES: as above, and IsaSupported(isa).
void InnerProducts(KernelIsa isa, const float* query, const float* base,
                   size_t n, size_t d, float* out);

// Several queries against the same rows in one pass: out[k * n + i] =
// InnerProduct(queries[k], base + i * d, d) for k < q, i < n, bit for bit
// (same ISA). Memory sees one InnerProducts scan (four quarter streams),
// whatever q: each step's rows are read from memory once and from L1 for
// the other queries. The arithmetic is q single-query scans', so a pass
// costs about max(memory time, q x compute time): on this repo's 2-core
// AVX2 machine, fp32 at d = 512 computes at about twice the speed one core
// reads memory, so q = 2 costs little more than q = 1 and q = 8 about 3-4
// times as much (see bench/kernels_bench.cc). Give it thousands of rows per
// call.
// REQUIRES: q >= 1; each queries[k] holds d floats, base n * d, out q * n;
// out does not overlap the inputs.
void InnerProductsMulti(const float* const* queries, size_t q,
                        const float* base, size_t n, size_t d, float* out);
// REQUIRES: as above, and IsaSupported(isa).
void InnerProductsMulti(KernelIsa isa, const float* const* queries, size_t q,
                        const float* base, size_t n, size_t d, float* out);

// ---- fp16 (IEEE binary16 bit patterns) ----

// Round to nearest, ties to even; overflow gives +-inf, NaN a quiet NaN
// (payload not kept). Matches F16C's vcvtps2ph except for NaN payloads.
uint16_t FloatToHalf(float x);
// Exact.
float HalfToFloat(uint16_t h);

// sum_j query[j] * HalfToFloat(code[j]). REQUIRES: query and code hold d
// elements.
float InnerProductF16(const float* query, const uint16_t* code, size_t d);
// REQUIRES: as above, and IsaSupported(isa).
float InnerProductF16(KernelIsa isa, const float* query, const uint16_t* code,
                      size_t d);

// out[i] = InnerProductF16(query, codes + i * d, d) for i < n.
// REQUIRES: query holds d floats, codes n * d halves, out n floats.
void InnerProductsF16(const float* query, const uint16_t* codes, size_t n,
                      size_t d, float* out);
// REQUIRES: as above, and IsaSupported(isa).
void InnerProductsF16(KernelIsa isa, const float* query, const uint16_t* codes,
                      size_t n, size_t d, float* out);

// ---- SQ8: one uint8 per component, FAISS ScalarQuantizer QT_8bit ----
//
// Component j decodes to vmin[j] + (code[j] + 0.5) / 255 * vdiff[j]. The
// inner product with a query is then affine in the codes:
//   bias + sum_j scale[j] * code[j],
//   scale[j] = query[j] * vdiff[j] / 255,
//   bias = sum_j query[j] * (vmin[j] + 0.5 * vdiff[j] / 255),
// so a query is prepared once and each row costs one multiply-add per byte.

// Encodes x like FAISS QT_8bit: floor(255 * clamp((x - vmin) / vdiff, 0, 1)),
// code 0 where vdiff is 0. REQUIRES: x, vmin, vdiff hold d floats, code d
// bytes.
void EncodeSq8(const float* x, const float* vmin, const float* vdiff, size_t d,
               uint8_t* code);
// REQUIRES: code holds d bytes, vmin, vdiff and out d floats.
void DecodeSq8(const uint8_t* code, const float* vmin, const float* vdiff,
               size_t d, float* out);

// A query prepared for SQ8 codes (see above). Plain data; copyable.
struct Sq8Query {
  std::vector<float> scale;  // size d
  float bias = 0.0f;
};

// REQUIRES: query, vmin and vdiff hold d floats.
Sq8Query PrepareSq8Query(const float* query, const float* vmin,
                         const float* vdiff, size_t d);

// The query's inner product with the decoded code, d = query.scale.size().
// REQUIRES: code holds d bytes.
float InnerProductSq8(const Sq8Query& query, const uint8_t* code);
// REQUIRES: as above, and IsaSupported(isa).
float InnerProductSq8(KernelIsa isa, const Sq8Query& query,
                      const uint8_t* code);

// out[i] = InnerProductSq8(query, codes + i * d) for i < n.
// REQUIRES: codes holds n * d bytes, out n floats.
void InnerProductsSq8(const Sq8Query& query, const uint8_t* codes, size_t n,
                      float* out);
// REQUIRES: as above, and IsaSupported(isa).
void InnerProductsSq8(KernelIsa isa, const Sq8Query& query,
                      const uint8_t* codes, size_t n, float* out);

// out[k * n + i] = InnerProductsSq8(*queries[k], codes + i * d) for k < q,
// i < n, bit for bit (same ISA), reading each row once; as
// InnerProductsMulti. REQUIRES: q >= 1; every query has the same d =
// scale.size(); codes holds n * d bytes, out q * n floats.
void InnerProductsSq8Multi(const Sq8Query* const* queries, size_t q,
                           const uint8_t* codes, size_t n, float* out);
// REQUIRES: as above, and IsaSupported(isa).
void InnerProductsSq8Multi(KernelIsa isa, const Sq8Query* const* queries,
                           size_t q, const uint8_t* codes, size_t n,
                           float* out);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_KERNELS_H_
