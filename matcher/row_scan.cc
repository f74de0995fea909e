#include "matcher/row_scan.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "matcher/kernels.h"
#include "matcher/top_hits.h"

namespace hawiya::matcher {
namespace {

// Blocks large enough for the kernels' four streams, small enough that the
// scores stay in L1/L2.
constexpr size_t kBlockRows = 8192;

template <typename ScoreBlock>
void ScanTop(size_t n, size_t fetch, const uint8_t* live, size_t first_row,
             ScoreBlock score_block, std::vector<ScanHit>* out) {
  thread_local std::vector<float> block;
  block.resize(std::min(kBlockRows, n));
  const size_t keep = std::min(fetch, n);
  out->clear();
  out->reserve(keep);
  for (size_t start = 0; start < n; start += kBlockRows) {
    const size_t count = std::min(kBlockRows, n - start);
    score_block(start, count, block.data());
    AddToTop(block.data(), count, first_row + start,
             live != nullptr ? live + start : nullptr, keep, out);
  }
  SortBest(keep, out);
}

}  // namespace

void TopRowsFp32(const float* query, const float* base, size_t n, size_t d,
                 size_t fetch, const uint8_t* live, size_t first_row,
                 std::vector<ScanHit>* out) {
  ScanTop(
      n, fetch, live, first_row,
      [&](size_t start, size_t count, float* scores) {
        InnerProducts(query, base + start * d, count, d, scores);
      },
      out);
}

void TopRowsSq8(const Sq8Query& query, const uint8_t* codes, size_t n,
                size_t fetch, const uint8_t* live, size_t first_row,
                std::vector<ScanHit>* out) {
  const size_t d = query.scale.size();
  ScanTop(
      n, fetch, live, first_row,
      [&](size_t start, size_t count, float* scores) {
        InnerProductsSq8(query, codes + start * d, count, scores);
      },
      out);
}

Sq8RangeTrainer::Sq8RangeTrainer(size_t d)
    : d_(d),
      min_(d, std::numeric_limits<float>::infinity()),
      max_(d, -std::numeric_limits<float>::infinity()) {}

void Sq8RangeTrainer::Observe(const float* rows, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float* row = rows + i * d_;
    for (size_t j = 0; j < d_; ++j) {
      min_[j] = std::min(min_[j], row[j]);
      max_[j] = std::max(max_[j], row[j]);
    }
  }
  observed_ += n;
}

void Sq8RangeTrainer::Finish(float margin, std::vector<float>* vmin,
                             std::vector<float>* vdiff) const {
  vmin->resize(d_);
  vdiff->resize(d_);
  const float unit_spread = 2.0f / std::sqrt(static_cast<float>(d_));
  for (size_t j = 0; j < d_; ++j) {
    float lo = min_[j];
    float hi = max_[j];
    if (!(lo < hi)) {
      // Never observed (lo = +inf) or constant: centre a default spread.
      const float centre = lo <= hi ? lo : 0.0f;
      lo = centre - unit_spread / 2;
      hi = centre + unit_spread / 2;
    }
    const float spread = hi - lo;
    (*vmin)[j] = lo - margin * spread;
    (*vdiff)[j] = spread * (1.0f + 2.0f * margin);
  }
}

}  // namespace hawiya::matcher
