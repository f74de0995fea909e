// The hnsw and auto galleries: FAISS's HNSW graph over our kernel storage,
// candidates re-ranked exactly in fp32.
//
// The gallery keeps the subjects (SubjectBook) and answers the Gallery
// interface; its index is one generation at a time (hnsw_generation.h:
// nodes, tombstones, the graph), which a background rebuild replaces when
// tombstones pile up or a first graph is due (hnsw_rebuilder.h).
//
// Without a graph (auto below its threshold, SQ8 storage before training) a
// search is an exact scan of the live nodes, equal to the exact gallery's.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "matcher/approximate_testing.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/gallery_kinds.h"
#include "matcher/hnsw_generation.h"
#include "matcher/hnsw_rebuilder.h"
#include "matcher/row_scan.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

constexpr uint32_t kFormatVersion = 1;

// Templates from which a gallery wants a graph: 0 for fp32 hnsw; the auto
// threshold; at least kSq8TrainMinTemplates for SQ8 storage (its ranges are
// trained on what the gallery holds then).
HnswRebuilder::Options RebuilderOptions(const GalleryOptions& options) {
  HnswRebuilder::Options out;
  out.dimension = options.dimension;
  out.hnsw = options.index.hnsw;
  if (options.index.kind == IndexKind::kAuto) {
    out.graph_min_templates = options.index.auto_hnsw_min_templates;
  }
  if (options.index.hnsw.sq8_storage) {
    out.graph_min_templates =
        std::max(out.graph_min_templates, kSq8TrainMinTemplates);
  }
  return out;
}

class HnswGallery final : public Gallery {
 public:
  // REQUIRES: options.index.kind is kHnsw or kAuto, options were checked;
  // `current` was built with them and `book` holds its live labels.
  HnswGallery(const GalleryOptions& options,
              std::unique_ptr<HnswGeneration> current, SubjectBook book)
      : options_(options),
        book_(std::move(book)),
        rebuilder_(RebuilderOptions(options), std::move(current)) {}

  HnswGallery(const HnswGallery&) = delete;
  HnswGallery& operator=(const HnswGallery&) = delete;

  // An empty gallery.
  static std::unique_ptr<HnswGallery> Open(const GalleryOptions& options);
  // Reads what Save wrote after the kind name.
  static absl::StatusOr<std::unique_ptr<Gallery>> Load(
      const GalleryOptions& options, SnapshotReader* in);

  absl::Status Add(absl::Span<const GalleryEntry> entries) override;
  size_t RemoveSubject(absl::string_view subject_id) override;
  absl::StatusOr<std::vector<SubjectScore>> Search(
      absl::Span<const float> probe, size_t k) const override;
  absl::StatusOr<float> ScoreSubject(
      absl::string_view subject_id,
      absl::Span<const float> probe) const override;

  int dimension() const override { return options_.dimension; }
  size_t size() const override {
    absl::ReaderMutexLock lock(&rebuilder_.mu());
    return book_.templates();
  }
  bool Contains(absl::string_view subject_id) const override {
    absl::ReaderMutexLock lock(&rebuilder_.mu());
    return book_.LabelsOf(subject_id) != nullptr;
  }
  std::string index_kind() const override;
  absl::Status Save(SnapshotWriter* out) const override;

  ApproximateIndexState State() const;
  HnswRebuilder& rebuilder() { return rebuilder_; }
  const HnswRebuilder& rebuilder() const { return rebuilder_; }

 private:
  const GalleryOptions options_;
  // Declared before rebuilder_, whose destructor joins the rebuild thread,
  // so that it outlives the thread.
  SubjectBook book_ ABSL_GUARDED_BY(rebuilder_.mu());
  // Owns the lock, the current generation and its rebuilds.
  HnswRebuilder rebuilder_;
};

std::unique_ptr<HnswGallery> HnswGallery::Open(const GalleryOptions& options) {
  const HnswRebuilder::Options rebuilder = RebuilderOptions(options);
  return std::make_unique<HnswGallery>(
      options,
      std::make_unique<HnswGeneration>(
          options.dimension, options.index.hnsw,
          /*graph=*/rebuilder.graph_min_templates == 0, std::vector<float>(),
          std::vector<float>()),
      SubjectBook());
}

std::string HnswGallery::index_kind() const {
  if (options_.index.kind == IndexKind::kHnsw) {
    return std::string(IndexKindName(IndexKind::kHnsw));
  }
  absl::ReaderMutexLock lock(&rebuilder_.mu());
  return std::string(IndexKindName(
      rebuilder_.current().has_graph() ? IndexKind::kHnsw : IndexKind::kExact));
}

absl::Status HnswGallery::Add(absl::Span<const GalleryEntry> entries) {
  absl::StatusOr<std::vector<float>> vectors =
      NormalizedEntries(entries, options_.dimension);
  if (!vectors.ok()) return vectors.status();
  if (entries.empty()) return absl::OkStatus();
  std::vector<int64_t> labels;
  labels.reserve(entries.size());
  for (const GalleryEntry& entry : entries) labels.push_back(entry.label);

  absl::WriterMutexLock lock(&rebuilder_.mu());
  if (absl::Status s = book_.CheckNewLabels(entries); !s.ok()) return s;
  if (entries.size() > kMaxIndexRows - rebuilder_.current().nodes()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "entries: the index holds at most ", kMaxIndexRows, " nodes"));
  }
  if (absl::Status s =
          rebuilder_.Append(std::move(labels), *std::move(vectors));
      !s.ok()) {
    return s;
  }
  for (const GalleryEntry& entry : entries) {
    book_.Add(entry.label, entry.subject_id);
  }
  return absl::OkStatus();
}

size_t HnswGallery::RemoveSubject(absl::string_view subject_id) {
  absl::WriterMutexLock lock(&rebuilder_.mu());
  const std::vector<int64_t> labels = book_.RemoveSubject(subject_id);
  if (labels.empty()) return 0;
  rebuilder_.Remove(labels);
  return labels.size();
}

absl::StatusOr<std::vector<SubjectScore>> HnswGallery::Search(
    absl::Span<const float> probe, size_t k) const {
  absl::StatusOr<std::vector<float>> unit =
      NormalizedProbe(probe, options_.dimension);
  if (!unit.ok()) return unit.status();
  absl::ReaderMutexLock lock(&rebuilder_.mu());
  const HnswGeneration& current = rebuilder_.current();
  const size_t live = book_.templates();
  if (k == 0 || live == 0) return std::vector<SubjectScore>();
  const size_t needed = book_.TemplatesToFetch(k);
  const size_t hits = std::min(
      live, needed * static_cast<size_t>(options_.index.rerank_factor));
  if (!current.has_graph() || hits == live) {
    // Re-ranking every template is an exact scan: do it directly.
    return current.ExactSearch(unit->data(), book_, k);
  }
  std::vector<LabelHit> candidates;
  if (absl::Status s = current.GraphCandidates(unit->data(), hits, &candidates);
      !s.ok()) {
    return s;
  }
  std::vector<SubjectScore> subjects = CollapseToSubjects(candidates, book_);
  if (subjects.size() > k) subjects.resize(k);
  return subjects;
}

absl::StatusOr<float> HnswGallery::ScoreSubject(
    absl::string_view subject_id, absl::Span<const float> probe) const {
  absl::StatusOr<std::vector<float>> unit =
      NormalizedProbe(probe, options_.dimension);
  if (!unit.ok()) return unit.status();
  absl::ReaderMutexLock lock(&rebuilder_.mu());
  absl::StatusOr<absl::Span<const int64_t>> labels =
      book_.FindLabels(subject_id);
  if (!labels.ok()) return labels.status();
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t label : *labels) {
    best = std::max(best, rebuilder_.current().Score(unit->data(), label));
  }
  return best;
}

// Snapshot, after the kind name ("hnsw" or "auto"):
//   u32 format version, u32 dimension, u32 hnsw.m, u32 hnsw.sq8_storage,
//   then the current generation:
//   u64 nodes N, u64 tombstones T,
//   N x i64 node labels (chunked; 0 for tombstones),
//   T x i32 tombstoned node ids (chunked, ascending),
//   (N - T) x string subject of each live node, in node order,
//   u32 has_graph, u32 sq8, [d floats vmin, d floats vdiff if sq8],
//   N x d floats rows (chunked; tombstones are zero),
//   if has_graph: N x i32 levels (chunked), i32 neighbours (chunked, as many
//   as the levels imply), i64 entry_point, i64 max_level, string rng state.
// The SQ8 codes are not written: our EncodeSq8 rebuilds them bit for bit. A
// rebuild in progress is not saved: the loaded gallery starts another when
// it needs one.
absl::Status HnswGallery::Save(SnapshotWriter* out) const {
  absl::ReaderMutexLock lock(&rebuilder_.mu());
  absl::Status s = WriteKindHeader(out, options_.index.kind, kFormatVersion,
                                   options_.dimension);
  if (s.ok()) s = out->WriteU32(static_cast<uint32_t>(options_.index.hnsw.m));
  if (s.ok()) s = out->WriteU32(options_.index.hnsw.sq8_storage ? 1 : 0);
  if (s.ok()) s = rebuilder_.current().Save(out, book_);
  return s;
}

absl::StatusOr<std::unique_ptr<Gallery>> HnswGallery::Load(
    const GalleryOptions& options, SnapshotReader* in) {
  if (absl::Status s =
          ReadKindHeader(in, "HNSW", kFormatVersion, options.dimension);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<uint32_t> m = in->ReadU32();
  if (!m.ok()) return m.status();
  if (*m != static_cast<uint32_t>(options.index.hnsw.m)) {
    return OptionMismatch("index.hnsw.m", *m, options.index.hnsw.m);
  }
  absl::StatusOr<uint32_t> sq8 = in->ReadU32();
  if (!sq8.ok()) return sq8.status();
  if (*sq8 != (options.index.hnsw.sq8_storage ? 1u : 0u)) {
    return OptionMismatch("index.hnsw.sq8_storage", *sq8,
                          options.index.hnsw.sq8_storage ? 1 : 0);
  }
  SubjectBook book;
  absl::StatusOr<std::unique_ptr<HnswGeneration>> current =
      HnswGeneration::Load(options.dimension, options.index.hnsw,
                           options.index.hnsw.sq8_storage, in, &book);
  if (!current.ok()) return current.status();
  auto gallery = std::make_unique<HnswGallery>(options, *std::move(current),
                                               std::move(book));
  {
    // Options may now ask for a graph (a lower auto threshold) or the
    // snapshot may carry many tombstones.
    absl::WriterMutexLock lock(&gallery->rebuilder_.mu());
    gallery->rebuilder_.MaybeScheduleRebuild();
  }
  return std::unique_ptr<Gallery>(std::move(gallery));
}

ApproximateIndexState HnswGallery::State() const {
  absl::ReaderMutexLock lock(&rebuilder_.mu());
  ApproximateIndexState state;
  rebuilder_.FillState(&state);
  state.templates = book_.templates();
  return state;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gallery>> OpenHnswGallery(
    const GalleryOptions& options) {
  try {
    return std::unique_ptr<Gallery>(HnswGallery::Open(options));
  } catch (const std::exception& e) {
    return FaissError("open", e);
  }
}

absl::StatusOr<std::unique_ptr<Gallery>> LoadHnswGallery(
    const GalleryOptions& options, SnapshotReader* in) {
  try {
    return HnswGallery::Load(options, in);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("snapshot: cannot load the HNSW gallery: ", e.what()));
  }
}

absl::StatusOr<ApproximateIndexState> GetApproximateIndexState(
    const Gallery& gallery) {
  const auto* hnsw = dynamic_cast<const HnswGallery*>(&gallery);
  if (hnsw == nullptr) {
    return absl::InvalidArgumentError("not an hnsw or auto gallery");
  }
  return hnsw->State();
}

void WaitForRebuilds(const Gallery& gallery) {
  const auto* hnsw = dynamic_cast<const HnswGallery*>(&gallery);
  if (hnsw != nullptr) hnsw->rebuilder().WaitForRebuilds();
}

absl::Status SetRebuildTestHooks(Gallery& gallery, RebuildTestHooks hooks) {
  auto* hnsw = dynamic_cast<HnswGallery*>(&gallery);
  if (hnsw == nullptr) {
    return absl::InvalidArgumentError("not an hnsw or auto gallery");
  }
  hnsw->rebuilder().SetTestHooks(std::move(hooks));
  return absl::OkStatus();
}

absl::Status SetHnswEfSearch(Gallery& gallery, int ef_search) {
  auto* hnsw = dynamic_cast<HnswGallery*>(&gallery);
  if (hnsw == nullptr) {
    return absl::InvalidArgumentError("not an hnsw or auto gallery");
  }
  if (ef_search < 1 || ef_search > kMaxHnswEf) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ef_search: must be in [1, ", kMaxHnswEf, "], got ", ef_search));
  }
  hnsw->rebuilder().SetEfSearch(ef_search);
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
