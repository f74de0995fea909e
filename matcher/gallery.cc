#include "matcher/gallery.h"

#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/gallery_kinds.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

// Accumulated in double: float squares of large finite components (|x| ~
// 1e20) overflow to inf, and tiny ones (subnormals) underflow to zero, either
// of which would make a perfectly usable vector look unusable.
double SquaredNorm(absl::Span<const float> vector) {
  double sum = 0.0;
  for (float x : vector) sum += static_cast<double>(x) * x;
  return sum;
}

absl::Status CheckRange(absl::string_view field, int value, int min, int max) {
  if (value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be in [", min, ", ", max, "], got ", value));
  }
  return absl::OkStatus();
}

// The checks Open and Load share.
absl::Status CheckGalleryOptions(const GalleryOptions& options) {
  if (options.dimension <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dimension: must be positive, got ", options.dimension));
  }
  return CheckIndexOptions(options.index);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gallery>> Gallery::Open(
    const GalleryOptions& options) {
  if (absl::Status s = CheckGalleryOptions(options); !s.ok()) return s;
  switch (options.index.kind) {
    case IndexKind::kExact:
      return OpenExactGallery(options);
    case IndexKind::kExactSq8:
      return OpenExactSq8Gallery(options);
    case IndexKind::kHnsw:
    case IndexKind::kAuto:
      return OpenHnswGallery(options);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "index.kind: unknown kind ", static_cast<int>(options.index.kind)));
}

absl::StatusOr<std::unique_ptr<Gallery>> Gallery::Load(
    const GalleryOptions& options, SnapshotReader* in) {
  if (absl::Status s = CheckGalleryOptions(options); !s.ok()) return s;
  // Kind names are short; a longer one is corruption, not a new kind.
  constexpr size_t kMaxKindNameBytes = 64;
  absl::StatusOr<std::string> name = in->ReadString(kMaxKindNameBytes);
  if (!name.ok()) return name.status();
  absl::StatusOr<IndexKind> kind = ParseIndexKind(*name);
  if (!kind.ok()) {
    return absl::DataLossError(
        absl::StrCat("snapshot: unknown index kind \"", *name, "\""));
  }
  if (*kind != options.index.kind) {
    return absl::FailedPreconditionError(absl::StrCat(
        "index.kind: the snapshot holds a ", *name,
        " gallery, the options ask for ", IndexKindName(options.index.kind)));
  }
  switch (*kind) {
    case IndexKind::kExact:
      return LoadExactGallery(options, in);
    case IndexKind::kExactSq8:
      return LoadExactSq8Gallery(options, in);
    case IndexKind::kHnsw:
    case IndexKind::kAuto:
      return LoadHnswGallery(options, in);
  }
  return absl::DataLossError(
      absl::StrCat("snapshot: unknown index kind \"", *name, "\""));
}

absl::StatusOr<std::vector<std::vector<SubjectScore>>> Gallery::SearchBatch(
    absl::Span<const std::vector<float>> probes, size_t k) const {
  for (size_t i = 0; i < probes.size(); ++i) {
    if (absl::Status s = CheckVector(probes[i], dimension()); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("probes[", i, "]: ", s.message()));
    }
  }
  std::vector<std::vector<SubjectScore>> results;
  results.reserve(probes.size());
  for (const std::vector<float>& probe : probes) {
    absl::StatusOr<std::vector<SubjectScore>> top = Search(probe, k);
    if (!top.ok()) return top.status();
    results.push_back(*std::move(top));
  }
  return results;
}

absl::string_view IndexKindName(IndexKind kind) {
  switch (kind) {
    case IndexKind::kExact:
      return "exact";
    case IndexKind::kExactSq8:
      return "exact_sq8";
    case IndexKind::kHnsw:
      return "hnsw";
    case IndexKind::kAuto:
      return "auto";
  }
  return "unknown";
}

absl::StatusOr<IndexKind> ParseIndexKind(absl::string_view name) {
  for (IndexKind kind : {IndexKind::kExact, IndexKind::kExactSq8,
                         IndexKind::kHnsw, IndexKind::kAuto}) {
    if (name == IndexKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown index kind \"", name,
                   "\" (expected exact, exact_sq8, hnsw or auto)"));
}

absl::Status CheckIndexOptions(const IndexOptions& options) {
  switch (options.kind) {
    case IndexKind::kExact:
    case IndexKind::kExactSq8:
    case IndexKind::kHnsw:
    case IndexKind::kAuto:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "index.kind: unknown kind ", static_cast<int>(options.kind)));
  }
  absl::Status s =
      CheckRange("index.hnsw.m", options.hnsw.m, kMinHnswM, kMaxHnswM);
  if (s.ok()) {
    s = CheckRange("index.hnsw.ef_construction", options.hnsw.ef_construction,
                   1, kMaxHnswEf);
  }
  if (s.ok()) {
    s = CheckRange("index.hnsw.ef_search", options.hnsw.ef_search, 1,
                   kMaxHnswEf);
  }
  if (s.ok()) {
    s = CheckRange("index.rerank_factor", options.rerank_factor, 1,
                   kMaxRerankFactor);
  }
  return s;
}

absl::Status CheckVector(absl::Span<const float> vector, int dimension) {
  if (dimension < 0 || vector.size() != static_cast<size_t>(dimension)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vector has ", vector.size(), " components, expected ", dimension));
  }
  for (size_t i = 0; i < vector.size(); ++i) {
    if (!std::isfinite(vector[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("component ", i, " is not finite (", vector[i], ")"));
    }
  }
  if (SquaredNorm(vector) == 0.0) {
    return absl::InvalidArgumentError("vector has zero norm");
  }
  return absl::OkStatus();
}

std::vector<float> Normalized(absl::Span<const float> vector) {
  const double norm = std::sqrt(SquaredNorm(vector));
  std::vector<float> out(vector.size());
  for (size_t i = 0; i < vector.size(); ++i) {
    out[i] = static_cast<float>(vector[i] / norm);
  }
  return out;
}

}  // namespace hawiya::matcher
