// Index option checks, and the dispatch to the approximate kinds' factories
// (exact_sq8, hnsw, auto).

#include <cstddef>
#include <exception>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "matcher/gallery.h"
#include "matcher/gallery_kinds.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

absl::Status CheckRange(absl::string_view field, int value, int min, int max) {
  if (value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be in [", min, ", ", max, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<Gallery>> OpenApproximateGallery(
    const GalleryOptions& options) {
  switch (options.index.kind) {
    case IndexKind::kExactSq8:
      return OpenExactSq8Gallery(options);
    case IndexKind::kHnsw:
    case IndexKind::kAuto:
      return OpenHnswGallery(options);
    case IndexKind::kExact:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("index.kind: ", IndexKindName(options.index.kind),
                   " is not an approximate kind"));
}

}  // namespace hawiya::matcher
