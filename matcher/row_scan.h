// Internal to matcher/: brute-force top-k scans over contiguous rows with our
// SIMD kernels (fp32 and SQ8), and the SQ8 range training every SQ8 index
// kind shares.
//
// The scans are self-contained (no gallery state, no locks, no allocation
// beyond the output and a thread-local score block), so a scan pool can run
// them over shards of one gallery and merge the hits (SortBest): rows are
// numbered from `first_row`, and the tie order (top_hits.h) is the same in
// every shard.
#ifndef HAWIYA_MATCHER_ROW_SCAN_H_
#define HAWIYA_MATCHER_ROW_SCAN_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "matcher/kernels.h"
#include "matcher/top_hits.h"

namespace hawiya::matcher {

// The best `fetch` of the n rows base[i * d .. i * d + d) by inner product
// with `query`, best first (BetterHit), rows numbered first_row + i. Rows
// with live[i] == 0 are skipped when `live` is not null.
// REQUIRES: query holds d floats, base n * d, live (if given) n bytes.
void TopRowsFp32(const float* query, const float* base, size_t n, size_t d,
                 size_t fetch, const uint8_t* live, size_t first_row,
                 std::vector<ScanHit>* out);

// The same over SQ8 codes (FAISS QT_8bit layout, d = query.scale.size()
// bytes per row), scored with InnerProductsSq8: approximate scores, for
// picking candidates to re-rank exactly.
// REQUIRES: codes holds n * d bytes, live (if given) n bytes.
void TopRowsSq8(const Sq8Query& query, const uint8_t* codes, size_t n,
                size_t fetch, const uint8_t* live, size_t first_row,
                std::vector<ScanHit>* out);

// SQ8 ranges: per-dimension min and max over the rows observed, widened by
// `margin` times the spread on each side (FAISS's RS_minmax with
// rangestat_arg = margin). Values outside the trained range clamp to its
// ends when encoded; every SQ8 kind re-ranks exactly in fp32, so clamping
// costs candidate quality, never score accuracy.
class Sq8RangeTrainer {
 public:
  explicit Sq8RangeTrainer(size_t d);

  // REQUIRES: rows holds n * d floats.
  void Observe(const float* rows, size_t n);
  size_t observed() const { return observed_; }

  // Fills vmin and vdiff (d each). A dimension whose observed spread is zero
  // (or that was never observed) gets the spread of a unit vector's
  // component, 2 / sqrt(d), around its value, so it still encodes. REQUIRES:
  // margin >= 0.
  void Finish(float margin, std::vector<float>* vmin,
              std::vector<float>* vdiff) const;

 private:
  size_t d_;
  size_t observed_ = 0;
  std::vector<float> min_;
  std::vector<float> max_;
};

// Margin every SQ8 kind trains with: the ranges of ~1,000 unit vectors cover
// about +-3.1 sigma per component; widening by a quarter of the spread on
// each side covers ~4.6 sigma (a component clamps with probability ~3e-6)
// at the price of 1.5x coarser steps, which re-ranking makes irrelevant.
inline constexpr float kSq8RangeMargin = 0.25f;

// SQ8 kinds scan fp32 exactly until the gallery holds this many templates,
// then train their ranges on what it holds.
inline constexpr size_t kSq8TrainMinTemplates = 1000;

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_ROW_SCAN_H_
