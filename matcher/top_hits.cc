#include "matcher/top_hits.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hawiya::matcher {
namespace {

template <bool kFiltered>
void AddRows(const float* scores, size_t n, size_t first, const uint8_t* live,
             size_t keep, std::vector<ScanHit>* top) {
  size_t i = 0;
  for (; i < n && top->size() < keep; ++i) {
    if (kFiltered && live[i] == 0) continue;
    top->push_back({scores[i], first + i});
    if (top->size() == keep) {
      std::make_heap(top->begin(), top->end(), BetterHit);
    }
  }
  if (i == n) return;
  float worst = top->front().score;
  for (; i < n; ++i) {
    // Most rows lose on the score alone; ties go through BetterHit.
    if (scores[i] < worst) continue;
    if (kFiltered && live[i] == 0) continue;
    const ScanHit hit{scores[i], first + i};
    if (!BetterHit(hit, top->front())) continue;
    std::pop_heap(top->begin(), top->end(), BetterHit);
    top->back() = hit;
    std::push_heap(top->begin(), top->end(), BetterHit);
    worst = top->front().score;
  }
}

}  // namespace

void AddToTop(const float* scores, size_t n, size_t first, const uint8_t* live,
              size_t keep, std::vector<ScanHit>* top) {
  if (keep == 0) return;
  if (live == nullptr) {
    AddRows<false>(scores, n, first, nullptr, keep, top);
  } else {
    AddRows<true>(scores, n, first, live, keep, top);
  }
}

void SortBest(size_t keep, std::vector<ScanHit>* hits) {
  if (hits->size() > keep) {
    std::nth_element(hits->begin(), hits->begin() + keep, hits->end(),
                     BetterHit);
    hits->resize(keep);
  }
  std::sort(hits->begin(), hits->end(), BetterHit);
}

}  // namespace hawiya::matcher
