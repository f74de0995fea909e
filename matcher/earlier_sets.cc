#include "matcher/earlier_sets.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "matcher/gallery.h"
#include "matcher/kernels.h"
#include "matcher/matcher.h"

namespace hawiya::matcher {

EarlierSetsScorer::EarlierSetsScorer(
    absl::Span<const std::vector<Probe>> probe_sets, Modality modality,
    int dimension)
    : d_(static_cast<size_t>(dimension)) {
  begin_.push_back(0);
  for (const std::vector<Probe>& set : probe_sets) {
    size_t count = 0;
    for (const Probe& probe : set) {
      if (probe.modality != modality) continue;
      const std::vector<float> unit = Normalized(probe.vector);
      units_.insert(units_.end(), unit.begin(), unit.end());
      ++count;
    }
    begin_.push_back(begin_.back() + count);
  }
}

void EarlierSetsScorer::Score(size_t j, size_t depth,
                              absl::Span<const std::string> subject_ids,
                              std::vector<float>* best,
                              std::vector<bool>* candidate) {
  const size_t earlier = begin_[j];
  best->assign(j, std::numeric_limits<float>::quiet_NaN());
  dots_.resize(earlier);
  for (size_t row = begin_[j]; row < begin_[j + 1]; ++row) {
    // Bit for bit InnerProduct per row, as the exact gallery scores.
    if (earlier > 0) {
      InnerProducts(&units_[row * d_], units_.data(), earlier, d_,
                    dots_.data());
    }
    ranked_.clear();
    for (size_t i = 0; i < j; ++i) {
      if (begin_[i] == begin_[i + 1]) continue;  // no template here
      float score = -std::numeric_limits<float>::infinity();
      for (size_t t = begin_[i]; t < begin_[i + 1]; ++t) {
        score = std::max(score, dots_[t]);
      }
      ranked_.emplace_back(score, i);
      float& b = (*best)[i];
      b = std::isnan(b) ? score : std::max(b, score);
    }
    // This probe's Search: its top subjects, ties by subject_id.
    const size_t k = std::min(depth, ranked_.size());
    std::partial_sort(ranked_.begin(), ranked_.begin() + k, ranked_.end(),
                      [&](const auto& a, const auto& b) {
                        if (a.first != b.first) return a.first > b.first;
                        return subject_ids[a.second] < subject_ids[b.second];
                      });
    for (size_t c = 0; c < k; ++c) (*candidate)[ranked_[c].second] = true;
  }
}

}  // namespace hawiya::matcher
