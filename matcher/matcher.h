// Matcher: one Gallery per modality, and the fusion of per-modality scores.
//
// Scores: a modality's score for a subject is the best cosine similarity
// between any probe of that modality and any of the subject's templates of
// that modality. The fused score is the mean of the per-modality scores over
// the modalities that were both probed and enrolled for the subject; the
// fused threshold is the mean of those modalities' thresholds.
//
// Thread safety: as Gallery.
#ifndef HAWIYA_MATCHER_MATCHER_H_
#define HAWIYA_MATCHER_MATCHER_H_

#include <cstddef>
#include <cstdint>
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
};

struct MatcherOptions {
  // At most one spec per modality; a modality without a spec is refused.
  std::vector<ModalitySpec> modalities;
};

// FACE 512 / 0.40, FINGERPRINT 256 / 0.45, IRIS 256 / 0.45.
std::vector<ModalitySpec> DefaultModalities();

struct Probe {
  Modality modality = Modality::kFace;
  std::vector<float> vector;
};

struct ModalityScore {
  Modality modality = Modality::kFace;
  float score = 0.0f;
};

struct Match {
  std::string subject_id;
  float score = 0.0f;      // fused
  float threshold = 0.0f;  // fused threshold for the modalities scored
  std::vector<ModalityScore> modality_scores;  // in Modality order
};

struct IdentifyOptions {
  size_t max_candidates = 10;
  float min_score = -1.0f;
  // If non-empty, only these subjects are considered.
  std::vector<std::string> restrict_to;
};

struct GalleryInfo {
  ModalitySpec spec;
  size_t templates = 0;
  std::string index_kind;
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

  // Fused threshold for a set of probed modalities.
  virtual float FusedThreshold(absl::Span<const Probe> probes) const = 0;

  virtual const ModalitySpec* spec(Modality modality) const = 0;
  virtual std::vector<GalleryInfo> Info() const = 0;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_MATCHER_H_
