// Online estimate of one modality's impostor score distribution, kept by the
// gallery itself (FusionRule::kZScore normalises cosines with it, see
// matcher.h).
//
// Estimator. Each template added to the gallery is scored (cosine) against
// `comparisons` templates of OTHER subjects drawn uniformly, with
// replacement, from a bounded reservoir sample of the templates added so
// far; the scores feed a running mean and variance (Welford: count, mean,
// M2, numerically stable in one pass). The template is then offered to the
// reservoir by Algorithm R (Vitter): the n-th template seen replaces a
// uniformly drawn slot with probability capacity / n, so the reservoir stays
// a uniform sample of the gallery's history in bounded memory
// (capacity * dimension floats). Every random draw comes from a seeded
// generator whose state is part of the estimator, so the same adds in the
// same order give bit-identical statistics, also across Save / Load.
//
// Assumptions. A gallery of distinct people is an impostor population:
// every pair of templates of different subjects is an impostor pair. That
// holds as long as one person is rarely enrolled under two subject ids,
// which deduplication holds back for adjudication. Scores involving a
// later-removed subject remain valid impostor evidence (they were two
// different people), so RemoveSubject keeps the statistics and only drops
// the subject's templates from the reservoir; a removed slot is refilled
// by the next templates added (the sample is then slightly biased toward
// recent templates, harmless for a stationary population). Scores that
// share a reservoir template are not independent, but for near-isotropic
// embeddings they are uncorrelated (E[(a.b)(a.c)] = 0 for independent b, c),
// so the mean's standard error is still about std / sqrt(count).
//
// Cost per observed template: `comparisons` dot products plus one copy into
// the reservoir. Not thread-safe: the Matcher guards it with its lock.
#ifndef HAWIYA_MATCHER_IMPOSTOR_STATS_H_
#define HAWIYA_MATCHER_IMPOSTOR_STATS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {

class ImpostorEstimator {
 public:
  struct Options {
    // Reservoir capacity, in templates.
    size_t reservoir_size = 1024;
    // Impostor scores drawn per observed template (fewer while the reservoir
    // holds few other subjects' templates).
    int comparisons = 8;
    // Seeds the generator: the same seed and adds give the same statistics.
    uint64_t seed = 0x1A905702C0FFEEull;
  };

  // REQUIRES: dimension > 0, options.reservoir_size > 0,
  // options.comparisons > 0.
  explicit ImpostorEstimator(int dimension)
      : ImpostorEstimator(dimension, {}) {}
  ImpostorEstimator(int dimension, const Options& options);

  // Scores `unit_vector` against other subjects' reservoir templates, folds
  // the scores into the statistics, then offers it to the reservoir.
  // REQUIRES: unit_vector has dimension() finite entries and unit norm.
  void Observe(absl::string_view subject_id,
               absl::Span<const float> unit_vector);

  // Drops the subject's templates from the reservoir; the statistics keep
  // the scores they contributed to.
  void RemoveSubject(absl::string_view subject_id);

  // Impostor scores folded in so far.
  uint64_t count() const { return count_; }
  // Their mean, 0 while count() == 0.
  double mean() const { return mean_; }
  // Their sample standard deviation, 0 while count() < 2.
  double std() const;

  int dimension() const { return dimension_; }
  // Templates in the reservoir, and how many of them are the subject's.
  size_t reservoir_templates() const { return subjects_.size(); }
  size_t ReservoirTemplatesOf(absl::string_view subject_id) const;

  // Writes the whole state (statistics, generator, reservoir).
  absl::Status Save(SnapshotWriter* out) const;
  // Replaces the state with one Save wrote for the same dimension and
  // reservoir capacity; DATA_LOSS if the stream is malformed or does not
  // fit. On error the estimator is unchanged.
  absl::Status Load(SnapshotReader* in);

 private:
  // Uniform in [0, n), n > 0, from the splitmix64 generator.
  uint64_t Uniform(uint64_t n);

  int dimension_;
  Options options_;
  // Welford's running statistics.
  uint64_t count_ = 0;
  double mean_ = 0.0;
  double m2_ = 0.0;
  uint64_t rng_state_;
  // Templates ever offered to the reservoir (Algorithm R's n).
  uint64_t seen_ = 0;
  // The reservoir: subject id and normalised vector of each template
  // (vectors_ holds subjects_.size() * dimension_ floats).
  std::vector<std::string> subjects_;
  std::vector<float> vectors_;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_IMPOSTOR_STATS_H_
