#include "matcher/row_scan.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "matcher/kernels.h"

namespace hawiya::matcher {
namespace {

// Blocks large enough for the kernels' four streams, small enough that the
// scores stay in L1/L2.
constexpr size_t kBlockRows = 8192;

// Keeps the best `fetch` hits seen; a min-heap on BetterRow.
class TopHits {
 public:
  explicit TopHits(size_t fetch) : fetch_(fetch) { heap_.reserve(fetch + 1); }

  void Offer(float score, size_t row) {
    if (fetch_ == 0) return;
    const RowHit hit{score, row};
    if (heap_.size() < fetch_) {
      heap_.push_back(hit);
      std::push_heap(heap_.begin(), heap_.end(), BetterRow);
    } else if (BetterRow(hit, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), BetterRow);
      heap_.back() = hit;
      std::push_heap(heap_.begin(), heap_.end(), BetterRow);
    }
  }

  void SortedInto(std::vector<RowHit>* out) {
    std::sort(heap_.begin(), heap_.end(), BetterRow);
    out->swap(heap_);
  }

 private:
  const size_t fetch_;
  // With BetterRow as the "less" of the std heap functions, front() is the
  // worst hit kept.
  std::vector<RowHit> heap_;
};

template <typename ScoreBlock>
void ScanTop(size_t n, size_t fetch, const uint8_t* live, size_t first_row,
             ScoreBlock score_block, std::vector<RowHit>* out) {
  thread_local std::vector<float> block;
  block.resize(std::min(kBlockRows, n));
  TopHits top(std::min(fetch, n));
  for (size_t start = 0; start < n; start += kBlockRows) {
    const size_t count = std::min(kBlockRows, n - start);
    score_block(start, count, block.data());
    for (size_t i = 0; i < count; ++i) {
      if (live != nullptr && live[start + i] == 0) continue;
      top.Offer(block[i], first_row + start + i);
    }
  }
  top.SortedInto(out);
}

}  // namespace

void TopRowsFp32(const float* query, const float* base, size_t n, size_t d,
                 size_t fetch, const uint8_t* live, size_t first_row,
                 std::vector<RowHit>* out) {
  ScanTop(
      n, fetch, live, first_row,
      [&](size_t start, size_t count, float* scores) {
        InnerProducts(query, base + start * d, count, d, scores);
      },
      out);
}

void TopRowsSq8(const Sq8Query& query, const uint8_t* codes, size_t n,
                size_t fetch, const uint8_t* live, size_t first_row,
                std::vector<RowHit>* out) {
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
