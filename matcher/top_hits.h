// The one top-k rule every scan shares: a scored row, the total order of
// rows (higher score, then lower row), and the top-`keep` list scans fill.
//
// Every exact path (the scan pool's passes, the shard scans of row_scan.h,
// the exact gallery's sgemm path) keeps its candidates with these, so that
// which rows make a cut among equal scores never depends on the path, the
// number of threads or the batch: the "bit-identical" guarantees of
// gallery.h rest on it.
#ifndef HAWIYA_MATCHER_TOP_HITS_H_
#define HAWIYA_MATCHER_TOP_HITS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hawiya::matcher {

// One scored row.
struct ScanHit {
  float score = 0.0f;
  size_t row = 0;
};

// Whether a ranks above b: higher score, then lower row. A total order over
// distinct rows, so the best `keep` rows are one set however they are found.
inline bool BetterHit(const ScanHit& a, const ScanHit& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.row < b.row;
}

// Adds rows [first, first + n) with scores[i] to *top, which holds the best
// `keep` hits offered to it so far: filled in order until it holds keep
// hits, then kept as a heap whose front is its worst hit (BetterHit as the
// heap's "less"). Rows with live[i] == 0 are skipped when `live` is not
// null. Never allocates if top->capacity() >= keep. Sort with SortBest.
// REQUIRES: *top was only ever filled by AddToTop with this `keep`; live (if
// given) holds n bytes.
void AddToTop(const float* scores, size_t n, size_t first, const uint8_t* live,
              size_t keep, std::vector<ScanHit>* top);

// Keeps the best `keep` of *hits (any order, e.g. several top lists
// concatenated), sorted best first.
void SortBest(size_t keep, std::vector<ScanHit>* hits);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_TOP_HITS_H_
