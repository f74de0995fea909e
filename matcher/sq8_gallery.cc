// The exact_sq8 gallery: a flat scan over int8 (SQ8) codes, a quarter of the
// bytes of fp32, then an exact fp32 re-rank of the best candidates.
//
// Rows: every template's unit vector in fp32 (for re-ranking, ScoreSubject
// and snapshots) and, once trained, its SQ8 code in the same row; a removal
// moves the last row into the hole in both arrays (O(d), as the exact
// gallery does).
//
// Training: a gallery starts empty, so there is nothing to train on. Until it
// holds kSq8TrainMinTemplates templates it scans fp32 exactly (small
// galleries are cheap to scan anyway); the Add that reaches that size trains
// per-dimension min/max ranges on every row with a margin of
// kSq8RangeMargin (row_scan.h) and encodes every row. The ranges are then
// fixed for the gallery's life (a snapshot keeps them): later vectors outside
// them clamp, which can only cost candidate quality because every returned
// score is recomputed in fp32. Unit-norm embeddings from one model keep a
// stable per-dimension distribution, and a new model means a new gallery.
//
// The SQ8 scan runs on the scan pool (options.scan_pool), so concurrent
// searches of one gallery share passes; as in the exact gallery, a search
// holds the reader lock from the scan until it has re-ranked, so no writer
// moves a row meanwhile. SearchBatch queues all its probes at once
// (ScanPool::SearchMany) under one reader lock. It does not use sgemm as the
// exact gallery does: Search re-ranks SQ8 candidates, and an fp32 sgemm
// would pick (better, but) different ones.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/gallery_kinds.h"
#include "matcher/kernels.h"
#include "matcher/row_scan.h"
#include "matcher/scan_pool.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

constexpr uint32_t kFormatVersion = 1;

class ExactSq8Gallery final : public Gallery {
 public:
  explicit ExactSq8Gallery(const GalleryOptions& options)
      : dimension_(options.dimension),
        index_(options.index),
        pool_(options.scan_pool != nullptr ? options.scan_pool
                                           : &ScanPool::Default()) {}

  ExactSq8Gallery(const ExactSq8Gallery&) = delete;
  ExactSq8Gallery& operator=(const ExactSq8Gallery&) = delete;

  // Reads what Save wrote after the kind name.
  static absl::StatusOr<std::unique_ptr<Gallery>> Load(
      const GalleryOptions& options, SnapshotReader* in);

  absl::Status Add(absl::Span<const GalleryEntry> entries) override;
  size_t RemoveSubject(absl::string_view subject_id) override;
  absl::StatusOr<std::vector<SubjectScore>> Search(
      absl::Span<const float> probe, size_t k) const override;
  absl::StatusOr<std::vector<std::vector<SubjectScore>>> SearchBatch(
      absl::Span<const std::vector<float>> probes, size_t k) const override;
  absl::StatusOr<float> ScoreSubject(
      absl::string_view subject_id,
      absl::Span<const float> probe) const override;

  int dimension() const override { return dimension_; }
  size_t size() const override {
    absl::ReaderMutexLock lock(&mu_);
    return row_label_.size();
  }
  bool Contains(absl::string_view subject_id) const override {
    absl::ReaderMutexLock lock(&mu_);
    return book_.LabelsOf(subject_id) != nullptr;
  }
  std::string index_kind() const override {
    return std::string(IndexKindName(IndexKind::kExactSq8));
  }
  absl::Status Save(SnapshotWriter* out) const override;

 private:
  size_t d() const { return static_cast<size_t>(dimension_); }
  const float* Row(size_t row) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return rows_.data() + row * d();
  }
  // Search's answer for each unit probe (d() floats each). REQUIRES: k > 0.
  std::vector<std::vector<SubjectScore>> SearchUnits(
      absl::Span<const float* const> units, size_t k) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Trains the ranges on every row and encodes them all.
  void Train() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int dimension_;
  const IndexOptions index_;
  ScanPool* const pool_;

  mutable absl::Mutex mu_;
  // Unit vectors, one row of d() floats per template.
  std::vector<float> rows_ ABSL_GUARDED_BY(mu_);
  // SQ8 codes of rows_, row for row; empty until trained_.
  std::vector<uint8_t> codes_ ABSL_GUARDED_BY(mu_);
  bool trained_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<float> vmin_ ABSL_GUARDED_BY(mu_);
  std::vector<float> vdiff_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> row_label_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, size_t> label_row_ ABSL_GUARDED_BY(mu_);
  SubjectBook book_ ABSL_GUARDED_BY(mu_);
};

void ExactSq8Gallery::Train() {
  Sq8RangeTrainer trainer(d());
  trainer.Observe(rows_.data(), row_label_.size());
  trainer.Finish(kSq8RangeMargin, &vmin_, &vdiff_);
  codes_.resize(row_label_.size() * d());
  for (size_t row = 0; row < row_label_.size(); ++row) {
    EncodeSq8(Row(row), vmin_.data(), vdiff_.data(), d(),
              codes_.data() + row * d());
  }
  trained_ = true;
}

absl::Status ExactSq8Gallery::Add(absl::Span<const GalleryEntry> entries) {
  absl::StatusOr<std::vector<float>> vectors =
      NormalizedEntries(entries, dimension_);
  if (!vectors.ok()) return vectors.status();
  if (entries.empty()) return absl::OkStatus();

  absl::WriterMutexLock lock(&mu_);
  if (absl::Status s = book_.CheckNewLabels(entries); !s.ok()) return s;
  const size_t old_rows = row_label_.size();
  if (entries.size() > kMaxIndexRows - old_rows) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "entries: the gallery holds at most ", kMaxIndexRows, " templates"));
  }
  // Everything that can fail (allocation) happens before any state the
  // searches see changes, so a failed Add leaves the gallery as it was.
  try {
    rows_.insert(rows_.end(), vectors->begin(), vectors->end());
    if (trained_) codes_.resize(rows_.size());
    GrowCapacity(row_label_, old_rows + entries.size());
    label_row_.reserve(old_rows + entries.size());
  } catch (const std::exception& e) {
    rows_.resize(old_rows * d());
    if (trained_) codes_.resize(old_rows * d());
    return absl::ResourceExhaustedError(
        absl::StrCat("entries: cannot grow the gallery: ", e.what()));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const size_t row = old_rows + i;
    if (trained_) {
      EncodeSq8(Row(row), vmin_.data(), vdiff_.data(), d(),
                codes_.data() + row * d());
    }
    row_label_.push_back(entries[i].label);
    label_row_.emplace(entries[i].label, row);
    book_.Add(entries[i].label, entries[i].subject_id);
  }
  if (!trained_ && row_label_.size() >= kSq8TrainMinTemplates) Train();
  return absl::OkStatus();
}

size_t ExactSq8Gallery::RemoveSubject(absl::string_view subject_id) {
  absl::WriterMutexLock lock(&mu_);
  const std::vector<int64_t> labels = book_.RemoveSubject(subject_id);
  for (int64_t label : labels) {
    const size_t row = label_row_.at(label);
    const size_t last = row_label_.size() - 1;
    if (row != last) {
      std::memcpy(rows_.data() + row * d(), Row(last), d() * sizeof(float));
      if (trained_) {
        std::memcpy(codes_.data() + row * d(), codes_.data() + last * d(), d());
      }
      const int64_t moved = row_label_[last];
      row_label_[row] = moved;
      label_row_[moved] = row;
    }
    row_label_.pop_back();
    label_row_.erase(label);
    // Spare capacity keeps its bytes: an erased person's template (and its
    // code) must not linger in memory.
    std::memset(rows_.data() + last * d(), 0, d() * sizeof(float));
    rows_.resize(last * d());
    if (trained_) {
      std::memset(codes_.data() + last * d(), 0, d());
      codes_.resize(last * d());
    }
  }
  return labels.size();
}

std::vector<std::vector<SubjectScore>> ExactSq8Gallery::SearchUnits(
    absl::Span<const float* const> units, size_t k) const {
  std::vector<std::vector<SubjectScore>> out(units.size());
  const size_t total = row_label_.size();
  if (total == 0) return out;
  const size_t needed = book_.TemplatesToFetch(k);
  const size_t candidates =
      std::min(total, needed * static_cast<size_t>(index_.rerank_factor));
  if (!trained_ || candidates == total) {
    // Re-ranking everything is an exact scan: do the cheaper fp32 one.
    for (size_t i = 0; i < units.size(); ++i) {
      out[i] = ExactSearch(units[i], rows_.data(), total, d(), nullptr,
                           row_label_, book_, k);
    }
    return out;
  }
  std::vector<Sq8Query> queries;
  queries.reserve(units.size());
  std::vector<const void*> pointers;
  pointers.reserve(units.size());
  for (const float* unit : units) {
    queries.push_back(PrepareSq8Query(unit, vmin_.data(), vdiff_.data(), d()));
    pointers.push_back(&queries.back());
  }
  // Every caller holds mu_ shared until it has re-ranked (see the file
  // comment), so the codes stay put for the whole pass.
  const Sq8RowsSource source(this, codes_.data(), total, d());
  const std::vector<std::vector<ScanHit>> tops =
      pool_->SearchMany(source, pointers, candidates);
  std::vector<LabelHit> hits;
  for (size_t i = 0; i < units.size(); ++i) {
    hits.clear();
    for (const ScanHit& hit : tops[i]) {
      hits.push_back(LabelHit{InnerProduct(units[i], Row(hit.row), d()),
                              row_label_[hit.row]});
    }
    out[i] = CollapseToSubjects(hits, book_);
    if (out[i].size() > k) out[i].resize(k);
  }
  return out;
}

absl::StatusOr<std::vector<SubjectScore>> ExactSq8Gallery::Search(
    absl::Span<const float> probe, size_t k) const {
  absl::StatusOr<std::vector<float>> unit = NormalizedProbe(probe, dimension_);
  if (!unit.ok()) return unit.status();
  const float* pointer = unit->data();
  absl::ReaderMutexLock lock(&mu_);
  if (k == 0 || row_label_.empty()) return std::vector<SubjectScore>();
  return std::move(SearchUnits(absl::MakeConstSpan(&pointer, 1), k)[0]);
}

absl::StatusOr<std::vector<std::vector<SubjectScore>>>
ExactSq8Gallery::SearchBatch(absl::Span<const std::vector<float>> probes,
                             size_t k) const {
  absl::StatusOr<std::vector<float>> units =
      NormalizedProbes(probes, dimension_);
  if (!units.ok()) return units.status();
  std::vector<const float*> pointers(probes.size());
  for (size_t i = 0; i < probes.size(); ++i) {
    pointers[i] = units->data() + i * d();
  }
  try {
    absl::ReaderMutexLock lock(&mu_);
    if (k == 0 || row_label_.empty()) {
      return std::vector<std::vector<SubjectScore>>(probes.size());
    }
    return SearchUnits(pointers, k);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("probes: cannot search the batch: ", e.what()));
  }
}

absl::StatusOr<float> ExactSq8Gallery::ScoreSubject(
    absl::string_view subject_id, absl::Span<const float> probe) const {
  absl::StatusOr<std::vector<float>> unit = NormalizedProbe(probe, dimension_);
  if (!unit.ok()) return unit.status();
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<absl::Span<const int64_t>> labels =
      book_.FindLabels(subject_id);
  if (!labels.ok()) return labels.status();
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t label : *labels) {
    best = std::max(best,
                    InnerProduct(unit->data(), Row(label_row_.at(label)), d()));
  }
  return best;
}

// Snapshot, after the kind name:
//   u32 format version, u32 dimension, u64 rows,
//   rows x i64 labels (chunked), rows x string subject,
//   rows x d floats (chunked), u32 trained, [d floats vmin, d floats vdiff].
// Codes are not written: EncodeSq8 rebuilds them bit for bit from the rows
// and the ranges.
absl::Status ExactSq8Gallery::Save(SnapshotWriter* out) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::Status s =
      WriteKindHeader(out, IndexKind::kExactSq8, kFormatVersion, dimension_);
  if (s.ok()) s = out->WriteU64(row_label_.size());
  if (s.ok()) s = WriteChunkedI64s(out, row_label_);
  for (size_t row = 0; s.ok() && row < row_label_.size(); ++row) {
    s = out->WriteString(*book_.SubjectOf(row_label_[row]));
  }
  if (s.ok()) s = WriteChunkedFloats(out, rows_);
  if (s.ok()) s = out->WriteU32(trained_ ? 1 : 0);
  if (s.ok() && trained_) s = WriteSq8Ranges(out, vmin_, vdiff_);
  return s;
}

absl::StatusOr<std::unique_ptr<Gallery>> ExactSq8Gallery::Load(
    const GalleryOptions& options, SnapshotReader* in) {
  if (absl::Status s =
          ReadKindHeader(in, "exact_sq8", kFormatVersion, options.dimension);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<uint64_t> rows = in->ReadU64();
  if (!rows.ok()) return rows.status();
  if (*rows > kMaxIndexRows) {
    return absl::DataLossError(absl::StrCat(
        "snapshot: ", *rows, " templates, at most ", kMaxIndexRows));
  }
  auto gallery = std::make_unique<ExactSq8Gallery>(options);
  ExactSq8Gallery& g = *gallery;
  // Not shared yet; the lock only satisfies the annotations.
  absl::WriterMutexLock lock(&g.mu_);
  if (absl::Status s = ReadChunkedI64s(in, *rows, &g.row_label_); !s.ok()) {
    return s;
  }
  for (size_t row = 0; row < *rows; ++row) {
    absl::StatusOr<std::string> subject =
        in->ReadString(kMaxSnapshotSubjectBytes);
    if (!subject.ok()) return subject.status();
    const int64_t label = g.row_label_[row];
    if (subject->empty() || g.book_.HasLabel(label)) {
      return absl::DataLossError(absl::StrCat(
          "snapshot: row ", row, " has an empty subject or a repeated label"));
    }
    g.book_.Add(label, *subject);
    g.label_row_.emplace(label, row);
  }
  if (absl::Status s = ReadChunkedFloats(in, *rows * g.d(), &g.rows_);
      !s.ok()) {
    return s;
  }
  for (float x : g.rows_) {
    if (!std::isfinite(x)) {
      return absl::DataLossError("snapshot: a template is not finite");
    }
  }
  absl::StatusOr<uint32_t> trained = in->ReadU32();
  if (!trained.ok()) return trained.status();
  if (*trained > 1) {
    return absl::DataLossError("snapshot: trained flag is neither 0 nor 1");
  }
  if (*trained == 1) {
    if (absl::Status s = ReadSq8Ranges(in, g.d(), &g.vmin_, &g.vdiff_);
        !s.ok()) {
      return s;
    }
    g.codes_.resize(g.rows_.size());
    for (size_t row = 0; row < *rows; ++row) {
      EncodeSq8(g.Row(row), g.vmin_.data(), g.vdiff_.data(), g.d(),
                g.codes_.data() + row * g.d());
    }
    g.trained_ = true;
  } else if (*rows >= kSq8TrainMinTemplates) {
    // Written by a version with another training threshold: train now.
    g.Train();
  }
  return std::unique_ptr<Gallery>(std::move(gallery));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gallery>> OpenExactSq8Gallery(
    const GalleryOptions& options) {
  return std::unique_ptr<Gallery>(std::make_unique<ExactSq8Gallery>(options));
}

absl::StatusOr<std::unique_ptr<Gallery>> LoadExactSq8Gallery(
    const GalleryOptions& options, SnapshotReader* in) {
  try {
    return ExactSq8Gallery::Load(options, in);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "snapshot: cannot load the exact_sq8 gallery: ", e.what()));
  }
}

}  // namespace hawiya::matcher
