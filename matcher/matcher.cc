#include "matcher/matcher.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
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
#include "matcher/earlier_sets.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/impostor_stats.h"

namespace hawiya::matcher {
namespace {

constexpr std::array<Modality, 3> kAllModalities = {
    Modality::kFace, Modality::kFingerprint, Modality::kIris};

bool IsKnown(Modality modality) {
  return std::find(kAllModalities.begin(), kAllModalities.end(), modality) !=
         kAllModalities.end();
}

// Index into per-modality arrays; only valid for IsKnown modalities.
size_t Slot(Modality modality) { return static_cast<size_t>(modality) - 1; }

// Probe vectors grouped by modality, in Modality order.
using ProbesByModality = std::map<Modality, std::vector<const Probe*>>;

ProbesByModality GroupProbes(absl::Span<const Probe> probes) {
  ProbesByModality out;
  for (const Probe& probe : probes) out[probe.modality].push_back(&probe);
  return out;
}

bool BetterMatch(const Match& a, const Match& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.subject_id < b.subject_id;
}

// How many subjects each probe's search lists for a probe set of
// `modalities` distinct modalities (FusionOptions::shortlist).
size_t SearchDepth(size_t modalities, const FusionOptions& fusion,
                   const IdentifyOptions& options) {
  return modalities > 1 ? std::max(options.max_candidates, fusion.shortlist)
                        : options.max_candidates;
}

// Identify's last step: best first, at most max_candidates.
void SortAndTruncate(size_t max_candidates, std::vector<Match>* matches) {
  std::sort(matches->begin(), matches->end(), BetterMatch);
  if (matches->size() > max_candidates) matches->resize(max_candidates);
}

class MatcherImpl final : public Matcher {
 public:
  MatcherImpl() = default;

  // Called once by Open (in == nullptr: empty galleries) or Load, before
  // the matcher is shared.
  absl::Status Init(const MatcherOptions& options, SnapshotReader* in);

  absl::Status Save(SnapshotWriter* out) const override;

  absl::Status Add(absl::string_view subject_id,
                   absl::Span<const TemplateToAdd> templates) override;
  absl::Status Replace(absl::string_view subject_id,
                       absl::Span<const TemplateToAdd> templates) override;
  void RemoveSubject(absl::string_view subject_id) override;
  absl::Status CheckProbes(absl::Span<const Probe> probes) const override;
  absl::StatusOr<Match> Verify(absl::string_view subject_id,
                               absl::Span<const Probe> probes) const override;
  absl::StatusOr<std::vector<Match>> Identify(
      absl::Span<const Probe> probes,
      const IdentifyOptions& options) const override;
  absl::StatusOr<std::vector<std::vector<Match>>> IdentifyBatch(
      absl::Span<const std::vector<Probe>> probe_sets,
      const IdentifyOptions& options) const override;
  absl::StatusOr<std::vector<std::vector<Match>>> IdentifyAgainstEarlier(
      absl::Span<const std::string> subject_ids,
      absl::Span<const std::vector<Probe>> probe_sets,
      const IdentifyOptions& options) const override;
  float FusedThreshold(absl::Span<const Probe> probes) const override;
  ImpostorEstimate ImpostorStatsOf(Modality modality) const override;
  const ModalitySpec* spec(Modality modality) const override;
  const FusionOptions& fusion() const override { return fusion_; }
  std::vector<GalleryInfo> Info() const override;

 private:
  // Reads the galleries Save wrote. REQUIRES: specs_ are set.
  absl::Status LoadGalleries(SnapshotReader* in)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Add, after removing the subject everywhere first if `replace`.
  absl::Status Put(absl::string_view subject_id,
                   absl::Span<const TemplateToAdd> templates, bool replace);
  // Galleries lock themselves; requiring mu_ here is what makes every use of
  // a gallery go through the cross-gallery lock below.
  Gallery* gallery(Modality modality) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return IsKnown(modality) ? galleries_[Slot(modality)].get() : nullptr;
  }
  // The fused match of one subject, or nullopt if it has no template of any
  // probed modality. REQUIRES: the probes passed CheckProbes.
  absl::StatusOr<std::optional<Match>> Score(
      absl::string_view subject_id, const ProbesByModality& probes) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // What the batched Identify calls check before searching: every set's
  // probes (INVALID_ARGUMENT naming "probe_sets[i].probes[j]") and
  // min_score, as Identify checks its own.
  absl::Status CheckProbeSets(absl::Span<const std::vector<Probe>> probe_sets,
                              const IdentifyOptions& options) const;
  // Identify's second half: every candidate scored exactly over the probed
  // modalities (Score), those below min_score dropped, best first, at most
  // max_candidates. REQUIRES: the probes passed CheckProbes.
  absl::StatusOr<std::vector<Match>> RankCandidates(
      const absl::flat_hash_set<std::string>& candidates,
      const ProbesByModality& probes, const IdentifyOptions& options) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Fuses per-modality scores (all of one subject) into match->score and
  // match->threshold by fusion_.rule; see matcher.h.
  void Fuse(Match* match) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Drops the subject from every impostor reservoir (its past scores stay).
  void RemoveFromReservoirs(absl::string_view subject_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ImpostorStatsOf, for a configured modality.
  ImpostorEstimate ImpostorStatsLocked(Modality modality) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Written only by Init, so read without a lock.
  std::array<std::optional<ModalitySpec>, kAllModalities.size()> specs_;
  FusionOptions fusion_;
  const Matcher* impostor_stats_from_ = nullptr;

  // Each gallery locks itself, but a subject spans galleries: holding mu_
  // exclusively across a multi-gallery Add or RemoveSubject keeps readers
  // from seeing half a subject, or one that an Add is about to roll back.
  mutable absl::Mutex mu_;
  // The pointers are fixed by Init; mu_ guards the galleries' joint state.
  std::array<std::unique_ptr<Gallery>, kAllModalities.size()> galleries_
      ABSL_GUARDED_BY(mu_);
  // Each configured gallery's own impostor estimate, fed by Put: one lock
  // with the galleries, so a search sees statistics consistent with the
  // galleries it scores against, and the same ones for every candidate.
  std::array<std::optional<ImpostorEstimator>, kAllModalities.size()> impostors_
      ABSL_GUARDED_BY(mu_);
};

// Per modality, so that two modalities' reservoirs draw different pairs.
ImpostorEstimator::Options EstimatorOptions(Modality modality) {
  ImpostorEstimator::Options options;
  options.seed ^= static_cast<uint64_t>(modality);
  return options;
}

absl::Status MatcherImpl::Init(const MatcherOptions& options,
                               SnapshotReader* in) {
  if (options.modalities.empty()) {
    return absl::InvalidArgumentError(
        "modalities: at least one modality is required");
  }
  if (options.fusion.rule != FusionRule::kMean &&
      options.fusion.rule != FusionRule::kZScore) {
    return absl::InvalidArgumentError("fusion.rule: unknown fusion rule");
  }
  if (std::isinf(options.fusion.fused_threshold)) {
    return absl::InvalidArgumentError(
        "fusion.fused_threshold: must be finite (or NaN: derived)");
  }
  if (options.fusion.impostor_min_scores == 0) {
    return absl::InvalidArgumentError(
        "fusion.impostor_min_scores: must be positive");
  }
  fusion_ = options.fusion;
  impostor_stats_from_ = options.impostor_stats_from;
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < options.modalities.size(); ++i) {
    const ModalitySpec& spec = options.modalities[i];
    const std::string field = absl::StrCat("modalities[", i, "]");
    if (!IsKnown(spec.modality)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".modality: unknown modality ",
                       static_cast<int>(spec.modality)));
    }
    if (specs_[Slot(spec.modality)].has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".modality: ", ModalityName(spec.modality),
                       " is configured twice"));
    }
    if (spec.dimension <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".dimension: must be positive, got ", spec.dimension));
    }
    if (!std::isfinite(spec.threshold)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".threshold: must be finite, got ", spec.threshold));
    }
    if (!std::isfinite(spec.impostor_mean) ||
        !std::isfinite(spec.impostor_std) || spec.impostor_std < 0.0f) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".impostor_mean/impostor_std: must be finite, std >= 0"));
    }
    impostors_[Slot(spec.modality)].emplace(spec.dimension,
                                            EstimatorOptions(spec.modality));
    if (in != nullptr) {
      // The galleries come from the snapshot, once every spec is checked.
      specs_[Slot(spec.modality)] = spec;
      continue;
    }
    absl::StatusOr<std::unique_ptr<Gallery>> gallery =
        Gallery::Open(GalleryOptions{spec.dimension, spec.index});
    if (!gallery.ok()) return gallery.status();
    specs_[Slot(spec.modality)] = spec;
    galleries_[Slot(spec.modality)] = *std::move(gallery);
  }
  if (in != nullptr) return LoadGalleries(in);
  return absl::OkStatus();
}

// Snapshot layout: "matcher", u32 number of galleries, then per gallery in
// Modality order its u32 modality, Gallery::Save and ImpostorEstimator::Save
// (since snapshot format version 3).
constexpr absl::string_view kSnapshotTag = "matcher";

absl::Status MatcherImpl::Save(SnapshotWriter* out) const {
  absl::ReaderMutexLock lock(&mu_);
  uint32_t count = 0;
  for (Modality modality : kAllModalities) count += spec(modality) != nullptr;
  absl::Status s = out->WriteString(kSnapshotTag);
  if (s.ok()) s = out->WriteU32(count);
  for (Modality modality : kAllModalities) {
    if (!s.ok()) return s;
    if (spec(modality) == nullptr) continue;
    s = out->WriteU32(static_cast<uint32_t>(modality));
    if (s.ok()) s = gallery(modality)->Save(out);
    if (s.ok()) s = impostors_[Slot(modality)]->Save(out);
  }
  return s;
}

absl::Status MatcherImpl::LoadGalleries(SnapshotReader* in) {
  absl::StatusOr<std::string> tag = in->ReadString(kSnapshotTag.size());
  if (!tag.ok()) return tag.status();
  if (*tag != kSnapshotTag) {
    return absl::DataLossError("snapshot: no matcher where one was expected");
  }
  std::string configured;
  uint32_t configured_count = 0;
  for (Modality modality : kAllModalities) {
    if (spec(modality) == nullptr) continue;
    absl::StrAppend(&configured, configured.empty() ? "" : ", ",
                    ModalityName(modality));
    ++configured_count;
  }
  const absl::Status other_modalities = absl::FailedPreconditionError(
      absl::StrCat("modalities: the snapshot holds other galleries than the ",
                   configured, " configured"));
  absl::StatusOr<uint32_t> count = in->ReadU32();
  if (!count.ok()) return count.status();
  if (*count != configured_count) return other_modalities;
  for (Modality modality : kAllModalities) {
    const ModalitySpec* modality_spec = spec(modality);
    if (modality_spec == nullptr) continue;
    absl::StatusOr<uint32_t> saved = in->ReadU32();
    if (!saved.ok()) return saved.status();
    if (*saved != static_cast<uint32_t>(modality)) return other_modalities;
    absl::StatusOr<std::unique_ptr<Gallery>> gallery = Gallery::Load(
        GalleryOptions{modality_spec->dimension, modality_spec->index}, in);
    if (!gallery.ok()) {
      return absl::Status(gallery.status().code(),
                          absl::StrCat(ModalityName(modality), " gallery: ",
                                       gallery.status().message()));
    }
    galleries_[Slot(modality)] = *std::move(gallery);
    if (absl::Status s = impostors_[Slot(modality)]->Load(in); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(ModalityName(modality),
                                                 " gallery: ", s.message()));
    }
  }
  return absl::OkStatus();
}

const ModalitySpec* MatcherImpl::spec(Modality modality) const {
  if (!IsKnown(modality)) return nullptr;
  const std::optional<ModalitySpec>& spec = specs_[Slot(modality)];
  return spec.has_value() ? &*spec : nullptr;
}

absl::Status MatcherImpl::Add(absl::string_view subject_id,
                              absl::Span<const TemplateToAdd> templates) {
  return Put(subject_id, templates, /*replace=*/false);
}

absl::Status MatcherImpl::Replace(absl::string_view subject_id,
                                  absl::Span<const TemplateToAdd> templates) {
  return Put(subject_id, templates, /*replace=*/true);
}

absl::Status MatcherImpl::Put(absl::string_view subject_id,
                              absl::Span<const TemplateToAdd> templates,
                              bool replace) {
  if (subject_id.empty()) {
    return absl::InvalidArgumentError("subject_id: must not be empty");
  }
  // Everything a caller can get wrong is checked here, against the caller's
  // own indices, so that a gallery refusing its batch is the exception.
  std::array<std::vector<GalleryEntry>, kAllModalities.size()> entries;
  std::array<absl::flat_hash_set<int64_t>, kAllModalities.size()> labels;
  for (size_t i = 0; i < templates.size(); ++i) {
    const TemplateToAdd& t = templates[i];
    const ModalitySpec* modality_spec = spec(t.modality);
    if (modality_spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "templates[", i, "].modality: ", ModalityName(t.modality),
          " is not configured"));
    }
    if (absl::Status s = CheckVector(t.vector, modality_spec->dimension);
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("templates[", i, "].vector: ", s.message()));
    }
    if (!labels[Slot(t.modality)].insert(t.label).second) {
      return absl::AlreadyExistsError(absl::StrCat(
          "templates[", i, "].label: label ", t.label,
          " appears twice among the ", ModalityName(t.modality), " templates"));
    }
    entries[Slot(t.modality)].push_back(
        GalleryEntry{t.label, std::string(subject_id), t.vector});
  }
  // For the impostor estimates, normalised outside the lock. CheckVector
  // passed, so normalising cannot fail.
  std::vector<std::vector<float>> units;
  units.reserve(templates.size());
  for (const TemplateToAdd& t : templates) {
    absl::StatusOr<std::vector<float>> unit =
        NormalizedProbe(t.vector, spec(t.modality)->dimension);
    if (!unit.ok()) return unit.status();
    units.push_back(*std::move(unit));
  }

  absl::WriterMutexLock lock(&mu_);
  if (replace) {
    for (const std::unique_ptr<Gallery>& g : galleries_) {
      if (g != nullptr) g->RemoveSubject(subject_id);
    }
  }
  // Rolling back a gallery where the subject is new is exact (RemoveSubject).
  // Where it already had templates it is not: Gallery can only drop the whole
  // subject. Adding to those galleries last means a failure there has only
  // new-subject galleries (and at most the other pre-existing ones) to undo.
  std::vector<std::pair<size_t, bool>> order;  // slot, subject is new there
  for (size_t slot = 0; slot < entries.size(); ++slot) {
    if (entries[slot].empty()) continue;
    order.emplace_back(slot, !galleries_[slot]->Contains(subject_id));
  }
  std::stable_partition(order.begin(), order.end(),
                        [](const auto& o) { return o.second; });
  for (size_t n = 0; n < order.size(); ++n) {
    const auto [slot, is_new] = order[n];
    absl::Status status = galleries_[slot]->Add(entries[slot]);
    if (status.ok()) continue;
    std::string kept;
    for (size_t done = 0; done < n; ++done) {
      const auto [done_slot, done_new] = order[done];
      if (done_new) {
        galleries_[done_slot]->RemoveSubject(subject_id);
      } else {
        absl::StrAppend(&kept, kept.empty() ? "" : ", ",
                        ModalityName(kAllModalities[done_slot]));
      }
    }
    std::string message = absl::StrCat(ModalityName(kAllModalities[slot]),
                                       " gallery: ", status.message());
    if (!kept.empty()) {
      absl::StrAppend(&message, "; could not roll back the ", kept,
                      " templates already added (rebuild from the store)");
    }
    return absl::Status(status.code(), message);
  }
  // Only once every gallery took its templates: a refused request feeds no
  // scores. Templates in request order (deterministic statistics).
  if (replace) RemoveFromReservoirs(subject_id);
  for (size_t i = 0; i < templates.size(); ++i) {
    impostors_[Slot(templates[i].modality)]->Observe(subject_id, units[i]);
  }
  return absl::OkStatus();
}

void MatcherImpl::RemoveSubject(absl::string_view subject_id) {
  absl::WriterMutexLock lock(&mu_);
  for (const std::unique_ptr<Gallery>& g : galleries_) {
    if (g != nullptr) g->RemoveSubject(subject_id);
  }
  RemoveFromReservoirs(subject_id);
}

void MatcherImpl::RemoveFromReservoirs(absl::string_view subject_id) {
  for (std::optional<ImpostorEstimator>& impostor : impostors_) {
    if (impostor.has_value()) impostor->RemoveSubject(subject_id);
  }
}

absl::Status MatcherImpl::CheckProbes(absl::Span<const Probe> probes) const {
  if (probes.empty()) {
    return absl::InvalidArgumentError("probes: at least one probe is required");
  }
  for (size_t i = 0; i < probes.size(); ++i) {
    const ModalitySpec* modality_spec = spec(probes[i].modality);
    if (modality_spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "probes[", i, "].modality: ", ModalityName(probes[i].modality),
          " is not configured"));
    }
    if (absl::Status s =
            CheckVector(probes[i].vector, modality_spec->dimension);
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("probes[", i, "].vector: ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Match>> MatcherImpl::Score(
    absl::string_view subject_id, const ProbesByModality& probes) const {
  Match match;
  match.subject_id = std::string(subject_id);
  for (const auto& [modality, modality_probes] : probes) {
    Gallery* g = gallery(modality);
    std::optional<float> best;
    for (const Probe* probe : modality_probes) {
      absl::StatusOr<float> score = g->ScoreSubject(subject_id, probe->vector);
      // No template of this modality: every probe of it would say the same,
      // and the modality is simply not part of this subject's fusion.
      if (absl::IsNotFound(score.status())) break;
      if (!score.ok()) return score.status();
      best = std::max(best.value_or(*score), *score);
    }
    if (!best.has_value()) continue;
    match.modality_scores.push_back(ModalityScore{
        modality, *best, ZScore(ImpostorStatsLocked(modality), *best)});
  }
  if (match.modality_scores.empty()) return std::nullopt;
  Fuse(&match);
  return match;
}

void MatcherImpl::Fuse(Match* match) const {
  // Sums in double so that the result does not depend on summation order.
  double score_sum = 0.0;
  double threshold_sum = 0.0;
  for (const ModalityScore& m : match->modality_scores) {
    const ModalitySpec& modality_spec = *spec(m.modality);
    if (fusion_.rule == FusionRule::kZScore) {
      score_sum += m.normalized;
      threshold_sum +=
          ZScore(ImpostorStatsLocked(m.modality), modality_spec.threshold);
    } else {
      score_sum += m.score;
      threshold_sum += modality_spec.threshold;
    }
  }
  const double n = static_cast<double>(match->modality_scores.size());
  if (fusion_.rule == FusionRule::kZScore) {
    match->score = static_cast<float>(score_sum / std::sqrt(n));
    match->threshold = std::isnan(fusion_.fused_threshold)
                           ? static_cast<float>(threshold_sum / std::sqrt(n))
                           : fusion_.fused_threshold;
  } else {
    match->score = static_cast<float>(score_sum / n);
    match->threshold = static_cast<float>(threshold_sum / n);
  }
}

absl::StatusOr<Match> MatcherImpl::Verify(
    absl::string_view subject_id, absl::Span<const Probe> probes) const {
  if (absl::Status s = CheckProbes(probes); !s.ok()) return s;
  const ProbesByModality grouped = GroupProbes(probes);
  absl::ReaderMutexLock lock(&mu_);
  absl::StatusOr<std::optional<Match>> match = Score(subject_id, grouped);
  if (!match.ok()) return match.status();
  if (!match->has_value()) {
    return absl::FailedPreconditionError(
        "subject_id: subject has no template of the probed modalities");
  }
  return **std::move(match);
}

absl::Status MatcherImpl::CheckProbeSets(
    absl::Span<const std::vector<Probe>> probe_sets,
    const IdentifyOptions& options) const {
  for (size_t i = 0; i < probe_sets.size(); ++i) {
    if (absl::Status s = CheckProbes(probe_sets[i]); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("probe_sets[", i, "].", s.message()));
    }
  }
  if (std::isnan(options.min_score)) {
    return absl::InvalidArgumentError("min_score: must not be NaN");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Match>> MatcherImpl::RankCandidates(
    const absl::flat_hash_set<std::string>& candidates,
    const ProbesByModality& probes, const IdentifyOptions& options) const {
  std::vector<Match> matches;
  for (const std::string& subject_id : candidates) {
    absl::StatusOr<std::optional<Match>> match = Score(subject_id, probes);
    if (!match.ok()) return match.status();
    if (!match->has_value() || (*match)->score < options.min_score) continue;
    matches.push_back(**std::move(match));
  }
  SortAndTruncate(options.max_candidates, &matches);
  return matches;
}

absl::StatusOr<std::vector<Match>> MatcherImpl::Identify(
    absl::Span<const Probe> probes, const IdentifyOptions& options) const {
  if (absl::Status s = CheckProbes(probes); !s.ok()) return s;
  if (std::isnan(options.min_score)) {
    return absl::InvalidArgumentError("min_score: must not be NaN");
  }
  if (options.max_candidates == 0) return std::vector<Match>();
  const ProbesByModality grouped = GroupProbes(probes);

  absl::ReaderMutexLock lock(&mu_);
  // Candidates come from each probe's own top list; their final scores are
  // then computed exactly over every probed modality, so a subject found by
  // its face is also scored on the fingerprints it was probed with.
  absl::flat_hash_set<std::string> candidates;
  if (!options.restrict_to.empty()) {
    candidates.insert(options.restrict_to.begin(), options.restrict_to.end());
  } else {
    const size_t depth = SearchDepth(grouped.size(), fusion_, options);
    for (const Probe& probe : probes) {
      absl::StatusOr<std::vector<SubjectScore>> top =
          gallery(probe.modality)->Search(probe.vector, depth);
      if (!top.ok()) return top.status();
      for (SubjectScore& s : *top) candidates.insert(std::move(s.subject_id));
    }
  }
  return RankCandidates(candidates, grouped, options);
}

absl::StatusOr<std::vector<std::vector<Match>>> MatcherImpl::IdentifyBatch(
    absl::Span<const std::vector<Probe>> probe_sets,
    const IdentifyOptions& options) const {
  if (absl::Status s = CheckProbeSets(probe_sets, options); !s.ok()) {
    return s;
  }
  std::vector<std::vector<Match>> results(probe_sets.size());
  if (options.max_candidates == 0) return results;
  // The candidate lists Identify would gather set by set, gathered per
  // modality: SearchBatch's result[i] is Search(probes[i]), so each set ends
  // up with exactly the candidates its own Identify would search out.
  std::vector<absl::flat_hash_set<std::string>> candidates(probe_sets.size());
  if (!options.restrict_to.empty()) {
    for (auto& set_candidates : candidates) {
      set_candidates.insert(options.restrict_to.begin(),
                            options.restrict_to.end());
    }
  }
  absl::ReaderMutexLock lock(&mu_);
  if (options.restrict_to.empty()) {
    // One batch per modality and search depth: an approximate gallery's
    // deeper search is not a prefix of its shallower one, so each set is
    // searched at exactly the depth its own Identify uses.
    std::vector<size_t> depth(probe_sets.size());
    for (size_t i = 0; i < probe_sets.size(); ++i) {
      depth[i] =
          SearchDepth(GroupProbes(probe_sets[i]).size(), fusion_, options);
    }
    absl::flat_hash_set<size_t> depths(depth.begin(), depth.end());
    for (Modality modality : kAllModalities) {
      for (const size_t k : depths) {
        std::vector<std::vector<float>> vectors;
        std::vector<size_t> owner;  // the set of each vector
        for (size_t i = 0; i < probe_sets.size(); ++i) {
          if (depth[i] != k) continue;
          for (const Probe& probe : probe_sets[i]) {
            if (probe.modality != modality) continue;
            vectors.push_back(probe.vector);
            owner.push_back(i);
          }
        }
        if (vectors.empty()) continue;
        absl::StatusOr<std::vector<std::vector<SubjectScore>>> tops =
            gallery(modality)->SearchBatch(vectors, k);
        if (!tops.ok()) return tops.status();
        for (size_t v = 0; v < tops->size(); ++v) {
          for (SubjectScore& s : (*tops)[v]) {
            candidates[owner[v]].insert(std::move(s.subject_id));
          }
        }
      }
    }
  }
  for (size_t i = 0; i < probe_sets.size(); ++i) {
    absl::StatusOr<std::vector<Match>> ranked =
        RankCandidates(candidates[i], GroupProbes(probe_sets[i]), options);
    if (!ranked.ok()) return ranked.status();
    results[i] = *std::move(ranked);
  }
  return results;
}

absl::StatusOr<std::vector<std::vector<Match>>>
MatcherImpl::IdentifyAgainstEarlier(
    absl::Span<const std::string> subject_ids,
    absl::Span<const std::vector<Probe>> probe_sets,
    const IdentifyOptions& options) const {
  const size_t n = probe_sets.size();
  if (subject_ids.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "subject_ids: ", subject_ids.size(), " ids for ", n, " probe sets"));
  }
  absl::flat_hash_set<absl::string_view> distinct;
  for (size_t i = 0; i < n; ++i) {
    if (subject_ids[i].empty() || !distinct.insert(subject_ids[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject_ids[", i, "]: empty or repeated subject id"));
    }
  }
  if (absl::Status s = CheckProbeSets(probe_sets, options); !s.ok()) {
    return s;
  }
  std::vector<std::vector<Match>> results(n);
  if (options.max_candidates == 0) return results;
  const absl::flat_hash_set<absl::string_view> restrict_to(
      options.restrict_to.begin(), options.restrict_to.end());

  // Built before the lock: they read only the probes.
  std::array<std::optional<EarlierSetsScorer>, kAllModalities.size()> scorers;
  for (Modality modality : kAllModalities) {
    if (spec(modality) == nullptr) continue;
    scorers[Slot(modality)].emplace(probe_sets, modality,
                                    spec(modality)->dimension);
  }

  // Not for the galleries (untouched): for the impostor statistics the z
  // scores below share with this matcher's own searches.
  absl::ReaderMutexLock lock(&mu_);
  // best[slot][i]: set i's best score in that modality against set j
  // (EarlierSetsScorer::Score).
  std::array<std::vector<float>, kAllModalities.size()> best;
  for (size_t j = 0; j < n; ++j) {
    std::vector<bool> candidate(j, false);
    const size_t depth =
        SearchDepth(GroupProbes(probe_sets[j]).size(), fusion_, options);
    for (Modality modality : kAllModalities) {
      if (spec(modality) == nullptr) continue;
      const size_t slot = Slot(modality);
      scorers[slot]->Score(j, depth, subject_ids, &best[slot], &candidate);
    }
    std::vector<Match>& matches = results[j];
    for (size_t i = 0; i < j; ++i) {
      const bool wanted = restrict_to.empty()
                              ? candidate[i]
                              : restrict_to.contains(subject_ids[i]);
      if (!wanted) continue;
      // Score: the modalities both probed and enrolled, in Modality order.
      Match match;
      match.subject_id = subject_ids[i];
      for (Modality modality : kAllModalities) {
        if (spec(modality) == nullptr) continue;
        const std::vector<float>& b = best[Slot(modality)];
        if (i >= b.size() || std::isnan(b[i])) continue;
        match.modality_scores.push_back(ModalityScore{
            modality, b[i], ZScore(ImpostorStatsLocked(modality), b[i])});
      }
      if (match.modality_scores.empty()) continue;
      Fuse(&match);
      if (match.score < options.min_score) continue;
      matches.push_back(std::move(match));
    }
    SortAndTruncate(options.max_candidates, &matches);
  }
  return results;
}

float MatcherImpl::FusedThreshold(absl::Span<const Probe> probes) const {
  Match match;
  for (const auto& [modality, unused] : GroupProbes(probes)) {
    if (spec(modality) == nullptr) continue;
    match.modality_scores.push_back(ModalityScore{modality, 0.0f, 0.0f});
  }
  if (match.modality_scores.empty()) return 0.0f;
  absl::ReaderMutexLock lock(&mu_);
  Fuse(&match);
  return match.threshold;
}

ImpostorEstimate MatcherImpl::ImpostorStatsOf(Modality modality) const {
  if (spec(modality) == nullptr) return ImpostorEstimate();
  absl::ReaderMutexLock lock(&mu_);
  return ImpostorStatsLocked(modality);
}

ImpostorEstimate MatcherImpl::ImpostorStatsLocked(Modality modality) const {
  const ModalitySpec& modality_spec = *spec(modality);
  const ImpostorEstimator& estimator = *impostors_[Slot(modality)];
  ImpostorEstimate out;
  out.scores = estimator.count();
  if (modality_spec.impostor_std > 0.0f) {
    out.mean = modality_spec.impostor_mean;
    out.std = modality_spec.impostor_std;
    out.source = ImpostorSource::kConfigured;
  } else if (impostor_stats_from_ != nullptr) {
    // Takes the other matcher's lock; it never takes ours.
    return impostor_stats_from_->ImpostorStatsOf(modality);
  } else if (estimator.count() >= fusion_.impostor_min_scores &&
             estimator.std() > 0.0) {
    out.mean = estimator.mean();
    out.std = estimator.std();
    out.source = ImpostorSource::kGallery;
  } else {
    out.mean = 0.0;
    out.std = 1.0 / std::sqrt(static_cast<double>(modality_spec.dimension));
    out.source = ImpostorSource::kModel;
  }
  return out;
}

std::vector<GalleryInfo> MatcherImpl::Info() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<GalleryInfo> out;
  for (Modality modality : kAllModalities) {
    const ModalitySpec* modality_spec = spec(modality);
    if (modality_spec == nullptr) continue;
    const Gallery* g = gallery(modality);
    out.push_back(GalleryInfo{*modality_spec, g->size(), g->index_kind(),
                              ImpostorStatsLocked(modality)});
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Matcher>> Matcher::Open(
    const MatcherOptions& options) {
  auto matcher = std::make_unique<MatcherImpl>();
  if (absl::Status s = matcher->Init(options, nullptr); !s.ok()) return s;
  return std::unique_ptr<Matcher>(std::move(matcher));
}

absl::StatusOr<std::unique_ptr<Matcher>> Matcher::Load(
    const MatcherOptions& options, SnapshotReader* in) {
  auto matcher = std::make_unique<MatcherImpl>();
  if (absl::Status s = matcher->Init(options, in); !s.ok()) return s;
  return std::unique_ptr<Matcher>(std::move(matcher));
}

}  // namespace hawiya::matcher
