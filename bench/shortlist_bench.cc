// hawiya-shortlist-bench: the latency cost of FusionOptions::shortlist, the
// number of subjects each modality's search shortlists before a multi-modal
// Identify fuses them. In process, no server: a FACE (512) + FINGERPRINT
// (256) gallery of synthetic subjects (matcher/synthetic.h), then the same
// face+finger probe sets identified at each shortlist depth, and the face
// probes alone (one modality: no shortlist) for reference.
//
//   ./build/bench/hawiya-shortlist-bench --subjects=20000 --index=hnsw
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "matcher/gallery.h"
#include "matcher/matcher.h"
#include "matcher/synthetic.h"

ABSL_FLAG(int, subjects, 20000, "subjects enrolled (face + fingerprint each)");
ABSL_FLAG(int, probes, 300, "probe sets identified per shortlist depth");
ABSL_FLAG(std::string, index, "exact", "gallery index kind: exact or hnsw");
ABSL_FLAG(std::string, shortlists, "10,30,100", "shortlist depths to time");

namespace m = hawiya::matcher;

namespace {

// Mean milliseconds per Identify of `sets` (after one untimed pass).
double MsPerIdentify(const m::Matcher& matcher,
                     const std::vector<std::vector<m::Probe>>& sets) {
  const m::IdentifyOptions options;  // max_candidates 10
  double ms = 0.0;
  for (int pass = 0; pass < 2; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    for (const std::vector<m::Probe>& set : sets) {
      if (!matcher.Identify(set, options).ok()) return -1.0;
    }
    ms = std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
             .count();
  }
  return ms / static_cast<double>(sets.size());
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times multi-modal Identify at several fusion shortlist depths.\n"
      "  hawiya-shortlist-bench [--subjects=N] [--probes=N] "
      "[--index=exact|hnsw] [--shortlists=10,30,100]");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<m::IndexKind> kind =
      m::ParseIndexKind(absl::GetFlag(FLAGS_index));
  if (!kind.ok()) {
    std::fprintf(stderr, "--index: %s\n", kind.status().ToString().c_str());
    return 2;
  }
  std::vector<size_t> depths;
  for (absl::string_view d :
       absl::StrSplit(absl::GetFlag(FLAGS_shortlists), ',')) {
    size_t depth = 0;
    if (!absl::SimpleAtoi(d, &depth)) {
      std::fprintf(stderr, "--shortlists: not a number: %s\n",
                   std::string(d).c_str());
      return 2;
    }
    depths.push_back(depth);
  }
  const int subjects = absl::GetFlag(FLAGS_subjects);
  const int probes = absl::GetFlag(FLAGS_probes);
  if (subjects < 1 || probes < 1) {
    std::fprintf(stderr, "--subjects and --probes must be positive\n");
    return 2;
  }
  m::IndexOptions index;
  index.kind = *kind;
  m::SyntheticOptions face_options;
  face_options.dimension = 512;
  face_options.seed = 1;
  m::SyntheticOptions finger_options;
  finger_options.dimension = 256;
  finger_options.seed = 2;
  const m::SyntheticModel face(face_options);
  const m::SyntheticModel finger(finger_options);

  std::vector<std::vector<m::Probe>> both;
  std::vector<std::vector<m::Probe>> face_only;
  for (int i = 0; i < probes; ++i) {
    const uint64_t who = static_cast<uint64_t>(i) * 7 % subjects;
    both.push_back({{m::Modality::kFace, face.Capture(who, 1)},
                    {m::Modality::kFingerprint, finger.Capture(who, 1)}});
    face_only.push_back({both.back()[0]});
  }
  for (const size_t depth : depths) {
    m::MatcherOptions options;
    options.modalities = {
        m::ModalitySpec{m::Modality::kFace, 512, 0.40f, index},
        m::ModalitySpec{m::Modality::kFingerprint, 256, 0.45f, index}};
    options.fusion.shortlist = depth;
    absl::StatusOr<std::unique_ptr<m::Matcher>> matcher =
        m::Matcher::Open(options);
    if (!matcher.ok()) {
      std::fprintf(stderr, "%s\n", matcher.status().ToString().c_str());
      return 1;
    }
    std::fprintf(stderr, "enrolling %d subjects (%s)...\n", subjects,
                 absl::GetFlag(FLAGS_index).c_str());
    for (int i = 0; i < subjects; ++i) {
      const uint64_t who = static_cast<uint64_t>(i);
      const std::vector<m::TemplateToAdd> templates = {
          {m::Modality::kFace, i, face.Capture(who, 0)},
          {m::Modality::kFingerprint, i, finger.Capture(who, 0)}};
      if (!(*matcher)->Add(absl::StrCat("s", i), templates).ok()) return 1;
    }
    std::printf(
        "%s subjects=%d shortlist=%zu: face+finger %.3f ms/Identify, face "
        "alone %.3f ms/Identify\n",
        absl::GetFlag(FLAGS_index).c_str(), subjects, depth,
        MsPerIdentify(**matcher, both), MsPerIdentify(**matcher, face_only));
  }
  return 0;
}
