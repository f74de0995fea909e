// A gallery: the searchable set of enrolled templates of one modality.
//
// Each template carries an int64 label (the store's template id, never
// reused) and the subject it belongs to. Vectors are L2-normalised on the way
// in, so every score is the cosine similarity in [-1, 1].
//
// Thread safety: all methods may be called concurrently. Searches run in
// parallel with each other; Add and RemoveSubject are exclusive.
#ifndef HAWIYA_MATCHER_GALLERY_H_
#define HAWIYA_MATCHER_GALLERY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hawiya::matcher {

struct GalleryOptions {
  // Number of components of every vector. REQUIRES: > 0.
  int dimension = 512;
};

// One template to add.
struct GalleryEntry {
  int64_t label = 0;
  std::string subject_id;
  std::vector<float> vector;
};

// A subject's best score against a probe.
struct SubjectScore {
  std::string subject_id;
  float score = 0.0f;
};

class Gallery {
 public:
  // Opens an empty exact gallery: brute-force inner product over FAISS
  // IndexFlatIP storage, scanned with matcher/kernels.h.
  static absl::StatusOr<std::unique_ptr<Gallery>> Open(
      const GalleryOptions& options);

  virtual ~Gallery() = default;

  // Adds templates. Fails with INVALID_ARGUMENT (nothing added) if a vector
  // has the wrong dimension, a non-finite component or zero norm, or with
  // ALREADY_EXISTS if a label is already present.
  virtual absl::Status Add(absl::Span<const GalleryEntry> entries) = 0;

  // Removes every template of the subject; returns how many were removed.
  virtual size_t RemoveSubject(absl::string_view subject_id) = 0;

  // The k subjects whose best template scores highest against the probe,
  // best first (ties by subject_id). Exact: equal to a brute-force scan.
  // INVALID_ARGUMENT for a bad probe.
  virtual absl::StatusOr<std::vector<SubjectScore>> Search(
      absl::Span<const float> probe, size_t k) const = 0;

  // The subject's best score against the probe; NOT_FOUND if the gallery
  // holds no template of the subject.
  virtual absl::StatusOr<float> ScoreSubject(
      absl::string_view subject_id, absl::Span<const float> probe) const = 0;

  virtual int dimension() const = 0;
  // Number of templates.
  virtual size_t size() const = 0;
  // Whether the subject has at least one template here.
  virtual bool Contains(absl::string_view subject_id) const = 0;
  // e.g. "exact".
  virtual std::string index_kind() const = 0;
};

// Checks a vector for use as a template or probe: dimension, finite
// components, non-zero norm. The message names no field; callers prefix it.
absl::Status CheckVector(absl::Span<const float> vector, int dimension);

// Returns vector / ||vector||. REQUIRES: CheckVector(vector, ...) is OK.
std::vector<float> Normalized(absl::Span<const float> vector);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_GALLERY_H_
