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

class ScanPool;
class SnapshotReader;
class SnapshotWriter;

// How a gallery finds candidates. Whatever the kind, returned scores are
// exact fp32 cosines: approximate kinds re-rank their candidates exactly.
enum class IndexKind {
  // fp32 brute force over every template (our SIMD kernels).
  kExact,
  // int8 (SQ8) scan over every template, exact re-rank of the best.
  kExactSq8,
  // FAISS HNSW graph over our SIMD storage, exact re-rank of the best.
  kHnsw,
  // Exact while the gallery is small, HNSW once it reaches
  // IndexOptions::auto_hnsw_min_templates.
  kAuto,
};

// "exact", "exact_sq8", "hnsw", "auto".
absl::string_view IndexKindName(IndexKind kind);
// The inverse of IndexKindName; INVALID_ARGUMENT for any other string.
absl::StatusOr<IndexKind> ParseIndexKind(absl::string_view name);

// Bounds CheckIndexOptions enforces.
inline constexpr int kMinHnswM = 2;
inline constexpr int kMaxHnswM = 256;
inline constexpr int kMaxHnswEf = 10000;
inline constexpr int kMaxRerankFactor = 100;

struct HnswOptions {
  // Graph degree (FAISS M): 2 * m neighbours on level 0.
  // REQUIRES: kMinHnswM <= m <= kMaxHnswM.
  int m = 32;
  // Candidate list size while building. REQUIRES: 1 <= ... <= kMaxHnswEf.
  int ef_construction = 40;
  // Candidate list size while searching; raised to the number of candidates
  // a search needs when that is larger. REQUIRES: 1 <= ... <= kMaxHnswEf.
  int ef_search = 64;
  // Store int8 (SQ8) codes in the graph's storage instead of fp32. The graph
  // is built once the gallery holds enough templates to train the SQ8
  // ranges on (searches scan exactly until then).
  bool sq8_storage = false;
};

struct IndexOptions {
  IndexKind kind = IndexKind::kExact;
  HnswOptions hnsw;
  // Approximate kinds re-rank rerank_factor times as many template hits as a
  // search needs, exactly. REQUIRES: 1 <= ... <= kMaxRerankFactor.
  int rerank_factor = 4;
  // kAuto switches to HNSW at this many templates (building the graph in
  // the background) and stays on HNSW if the gallery shrinks again.
  size_t auto_hnsw_min_templates = 200000;
};

// OK, or INVALID_ARGUMENT naming the first option out of range
// ("index.hnsw.m: must be in [2, 256], got 1"). Gallery::Open and
// Gallery::Load check options with it.
absl::Status CheckIndexOptions(const IndexOptions& options);

struct GalleryOptions {
  // Number of components of every vector. REQUIRES: > 0.
  int dimension = 512;
  IndexOptions index;
  // The threads that run the gallery's full scans (matcher/scan_pool.h);
  // nullptr: ScanPool::Default(). REQUIRES: outlives the gallery.
  ScanPool* scan_pool = nullptr;
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
  // Opens an empty gallery of options.index.kind. INVALID_ARGUMENT naming the
  // option if an option is out of range.
  static absl::StatusOr<std::unique_ptr<Gallery>> Open(
      const GalleryOptions& options);

  // Reopens a gallery written by Save. FAILED_PRECONDITION if the snapshot
  // was written with options that differ from `options` in anything that
  // shapes the index (kind, dimension, HNSW graph and storage parameters);
  // DATA_LOSS if the stream is malformed. REQUIRES: in != nullptr.
  static absl::StatusOr<std::unique_ptr<Gallery>> Load(
      const GalleryOptions& options, SnapshotReader* in);

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

  // Search for each probe: result[i] holds what Search(probes[i], k)
  // returns (same subjects, same order, bit-identical scores) for some state
  // of the gallery. INVALID_ARGUMENT naming the first bad probe
  // ("probes[3]: vector has ...") before anything is searched.
  //
  // This default calls Search once per probe (each sees the gallery as it
  // is then). The exact kinds override it and search the whole batch under
  // one reader lock (one state for all probes); kExact scores batches of at
  // least kExactBatchBlasMinProbes probes (gallery_common.h) with BLAS
  // sgemm, smaller ones and kExactSq8's on the scan pool's shared passes.
  // See exact_gallery.cc for why sgemm's rounding cannot change the result.
  virtual absl::StatusOr<std::vector<std::vector<SubjectScore>>> SearchBatch(
      absl::Span<const std::vector<float>> probes, size_t k) const;

  // The subject's best score against the probe; NOT_FOUND if the gallery
  // holds no template of the subject.
  virtual absl::StatusOr<float> ScoreSubject(
      absl::string_view subject_id, absl::Span<const float> probe) const = 0;

  virtual int dimension() const = 0;
  // Number of templates.
  virtual size_t size() const = 0;
  // Whether the subject has at least one template here.
  virtual bool Contains(absl::string_view subject_id) const = 0;
  // The kind in use, as IndexKindName: an auto gallery reports "exact" or
  // "hnsw", never "auto".
  virtual std::string index_kind() const = 0;

  // Writes everything Load needs to rebuild this gallery without the store:
  // templates, labels, subjects and the index structure. The snapshot is
  // consistent as of one instant: writers wait while it is written, searches
  // go on. REQUIRES: out != nullptr.
  virtual absl::Status Save(SnapshotWriter* out) const = 0;
};

// Checks a vector for use as a template or probe: dimension, finite
// components, non-zero norm. The message names no field; callers prefix it.
absl::Status CheckVector(absl::Span<const float> vector, int dimension);

// Returns vector / ||vector||. REQUIRES: CheckVector(vector, ...) is OK.
std::vector<float> Normalized(absl::Span<const float> vector);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_GALLERY_H_
