// Internal to matcher/: the exact search behind
// Matcher::IdentifyAgainstEarlier, one modality at a time: every probe set
// is scored against the sets before it in the batch, with no gallery
// involved, bit for bit as the exact gallery would score them had the
// earlier sets been enrolled.
#ifndef HAWIYA_MATCHER_EARLIER_SETS_H_
#define HAWIYA_MATCHER_EARLIER_SETS_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "matcher/matcher.h"

namespace hawiya::matcher {

class EarlierSetsScorer {
 public:
  // Takes every set's probes of `modality`, normalised as the exact gallery
  // stores templates and normalises probes, as contiguous rows in set
  // order, so that the sets before set j own exactly the rows before j's.
  // REQUIRES: every probe of `modality` has `dimension` components and
  // passed CheckProbes.
  EarlierSetsScorer(absl::Span<const std::vector<Probe>> probe_sets,
                    Modality modality, int dimension);

  // Set j against the sets before it. best[i] (i < j) becomes set i's best
  // score against set j: the max over set i's vectors (ScoreSubject's max
  // over templates) and over set j's probes (Score's max over probes), or
  // NaN if either set has no vector of this modality. (*candidate)[i] is set
  // for every set among the `depth` best of one of set j's probes (that
  // probe's Search, ties by subject_ids). REQUIRES: j < the number of sets;
  // candidate->size() >= j; subject_ids names every set.
  void Score(size_t j, size_t depth, absl::Span<const std::string> subject_ids,
             std::vector<float>* best, std::vector<bool>* candidate);

 private:
  const size_t d_;
  std::vector<float> units_;
  // Set i's rows: [begin_[i], begin_[i + 1]).
  std::vector<size_t> begin_;
  // Scratch, reused from set to set.
  std::vector<float> dots_;
  std::vector<std::pair<float, size_t>> ranked_;  // (score, set)
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_EARLIER_SETS_H_
