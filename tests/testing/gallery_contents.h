// What a snapshot of exact galleries holds, in a canonical order, for tests
// that compare galleries reached in different ways (a snapshot's bytes follow
// hash-map order, so equal galleries need not save equal bytes). Reads the
// layouts of ExactGallery::Save and MatcherImpl::Save; each gallery's
// impostor statistics (which depend on the order of adds) are read and left
// out.
#ifndef HAWIYA_TESTS_TESTING_GALLERY_CONTENTS_H_
#define HAWIYA_TESTS_TESTING_GALLERY_CONTENTS_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "matcher/impostor_stats.h"
#include "matcher/snapshot.h"

namespace hawiya::testing {

struct GalleryRow {
  int64_t label = 0;
  std::string subject_id;
  std::string vector_bytes;  // the normalised vector, bit for bit

  bool operator==(const GalleryRow& o) const {
    return std::tie(label, subject_id, vector_bytes) ==
           std::tie(o.label, o.subject_id, o.vector_bytes);
  }
  bool operator<(const GalleryRow& o) const {
    return std::tie(label, subject_id, vector_bytes) <
           std::tie(o.label, o.subject_id, o.vector_bytes);
  }
};

// Reads one exact gallery (kind name included); rows sorted by label. Sets
// *dimension if given.
inline absl::StatusOr<std::vector<GalleryRow>> ReadExactGallery(
    matcher::SnapshotReader* in, uint64_t* dimension = nullptr) {
  constexpr size_t kAny = std::numeric_limits<size_t>::max();
  absl::StatusOr<std::string> kind = in->ReadString(64);
  if (!kind.ok()) return kind.status();
  if (*kind != "exact") return absl::UnimplementedError(*kind);
  absl::StatusOr<uint64_t> d = in->ReadU64();
  if (!d.ok()) return d.status();
  if (dimension != nullptr) *dimension = *d;
  std::vector<int64_t> labels, ends;
  std::vector<uint8_t> codes, ids;
  std::vector<int32_t> row_subject;
  for (absl::Status s :
       {in->ReadI64s(kAny, &labels), in->ReadBytes(kAny, &ids),
        in->ReadI64s(kAny, &ends), in->ReadI32s(kAny, &row_subject),
        in->ReadBytes(kAny, &codes)}) {
    if (!s.ok()) return s;
  }
  std::vector<std::string> subjects;
  int64_t begin = 0;
  for (int64_t end : ends) {
    subjects.emplace_back(reinterpret_cast<const char*>(ids.data()) + begin,
                          end - begin);
    begin = end;
  }
  const size_t row_bytes = *d * sizeof(float);
  std::vector<GalleryRow> rows;
  for (size_t r = 0; r < labels.size(); ++r) {
    rows.push_back({labels[r], subjects.at(row_subject.at(r)),
                    std::string(reinterpret_cast<const char*>(codes.data()) +
                                    r * row_bytes,
                                row_bytes)});
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Reads a Matcher::Save of exact galleries: modality number -> rows.
inline absl::StatusOr<std::map<uint32_t, std::vector<GalleryRow>>> ReadMatcher(
    matcher::SnapshotReader* in) {
  absl::StatusOr<std::string> tag = in->ReadString(16);
  if (!tag.ok()) return tag.status();
  absl::StatusOr<uint32_t> count = in->ReadU32();
  if (!count.ok()) return count.status();
  std::map<uint32_t, std::vector<GalleryRow>> out;
  for (uint32_t i = 0; i < *count; ++i) {
    absl::StatusOr<uint32_t> modality = in->ReadU32();
    if (!modality.ok()) return modality.status();
    uint64_t dimension = 0;
    absl::StatusOr<std::vector<GalleryRow>> rows =
        ReadExactGallery(in, &dimension);
    if (!rows.ok()) return rows.status();
    matcher::ImpostorEstimator impostor(static_cast<int>(dimension));
    if (absl::Status s = impostor.Load(in); !s.ok()) return s;
    out[*modality] = *std::move(rows);
  }
  return out;
}

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_GALLERY_CONTENTS_H_
