// Internal to matcher/: the parts every index kind shares beyond the exact
// gallery's own file: entry validation with the exact gallery's messages,
// the subject book (labels <-> subjects, and how many template hits a search
// needs), collapsing template hits to subjects, and chunked snapshot arrays.
//
// Nothing here locks: each gallery guards its SubjectBook with its own mutex.
#ifndef HAWIYA_MATCHER_GALLERY_COMMON_H_
#define HAWIYA_MATCHER_GALLERY_COMMON_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/gallery.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {

// HNSW node ids are FAISS `int`s: no index kind holds more templates (or, for
// HNSW, nodes including tombstones) than this.
inline constexpr size_t kMaxIndexRows = 0x7fffffff;

// Gallery::SearchBatch on an exact gallery scores batches of at least this
// many probes with one BLAS sgemm per block of rows instead of the scan
// pool's multi-query passes (measured crossover, see exact_gallery.cc).
inline constexpr size_t kExactBatchBlasMinProbes = 20;

// Validates every probe (INVALID_ARGUMENT naming "probes[i]") and returns
// them normalised, concatenated in order.
absl::StatusOr<std::vector<float>> NormalizedProbes(
    absl::Span<const std::vector<float>> probes, int dimension);

// INTERNAL "faiss <operation>: <what>". FAISS (and the allocation around
// it) fails by exception; galleries catch it and return this instead, so no
// exception leaves the matcher.
absl::Status FaissError(absl::string_view operation, const std::exception& e);

// Longest subject id a snapshot may hold; longer ones mean a corrupt stream.
inline constexpr size_t kMaxSnapshotSubjectBytes = 1024;

// Makes room for n elements with geometric growth (std::vector::reserve
// allocates exactly what it is asked, which would make every small append
// to a large vector copy it whole).
template <typename V>
void GrowCapacity(V& v, size_t n) {
  if (v.capacity() < n) v.reserve(std::max(n, 2 * v.capacity()));
}

// Best score first, ties by subject_id (the Gallery::Search order).
bool BetterSubject(const SubjectScore& a, const SubjectScore& b);

// Validates entries (INVALID_ARGUMENT
// naming entries[i].subject_id or entries[i].vector) and returns their
// vectors normalised, concatenated in entry order.
absl::StatusOr<std::vector<float>> NormalizedEntries(
    absl::Span<const GalleryEntry> entries, int dimension);

// Validates and normalises a probe (INVALID_ARGUMENT naming "probe").
absl::StatusOr<std::vector<float>> NormalizedProbe(
    absl::Span<const float> probe, int dimension);

// Which subject owns which label, and how many templates subjects have.
class SubjectBook {
 public:
  // ALREADY_EXISTS naming entries[i].label if a label is present or repeated
  // within the batch.
  absl::Status CheckNewLabels(absl::Span<const GalleryEntry> entries) const;

  // REQUIRES: label is not present.
  void Add(int64_t label, const std::string& subject_id);
  // Removes every label of the subject and returns them (empty if none).
  std::vector<int64_t> RemoveSubject(absl::string_view subject_id);

  bool HasLabel(int64_t label) const { return label_subject_.contains(label); }
  // nullptr if the label is not present.
  const std::string* SubjectOf(int64_t label) const;
  // nullptr if the subject has no template.
  const std::vector<int64_t>* LabelsOf(absl::string_view subject_id) const;
  // The same, or Gallery::ScoreSubject's NOT_FOUND naming subject_id.
  absl::StatusOr<absl::Span<const int64_t>> FindLabels(
      absl::string_view subject_id) const;

  size_t templates() const { return label_subject_.size(); }
  size_t subjects() const { return subject_labels_.size(); }

  // Every subject's labels, for snapshots (iteration order is arbitrary).
  const absl::flat_hash_map<std::string, std::vector<int64_t>>& by_subject()
      const {
    return subject_labels_;
  }

  // Adds a snapshot's subject table at once, with one lookup per subject
  // rather than one per label as Add: subject i is ids[i], and row r holds
  // label labels[r] of subject ids[row_subject[r]]. DATA_LOSS if a subject
  // has no template or is listed twice, or a label repeats. REQUIRES: the
  // book is empty; every row_subject[r] < ids.size(), and counts[i] is the
  // number of rows of subject i.
  absl::Status AddSubjects(absl::Span<const absl::string_view> ids,
                           absl::Span<const uint32_t> counts,
                           absl::Span<const int32_t> row_subject,
                           absl::Span<const int64_t> labels);

  // How many template hits guarantee that the best k subjects are among
  // them: no subject fills more than its number of templates, and one hit
  // more than the top k subjects can hold is a strict bound on every subject
  // not fetched (so a search rescans only on real ties, MustRescan).
  // REQUIRES: k > 0.
  size_t TemplatesToFetch(size_t k) const;

 private:
  // Moves one subject from having `from` templates to having `to`.
  void Recount(size_t from, size_t to);

  absl::flat_hash_map<int64_t, std::string> label_subject_;
  absl::flat_hash_map<std::string, std::vector<int64_t>> subject_labels_;
  // subjects_with_count_[n]: subjects with exactly n templates; the last
  // element is never zero (so size() - 1 is the current maximum). A
  // histogram rather than a high-water mark keeps searches from
  // over-fetching forever after one subject with many templates has left.
  std::vector<size_t> subjects_with_count_;
};

// A template hit: its exact score and label.
struct LabelHit {
  float score = 0.0f;
  int64_t label = 0;
};

// Each subject's best hit, best first (BetterSubject). Labels the book does
// not hold are skipped. `boundary`, if not null, receives the lowest score
// among the hits that were kept (+inf if none).
std::vector<SubjectScore> CollapseToSubjects(absl::Span<const LabelHit> hits,
                                             const SubjectBook& book,
                                             float* boundary = nullptr);

// Whether an exact search that fetched `fetch` of `total` template hits,
// collapsed to `subjects` (best first) with `boundary` the lowest fetched
// score, must rescan every template: a subject not fetched scores at most
// `boundary`, so if the k-th subject sits on it, an unfetched one may tie
// and win on subject_id. Such exact ties (duplicate enrolments of one
// image) are rare enough that a full scan is the simplest exact answer.
bool MustRescan(absl::Span<const SubjectScore> subjects, size_t k,
                float boundary, size_t fetch, size_t total);

// The exact answer to Gallery::Search over n contiguous unit rows (row i
// holds the template row_label[i]; rows with live[i] == 0 are skipped when
// `live` is not null), as the exact gallery computes it: fetch
// book.TemplatesToFetch(k) template hits, collapse them to subjects, and
// rescan everything when MustRescan says so.
// REQUIRES: unit holds d floats, rows n * d, row_label n labels the book
// holds for every live row; k > 0.
std::vector<SubjectScore> ExactSearch(const float* unit, const float* rows,
                                      size_t n, size_t d, const uint8_t* live,
                                      absl::Span<const int64_t> row_label,
                                      const SubjectBook& book, size_t k);

// ---- snapshot arrays written in bounded chunks ----
//
// A reader allocates as the data arrives, chunk by chunk, so a corrupt count
// in a truncated stream fails with DATA_LOSS rather than allocating the
// count up front. Each chunk is a Write* array (count, then elements).

inline constexpr size_t kSnapshotChunkElements = size_t{1} << 20;

absl::Status WriteChunkedFloats(SnapshotWriter* out,
                                absl::Span<const float> values);
// Appends exactly `count` floats to *values; DATA_LOSS otherwise.
absl::Status ReadChunkedFloats(SnapshotReader* in, size_t count,
                               std::vector<float>* values);
absl::Status WriteChunkedI32s(SnapshotWriter* out,
                              absl::Span<const int32_t> values);
absl::Status ReadChunkedI32s(SnapshotReader* in, size_t count,
                             std::vector<int32_t>* values);
absl::Status WriteChunkedI64s(SnapshotWriter* out,
                              absl::Span<const int64_t> values);
absl::Status ReadChunkedI64s(SnapshotReader* in, size_t count,
                             std::vector<int64_t>* values);

// The header of every kind's snapshot but kExact's (whose layout predates
// it): the kind name (gallery_kinds.h), u32 format version, u32 dimension.
absl::Status WriteKindHeader(SnapshotWriter* out, IndexKind kind,
                             uint32_t version, int dimension);
// Reads that header after the kind name (which Gallery::Load reads):
// DATA_LOSS "snapshot: <format> format version V is not supported (expected
// E)" for another version, OptionMismatch for another dimension.
absl::Status ReadKindHeader(SnapshotReader* in, absl::string_view format,
                            uint32_t version, int dimension);

// SQ8 ranges (row_scan.h) in a snapshot: d floats vmin, then d floats vdiff.
absl::Status WriteSq8Ranges(SnapshotWriter* out, absl::Span<const float> vmin,
                            absl::Span<const float> vdiff);
// DATA_LOSS unless both hold d finite floats and no vdiff is negative.
absl::Status ReadSq8Ranges(SnapshotReader* in, size_t d,
                           std::vector<float>* vmin, std::vector<float>* vdiff);

// FAILED_PRECONDITION: "snapshot was written with <field> = <saved>, the
// options say <wanted>".
absl::Status OptionMismatch(absl::string_view field, uint64_t saved,
                            uint64_t wanted);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_GALLERY_COMMON_H_
