#include "matcher/kernels.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "faiss/impl/ScalarQuantizer.h"
#include "gtest/gtest.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hawiya::matcher {
namespace {

// Odd sizes on purpose: every loop tail (32-, 16-, 8-wide and partial) of
// every ISA gets exercised.
const size_t kDims[] = {1,  3,  7,   8,   15,  16,  17,  31,
                        33, 64, 100, 255, 256, 512, 513, 1000};
// Row counts around the four-streams blocking (quarters of 0, 1, 2, 4
// rows, with and without leftovers).
const size_t kRows[] = {1, 3, 4, 5, 8, 11, 16, 19};

std::vector<float> RandomFloats(size_t n, std::mt19937& rng, float lo = -1.0f,
                                float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double Norm(const float* x, size_t d) {
  double sum = 0.0;
  for (size_t j = 0; j < d; ++j) sum += static_cast<double>(x[j]) * x[j];
  return std::sqrt(sum);
}

double DotRef(const float* a, const float* b, size_t d) {
  double sum = 0.0;
  for (size_t j = 0; j < d; ++j) sum += static_cast<double>(a[j]) * b[j];
  return sum;
}

// Float accumulation in any order stays well inside this for inputs of
// these sizes (the typical error grows like sqrt(d) ulps).
double Tolerance(double norm_a, double norm_b, size_t d) {
  return 1e-5 * std::sqrt(static_cast<double>(d)) * norm_a * norm_b + 1e-30;
}

// Memory whose last byte is followed by an inaccessible page, so a kernel
// reading past the end of its input crashes the test.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t data_pages = (bytes + page - 1) / page;
    size_ = (data_pages + 1) * page;
    void* map = mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) std::abort();
    base_ = static_cast<char*>(map);
    if (mprotect(base_ + data_pages * page, page, PROT_NONE) != 0) {
      std::abort();
    }
    data_ = base_ + data_pages * page - bytes;
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  ~GuardedBuffer() { munmap(base_, size_); }

  template <typename T>
  T* Copy(const std::vector<T>& from) {
    std::memcpy(data_, from.data(), from.size() * sizeof(T));
    return reinterpret_cast<T*>(data_);
  }

 private:
  char* base_ = nullptr;
  char* data_ = nullptr;
  size_t size_ = 0;
};

// Detection agrees with the kernel's own view of the CPU (/proc/cpuinfo's
// flags, which the kernel clears for state the OS does not save): a wrong
// bit would run kernels that crash (SIGILL) or leave the vector units idle.
TEST(IsaTest, DetectionAgreesWithProcCpuinfo) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string flag; words >> flag;) flags.insert(flag);
    break;
  }
  ASSERT_FALSE(flags.empty()) << "no flags line in /proc/cpuinfo";
  const bool avx2 =
      flags.count("avx2") && flags.count("fma") && flags.count("f16c");
  EXPECT_TRUE(IsaSupported(KernelIsa::kScalar));
  EXPECT_EQ(IsaSupported(KernelIsa::kAvx2), avx2);
  EXPECT_EQ(IsaSupported(KernelIsa::kAvx512), avx2 && flags.count("avx512f"));
  EXPECT_TRUE(IsaSupported(BestIsa()));
  std::printf("kernel ISAs supported here: %s%s%sbest: %s\n", "scalar ",
              avx2 ? "avx2 " : "",
              IsaSupported(KernelIsa::kAvx512) ? "avx512 " : "",
              std::string(IsaName(BestIsa())).c_str());
}

TEST(IsaTest, Names) {
  EXPECT_EQ(IsaName(KernelIsa::kScalar), "scalar");
  EXPECT_EQ(IsaName(KernelIsa::kAvx2), "avx2");
  EXPECT_EQ(IsaName(KernelIsa::kAvx512), "avx512");
}

class KernelTest : public testing::TestWithParam<KernelIsa> {
 protected:
  void SetUp() override {
    if (!IsaSupported(isa())) {
      GTEST_SKIP() << IsaName(isa()) << " is not supported by this CPU";
    }
  }
  KernelIsa isa() const { return GetParam(); }
};

TEST_P(KernelTest, Float32MatchesReference) {
  std::mt19937 rng(1);
  for (size_t d : kDims) {
    for (size_t offset : {0, 1}) {
      // offset 1 misaligns both inputs by one float.
      const std::vector<float> a = RandomFloats(d + offset, rng);
      const std::vector<float> b = RandomFloats(d + offset, rng);
      const float* pa = a.data() + offset;
      const float* pb = b.data() + offset;
      EXPECT_NEAR(InnerProduct(isa(), pa, pb, d), DotRef(pa, pb, d),
                  Tolerance(Norm(pa, d), Norm(pb, d), d))
          << "d=" << d << " offset=" << offset;
    }
  }
}

TEST_P(KernelTest, Float32DefaultDispatchAgrees) {
  std::mt19937 rng(2);
  const size_t d = 100;
  const std::vector<float> a = RandomFloats(d, rng);
  const std::vector<float> b = RandomFloats(3 * d, rng);
  std::vector<float> out(3);
  InnerProducts(a.data(), b.data(), 3, d, out.data());
  for (size_t i = 0; i < 3; ++i) {
    const float* row = b.data() + i * d;
    const double tolerance = Tolerance(Norm(a.data(), d), Norm(row, d), d);
    EXPECT_NEAR(InnerProduct(a.data(), row, d), DotRef(a.data(), row, d),
                tolerance);
    EXPECT_NEAR(out[i], DotRef(a.data(), row, d), tolerance);
  }
}

TEST_P(KernelTest, Float32BatchedMatchesPerRow) {
  std::mt19937 rng(3);
  for (size_t d : kDims) {
    for (size_t n : kRows) {
      for (size_t offset : {0, 1}) {
        const std::vector<float> query = RandomFloats(d + offset, rng);
        const std::vector<float> base = RandomFloats(n * d + offset, rng);
        const float* q = query.data() + offset;
        const float* rows = base.data() + offset;
        // One sentinel past the end: the batch writes exactly n results.
        std::vector<float> out(n + 1, -7.0f);
        InnerProducts(isa(), q, rows, n, d, out.data());
        EXPECT_EQ(out[n], -7.0f);
        for (size_t i = 0; i < n; ++i) {
          const float* row = rows + i * d;
          const double tolerance = Tolerance(Norm(q, d), Norm(row, d), d);
          EXPECT_NEAR(out[i], DotRef(q, row, d), tolerance)
              << "d=" << d << " n=" << n << " i=" << i;
          // Bit for bit: a template must score the same alone or in a batch.
          EXPECT_EQ(out[i], InnerProduct(isa(), q, row, d))
              << "d=" << d << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

// Every q up to 9 covers each tile size of every ISA (AVX2 tiles of up to
// four queries, AVX-512 of up to eight) and a q beyond one AVX-512 tile.
TEST_P(KernelTest, Float32MultiMatchesReferenceAndSingleQuery) {
  std::mt19937 rng(9);
  for (size_t q = 1; q <= 9; ++q) {
    for (size_t d : kDims) {
      for (size_t n : kRows) {
        // offset misaligns the rows; query k is misaligned by k % 3 floats.
        const size_t offset = (q + d + n) % 2;
        std::vector<std::vector<float>> storage;
        std::vector<const float*> queries;
        for (size_t k = 0; k < q; ++k) {
          storage.push_back(RandomFloats(d + k % 3, rng));
        }
        for (size_t k = 0; k < q; ++k) {
          queries.push_back(storage[k].data() + k % 3);
        }
        const std::vector<float> base = RandomFloats(n * d + offset, rng);
        const float* rows = base.data() + offset;
        // One sentinel past the end: exactly q * n results are written.
        std::vector<float> out(q * n + 1, -7.0f);
        InnerProductsMulti(isa(), queries.data(), q, rows, n, d, out.data());
        EXPECT_EQ(out[q * n], -7.0f);
        std::vector<float> single(n);
        for (size_t k = 0; k < q; ++k) {
          InnerProducts(isa(), queries[k], rows, n, d, single.data());
          for (size_t i = 0; i < n; ++i) {
            const float* row = rows + i * d;
            const float got = out[k * n + i];
            EXPECT_NEAR(got, DotRef(queries[k], row, d),
                        Tolerance(Norm(queries[k], d), Norm(row, d), d))
                << "q=" << q << " d=" << d << " n=" << n << " k=" << k
                << " i=" << i;
            // Bit for bit: a batched query scores as it would alone.
            ASSERT_EQ(got, single[i]) << "q=" << q << " d=" << d << " n=" << n
                                      << " k=" << k << " i=" << i;
            ASSERT_EQ(got, InnerProduct(isa(), queries[k], row, d));
          }
        }
      }
    }
  }
}

TEST_P(KernelTest, Float32MultiDefaultDispatchAgrees) {
  std::mt19937 rng(10);
  const size_t d = 100, n = 37, q = 5;
  std::vector<std::vector<float>> storage;
  std::vector<const float*> queries;
  for (size_t k = 0; k < q; ++k) storage.push_back(RandomFloats(d, rng));
  for (const std::vector<float>& v : storage) queries.push_back(v.data());
  const std::vector<float> base = RandomFloats(n * d, rng);
  std::vector<float> best(q * n), single(n);
  InnerProductsMulti(queries.data(), q, base.data(), n, d, best.data());
  for (size_t k = 0; k < q; ++k) {
    InnerProducts(queries[k], base.data(), n, d, single.data());
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(best[k * n + i], single[i]);
  }
}

TEST_P(KernelTest, ZeroRowsWritesNothing) {
  const float query[3] = {1, 2, 3};
  float out = -7.0f;
  InnerProducts(isa(), query, nullptr, 0, 3, &out);
  InnerProductsF16(isa(), query, nullptr, 0, 3, &out);
  const Sq8Query prepared{{1, 2, 3}, 0.5f};
  InnerProductsSq8(isa(), prepared, nullptr, 0, &out);
  const float* queries[3] = {query, query, query};
  InnerProductsMulti(isa(), queries, 3, nullptr, 0, 3, &out);
  const Sq8Query* prepared_queries[2] = {&prepared, &prepared};
  InnerProductsSq8Multi(isa(), prepared_queries, 2, nullptr, 0, &out);
  EXPECT_EQ(out, -7.0f);
}

TEST_P(KernelTest, NeverReadsPastTheEnd) {
  std::mt19937 rng(4);
  for (size_t d : kDims) {
    const size_t n = 5;
    const std::vector<float> query = RandomFloats(d, rng);
    const std::vector<float> base = RandomFloats(n * d, rng);
    std::vector<uint16_t> halves(n * d);
    for (size_t j = 0; j < n * d; ++j) halves[j] = FloatToHalf(base[j]);
    std::vector<uint8_t> bytes(n * d);
    for (size_t j = 0; j < n * d; ++j) bytes[j] = static_cast<uint8_t>(j);

    GuardedBuffer query_buffer(d * sizeof(float));
    GuardedBuffer base_buffer(n * d * sizeof(float));
    GuardedBuffer half_buffer(n * d * sizeof(uint16_t));
    GuardedBuffer byte_buffer(n * d);
    GuardedBuffer scale_buffer(d * sizeof(float));
    const float* q = query_buffer.Copy(query);
    const float* rows = base_buffer.Copy(base);
    const uint16_t* half_rows = half_buffer.Copy(halves);
    const uint8_t* byte_rows = byte_buffer.Copy(bytes);
    std::vector<float> out(n);
    // The last row ends at the guard page; so do the query and the scale.
    InnerProduct(isa(), q, rows + (n - 1) * d, d);
    InnerProducts(isa(), q, rows, n, d, out.data());
    InnerProductF16(isa(), q, half_rows + (n - 1) * d, d);
    InnerProductsF16(isa(), q, half_rows, n, d, out.data());
    // Sq8Query owns its scale, so the guarded scale goes through the
    // float kernels, which are the ones that load it.
    const float* scale = scale_buffer.Copy(query);
    InnerProducts(isa(), scale, rows, n, d, out.data());
    Sq8Query prepared{query, 0.0f};
    InnerProductSq8(isa(), prepared, byte_rows + (n - 1) * d);
    InnerProductsSq8(isa(), prepared, byte_rows, n, out.data());
    // Every tile size, with the guarded query in the last slot of a tile.
    for (size_t count = 1; count <= 9; ++count) {
      std::vector<const float*> queries(count, query.data());
      queries[count - 1] = q;
      std::vector<float> multi_out(count * n);
      InnerProductsMulti(isa(), queries.data(), count, rows, n, d,
                         multi_out.data());
      const std::vector<const Sq8Query*> prepared_queries(count, &prepared);
      InnerProductsSq8Multi(isa(), prepared_queries.data(), count, byte_rows, n,
                            multi_out.data());
    }
  }
}

TEST_P(KernelTest, F16MatchesReference) {
  std::mt19937 rng(5);
  for (size_t d : kDims) {
    for (size_t n : kRows) {
      for (size_t offset : {0, 1}) {
        const std::vector<float> query = RandomFloats(d + offset, rng);
        const std::vector<float> values = RandomFloats(n * d + offset, rng);
        std::vector<uint16_t> codes(values.size());
        for (size_t j = 0; j < values.size(); ++j) {
          codes[j] = FloatToHalf(values[j]);
        }
        const float* q = query.data() + offset;
        const uint16_t* rows = codes.data() + offset;
        std::vector<float> out(n + 1, -7.0f);
        InnerProductsF16(isa(), q, rows, n, d, out.data());
        EXPECT_EQ(out[n], -7.0f);
        for (size_t i = 0; i < n; ++i) {
          std::vector<float> decoded(d);
          for (size_t j = 0; j < d; ++j) {
            decoded[j] = HalfToFloat(rows[i * d + j]);
          }
          const double expected = DotRef(q, decoded.data(), d);
          const double tolerance =
              Tolerance(Norm(q, d), Norm(decoded.data(), d), d);
          EXPECT_NEAR(InnerProductF16(isa(), q, rows + i * d, d), expected,
                      tolerance)
              << "d=" << d << " offset=" << offset;
          EXPECT_NEAR(out[i], expected, tolerance)
              << "d=" << d << " n=" << n << " i=" << i;
          EXPECT_EQ(out[i], InnerProductF16(isa(), q, rows + i * d, d));
        }
      }
    }
  }
}

// Per-dimension ranges like a trained QT_8bit quantizer's, with one
// degenerate (vdiff = 0) dimension when d allows.
void RandomSq8Ranges(size_t d, std::mt19937& rng, std::vector<float>& vmin,
                     std::vector<float>& vdiff) {
  vmin = RandomFloats(d, rng, -0.5f, 0.0f);
  vdiff = RandomFloats(d, rng, 0.1f, 1.0f);
  if (d > 2) vdiff[d / 2] = 0.0f;
}

TEST_P(KernelTest, Sq8MatchesDecodedDot) {
  std::mt19937 rng(6);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t d : kDims) {
    std::vector<float> vmin, vdiff;
    RandomSq8Ranges(d, rng, vmin, vdiff);
    for (size_t n : kRows) {
      for (size_t offset : {0, 1}) {
        const std::vector<float> query = RandomFloats(d, rng);
        // offset 1 misaligns the codes by one byte.
        std::vector<uint8_t> codes(n * d + offset);
        for (uint8_t& c : codes) c = static_cast<uint8_t>(byte(rng));
        const uint8_t* rows = codes.data() + offset;
        const Sq8Query prepared =
            PrepareSq8Query(query.data(), vmin.data(), vdiff.data(), d);
        std::vector<float> out(n + 1, -7.0f);
        InnerProductsSq8(isa(), prepared, rows, n, out.data());
        EXPECT_EQ(out[n], -7.0f);
        for (size_t i = 0; i < n; ++i) {
          std::vector<float> decoded(d);
          DecodeSq8(rows + i * d, vmin.data(), vdiff.data(), d, decoded.data());
          const double expected = DotRef(query.data(), decoded.data(), d);
          const double tolerance =
              Tolerance(Norm(query.data(), d), Norm(decoded.data(), d), d);
          EXPECT_NEAR(InnerProductSq8(isa(), prepared, rows + i * d), expected,
                      tolerance)
              << "d=" << d << " offset=" << offset;
          EXPECT_NEAR(out[i], expected, tolerance)
              << "d=" << d << " n=" << n << " i=" << i;
          EXPECT_EQ(out[i], InnerProductSq8(isa(), prepared, rows + i * d));
        }
      }
    }
  }
}

TEST_P(KernelTest, Sq8MultiMatchesDecodedDotAndSingleQuery) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t q = 1; q <= 9; ++q) {
    for (size_t d : kDims) {
      std::vector<float> vmin, vdiff;
      RandomSq8Ranges(d, rng, vmin, vdiff);
      const size_t n = kRows[(q + d) % std::size(kRows)];
      // offset misaligns the codes by one byte.
      const size_t offset = (q + d) % 2;
      std::vector<uint8_t> codes(n * d + offset);
      for (uint8_t& c : codes) c = static_cast<uint8_t>(byte(rng));
      const uint8_t* rows = codes.data() + offset;
      std::vector<std::vector<float>> raw;
      std::vector<Sq8Query> prepared;
      for (size_t k = 0; k < q; ++k) {
        raw.push_back(RandomFloats(d, rng));
        prepared.push_back(
            PrepareSq8Query(raw[k].data(), vmin.data(), vdiff.data(), d));
      }
      std::vector<const Sq8Query*> queries;
      for (const Sq8Query& p : prepared) queries.push_back(&p);
      std::vector<float> out(q * n + 1, -7.0f);
      InnerProductsSq8Multi(isa(), queries.data(), q, rows, n, out.data());
      EXPECT_EQ(out[q * n], -7.0f);
      std::vector<float> single(n);
      std::vector<float> decoded(d);
      for (size_t k = 0; k < q; ++k) {
        InnerProductsSq8(isa(), prepared[k], rows, n, single.data());
        for (size_t i = 0; i < n; ++i) {
          DecodeSq8(rows + i * d, vmin.data(), vdiff.data(), d, decoded.data());
          // The affine form's two parts (bias, codes) can each be larger
          // than the result, so the error scales with the ranges too.
          const double tolerance =
              Tolerance(Norm(raw[k].data(), d),
                        Norm(decoded.data(), d) + Norm(vmin.data(), d) +
                            Norm(vdiff.data(), d),
                        d);
          EXPECT_NEAR(out[k * n + i], DotRef(raw[k].data(), decoded.data(), d),
                      tolerance)
              << "q=" << q << " d=" << d << " n=" << n << " k=" << k
              << " i=" << i;
          ASSERT_EQ(out[k * n + i], single[i])
              << "q=" << q << " d=" << d << " n=" << n << " k=" << k
              << " i=" << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, KernelTest,
                         testing::Values(KernelIsa::kScalar, KernelIsa::kAvx2,
                                         KernelIsa::kAvx512),
                         [](const testing::TestParamInfo<KernelIsa>& info) {
                           return std::string(IsaName(info.param));
                         });

TEST(Sq8KernelTest, EncodeAndDecodeMatchFaissQt8bit) {
  std::mt19937 rng(7);
  const size_t d = 37;
  const size_t n = 200;
  std::vector<float> data = RandomFloats(n * d, rng);
  for (size_t i = 0; i < n; ++i) data[i * d + 5] = 0.25f;  // vdiff = 0
  faiss::ScalarQuantizer sq(d, faiss::ScalarQuantizer::QT_8bit);
  sq.train(n, data.data());
  ASSERT_EQ(sq.trained.size(), 2 * d);
  const float* vmin = sq.trained.data();
  const float* vdiff = sq.trained.data() + d;

  // Beyond the training range too, to check the clamping.
  std::vector<float> probe = RandomFloats(10 * d, rng, -2.0f, 2.0f);
  std::vector<uint8_t> faiss_codes(probe.size());
  sq.compute_codes(probe.data(), faiss_codes.data(), 10);
  std::vector<uint8_t> ours(probe.size());
  std::vector<float> faiss_decoded(probe.size());
  sq.decode(faiss_codes.data(), faiss_decoded.data(), 10);
  for (size_t i = 0; i < 10; ++i) {
    EncodeSq8(probe.data() + i * d, vmin, vdiff, d, ours.data() + i * d);
    std::vector<float> decoded(d);
    DecodeSq8(faiss_codes.data() + i * d, vmin, vdiff, d, decoded.data());
    for (size_t j = 0; j < d; ++j) {
      EXPECT_FLOAT_EQ(decoded[j], faiss_decoded[i * d + j]) << i << "," << j;
    }
  }
  EXPECT_EQ(ours, faiss_codes);
}

TEST(F16KernelTest, KnownValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);   // largest finite half
  EXPECT_EQ(FloatToHalf(65519.99f), 0x7bff);  // just below the midpoint
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);   // midpoint rounds to even: inf
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalf(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToHalf(inf), 0x7c00);
  EXPECT_EQ(FloatToHalf(-inf), 0xfc00);
  EXPECT_EQ(FloatToHalf(0x1p-14f), 0x0400);  // smallest normal
  EXPECT_EQ(FloatToHalf(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(0x1p-25f), 0x0000);  // midpoint to 0: even
  EXPECT_EQ(FloatToHalf(0x1.000002p-25f), 0x0001);
  EXPECT_EQ(FloatToHalf(0x3p-25f), 0x0002);         // midpoint 1.5 -> 2
  EXPECT_EQ(FloatToHalf(0x5p-25f), 0x0002);         // midpoint 2.5 -> 2
  EXPECT_EQ(FloatToHalf(0x1.ffep-15f), 0x0400);     // rounds up into normal
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), 0x3c00);  // tie -> even
  EXPECT_EQ(FloatToHalf(1.0f + 0x3p-11f), 0x3c02);  // tie -> even
  EXPECT_EQ(FloatToHalf(0x1.002002p+0f), 0x3c01);   // above tie
  const uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  EXPECT_TRUE(std::isnan(HalfToFloat(nan)));
  EXPECT_EQ(HalfToFloat(0x7c00), inf);
  EXPECT_EQ(HalfToFloat(0xfc00), -inf);
  EXPECT_EQ(HalfToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
}

TEST(F16KernelTest, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float x = HalfToFloat(static_cast<uint16_t>(h));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
    if (is_nan) {
      ASSERT_TRUE(std::isnan(x)) << std::hex << h;
      const uint16_t back = FloatToHalf(x);
      ASSERT_TRUE((back & 0x7c00) == 0x7c00 && (back & 0x03ff) != 0);
    } else {
      ASSERT_EQ(FloatToHalf(x), h) << std::hex << h;
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t HardwareFloatToHalf(float x) {
  return static_cast<uint16_t>(_mm_extract_epi16(
      _mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT), 0));
}
__attribute__((target("f16c"))) float HardwareHalfToFloat(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
#endif

TEST(F16KernelTest, MatchesF16cOnRandomFloats) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  std::mt19937 rng(8);
  // Random bit patterns cover every exponent; the second half is restricted
  // to the half range, where the rounding is most interesting.
  std::uniform_int_distribution<uint32_t> any_bits;
  std::uniform_int_distribution<uint32_t> half_range(0x33000000u, 0x47800000u);
  for (int i = 0; i < 400000; ++i) {
    uint32_t bits = i % 2 == 0 ? any_bits(rng)
                               : (half_range(rng) | (any_bits(rng) & 1u) << 31);
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    const uint16_t expected = HardwareFloatToHalf(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(HalfToFloat(FloatToHalf(x))));
    } else {
      ASSERT_EQ(FloatToHalf(x), expected) << std::hexfloat << x;
    }
    const uint16_t h = static_cast<uint16_t>(bits);
    if (!std::isnan(HardwareHalfToFloat(h))) {
      ASSERT_EQ(HalfToFloat(h), HardwareHalfToFloat(h)) << std::hex << h;
    }
  }
#else
  GTEST_SKIP() << "F16C is x86 only";
#endif
}

}  // namespace
}  // namespace hawiya::matcher
