// Internal to matcher/: the factories behind Gallery::Open and Gallery::Load,
// one pair per index kind.
//
// Snapshot convention: every Gallery::Save first writes its kind's name
// (SnapshotWriter::WriteString(IndexKindName(kind))); Gallery::Load reads it,
// checks it against options.index.kind and calls the matching Load* below,
// which reads the rest.
#ifndef HAWIYA_MATCHER_GALLERY_KINDS_H_
#define HAWIYA_MATCHER_GALLERY_KINDS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "matcher/gallery.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {

// Every factory REQUIRES options checked by Gallery::Open / Gallery::Load
// (gallery.cc), which dispatch on options.index.kind.

// kExact (exact_gallery.cc).
absl::StatusOr<std::unique_ptr<Gallery>> OpenExactGallery(
    const GalleryOptions& options);
absl::StatusOr<std::unique_ptr<Gallery>> LoadExactGallery(
    const GalleryOptions& options, SnapshotReader* in);

// kExactSq8 (sq8_gallery.cc).
absl::StatusOr<std::unique_ptr<Gallery>> OpenExactSq8Gallery(
    const GalleryOptions& options);
absl::StatusOr<std::unique_ptr<Gallery>> LoadExactSq8Gallery(
    const GalleryOptions& options, SnapshotReader* in);

// kHnsw and kAuto: one implementation (hnsw_gallery.cc).
absl::StatusOr<std::unique_ptr<Gallery>> OpenHnswGallery(
    const GalleryOptions& options);
absl::StatusOr<std::unique_ptr<Gallery>> LoadHnswGallery(
    const GalleryOptions& options, SnapshotReader* in);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_GALLERY_KINDS_H_
