// matcher.h's vocabulary: the names of its enums, ZScore and the default
// modalities. The matcher itself is matcher.cc.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "matcher/gallery.h"
#include "matcher/matcher.h"

namespace hawiya::matcher {

absl::string_view ModalityName(Modality modality) {
  switch (modality) {
    case Modality::kFace:
      return "FACE";
    case Modality::kFingerprint:
      return "FINGERPRINT";
    case Modality::kIris:
      return "IRIS";
  }
  return static_cast<int>(modality) == 0 ? "MODALITY_UNSPECIFIED"
                                         : "UNKNOWN_MODALITY";
}

absl::string_view FusionRuleName(FusionRule rule) {
  return rule == FusionRule::kZScore ? "zscore" : "mean";
}

absl::StatusOr<FusionRule> ParseFusionRule(absl::string_view name) {
  if (name == "mean") return FusionRule::kMean;
  if (name == "zscore") return FusionRule::kZScore;
  return absl::InvalidArgumentError(
      absl::StrCat("fusion rule must be mean or zscore, got '", name, "'"));
}

absl::string_view ImpostorSourceName(ImpostorSource source) {
  switch (source) {
    case ImpostorSource::kModel:
      return "MODEL";
    case ImpostorSource::kGallery:
      return "GALLERY";
    case ImpostorSource::kConfigured:
      return "CONFIGURED";
  }
  return "UNKNOWN";
}

float ZScore(const ImpostorEstimate& stats, float cosine) {
  return static_cast<float>((static_cast<double>(cosine) - stats.mean) /
                            stats.std);
}

std::vector<ModalitySpec> DefaultModalities() {
  return {
      ModalitySpec{Modality::kFace, 512, 0.40f, IndexOptions()},
      ModalitySpec{Modality::kFingerprint, 256, 0.45f, IndexOptions()},
      ModalitySpec{Modality::kIris, 256, 0.45f, IndexOptions()},
  };
}

}  // namespace hawiya::matcher
