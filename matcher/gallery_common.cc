#include "matcher/gallery_common.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/gallery.h"
#include "matcher/row_scan.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {

absl::Status FaissError(absl::string_view operation, const std::exception& e) {
  return absl::InternalError(absl::StrCat("faiss ", operation, ": ", e.what()));
}

bool BetterSubject(const SubjectScore& a, const SubjectScore& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.subject_id < b.subject_id;
}

absl::StatusOr<std::vector<float>> NormalizedEntries(
    absl::Span<const GalleryEntry> entries, int dimension) {
  std::vector<float> vectors;
  vectors.reserve(entries.size() * static_cast<size_t>(dimension));
  for (size_t i = 0; i < entries.size(); ++i) {
    const GalleryEntry& entry = entries[i];
    if (entry.subject_id.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].subject_id: must not be empty"));
    }
    if (absl::Status s = CheckVector(entry.vector, dimension); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].vector: ", s.message()));
    }
    const std::vector<float> unit = Normalized(entry.vector);
    vectors.insert(vectors.end(), unit.begin(), unit.end());
  }
  return vectors;
}

absl::StatusOr<std::vector<float>> NormalizedProbe(
    absl::Span<const float> probe, int dimension) {
  if (absl::Status s = CheckVector(probe, dimension); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("probe: ", s.message()));
  }
  return Normalized(probe);
}

absl::StatusOr<std::vector<float>> NormalizedProbes(
    absl::Span<const std::vector<float>> probes, int dimension) {
  std::vector<float> units;
  units.reserve(probes.size() * static_cast<size_t>(dimension));
  for (size_t i = 0; i < probes.size(); ++i) {
    if (absl::Status s = CheckVector(probes[i], dimension); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("probes[", i, "]: ", s.message()));
    }
    const std::vector<float> unit = Normalized(probes[i]);
    units.insert(units.end(), unit.begin(), unit.end());
  }
  return units;
}

absl::Status SubjectBook::CheckNewLabels(
    absl::Span<const GalleryEntry> entries) const {
  absl::flat_hash_set<int64_t> batch;
  batch.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const int64_t label = entries[i].label;
    if (label_subject_.contains(label) || !batch.insert(label).second) {
      return absl::AlreadyExistsError(absl::StrCat(
          "entries[", i, "].label: label ", label, " already exists"));
    }
  }
  return absl::OkStatus();
}

void SubjectBook::Recount(size_t from, size_t to) {
  if (from > 0) --subjects_with_count_[from];
  if (to > 0) {
    if (subjects_with_count_.size() <= to) subjects_with_count_.resize(to + 1);
    ++subjects_with_count_[to];
  }
  while (!subjects_with_count_.empty() && subjects_with_count_.back() == 0) {
    subjects_with_count_.pop_back();
  }
}

void SubjectBook::Add(int64_t label, const std::string& subject_id) {
  label_subject_.emplace(label, subject_id);
  std::vector<int64_t>& labels = subject_labels_[subject_id];
  labels.push_back(label);
  Recount(labels.size() - 1, labels.size());
}

std::vector<int64_t> SubjectBook::RemoveSubject(absl::string_view subject_id) {
  auto it = subject_labels_.find(subject_id);
  if (it == subject_labels_.end()) return {};
  std::vector<int64_t> labels = std::move(it->second);
  subject_labels_.erase(it);
  for (int64_t label : labels) label_subject_.erase(label);
  Recount(labels.size(), 0);
  return labels;
}

absl::Status SubjectBook::AddSubjects(absl::Span<const absl::string_view> ids,
                                      absl::Span<const uint32_t> counts,
                                      absl::Span<const int32_t> row_subject,
                                      absl::Span<const int64_t> labels) {
  const size_t subjects = ids.size();
  subject_labels_.reserve(subjects);
  for (size_t i = 0; i < subjects; ++i) {
    if (counts[i] == 0) {
      return absl::DataLossError(
          absl::StrCat("snapshot: subject ", i, " has no template"));
    }
    auto [it, inserted] = subject_labels_.try_emplace(ids[i]);
    if (!inserted) {
      return absl::DataLossError(
          absl::StrCat("snapshot: subject ", ids[i], " is listed twice"));
    }
    it->second.reserve(counts[i]);
    Recount(0, counts[i]);
  }
  // Every subject is in: the map no longer rehashes, so these pointers stay
  // valid while the rows are filled in.
  std::vector<std::vector<int64_t>*> subject_labels(subjects);
  for (size_t i = 0; i < subjects; ++i) {
    subject_labels[i] = &subject_labels_.find(ids[i])->second;
  }
  label_subject_.reserve(labels.size());
  for (size_t row = 0; row < labels.size(); ++row) {
    const auto subject = static_cast<size_t>(row_subject[row]);
    if (!label_subject_.emplace(labels[row], ids[subject]).second) {
      return absl::DataLossError(
          absl::StrCat("snapshot: label ", labels[row], " is held twice"));
    }
    subject_labels[subject]->push_back(labels[row]);
  }
  return absl::OkStatus();
}

const std::string* SubjectBook::SubjectOf(int64_t label) const {
  auto it = label_subject_.find(label);
  return it == label_subject_.end() ? nullptr : &it->second;
}

const std::vector<int64_t>* SubjectBook::LabelsOf(
    absl::string_view subject_id) const {
  auto it = subject_labels_.find(subject_id);
  return it == subject_labels_.end() ? nullptr : &it->second;
}

absl::StatusOr<absl::Span<const int64_t>> SubjectBook::FindLabels(
    absl::string_view subject_id) const {
  const std::vector<int64_t>* labels = LabelsOf(subject_id);
  if (labels == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("subject_id: no template of ", subject_id));
  }
  return absl::MakeConstSpan(*labels);
}

size_t SubjectBook::TemplatesToFetch(size_t k) const {
  const size_t total = templates();
  if (k >= subjects()) return total;
  const size_t per_subject =
      subjects_with_count_.empty() ? 0 : subjects_with_count_.size() - 1;
  if (per_subject > total / k) return total;
  return std::min(total, k * per_subject + 1);
}

std::vector<SubjectScore> CollapseToSubjects(absl::Span<const LabelHit> hits,
                                             const SubjectBook& book,
                                             float* boundary) {
  absl::flat_hash_map<absl::string_view, float> best;
  best.reserve(hits.size());
  float lowest = std::numeric_limits<float>::infinity();
  for (const LabelHit& hit : hits) {
    const std::string* subject = book.SubjectOf(hit.label);
    if (subject == nullptr) continue;
    lowest = std::min(lowest, hit.score);
    auto [slot, inserted] = best.try_emplace(*subject, hit.score);
    if (!inserted) slot->second = std::max(slot->second, hit.score);
  }
  if (boundary != nullptr) *boundary = lowest;
  std::vector<SubjectScore> out;
  out.reserve(best.size());
  for (const auto& [subject, score] : best) {
    out.push_back(SubjectScore{std::string(subject), score});
  }
  std::sort(out.begin(), out.end(), BetterSubject);
  return out;
}

namespace {

std::vector<SubjectScore> ExactSubjects(const float* unit, const float* rows,
                                        size_t n, size_t d, const uint8_t* live,
                                        absl::Span<const int64_t> row_label,
                                        const SubjectBook& book, size_t fetch,
                                        float* boundary) {
  std::vector<ScanHit> top;
  TopRowsFp32(unit, rows, n, d, fetch, live, 0, &top);
  std::vector<LabelHit> hits;
  hits.reserve(top.size());
  for (const ScanHit& hit : top) {
    hits.push_back(LabelHit{hit.score, row_label[hit.row]});
  }
  return CollapseToSubjects(hits, book, boundary);
}

}  // namespace

bool MustRescan(absl::Span<const SubjectScore> subjects, size_t k,
                float boundary, size_t fetch, size_t total) {
  return fetch < total && subjects.size() >= k &&
         subjects[k - 1].score <= boundary;
}

std::vector<SubjectScore> ExactSearch(const float* unit, const float* rows,
                                      size_t n, size_t d, const uint8_t* live,
                                      absl::Span<const int64_t> row_label,
                                      const SubjectBook& book, size_t k) {
  const size_t total = book.templates();
  size_t fetch = book.TemplatesToFetch(k);
  float boundary = 0.0f;
  std::vector<SubjectScore> subjects =
      ExactSubjects(unit, rows, n, d, live, row_label, book, fetch, &boundary);
  if (MustRescan(subjects, k, boundary, fetch, total)) {
    fetch = total;
    subjects = ExactSubjects(unit, rows, n, d, live, row_label, book, fetch,
                             &boundary);
  }
  if (subjects.size() > k) subjects.resize(k);
  return subjects;
}

namespace {

template <typename T, typename WriteFn>
absl::Status WriteChunked(SnapshotWriter* out, absl::Span<const T> values,
                          WriteFn write) {
  for (size_t start = 0; start < values.size();
       start += kSnapshotChunkElements) {
    const size_t n = std::min(kSnapshotChunkElements, values.size() - start);
    if (absl::Status s = (out->*write)(values.subspan(start, n)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

template <typename T, typename ReadFn>
absl::Status ReadChunked(SnapshotReader* in, size_t count,
                         std::vector<T>* values, ReadFn read) {
  std::vector<T> chunk;
  for (size_t done = 0; done < count;) {
    const size_t expected = std::min(kSnapshotChunkElements, count - done);
    if (absl::Status s = (in->*read)(expected, &chunk); !s.ok()) return s;
    if (chunk.size() != expected) {
      return absl::DataLossError(
          absl::StrCat("snapshot: array chunk of ", chunk.size(),
                       " elements, expected ", expected));
    }
    values->insert(values->end(), chunk.begin(), chunk.end());
    done += expected;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteChunkedFloats(SnapshotWriter* out,
                                absl::Span<const float> values) {
  return WriteChunked(out, values, &SnapshotWriter::WriteFloats);
}
absl::Status ReadChunkedFloats(SnapshotReader* in, size_t count,
                               std::vector<float>* values) {
  return ReadChunked(in, count, values, &SnapshotReader::ReadFloats);
}
absl::Status WriteChunkedI32s(SnapshotWriter* out,
                              absl::Span<const int32_t> values) {
  return WriteChunked(out, values, &SnapshotWriter::WriteI32s);
}
absl::Status ReadChunkedI32s(SnapshotReader* in, size_t count,
                             std::vector<int32_t>* values) {
  return ReadChunked(in, count, values, &SnapshotReader::ReadI32s);
}
absl::Status WriteChunkedI64s(SnapshotWriter* out,
                              absl::Span<const int64_t> values) {
  return WriteChunked(out, values, &SnapshotWriter::WriteI64s);
}
absl::Status ReadChunkedI64s(SnapshotReader* in, size_t count,
                             std::vector<int64_t>* values) {
  return ReadChunked(in, count, values, &SnapshotReader::ReadI64s);
}

absl::Status WriteKindHeader(SnapshotWriter* out, IndexKind kind,
                             uint32_t version, int dimension) {
  absl::Status s = out->WriteString(IndexKindName(kind));
  if (s.ok()) s = out->WriteU32(version);
  if (s.ok()) s = out->WriteU32(static_cast<uint32_t>(dimension));
  return s;
}

absl::Status ReadKindHeader(SnapshotReader* in, absl::string_view format,
                            uint32_t version, int dimension) {
  absl::StatusOr<uint32_t> saved_version = in->ReadU32();
  if (!saved_version.ok()) return saved_version.status();
  if (*saved_version != version) {
    return absl::DataLossError(
        absl::StrCat("snapshot: ", format, " format version ", *saved_version,
                     " is not supported (expected ", version, ")"));
  }
  absl::StatusOr<uint32_t> saved_dimension = in->ReadU32();
  if (!saved_dimension.ok()) return saved_dimension.status();
  if (*saved_dimension != static_cast<uint32_t>(dimension)) {
    return OptionMismatch("dimension", *saved_dimension, dimension);
  }
  return absl::OkStatus();
}

absl::Status WriteSq8Ranges(SnapshotWriter* out, absl::Span<const float> vmin,
                            absl::Span<const float> vdiff) {
  absl::Status s = out->WriteFloats(vmin);
  if (s.ok()) s = out->WriteFloats(vdiff);
  return s;
}

absl::Status ReadSq8Ranges(SnapshotReader* in, size_t d,
                           std::vector<float>* vmin,
                           std::vector<float>* vdiff) {
  if (absl::Status s = in->ReadFloats(d, vmin); !s.ok()) return s;
  if (absl::Status s = in->ReadFloats(d, vdiff); !s.ok()) return s;
  if (vmin->size() != d || vdiff->size() != d) {
    return absl::DataLossError("snapshot: SQ8 ranges of the wrong size");
  }
  for (size_t j = 0; j < d; ++j) {
    if (!std::isfinite((*vmin)[j]) || !std::isfinite((*vdiff)[j]) ||
        (*vdiff)[j] < 0.0f) {
      return absl::DataLossError("snapshot: SQ8 ranges are not valid");
    }
  }
  return absl::OkStatus();
}

absl::Status OptionMismatch(absl::string_view field, uint64_t saved,
                            uint64_t wanted) {
  return absl::FailedPreconditionError(absl::StrCat(
      "snapshot was written with ", field, " = ", saved, ", the options say ",
      wanted, "; rebuild the gallery from the store"));
}

}  // namespace hawiya::matcher
