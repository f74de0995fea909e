// The exact gallery: normalised vectors in a FAISS IndexFlatIP's storage,
// scanned with our SIMD kernels (Debian's FAISS scans with a scalar loop),
// with our own label <-> row maps so a removal costs O(d), not O(N).
//
// The scan scores templates, but callers want subjects. Search therefore
// fetches enough template hits to be sure the best k subjects are among them
// and collapses the hits to subjects itself.
//
// SearchBatch: a batch of at least kExactBatchBlasMinProbes probes is scored
// with BLAS sgemm (blocks of rows x all probes; at d = 512 sgemm computes
// about twice as fast as our multi-query kernels, and a large batch is
// compute-bound), each probe keeping its best BlasCandidates(fetch) rows by
// sgemm score. Those candidates are then re-scored with InnerProduct, the
// kernel Search scans with, so returned scores are bit-identical to Search's,
// and collapsed to subjects exactly as Search does. sgemm and the kernel sum
// in different orders, so their scores differ in the last bits; the standard
// bound for a float dot product of unit vectors computed in any order
// (|error| <= gamma_d = d u / (1 - d u), u = 2^-24, FMA or not) bounds the
// difference by 2 gamma_d (~6e-5 at d = 512). A probe keeps its sgemm result
// only if its fetch-th re-scored candidate beats the worst sgemm candidate by
// more than that, which proves that no row outside the candidates can be in
// Search's top `fetch`; otherwise (near-ties at the cut, duplicates), and
// when Search would rescan for a tie at the k-th subject, the probe is
// searched exactly as Search does. The residual assumption: the BLAS sums in
// float (or better), as every sgemm does.
//
// The row blocks are split over as many threads as the scan pool has (an
// OpenMP team, OpenBLAS single-threaded inside it): at 100k x 512 this beat
// one thread calling a multi-threaded OpenBLAS sgemm (~800 vs ~700
// probes/s at 1000 probes; one thread alone ~510).
//
// Smaller batches go to the scan pool at once (ScanPool::SearchMany), so
// they share passes. Crossover at 100k x 512 on the 2-core AVX2 machine
// (bench/gallery_bench.cc batch/N/B, forcing each path): pool vs sgemm
// ~420 vs ~250 probes/s at 8 probes, ~400-450 vs ~420 at 16, ~370 vs ~390 at
// 19, ~365 vs ~550 at 20; sgemm pulls away beyond (~650 at 32, ~800 at
// 100), where the pool stays at ~400 (its passes are compute-bound).

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "faiss/IndexFlat.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/gallery_kinds.h"
#include "matcher/kernels.h"
#include "matcher/scan_pool.h"
#include "matcher/snapshot.h"
#include "matcher/top_hits.h"

// The Fortran BLAS entry point, declared as FAISS (faiss/utils/distances.cpp)
// does: FAISS links the system BLAS (OpenBLAS on Debian 12), and every BLAS
// exports sgemm_ whatever its CBLAS. LP64 (32-bit integers), as Debian's.
extern "C" int sgemm_(const char* transa, const char* transb, const int* m,
                      const int* n, const int* k, const float* alpha,
                      const float* a, const int* lda, const float* b,
                      const int* ldb, const float* beta, float* c,
                      const int* ldc);

namespace hawiya::matcher {
namespace {

using FaissLabel = faiss::Index::idx_t;
static_assert(std::is_same_v<FaissLabel, int64_t>,
              "gallery labels are passed to FAISS without conversion");

// Rows per sgemm call: 1024 rows x 512 floats (2 MiB) per block, as FAISS's
// exhaustive_inner_product_blas; every probe of a block is scored at once.
constexpr size_t kBlasRowBlock = 1024;
// Probes per sgemm call, bounding the score block (kBlasRowBlock x this
// floats, 4 MiB).
constexpr size_t kBlasProbeBlock = 1024;

// Candidates a probe keeps from the sgemm scores beyond the `fetch` that
// Search needs: room for rounding differences at the cut, so that the proof
// in the file comment rarely fails and sends the probe to the exact path.
size_t BlasCandidates(size_t fetch) { return fetch + 8 + fetch / 8; }

class ExactGallery final : public Gallery {
 public:
  // REQUIRES: pool != nullptr, outlives the gallery.
  ExactGallery(int dimension, ScanPool* pool)
      : dimension_(dimension), pool_(pool), flat_(dimension) {}

  ExactGallery(const ExactGallery&) = delete;
  ExactGallery& operator=(const ExactGallery&) = delete;

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
  std::string index_kind() const override { return "exact"; }
  absl::Status Save(SnapshotWriter* out) const override;
  // The body of LoadExactGallery: everything Save wrote after the kind name.
  static absl::StatusOr<std::unique_ptr<Gallery>> Load(
      const GalleryOptions& options, SnapshotReader* in);

 private:
  // Save, which may throw std::bad_alloc.
  absl::Status SaveOrThrow(SnapshotWriter* out) const;
  struct Maps;
  // The maps of Load's rows. REQUIRES: row_subject[r] < ids.size() for every
  // row r; counts[i] is the number of rows of subject i.
  static absl::Status BuildMaps(absl::Span<const int64_t> labels,
                                absl::Span<const absl::string_view> ids,
                                absl::Span<const uint32_t> counts,
                                absl::Span<const int32_t> row_subject,
                                Maps* maps);

  // The template's row in the flat index. REQUIRES: label is present.
  const float* Row(FaissLabel label) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return flat_.get_xb() + label_row_.at(label) * dimension_;
  }
  // Each subject's best hit, best first (CollapseToSubjects of the rows'
  // labels).
  std::vector<SubjectScore> Collapse(absl::Span<const ScanHit> hits,
                                     float* boundary) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Search's answer for each unit probe, from full scans on pool_ (our SIMD
  // kernels; Debian's FAISS scans with a scalar loop) that share passes.
  // REQUIRES: every units[i] is unit norm with dimension_ components; k > 0.
  std::vector<std::vector<SubjectScore>> SearchOnPool(
      absl::Span<const float* const> units, size_t k) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The same for n probes (contiguous in `units`) via BLAS; see the file
  // comment. Allocates before its parallel region, so std::bad_alloc
  // escapes only from here, never from a worker.
  // REQUIRES: as SearchOnPool; BlasCandidates(book_.TemplatesToFetch(k)) <=
  // size().
  std::vector<std::vector<SubjectScore>> SearchWithBlas(const float* units,
                                                        size_t n,
                                                        size_t k) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const int dimension_;
  ScanPool* const pool_;

  mutable absl::Mutex mu_;
  // The vectors, one row per template. Rows are ours to move: removal moves
  // the last row into the hole (O(d)), where FAISS's IndexIDMap2::remove_ids
  // shifts every later row and rebuilds its reverse map (O(N)) while searches
  // wait on the writer lock.
  faiss::IndexFlatIP flat_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> row_label_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, size_t> label_row_ ABSL_GUARDED_BY(mu_);
  SubjectBook book_ ABSL_GUARDED_BY(mu_);
};

absl::Status ExactGallery::Add(absl::Span<const GalleryEntry> entries) {
  // Validate and normalise before taking the lock: this is the expensive part
  // and touches no shared state.
  absl::StatusOr<std::vector<float>> vectors =
      NormalizedEntries(entries, dimension_);
  if (!vectors.ok()) return vectors.status();
  if (entries.empty()) return absl::OkStatus();

  absl::WriterMutexLock lock(&mu_);
  if (absl::Status s = book_.CheckNewLabels(entries); !s.ok()) return s;
  try {
    flat_.add(static_cast<FaissLabel>(entries.size()), vectors->data());
  } catch (const std::exception& e) {
    return FaissError("add", e);
  }
  for (const GalleryEntry& entry : entries) {
    label_row_.emplace(entry.label, row_label_.size());
    row_label_.push_back(entry.label);
    book_.Add(entry.label, entry.subject_id);
  }
  return absl::OkStatus();
}

size_t ExactGallery::RemoveSubject(absl::string_view subject_id) {
  absl::WriterMutexLock lock(&mu_);
  const std::vector<int64_t> labels = book_.RemoveSubject(subject_id);
  const size_t row_bytes = flat_.code_size;
  for (int64_t label : labels) {
    const size_t row = label_row_.at(label);
    const size_t last = row_label_.size() - 1;
    if (row != last) {
      std::memcpy(flat_.codes.data() + row * row_bytes,
                  flat_.codes.data() + last * row_bytes, row_bytes);
      const int64_t moved = row_label_[last];
      row_label_[row] = moved;
      label_row_[moved] = row;
    }
    row_label_.pop_back();
    label_row_.erase(label);
    // The vector's spare capacity keeps its bytes: clear the vacated row
    // (an erased person's template must not linger in memory either).
    std::memset(flat_.codes.data() + last * row_bytes, 0, row_bytes);
    // Shrinking never reallocates or throws.
    flat_.codes.resize(last * row_bytes);
    flat_.ntotal = static_cast<FaissLabel>(last);
  }
  return labels.size();
}

std::vector<SubjectScore> ExactGallery::Collapse(absl::Span<const ScanHit> hits,
                                                 float* boundary) const {
  std::vector<LabelHit> labelled;
  labelled.reserve(hits.size());
  for (const ScanHit& hit : hits) {
    labelled.push_back(LabelHit{hit.score, row_label_[hit.row]});
  }
  return CollapseToSubjects(labelled, book_, boundary);
}

std::vector<std::vector<SubjectScore>> ExactGallery::SearchOnPool(
    absl::Span<const float* const> units, size_t k) const {
  std::vector<std::vector<SubjectScore>> out(units.size());
  const size_t total = row_label_.size();
  if (total == 0) return out;
  // The pool shares a pass among the searches of this gallery that are
  // waiting at the same time. Each of them holds mu_ shared, as this one does
  // until it has read the rows' labels, so no writer can move a row between
  // the scan and the lookup, and every search in a pass sees the same rows.
  const F32RowsSource rows(this, flat_.get_xb(), total,
                           static_cast<size_t>(dimension_));
  const size_t fetch = book_.TemplatesToFetch(k);
  std::vector<const void*> queries(units.begin(), units.end());
  std::vector<std::vector<ScanHit>> hits =
      pool_->SearchMany(rows, queries, fetch);
  std::vector<size_t> rescan;
  for (size_t i = 0; i < units.size(); ++i) {
    float boundary = 0.0f;
    out[i] = Collapse(hits[i], &boundary);
    if (MustRescan(out[i], k, boundary, fetch, total)) rescan.push_back(i);
  }
  if (!rescan.empty()) {
    queries.clear();
    for (size_t i : rescan) queries.push_back(units[i]);
    hits = pool_->SearchMany(rows, queries, total);
    for (size_t j = 0; j < rescan.size(); ++j) {
      float boundary = 0.0f;
      out[rescan[j]] = Collapse(hits[j], &boundary);
    }
  }
  for (std::vector<SubjectScore>& subjects : out) {
    if (subjects.size() > k) subjects.resize(k);
  }
  return out;
}

absl::StatusOr<std::vector<SubjectScore>> ExactGallery::Search(
    absl::Span<const float> probe, size_t k) const {
  absl::StatusOr<std::vector<float>> normalized =
      NormalizedProbe(probe, dimension_);
  if (!normalized.ok()) return normalized.status();
  const float* unit = normalized->data();
  absl::ReaderMutexLock lock(&mu_);
  if (k == 0 || row_label_.empty()) return std::vector<SubjectScore>();
  return std::move(SearchOnPool(absl::MakeConstSpan(&unit, 1), k)[0]);
}

std::vector<std::vector<SubjectScore>> ExactGallery::SearchWithBlas(
    const float* units, size_t n, size_t k) const {
  const size_t d = static_cast<size_t>(dimension_);
  const size_t total = row_label_.size();
  const size_t fetch = book_.TemplatesToFetch(k);
  const size_t keep = BlasCandidates(fetch);
  const float* base = flat_.get_xb();
  const size_t row_blocks = (total + kBlasRowBlock - 1) / kBlasRowBlock;
  const int threads = static_cast<int>(std::max<size_t>(
      1, std::min<size_t>(static_cast<size_t>(pool_->threads()), row_blocks)));

  // Everything the workers touch is allocated here: lists[t][i] is worker
  // t's best `keep` rows for probe i, by sgemm score.
  std::vector<std::vector<std::vector<ScanHit>>> lists(
      static_cast<size_t>(threads), std::vector<std::vector<ScanHit>>(n));
  for (auto& per_thread : lists) {
    for (std::vector<ScanHit>& list : per_thread) list.reserve(keep);
  }
  const size_t probe_block = std::min(n, kBlasProbeBlock);
  std::vector<std::vector<float>> blocks(
      static_cast<size_t>(threads),
      std::vector<float>(probe_block * kBlasRowBlock));
  std::atomic<size_t> next_block{0};

  // An OpenMP team rather than std::threads: OpenBLAS (the openmp build)
  // runs single-threaded inside a parallel region, so the cores are split
  // by row blocks, not oversubscribed. Idle team threads sleep
  // (OMP_WAIT_POLICY=PASSIVE in the server). Nothing in the region throws.
#pragma omp parallel num_threads(threads)
  {
    const auto t = static_cast<size_t>(omp_get_thread_num());
    float* ip = blocks[t].data();
    const int di = dimension_;
    const float one = 1.0f;
    const float zero = 0.0f;
    while (true) {
      const size_t block = next_block.fetch_add(1, std::memory_order_relaxed);
      if (block >= row_blocks) break;
      const size_t r0 = block * kBlasRowBlock;
      const size_t rows = std::min(kBlasRowBlock, total - r0);
      const int mi = static_cast<int>(rows);
      for (size_t p0 = 0; p0 < n; p0 += probe_block) {
        const size_t probes = std::min(probe_block, n - p0);
        const int ni = static_cast<int>(probes);
        // Column-major C (rows x probes) = rows_block^T x probes:
        // ip[p * rows + r] = <probe p0 + p, row r0 + r>.
        sgemm_("T", "N", &mi, &ni, &di, &one, base + r0 * d, &di,
               units + p0 * d, &di, &zero, ip, &mi);
        for (size_t p = 0; p < probes; ++p) {
          AddToTop(ip + p * rows, rows, r0, /*live=*/nullptr, keep,
                   &lists[t][p0 + p]);
        }
      }
    }
  }

  // Twice the bound on |float dot product - exact| for unit vectors (norms
  // at most 1 + u, hence the 1.001), in double so the test below is exact.
  const double u = std::ldexp(1.0, -24);
  const double du = static_cast<double>(d) * u;
  const double slack = 2.0 * (du / (1.0 - du)) * 1.001;

  std::vector<std::vector<SubjectScore>> out(n);
  std::vector<const float*> exact;  // probes searched as Search does
  std::vector<size_t> exact_index;
  std::vector<ScanHit> merged;
  for (size_t i = 0; i < n; ++i) {
    merged.clear();
    for (auto& per_thread : lists) {
      merged.insert(merged.end(), per_thread[i].begin(), per_thread[i].end());
    }
    SortBest(keep, &merged);
    // Every row left out has an sgemm score of at most `cut`.
    float cut = std::numeric_limits<float>::infinity();
    const float* unit = units + i * d;
    for (ScanHit& hit : merged) {
      cut = std::min(cut, hit.score);
      hit.score = InnerProduct(unit, base + hit.row * d, d);
    }
    std::sort(merged.begin(), merged.end(), BetterHit);
    bool settled = static_cast<double>(merged[fetch - 1].score) >
                   static_cast<double>(cut) + slack;
    if (settled) {
      merged.resize(fetch);
      float boundary = 0.0f;
      out[i] = Collapse(merged, &boundary);
      // Search's rescan rule.
      settled = !MustRescan(out[i], k, boundary, fetch, total);
    }
    if (settled) {
      if (out[i].size() > k) out[i].resize(k);
    } else {
      exact.push_back(unit);
      exact_index.push_back(i);
    }
  }
  if (!exact.empty()) {
    std::vector<std::vector<SubjectScore>> searched = SearchOnPool(exact, k);
    for (size_t j = 0; j < exact.size(); ++j) {
      out[exact_index[j]] = std::move(searched[j]);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<SubjectScore>>>
ExactGallery::SearchBatch(absl::Span<const std::vector<float>> probes,
                          size_t k) const {
  absl::StatusOr<std::vector<float>> units =
      NormalizedProbes(probes, dimension_);
  if (!units.ok()) return units.status();
  const size_t n = probes.size();
  const size_t d = static_cast<size_t>(dimension_);
  try {
    // One state of the gallery for the whole batch.
    absl::ReaderMutexLock lock(&mu_);
    const size_t total = row_label_.size();
    if (k == 0 || total == 0 || n == 0) {
      return std::vector<std::vector<SubjectScore>>(n);
    }
    // sgemm takes int sizes; the error bound needs d u well below 1.
    const bool blas_fits =
        total <= static_cast<size_t>(INT_MAX) && d <= (size_t{1} << 16);
    // Candidates close to the whole gallery leave sgemm nothing to save:
    // re-scoring them would cost a full scan per probe.
    if (n >= kExactBatchBlasMinProbes && blas_fits &&
        BlasCandidates(book_.TemplatesToFetch(k)) <= total / 2) {
      return SearchWithBlas(units->data(), n, k);
    }
    std::vector<const float*> pointers(n);
    for (size_t i = 0; i < n; ++i) pointers[i] = units->data() + i * d;
    return SearchOnPool(pointers, k);
  } catch (const std::exception& e) {
    // std::bad_alloc for a batch larger than memory.
    return absl::ResourceExhaustedError(
        absl::StrCat("probes: cannot search the batch: ", e.what()));
  }
}

absl::StatusOr<float> ExactGallery::ScoreSubject(
    absl::string_view subject_id, absl::Span<const float> probe) const {
  absl::StatusOr<std::vector<float>> normalized =
      NormalizedProbe(probe, dimension_);
  if (!normalized.ok()) return normalized.status();
  const std::vector<float>& unit = *normalized;
  const size_t d = static_cast<size_t>(dimension_);
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<absl::Span<const int64_t>> labels =
      book_.FindLabels(subject_id);
  if (!labels.ok()) return labels.status();
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t label : *labels) {
    // Bit-identical to the batched kernel Search scans with.
    best = std::max(best, InnerProduct(unit.data(), Row(label), d));
  }
  return best;
}

// Snapshot layout, after the kind name (gallery_kinds.h). Everything is
// written as a few bulk arrays, so that loading 1M templates is a handful of
// large reads plus the hash maps, not a million small reads; the vectors come
// last so that Load can build the maps from the rest while it reads them:
//   u64    dimension
//   i64s   label of each row, in row order
//   bytes  every subject id, concatenated
//   i64s   end offset of each subject id in those bytes
//   i32s   index of each row's subject among those ids
//   bytes  the rows: normalised fp32 vectors, dimension floats per row
absl::Status ExactGallery::Save(SnapshotWriter* out) const {
  // The subject table below allocates; running out of memory is an error
  // for the caller (a snapshot not written), not an exception.
  try {
    return SaveOrThrow(out);
  } catch (const std::exception& e) {
    return FaissError("save", e);
  }
}

absl::Status ExactGallery::SaveOrThrow(SnapshotWriter* out) const {
  // A reader lock: searches go on, writers wait, so the rows, labels and
  // subjects written are those of one instant.
  absl::ReaderMutexLock lock(&mu_);
  const size_t rows = row_label_.size();
  if (book_.subjects() >
      static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::FailedPreconditionError(
        "snapshot: more subjects than an exact gallery snapshot can index");
  }
  std::string subject_bytes;
  std::vector<int64_t> subject_ends;
  subject_ends.reserve(book_.subjects());
  std::vector<int32_t> row_subject(rows, -1);
  for (const auto& [subject, labels] : book_.by_subject()) {
    const auto index = static_cast<int32_t>(subject_ends.size());
    subject_bytes.append(subject);
    subject_ends.push_back(static_cast<int64_t>(subject_bytes.size()));
    for (int64_t label : labels) row_subject[label_row_.at(label)] = index;
  }
  absl::Status s = out->WriteString(IndexKindName(IndexKind::kExact));
  if (s.ok()) s = out->WriteU64(static_cast<uint64_t>(dimension_));
  if (s.ok()) s = out->WriteI64s(row_label_);
  if (s.ok()) {
    s = out->WriteBytes(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(subject_bytes.data()),
        subject_bytes.size()));
  }
  if (s.ok()) s = out->WriteI64s(subject_ends);
  if (s.ok()) s = out->WriteI32s(row_subject);
  if (s.ok()) s = out->WriteBytes(flat_.codes);
  return s;
}

// The maps of a gallery being loaded, built apart from it so that a second
// thread can build them while the first reads the vectors.
struct ExactGallery::Maps {
  absl::flat_hash_map<int64_t, size_t> label_row;
  SubjectBook book;
};

absl::Status ExactGallery::BuildMaps(absl::Span<const int64_t> labels,
                                     absl::Span<const absl::string_view> ids,
                                     absl::Span<const uint32_t> counts,
                                     absl::Span<const int32_t> row_subject,
                                     Maps* maps) {
  if (absl::Status s = maps->book.AddSubjects(ids, counts, row_subject, labels);
      !s.ok()) {
    return s;
  }
  // The book refused repeated labels: every emplace below inserts.
  maps->label_row.reserve(labels.size());
  for (size_t row = 0; row < labels.size(); ++row) {
    maps->label_row.emplace(labels[row], row);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Gallery>> ExactGallery::Load(
    const GalleryOptions& options, SnapshotReader* in) {
  const size_t d = static_cast<size_t>(options.dimension);
  absl::StatusOr<uint64_t> dimension = in->ReadU64();
  if (!dimension.ok()) return dimension.status();
  if (*dimension != d) {
    return absl::FailedPreconditionError(
        absl::StrCat("dimension: the snapshot's exact gallery has ", *dimension,
                     ", the options say ", d));
  }
  // Bounds come from the stream's own length (SnapshotReader::Remaining).
  constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();
  std::vector<int64_t> labels;
  if (absl::Status s = in->ReadI64s(kUnbounded, &labels); !s.ok()) return s;
  const size_t rows = labels.size();
  std::vector<uint8_t> subject_bytes;
  if (absl::Status s = in->ReadBytes(kUnbounded, &subject_bytes); !s.ok()) {
    return s;
  }
  std::vector<int64_t> subject_ends;
  if (absl::Status s = in->ReadI64s(kUnbounded, &subject_ends); !s.ok()) {
    return s;
  }
  std::vector<int32_t> row_subject;
  if (absl::Status s = in->ReadI32s(rows, &row_subject); !s.ok()) return s;
  if (row_subject.size() != rows) {
    return absl::DataLossError(
        absl::StrCat("snapshot: exact gallery has ", rows, " labels but ",
                     row_subject.size(), " row subjects"));
  }

  const size_t subjects = subject_ends.size();
  std::vector<absl::string_view> ids(subjects);
  std::vector<uint32_t> counts(subjects, 0);
  int64_t begin = 0;
  for (size_t i = 0; i < subjects; ++i) {
    const int64_t end = subject_ends[i];
    if (end <= begin || end > static_cast<int64_t>(subject_bytes.size()) ||
        (i + 1 == subjects &&
         end != static_cast<int64_t>(subject_bytes.size()))) {
      return absl::DataLossError(absl::StrCat(
          "snapshot: exact gallery subject ", i, " has bad bounds"));
    }
    ids[i] = absl::string_view(
        reinterpret_cast<const char*>(subject_bytes.data()) + begin,
        static_cast<size_t>(end - begin));
    begin = end;
  }
  if (subjects == 0 && !subject_bytes.empty()) {
    return absl::DataLossError("snapshot: exact gallery has stray subject ids");
  }
  for (size_t row = 0; row < rows; ++row) {
    const int32_t subject = row_subject[row];
    if (subject < 0 || static_cast<size_t>(subject) >= subjects) {
      return absl::DataLossError(absl::StrCat("snapshot: exact gallery row ",
                                              row, " has no valid subject"));
    }
    ++counts[static_cast<size_t>(subject)];
  }

  // The maps take about as long as reading the vectors (1M rows: ~1.5 s
  // each on the busy 2-core machine we measure on), so a second thread
  // builds them meanwhile. It is joined on every way out, exceptions
  // included, before anything it reads goes away.
  Maps maps;
  absl::Status maps_status;
  std::thread builder([&] {
    try {
      maps_status = BuildMaps(labels, ids, counts, row_subject, &maps);
    } catch (const std::exception& e) {
      maps_status = FaissError("load", e);  // bad_alloc
    }
  });
  absl::Cleanup join_builder = [&builder] { builder.join(); };
  std::vector<uint8_t> codes;
  // Room to grow by half before the first reallocation: without it the
  // first Add after a load (the replay, or the first enrollment) would copy
  // every row (2 GB at 1M x 512) under the writer lock. Untouched capacity
  // costs address space, not memory. Checked against the stream's length
  // first, so a corrupt count cannot reserve without limit.
  if (rows <= in->Remaining() / (d * sizeof(float))) {
    codes.reserve(rows * d * sizeof(float) / 2 * 3);
  }
  absl::Status read = in->ReadBytes(kUnbounded, &codes);
  std::move(join_builder).Invoke();
  if (!read.ok()) return read;
  if (!maps_status.ok()) return maps_status;
  if (codes.size() / sizeof(float) / d != rows ||
      codes.size() != rows * d * sizeof(float)) {
    return absl::DataLossError(
        absl::StrCat("snapshot: exact gallery has ", rows, " labels but ",
                     codes.size(), " bytes of vectors (", d, " floats each)"));
  }

  auto gallery = std::make_unique<ExactGallery>(
      options.dimension,
      options.scan_pool != nullptr ? options.scan_pool : &ScanPool::Default());
  {
    // Not shared yet; the lock is for the annotations.
    absl::WriterMutexLock lock(&gallery->mu_);
    gallery->label_row_ = std::move(maps.label_row);
    gallery->book_ = std::move(maps.book);
    gallery->row_label_ = std::move(labels);
    gallery->flat_.codes = std::move(codes);
    gallery->flat_.ntotal = static_cast<FaissLabel>(rows);
  }
  return std::unique_ptr<Gallery>(std::move(gallery));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gallery>> LoadExactGallery(
    const GalleryOptions& options, SnapshotReader* in) {
  try {
    return ExactGallery::Load(options, in);
  } catch (const std::exception& e) {
    // bad_alloc for a gallery larger than memory.
    return FaissError("load", e);
  }
}

absl::StatusOr<std::unique_ptr<Gallery>> OpenExactGallery(
    const GalleryOptions& options) {
  try {
    ScanPool* pool =
        options.scan_pool != nullptr ? options.scan_pool : &ScanPool::Default();
    return std::unique_ptr<Gallery>(
        std::make_unique<ExactGallery>(options.dimension, pool));
  } catch (const std::exception& e) {
    return FaissError("open", e);
  }
}

}  // namespace hawiya::matcher
