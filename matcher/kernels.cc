#include "matcher/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/string_view.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own
// _mm256_undefined_pd() (GCC bug 105593); the diagnostic is located in the
// header, so it is silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#define HAWIYA_KERNELS_X86 1
#endif

namespace hawiya::matcher {
namespace {

// Every vector kernel is one of two templates per ISA (one row, four rows)
// instantiated with a codec that turns stored elements into floats: float
// as is, fp16 through F16C, SQ8 bytes as integers (the SQ8 scale and bias
// are folded into the prepared query). So the three element types share
// one loop structure per ISA and one set of tests covers all of it.

// The query side is always float; the stored side is Codec::T.
template <typename T>
using DotFn = float (*)(const float* query, const T* x, size_t d);
template <typename T>
using RowsFn = void (*)(const float* query, const T* x, size_t n, size_t d,
                        float* out);

// out[k * n + i] = dot(queries[k], x + i * d) for k < q, i < n.
template <typename T>
using MultiFn = void (*)(const float* const* queries, size_t q, const T* x,
                         size_t n, size_t d, float* out);

template <typename T>
struct Kernels {
  DotFn<T> dot;
  RowsFn<T> rows;
  MultiFn<T> multi;
};

struct Table {
  Kernels<float> f32;
  Kernels<uint16_t> f16;
  Kernels<uint8_t> u8;
};

// ---- scalar ----

struct F32Scalar {
  using T = float;
  static float Decode(float x) { return x; }
};
struct F16Scalar {
  using T = uint16_t;
  static float Decode(uint16_t x) { return HalfToFloat(x); }
};
struct U8Scalar {
  using T = uint8_t;
  static float Decode(uint8_t x) { return static_cast<float>(x); }
};

template <typename C>
float DotScalar(const float* query, const typename C::T* x, size_t d) {
  float sum = 0.0f;
  for (size_t j = 0; j < d; ++j) sum += query[j] * C::Decode(x[j]);
  return sum;
}

template <typename C>
void RowsScalar(const float* query, const typename C::T* x, size_t n, size_t d,
                float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = DotScalar<C>(query, x + i * d, d);
}

// Rows outer, queries inner: a row is read from memory once and from cache
// for the other queries. Each result is DotScalar's, so bit for bit equal.
template <typename C>
void MultiScalar(const float* const* queries, size_t q, const typename C::T* x,
                 size_t n, size_t d, float* out) {
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < q; ++k) {
      out[k * n + i] = DotScalar<C>(queries[k], x + i * d, d);
    }
  }
}

template <typename C>
constexpr Kernels<typename C::T> ScalarKernels() {
  return {&DotScalar<C>, &RowsScalar<C>, &MultiScalar<C>};
}

constexpr Table kScalarTable = {ScalarKernels<F32Scalar>(),
                                ScalarKernels<F16Scalar>(),
                                ScalarKernels<U8Scalar>()};

#if defined(HAWIYA_KERNELS_X86)

// Intrinsic types stay in this file: passing them across a TU boundary
// without the target enabled changes the ABI (GCC's -Wpsabi).
#define HAWIYA_AVX2 __attribute__((target("avx2,fma,f16c")))
#define HAWIYA_AVX2_INLINE \
  __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#define HAWIYA_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define HAWIYA_AVX512_INLINE \
  __attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) inline

// ---- AVX2 + FMA + F16C: 8 lanes ----

// The first n elements (n < 16) in a zeroed buffer: a full vector load from
// it never reads past the end of the row, which may end at a page boundary.
template <typename T>
HAWIYA_AVX2_INLINE void CopyPartial(const T* p, size_t n, T (&buf)[16]) {
  std::memset(buf, 0, sizeof(buf));
  std::memcpy(buf, p, n * sizeof(T));
}

HAWIYA_AVX2_INLINE __m256 LoadPartialF32Avx2(const float* p, size_t n) {
  const __m256i mask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_maskload_ps(p, mask);
}

struct F32Avx2 {
  using T = float;
  HAWIYA_AVX2_INLINE static __m256 Load(const float* p) {
    return _mm256_loadu_ps(p);
  }
  HAWIYA_AVX2_INLINE static __m256 LoadPartial(const float* p, size_t n) {
    return LoadPartialF32Avx2(p, n);
  }
};

struct F16Avx2 {
  using T = uint16_t;
  HAWIYA_AVX2_INLINE static __m256 Load(const uint16_t* p) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  HAWIYA_AVX2_INLINE static __m256 LoadPartial(const uint16_t* p, size_t n) {
    uint16_t buf[16];
    CopyPartial(p, n, buf);
    return Load(buf);
  }
};

struct U8Avx2 {
  using T = uint8_t;
  HAWIYA_AVX2_INLINE static __m256 Load(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  HAWIYA_AVX2_INLINE static __m256 LoadPartial(const uint8_t* p, size_t n) {
    uint8_t buf[16];
    CopyPartial(p, n, buf);
    return Load(buf);
  }
};

// The horizontal sums of a, b, c, d as one vector, in that order.
HAWIYA_AVX2_INLINE __m128 HorizontalSum4(__m256 a, __m256 b, __m256 c,
                                         __m256 d) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// Same additions in the same order as one lane of HorizontalSum4, so a row
// scores bit for bit the same alone or in a batch.
HAWIYA_AVX2_INLINE float HorizontalSum(__m256 v) {
  return _mm_cvtss_f32(HorizontalSum4(v, v, v, v));
}

// One row, with exactly the accumulators and order RowsAvx2 uses for each
// of its rows (see there): InnerProduct and InnerProducts then agree bit
// for bit, so a template scores the same through Search and ScoreSubject.
// Two FMA chains make one row latency-bound in cache; lone rows are rare.
template <typename C>
HAWIYA_AVX2 float DotAvx2(const float* query, const typename C::T* x,
                          size_t d) {
  __m256 a = _mm256_setzero_ps();
  __m256 b = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    a = _mm256_fmadd_ps(_mm256_loadu_ps(query + j), C::Load(x + j), a);
    b = _mm256_fmadd_ps(_mm256_loadu_ps(query + j + 8), C::Load(x + j + 8), b);
  }
  if (j + 8 <= d) {
    a = _mm256_fmadd_ps(_mm256_loadu_ps(query + j), C::Load(x + j), a);
    j += 8;
  }
  if (j < d) {
    b = _mm256_fmadd_ps(LoadPartialF32Avx2(query + j, d - j),
                        C::LoadPartial(x + j, d - j), b);
  }
  return HorizontalSum(_mm256_add_ps(a, b));
}

// Rows r[0..3] against the query, two accumulators per row (eight
// independent FMA chains, each query load feeding four FMAs); the four
// results in order. Per row, DotAvx2's accumulators and order.
template <typename C>
HAWIYA_AVX2_INLINE __m128 FourRowsAvx2(const float* query,
                                       const typename C::T* r0,
                                       const typename C::T* r1,
                                       const typename C::T* r2,
                                       const typename C::T* r3, size_t d) {
  __m256 a0 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps();
  __m256 a1 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps();
  __m256 a3 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    const __m256 q = _mm256_loadu_ps(query + j);
    const __m256 p = _mm256_loadu_ps(query + j + 8);
    a0 = _mm256_fmadd_ps(q, C::Load(r0 + j), a0);
    b0 = _mm256_fmadd_ps(p, C::Load(r0 + j + 8), b0);
    a1 = _mm256_fmadd_ps(q, C::Load(r1 + j), a1);
    b1 = _mm256_fmadd_ps(p, C::Load(r1 + j + 8), b1);
    a2 = _mm256_fmadd_ps(q, C::Load(r2 + j), a2);
    b2 = _mm256_fmadd_ps(p, C::Load(r2 + j + 8), b2);
    a3 = _mm256_fmadd_ps(q, C::Load(r3 + j), a3);
    b3 = _mm256_fmadd_ps(p, C::Load(r3 + j + 8), b3);
  }
  if (j + 8 <= d) {
    const __m256 q = _mm256_loadu_ps(query + j);
    a0 = _mm256_fmadd_ps(q, C::Load(r0 + j), a0);
    a1 = _mm256_fmadd_ps(q, C::Load(r1 + j), a1);
    a2 = _mm256_fmadd_ps(q, C::Load(r2 + j), a2);
    a3 = _mm256_fmadd_ps(q, C::Load(r3 + j), a3);
    j += 8;
  }
  if (j < d) {
    const size_t rest = d - j;
    const __m256 q = LoadPartialF32Avx2(query + j, rest);
    b0 = _mm256_fmadd_ps(q, C::LoadPartial(r0 + j, rest), b0);
    b1 = _mm256_fmadd_ps(q, C::LoadPartial(r1 + j, rest), b1);
    b2 = _mm256_fmadd_ps(q, C::LoadPartial(r2 + j, rest), b2);
    b3 = _mm256_fmadd_ps(q, C::LoadPartial(r3 + j, rest), b3);
  }
  return HorizontalSum4(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1),
                        _mm256_add_ps(a2, b2), _mm256_add_ps(a3, b3));
}

template <typename C>
HAWIYA_AVX2 void RowsAvx2(const float* query, const typename C::T* x, size_t n,
                          size_t d, float* out) {
  // Four rows per pass (FourRowsAvx2). The four rows come from the four
  // quarters of the batch, not from four adjacent rows: four long
  // sequential streams keep the hardware prefetchers trained and several
  // DRAM reads in flight, while adjacent rows make four 2 KB streams per
  // pass that the prefetchers never lock onto. On a cold 100k x 512 float32
  // base that is 9 ms against 14 ms for adjacent rows (with software
  // prefetch) and 13 ms for one row at a time.
  const size_t m = n / 4;
  const size_t stride = m * d;
  for (size_t i = 0; i < m; ++i) {
    const typename C::T* r0 = x + i * d;
    alignas(16) float sums[4];
    _mm_store_ps(sums, FourRowsAvx2<C>(query, r0, r0 + stride, r0 + 2 * stride,
                                       r0 + 3 * stride, d));
    out[i] = sums[0];
    out[i + m] = sums[1];
    out[i + 2 * m] = sums[2];
    out[i + 3 * m] = sums[3];
  }
  for (size_t i = 4 * m; i < n; ++i) out[i] = DotAvx2<C>(query, x + i * d, d);
}

// Several queries against the same rows (InnerProductsMulti): the four
// rows of each RowsAvx2 step against every query in turn. The first query
// brings the four rows in from memory exactly as RowsAvx2 does (four
// sequential streams in lockstep), the others find them in L1, so memory
// sees one single-query scan and every result is RowsAvx2's, bit for bit.
//
// Register tiles of two rows by up to three queries (twelve FMA chains, the
// query chunk shared by both rows) did no better in cache here (AVX2 at an
// effective ~1.4 GHz), and worse from DRAM: with the two halves of the four
// rows read in turn, a q = 2 scan of 100k x 512 took up to 1.4x as long.
template <typename C>
HAWIYA_AVX2 void MultiAvx2(const float* const* queries, size_t q,
                           const typename C::T* x, size_t n, size_t d,
                           float* out) {
  const size_t m = n / 4;
  const size_t stride = m * d;
  for (size_t i = 0; i < m; ++i) {
    const typename C::T* r0 = x + i * d;
    for (size_t k = 0; k < q; ++k) {
      alignas(16) float sums[4];
      _mm_store_ps(sums, FourRowsAvx2<C>(queries[k], r0, r0 + stride,
                                         r0 + 2 * stride, r0 + 3 * stride, d));
      float* o = out + k * n;
      o[i] = sums[0];
      o[i + m] = sums[1];
      o[i + 2 * m] = sums[2];
      o[i + 3 * m] = sums[3];
    }
  }
  for (size_t i = 4 * m; i < n; ++i) {
    for (size_t k = 0; k < q; ++k) {
      out[k * n + i] = DotAvx2<C>(queries[k], x + i * d, d);
    }
  }
}

template <typename C>
constexpr Kernels<typename C::T> Avx2Kernels() {
  return {&DotAvx2<C>, &RowsAvx2<C>, &MultiAvx2<C>};
}

constexpr Table kAvx2Table = {Avx2Kernels<F32Avx2>(), Avx2Kernels<F16Avx2>(),
                              Avx2Kernels<U8Avx2>()};

// ---- AVX-512F: 16 lanes ----

HAWIYA_AVX512_INLINE __mmask16 FirstLanes(size_t n) {
  return static_cast<__mmask16>((1u << n) - 1u);
}

struct F32Avx512 {
  using T = float;
  HAWIYA_AVX512_INLINE static __m512 Load(const float* p) {
    return _mm512_loadu_ps(p);
  }
  // Masked-off lanes are not read, so no fault past the end.
  HAWIYA_AVX512_INLINE static __m512 LoadPartial(const float* p, size_t n) {
    return _mm512_maskz_loadu_ps(FirstLanes(n), p);
  }
};

struct F16Avx512 {
  using T = uint16_t;
  HAWIYA_AVX512_INLINE static __m512 Load(const uint16_t* p) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // Masked 16-bit loads need AVX512BW; a copy keeps this to AVX512F.
  HAWIYA_AVX512_INLINE static __m512 LoadPartial(const uint16_t* p, size_t n) {
    uint16_t buf[16];
    CopyPartial(p, n, buf);
    return Load(buf);
  }
};

struct U8Avx512 {
  using T = uint8_t;
  HAWIYA_AVX512_INLINE static __m512 Load(const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  HAWIYA_AVX512_INLINE static __m512 LoadPartial(const uint8_t* p, size_t n) {
    uint8_t buf[16];
    CopyPartial(p, n, buf);
    return Load(buf);
  }
};

// The two 256-bit halves added (AVX512F only; no AVX512DQ extract).
HAWIYA_AVX512_INLINE __m256 FoldTo256(__m512 v) {
  const __m256 hi =
      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return _mm256_add_ps(_mm512_castps512_ps256(v), hi);
}

// As DotAvx2: the accumulators and order of one row of RowsAvx512.
template <typename C>
HAWIYA_AVX512 float DotAvx512(const float* query, const typename C::T* x,
                              size_t d) {
  __m512 a = _mm512_setzero_ps();
  __m512 b = _mm512_setzero_ps();
  size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    a = _mm512_fmadd_ps(_mm512_loadu_ps(query + j), C::Load(x + j), a);
    b = _mm512_fmadd_ps(_mm512_loadu_ps(query + j + 16), C::Load(x + j + 16),
                        b);
  }
  if (j + 16 <= d) {
    a = _mm512_fmadd_ps(_mm512_loadu_ps(query + j), C::Load(x + j), a);
    j += 16;
  }
  if (j < d) {
    b = _mm512_fmadd_ps(F32Avx512::LoadPartial(query + j, d - j),
                        C::LoadPartial(x + j, d - j), b);
  }
  return HorizontalSum(FoldTo256(_mm512_add_ps(a, b)));
}

// As FourRowsAvx2: per row, DotAvx512's accumulators and order.
template <typename C>
HAWIYA_AVX512_INLINE __m128 FourRowsAvx512(const float* query,
                                           const typename C::T* r0,
                                           const typename C::T* r1,
                                           const typename C::T* r2,
                                           const typename C::T* r3, size_t d) {
  __m512 a0 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps();
  __m512 a1 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  __m512 a2 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps();
  __m512 a3 = _mm512_setzero_ps(), b3 = _mm512_setzero_ps();
  size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    const __m512 q = _mm512_loadu_ps(query + j);
    const __m512 p = _mm512_loadu_ps(query + j + 16);
    a0 = _mm512_fmadd_ps(q, C::Load(r0 + j), a0);
    b0 = _mm512_fmadd_ps(p, C::Load(r0 + j + 16), b0);
    a1 = _mm512_fmadd_ps(q, C::Load(r1 + j), a1);
    b1 = _mm512_fmadd_ps(p, C::Load(r1 + j + 16), b1);
    a2 = _mm512_fmadd_ps(q, C::Load(r2 + j), a2);
    b2 = _mm512_fmadd_ps(p, C::Load(r2 + j + 16), b2);
    a3 = _mm512_fmadd_ps(q, C::Load(r3 + j), a3);
    b3 = _mm512_fmadd_ps(p, C::Load(r3 + j + 16), b3);
  }
  if (j + 16 <= d) {
    const __m512 q = _mm512_loadu_ps(query + j);
    a0 = _mm512_fmadd_ps(q, C::Load(r0 + j), a0);
    a1 = _mm512_fmadd_ps(q, C::Load(r1 + j), a1);
    a2 = _mm512_fmadd_ps(q, C::Load(r2 + j), a2);
    a3 = _mm512_fmadd_ps(q, C::Load(r3 + j), a3);
    j += 16;
  }
  if (j < d) {
    const size_t rest = d - j;
    const __m512 q = F32Avx512::LoadPartial(query + j, rest);
    b0 = _mm512_fmadd_ps(q, C::LoadPartial(r0 + j, rest), b0);
    b1 = _mm512_fmadd_ps(q, C::LoadPartial(r1 + j, rest), b1);
    b2 = _mm512_fmadd_ps(q, C::LoadPartial(r2 + j, rest), b2);
    b3 = _mm512_fmadd_ps(q, C::LoadPartial(r3 + j, rest), b3);
  }
  return HorizontalSum4(
      FoldTo256(_mm512_add_ps(a0, b0)), FoldTo256(_mm512_add_ps(a1, b1)),
      FoldTo256(_mm512_add_ps(a2, b2)), FoldTo256(_mm512_add_ps(a3, b3)));
}

template <typename C>
HAWIYA_AVX512 void RowsAvx512(const float* query, const typename C::T* x,
                              size_t n, size_t d, float* out) {
  // Same shape as RowsAvx2 (four quarter streams), 16 lanes.
  const size_t m = n / 4;
  const size_t stride = m * d;
  for (size_t i = 0; i < m; ++i) {
    const typename C::T* r0 = x + i * d;
    alignas(16) float sums[4];
    _mm_store_ps(sums, FourRowsAvx512<C>(query, r0, r0 + stride,
                                         r0 + 2 * stride, r0 + 3 * stride, d));
    out[i] = sums[0];
    out[i + m] = sums[1];
    out[i + 2 * m] = sums[2];
    out[i + 3 * m] = sums[3];
  }
  for (size_t i = 4 * m; i < n; ++i) {
    out[i] = DotAvx512<C>(query, x + i * d, d);
  }
}

// As MultiAvx2.
template <typename C>
HAWIYA_AVX512 void MultiAvx512(const float* const* queries, size_t q,
                               const typename C::T* x, size_t n, size_t d,
                               float* out) {
  const size_t m = n / 4;
  const size_t stride = m * d;
  for (size_t i = 0; i < m; ++i) {
    const typename C::T* r0 = x + i * d;
    for (size_t k = 0; k < q; ++k) {
      alignas(16) float sums[4];
      _mm_store_ps(
          sums, FourRowsAvx512<C>(queries[k], r0, r0 + stride, r0 + 2 * stride,
                                  r0 + 3 * stride, d));
      float* o = out + k * n;
      o[i] = sums[0];
      o[i + m] = sums[1];
      o[i + 2 * m] = sums[2];
      o[i + 3 * m] = sums[3];
    }
  }
  for (size_t i = 4 * m; i < n; ++i) {
    for (size_t k = 0; k < q; ++k) {
      out[k * n + i] = DotAvx512<C>(queries[k], x + i * d, d);
    }
  }
}

template <typename C>
constexpr Kernels<typename C::T> Avx512Kernels() {
  return {&DotAvx512<C>, &RowsAvx512<C>, &MultiAvx512<C>};
}

constexpr Table kAvx512Table = {Avx512Kernels<F32Avx512>(),
                                Avx512Kernels<F16Avx512>(),
                                Avx512Kernels<U8Avx512>()};

#endif  // HAWIYA_KERNELS_X86

#if defined(HAWIYA_KERNELS_X86)
// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does
// not know "f16c", GCC's does; <cpuid.h> works with both.
bool HasF16c() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif  // HAWIYA_KERNELS_X86

bool Detect(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return true;
#if defined(HAWIYA_KERNELS_X86)
    // __builtin_cpu_supports also checks that the OS saves the YMM/ZMM
    // state (XGETBV), not just CPUID.
    case KernelIsa::kAvx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             HasF16c();
    case KernelIsa::kAvx512:
      return Detect(KernelIsa::kAvx2) && __builtin_cpu_supports("avx512f");
#else
    case KernelIsa::kAvx2:
    case KernelIsa::kAvx512:
      return false;
#endif
  }
  return false;
}

struct Support {
  bool avx2;
  bool avx512;
};

const Support& GetSupport() {
  static const Support support = {Detect(KernelIsa::kAvx2),
                                  Detect(KernelIsa::kAvx512)};
  return support;
}

const Table& TableFor(KernelIsa isa) {
  assert(IsaSupported(isa));
  switch (isa) {
    case KernelIsa::kScalar:
      return kScalarTable;
#if defined(HAWIYA_KERNELS_X86)
    case KernelIsa::kAvx2:
      return kAvx2Table;
    case KernelIsa::kAvx512:
      return kAvx512Table;
#else
    case KernelIsa::kAvx2:
    case KernelIsa::kAvx512:
      break;
#endif
  }
  return kScalarTable;
}

const Table& BestTable() {
  static const Table& table = TableFor(BestIsa());
  return table;
}

uint32_t FloatBits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}

float BitsFloat(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

}  // namespace

bool IsaSupported(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return true;
    case KernelIsa::kAvx2:
      return GetSupport().avx2;
    case KernelIsa::kAvx512:
      return GetSupport().avx512;
  }
  return false;
}

KernelIsa BestIsa() {
  if (IsaSupported(KernelIsa::kAvx512)) return KernelIsa::kAvx512;
  if (IsaSupported(KernelIsa::kAvx2)) return KernelIsa::kAvx2;
  return KernelIsa::kScalar;
}

absl::string_view IsaName(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      return "scalar";
    case KernelIsa::kAvx2:
      return "avx2";
    case KernelIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

float InnerProduct(const float* a, const float* b, size_t d) {
  return BestTable().f32.dot(a, b, d);
}

float InnerProduct(KernelIsa isa, const float* a, const float* b, size_t d) {
  return TableFor(isa).f32.dot(a, b, d);
}

void InnerProducts(const float* query, const float* base, size_t n, size_t d,
                   float* out) {
  BestTable().f32.rows(query, base, n, d, out);
}

void InnerProducts(KernelIsa isa, const float* query, const float* base,
                   size_t n, size_t d, float* out) {
  TableFor(isa).f32.rows(query, base, n, d, out);
}

void InnerProductsMulti(const float* const* queries, size_t q,
                        const float* base, size_t n, size_t d, float* out) {
  BestTable().f32.multi(queries, q, base, n, d, out);
}

void InnerProductsMulti(KernelIsa isa, const float* const* queries, size_t q,
                        const float* base, size_t n, size_t d, float* out) {
  TableFor(isa).f32.multi(queries, q, base, n, d, out);
}

uint16_t FloatToHalf(float x) {
  const uint32_t bits = FloatBits(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN
  // 65520 is halfway between the largest half (65504) and 2^16, and rounds
  // to even, i.e. up: everything from there on overflows.
  if (abs >= 0x477ff000u) return sign | 0x7c00u;
  if (abs >= 0x38800000u) {
    // Normal half: rebias the exponent, round the 13 dropped mantissa bits
    // to nearest even. A carry out of the mantissa correctly bumps the
    // exponent.
    const uint32_t odd = (abs >> 13) & 1u;
    return sign |
           static_cast<uint16_t>((abs - 0x38000000u + 0xfffu + odd) >> 13);
  }
  // Subnormal half (units of 2^-24) or zero. 2^-25 and below round to 0.
  if (abs <= 0x33000000u) return sign;
  const uint32_t exponent = abs >> 23;  // 102..112
  const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exponent;  // 14..24
  uint32_t result = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (result & 1u) != 0)) ++result;
  // result == 0x400 is the smallest normal half, as it should be.
  return sign | static_cast<uint16_t>(result);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    return BitsFloat(sign | FloatBits(static_cast<float>(mantissa) * 0x1p-24f));
  }
  if (exponent == 31) return BitsFloat(sign | 0x7f800000u | (mantissa << 13));
  return BitsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float InnerProductF16(const float* query, const uint16_t* code, size_t d) {
  return BestTable().f16.dot(query, code, d);
}

float InnerProductF16(KernelIsa isa, const float* query, const uint16_t* code,
                      size_t d) {
  return TableFor(isa).f16.dot(query, code, d);
}

void InnerProductsF16(const float* query, const uint16_t* codes, size_t n,
                      size_t d, float* out) {
  BestTable().f16.rows(query, codes, n, d, out);
}

void InnerProductsF16(KernelIsa isa, const float* query, const uint16_t* codes,
                      size_t n, size_t d, float* out) {
  TableFor(isa).f16.rows(query, codes, n, d, out);
}

void EncodeSq8(const float* x, const float* vmin, const float* vdiff, size_t d,
               uint8_t* code) {
  for (size_t j = 0; j < d; ++j) {
    // Same float operations as FAISS's QuantizerTemplate<Codec8bit, false>,
    // so codes match bit for bit.
    float xi = 0.0f;
    if (vdiff[j] != 0.0f) {
      xi = (x[j] - vmin[j]) / vdiff[j];
      if (xi < 0.0f) xi = 0.0f;
      if (xi > 1.0f) xi = 1.0f;
    }
    code[j] = static_cast<uint8_t>(255 * xi);
  }
}

void DecodeSq8(const uint8_t* code, const float* vmin, const float* vdiff,
               size_t d, float* out) {
  for (size_t j = 0; j < d; ++j) {
    out[j] = vmin[j] + (code[j] + 0.5f) / 255.0f * vdiff[j];
  }
}

Sq8Query PrepareSq8Query(const float* query, const float* vmin,
                         const float* vdiff, size_t d) {
  Sq8Query prepared;
  prepared.scale.resize(d);
  // The bias is summed once per query, so do it in double: it is the part
  // most prone to cancellation.
  double bias = 0.0;
  for (size_t j = 0; j < d; ++j) {
    prepared.scale[j] = query[j] * vdiff[j] / 255.0f;
    bias += static_cast<double>(query[j]) *
            (static_cast<double>(vmin[j]) + 0.5 * vdiff[j] / 255.0);
  }
  prepared.bias = static_cast<float>(bias);
  return prepared;
}

float InnerProductSq8(const Sq8Query& query, const uint8_t* code) {
  return query.bias +
         BestTable().u8.dot(query.scale.data(), code, query.scale.size());
}

float InnerProductSq8(KernelIsa isa, const Sq8Query& query,
                      const uint8_t* code) {
  return query.bias +
         TableFor(isa).u8.dot(query.scale.data(), code, query.scale.size());
}

void InnerProductsSq8(const Sq8Query& query, const uint8_t* codes, size_t n,
                      float* out) {
  InnerProductsSq8(BestIsa(), query, codes, n, out);
}

void InnerProductsSq8(KernelIsa isa, const Sq8Query& query,
                      const uint8_t* codes, size_t n, float* out) {
  TableFor(isa).u8.rows(query.scale.data(), codes, n, query.scale.size(), out);
  for (size_t i = 0; i < n; ++i) out[i] += query.bias;
}

void InnerProductsSq8Multi(const Sq8Query* const* queries, size_t q,
                           const uint8_t* codes, size_t n, float* out) {
  InnerProductsSq8Multi(BestIsa(), queries, q, codes, n, out);
}

void InnerProductsSq8Multi(KernelIsa isa, const Sq8Query* const* queries,
                           size_t q, const uint8_t* codes, size_t n,
                           float* out) {
  if (q == 0) return;
  std::vector<const float*> scales(q);
  for (size_t k = 0; k < q; ++k) scales[k] = queries[k]->scale.data();
  TableFor(isa).u8.multi(scales.data(), q, codes, n, queries[0]->scale.size(),
                         out);
  // The same float addition as InnerProductsSq8, so the same bits.
  for (size_t k = 0; k < q; ++k) {
    const float bias = queries[k]->bias;
    for (size_t i = 0; i < n; ++i) out[k * n + i] += bias;
  }
}

}  // namespace hawiya::matcher
