// Matcher: one Gallery per modality, and the fusion of per-modality scores.
//
// Scores: a modality's score for a subject is the best cosine similarity
// between any probe of that modality and any of the subject's templates of
// that modality. Only the modalities both probed and enrolled for the subject
// take part in the fusion: a missing modality is no evidence either way,
// never a mismatch. Two fusion rules (FusionRule):
//
//   kMean (default): fused score = mean of the k cosine scores; fused
//     threshold = mean of those modalities' thresholds. With one modality the
//     score is the cosine and the threshold the modality's own.
//   kZScore: each cosine s_m is normalised against the modality's impostor
//     distribution, z_m = (s_m - impostor_mean_m) / impostor_std_m (an
//     impostor scores z ~ N(0, 1) whatever the modality), with the
//     statistics ImpostorStatsOf reports (below); fused score =
//     sum(z_m) / sqrt(k), which is again ~N(0, 1) for an impostor when the
//     modalities are independent, so one threshold serves every combination.
//     Fused threshold = MatcherOptions::fused_threshold if set, else
//     sum(z(threshold_m)) / sqrt(k): with one modality exactly the same
//     decisions as kMean (z is increasing in s).
//
// Every ModalityScore reports both the cosine and its z.
//
// Impostor statistics, by precedence (ImpostorStatsOf):
//   CONFIGURED: spec.impostor_std > 0 (`fusion.impostor_stats`): the
//     configured mean and std, fixed.
//   GALLERY: else, once the matcher's own estimate (impostor_stats.h: every
//     added template scored against a few other subjects' templates) holds
//     FusionOptions::impostor_min_scores scores: its mean and std. They move
//     as the gallery grows, so under kZScore a subject's z (and the derived
//     fused threshold) can change slightly between two identical requests.
//   MODEL: before that, the synthetic model's mean 0, std 1 / sqrt(d).
// The estimate is fed by Add and Replace whatever the rule and source, and
// saved with the galleries (Save / Load).
//
// Thread safety: as Gallery.
#ifndef HAWIYA_MATCHER_MATCHER_H_
#define HAWIYA_MATCHER_MATCHER_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/gallery.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {

// Numbered as hawiya.v1.Modality.
enum class Modality : int { kFace = 1, kFingerprint = 2, kIris = 3 };

absl::string_view ModalityName(Modality modality);

struct ModalitySpec {
  Modality modality = Modality::kFace;
  int dimension = 512;
  // Decision threshold on the cosine score.
  float threshold = 0.4f;
  // The gallery's index (kind, HNSW parameters...).
  IndexOptions index;
  // The impostor score distribution used by FusionRule::kZScore: mean and
  // standard deviation of the cosine between captures of two different
  // people (calibrated by `hawiya eval`). impostor_std <= 0 means not
  // configured: the gallery's own estimate, or the synthetic model's
  // value for independent random directions (see ImpostorStatsOf).
  float impostor_mean = 0.0f;
  float impostor_std = 0.0f;
};

enum class FusionRule { kMean, kZScore };

// "mean", "zscore"; the inverse is ParseFusionRule (INVALID_ARGUMENT for any
// other string).
absl::string_view FusionRuleName(FusionRule rule);
absl::StatusOr<FusionRule> ParseFusionRule(absl::string_view name);

struct FusionOptions {
  FusionRule rule = FusionRule::kMean;
  // kZScore only: the decision threshold on the fused z score, whatever the
  // modalities scored. NaN: derived from the per-modality thresholds (above).
  float fused_threshold = std::numeric_limits<float>::quiet_NaN();
  // Gallery impostor scores needed before the gallery's estimate replaces
  // the model's statistics (source GALLERY). Positive.
  uint64_t impostor_min_scores = 1000;
  // Probes of more than one modality: each probe's own search lists this
  // many subjects (IdentifyOptions::max_candidates if larger) before the
  // fusion scores them all exactly. A person whose every modality is
  // mediocre can still be the best fused; with only each modality's top
  // max_candidates shortlisted, such a mate is never found at any threshold
  // (measured with `hawiya eval` at 100k, three noisy modalities: ~9% of
  // mated searches with 10, 1.2% with 100). Costs a deeper search and one
  // exact score per extra subject and modality (docs/PERFORMANCE.md,
  // "Multi-modal shortlist"). One probed modality: the search lists exactly
  // max_candidates (its fused score is its own score). 0: max_candidates.
  size_t shortlist = 100;
};

class Matcher;

struct MatcherOptions {
  // At most one spec per modality; a modality without a spec is refused.
  std::vector<ModalitySpec> modalities;
  FusionOptions fusion;
  // If set, the impostor statistics of a modality without configured ones
  // are this matcher's (ImpostorStatsOf), not this one's own estimate: a
  // side gallery (the registry's PENDING_ADJUDICATION persons) then
  // z-normalises exactly as the main one, and its scores compare with the
  // same threshold. Not owned. REQUIRES: outlives the matcher opened with it
  // and configures the same modalities.
  const Matcher* impostor_stats_from = nullptr;
};

// Where a modality's impostor statistics come from (precedence above).
enum class ImpostorSource { kModel, kGallery, kConfigured };

// "MODEL", "GALLERY", "CONFIGURED".
absl::string_view ImpostorSourceName(ImpostorSource source);

struct ImpostorEstimate {
  // What kZScore normalises with.
  double mean = 0.0;
  double std = 0.0;
  // Impostor scores the gallery's estimate holds (whatever the source).
  uint64_t scores = 0;
  ImpostorSource source = ImpostorSource::kModel;
};

// z = (cosine - stats.mean) / stats.std. REQUIRES: stats.std > 0.
float ZScore(const ImpostorEstimate& stats, float cosine);

// FACE 512 / 0.40, FINGERPRINT 256 / 0.45, IRIS 256 / 0.45.
std::vector<ModalitySpec> DefaultModalities();

struct Probe {
  Modality modality = Modality::kFace;
  std::vector<float> vector;
};

struct ModalityScore {
  Modality modality = Modality::kFace;
  float score = 0.0f;  // cosine
  // ZScore(ImpostorStatsOf(modality), score), whatever the fusion rule.
  float normalized = 0.0f;
};

struct Match {
  std::string subject_id;
  // Fused, by the configured FusionRule; compare with threshold (same scale).
  float score = 0.0f;
  float threshold = 0.0f;  // fused threshold for the modalities scored
  std::vector<ModalityScore> modality_scores;  // in Modality order
};

struct IdentifyOptions {
  size_t max_candidates = 10;
  // Candidates scoring below it are dropped; the default keeps all (on the
  // z scale of FusionRule::kZScore a score can be below -1).
  float min_score = -std::numeric_limits<float>::infinity();
  // If non-empty, only these subjects are considered.
  std::vector<std::string> restrict_to;
};

struct GalleryInfo {
  ModalitySpec spec;
  size_t templates = 0;
  std::string index_kind;
  ImpostorEstimate impostor;
};

struct TemplateToAdd {
  Modality modality = Modality::kFace;
  int64_t label = 0;
  std::vector<float> vector;
};

class Matcher {
 public:
  static absl::StatusOr<std::unique_ptr<Matcher>> Open(
      const MatcherOptions& options);

  // Reopens a matcher written by Save, with `options`' thresholds (which
  // shape no index). Checks options as Open does; FAILED_PRECONDITION naming
  // "modalities" if the snapshot holds other modalities than `options`
  // configures, or a gallery's error from Gallery::Load (prefixed with the
  // modality); DATA_LOSS if the stream is malformed. REQUIRES: in != nullptr.
  static absl::StatusOr<std::unique_ptr<Matcher>> Load(
      const MatcherOptions& options, SnapshotReader* in);

  virtual ~Matcher() = default;

  // Writes every gallery, in Modality order, as of one instant: Add, Replace
  // and RemoveSubject wait until it returns, searches go on. REQUIRES:
  // out != nullptr.
  virtual absl::Status Save(SnapshotWriter* out) const = 0;

  // Adds a subject's templates (any modalities). All or nothing.
  virtual absl::Status Add(absl::string_view subject_id,
                           absl::Span<const TemplateToAdd> templates) = 0;

  // Swaps all of the subject's templates (any modalities) for these, in one
  // step: a concurrent search sees the old set or the new one, never neither.
  // Validation as Add; nothing changes if it fails.
  virtual absl::Status Replace(absl::string_view subject_id,
                               absl::Span<const TemplateToAdd> templates) = 0;

  // Removes the subject from every gallery.
  virtual void RemoveSubject(absl::string_view subject_id) = 0;

  // Checks probes (known modality, dimension, finite, non-zero) and returns
  // INVALID_ARGUMENT naming "probes[i]" otherwise.
  virtual absl::Status CheckProbes(absl::Span<const Probe> probes) const = 0;

  // 1:1. FAILED_PRECONDITION if the subject has no template of any probed
  // modality.
  virtual absl::StatusOr<Match> Verify(
      absl::string_view subject_id, absl::Span<const Probe> probes) const = 0;

  // 1:N. Candidates best first, fused as above, at most max_candidates.
  virtual absl::StatusOr<std::vector<Match>> Identify(
      absl::Span<const Probe> probes, const IdentifyOptions& options) const = 0;

  // Identify for many probe sets in one scan: result[i] holds what
  // Identify(probe_sets[i], options) returns (same candidates, same order,
  // bit-identical scores) against one state of the matcher, the same for
  // every set (writers wait until it returns). The probes of all sets are
  // grouped by modality and each gallery is searched once, with
  // Gallery::SearchBatch (kExact: one BLAS pass for large batches); each
  // set's candidates are then scored exactly as Identify scores them.
  // INVALID_ARGUMENT naming "probe_sets[i].probes[j]" (as CheckProbes) or
  // "min_score" before anything is searched. An empty span gives an empty
  // result.
  virtual absl::StatusOr<std::vector<std::vector<Match>>> IdentifyBatch(
      absl::Span<const std::vector<Probe>> probe_sets,
      const IdentifyOptions& options) const = 0;

  // Each probe set against the sets before it, as if enrolled: result[i]
  // holds what Identify(probe_sets[i], options) returns on a matcher opened
  // with this one's options (modalities, exact index, fusion) into which
  // probe_sets[0..i-1] were added in order, set k as subject subject_ids[k]
  // with its probes as templates (bit-identical scores: the same
  // normalisation and fp32 kernel as the exact gallery). Neither this
  // matcher's galleries nor any lock are involved: the sets are scored
  // against each other directly (every pair of same-modality vectors once),
  // which is what deduplicates a batch's items against its earlier items
  // without a matcher to fill item by item. restrict_to, if non-empty,
  // limits every set's candidates to those subjects. Errors as
  // IdentifyBatch; INVALID_ARGUMENT naming "subject_ids" unless there is one
  // distinct, non-empty id per set.
  virtual absl::StatusOr<std::vector<std::vector<Match>>>
  IdentifyAgainstEarlier(absl::Span<const std::string> subject_ids,
                         absl::Span<const std::vector<Probe>> probe_sets,
                         const IdentifyOptions& options) const = 0;

  // Fused threshold for a set of probed modalities (as if every probed
  // modality were enrolled).
  virtual float FusedThreshold(absl::Span<const Probe> probes) const = 0;

  // The statistics kZScore normalises the modality's cosines with, as of
  // now (precedence above); {0, 0, 0, kModel} if the modality is not
  // configured.
  virtual ImpostorEstimate ImpostorStatsOf(Modality modality) const = 0;

  virtual const ModalitySpec* spec(Modality modality) const = 0;
  virtual const FusionOptions& fusion() const = 0;
  virtual std::vector<GalleryInfo> Info() const = 0;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_MATCHER_H_
