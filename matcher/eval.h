// Accuracy evaluation (ISO/IEC 19795-1 terms) of one or several modalities
// through the real Matcher, on the score the service decides on: the fused
// Match::score under the configured FusionRule. Genuine and impostor 1:1
// comparisons (FMR / FNMR at a threshold) and mated / non-mated 1:N searches
// (FPIR / FNIR at a threshold and a candidate-list length), thresholds that
// meet error-rate targets, and the CSV and gnuplot files behind
// `hawiya eval`.
//
// A probe is a probe SET: all the probe templates of one subject (any
// modalities), sent together as one Verify / Identify, as a client would.
//
// Definitions, with t the threshold on Match::score (the fused score, which
// for one modality is the cosine under FusionRule::kMean):
//   FMR(t)     = impostor comparisons with score >= t / impostor comparisons
//   FNMR(t)    = genuine comparisons with score < t / genuine comparisons
//   FPIR(t)    = non-mated searches whose best candidate scores >= t
//   FNIR(t, L) = mated searches whose mate is not among the first L
//                candidates with a score >= t
// A non-mated search's candidate list (length L) is non-empty at t exactly
// when its best candidate scores >= t, so FPIR does not depend on L.
#ifndef HAWIYA_MATCHER_EVAL_H_
#define HAWIYA_MATCHER_EVAL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/matcher.h"

namespace hawiya::matcher {

// A labelled template: the person it belongs to, its modality and the
// vector.
struct LabelledTemplate {
  std::string subject;
  std::vector<float> vector;
  Modality modality = Modality::kFace;
};

// What an evaluation runs on. The probe templates of one subject form one
// probe set; a probe set whose subject is enrolled is mated (one genuine
// comparison, one mated search), every other one non-mated (one non-mated
// search). Impostor comparisons pair mated probe sets with other enrolled
// subjects.
struct EvalSet {
  // One dimension per modality present, in Modality order.
  std::map<Modality, int> dimensions;
  std::vector<LabelledTemplate> enrolled;
  std::vector<LabelledTemplate> probes;
};

// The Modality named as in hawiya.v1 ("FACE", "FINGERPRINT", "IRIS"), the
// inverse of ModalityName; INVALID_ARGUMENT for any other string.
absl::StatusOr<Modality> ParseModalityName(absl::string_view name);

struct ModalityDimension {
  Modality modality = Modality::kFace;
  int dimension = 512;
};

struct GenerateOptions {
  size_t identities = 1000;  // enrolled
  size_t mated_probes = 1000;
  size_t nonmated_probes = 1000;
  uint64_t seed = 42;
  bool hard = false;
  // Each identity has an independent identity vector per modality (the
  // same seed gives the same FACE vectors as before modalities existed).
  std::vector<ModalityDimension> modalities = {{Modality::kFace, 512}};
  // The model's capture noise s (synthetic.h: 0.8), every modality. Larger
  // values bring the genuine scores down towards the impostors.
  float capture_noise = 0.8f;
  // Fraction of the probe sets (mated and non-mated) that lack one modality
  // (the k-th such set lacks modalities[k % size]), to exercise "a missing
  // modality is no evidence, never a mismatch". Needs >= 2 modalities if
  // positive.
  double missing_probe_fraction = 0.0;
};

// Draws a set from the synthetic model (matcher/synthetic.h): identity i is
// enrolled with capture 0 and probed with capture 1, in every modality.
// Non-mated identities are interleaved with the enrolled ones (every
// stride-th identity number), so that under `hard` their look-alikes are
// enrolled. Under `hard` the look-alike clusters are the same people in
// every modality (the pessimistic case for fusion). Mated probes are the
// first identities, spread evenly over the population. INVALID_ARGUMENT
// naming the option if a count is 0, mated_probes > identities, a modality
// is listed twice or missing_probe_fraction is out of range.
absl::StatusOr<EvalSet> GenerateSet(const GenerateOptions& options);

// Reads a labelled set. Text, one template a line, in either form:
//   E <subject> <v1> <v2> ... <vd>              an enrolled FACE template
//   P <subject> <v1> <v2> ... <vd>              a FACE probe
//   E <subject> <MODALITY> <v1> ... <vd>        MODALITY: FACE, FINGERPRINT
//   P <subject> <MODALITY> <v1> ... <vd>        or IRIS (hawiya.v1 names)
// Blank lines and lines starting with '#' are skipped; all vectors of one
// modality have the same dimension; a subject may have several templates.
// INVALID_ARGUMENT naming the line ("line 7: ...") otherwise.
absl::StatusOr<EvalSet> ReadSet(std::istream& in);
// Writes `set` in the format ReadSet reads: the one-modality form if every
// template is FACE (so older readers still take it), else the MODALITY form.
void WriteSet(const EvalSet& set, std::ostream& out);

struct EvalOptions {
  // The gallery the set is enrolled into: a spec for each modality of the
  // set, and the fusion rule whose scores are measured.
  MatcherOptions matcher;
  // Impostor comparisons per mated probe set, against distinct enrolled
  // subjects other than its own drawn with `seed`.
  size_t impostors_per_probe = 100;
  uint64_t seed = 1;
  // Longest candidate list of the searches (FNIR is reported at ranks up to
  // it).
  size_t max_rank = 10;
  // Called now and then with (phase, done, total); may be empty.
  std::function<void(absl::string_view, size_t, size_t)> progress;
};

struct MatedSearch {
  // 1-based rank of the mate in the candidate list; 0 if not listed.
  size_t rank = 0;
  float score = 0.0f;  // the mate's score, if listed
};

// One modality's cosines in the fused comparisons above (from
// Match::modality_scores): only the comparisons that modality took part in.
struct ModalityComparisons {
  Modality modality = Modality::kFace;
  std::vector<float> genuine;
  std::vector<float> impostor;
  // The impostor statistics the matcher z-normalised this modality with
  // (configured, estimated by the gallery from the enrolled set, or the
  // model's), as they were for every comparison and search of the run.
  ImpostorEstimate normalized_with;
};

struct EvalScores {
  // Fused Match::score of each comparison.
  std::vector<float> genuine;
  std::vector<float> impostor;
  std::vector<MatedSearch> mated;
  // Best candidate's score of each non-mated search (-inf: none).
  std::vector<float> nonmated_best;
  size_t gallery_size = 0;  // enrolled subjects
  size_t max_rank = 0;
  // Per modality present in the set, in Modality order.
  std::vector<ModalityComparisons> modalities;
};

// Enrolls set.enrolled in a fresh Matcher and runs the comparisons and
// searches. A comparison with a subject enrolled in none of the probed
// modalities (FAILED_PRECONDITION from Verify) is no comparison and is
// skipped. INVALID_ARGUMENT if the set is empty, a modality of the set is
// not configured or its dimension is not the configured one; errors from
// the matcher as they come.
absl::StatusOr<EvalScores> RunEval(const EvalSet& set,
                                   const EvalOptions& options);

// `scores` restricted to one modality's cosines: genuine and impostor only
// (no searches), so Fmr, Fnmr, ThresholdForFmr and ImpostorStatistics apply.
// Empty if the modality did not take part.
EvalScores OneModality(const EvalScores& scores, Modality modality);

double Fmr(const EvalScores& scores, float threshold);
double Fnmr(const EvalScores& scores, float threshold);
double Fpir(const EvalScores& scores, float threshold);
double Fnir(const EvalScores& scores, float threshold, size_t rank);

// The lowest threshold among the observed scores (and just above the
// highest) whose empirical FMR (FPIR) is at most `target`. With n impostor
// comparisons, targets below 1/n cannot be shown and give a threshold above
// every impostor score.
float ThresholdForFmr(const EvalScores& scores, double target);
float ThresholdForFpir(const EvalScores& scores, double target);

// Mean and standard deviation of the impostor scores (the kZScore
// calibration of ModalitySpec).
struct ImpostorStats {
  double mean = 0.0;
  double std = 0.0;
};
ImpostorStats ImpostorStatistics(const EvalScores& scores);

// The synthetic model's impostor FMR at threshold t (easy variant, any
// capture noise): captures of two identities are independent isotropic
// directions, whose cosine has density proportional to
// (1 - x^2)^((d - 3) / 2) on [-1, 1] (mean 0, variance 1/d; close to
// N(0, 1/d) but with lighter tails: at d = 512 the normal tail overstates
// P(cos >= 0.2) by 21%). Numerical integral, relative error < 1e-6.
double ModelImpostorTail(double t, int dimension);

// The synthetic model's impostor FMR at threshold t on the FUSED score of
// independent modalities of these dimensions (easy variant), under `rule`
// with the model's impostor statistics (mean 0, std 1/sqrt(d)):
//   kZScore: fused = sum_m sqrt(d_m) cos_m / sqrt(k)
//   kMean:   fused = sum_m cos_m / k
// each cos_m of the exact density above. Computed by numerical convolution
// of the exact densities on a grid of step sd/100 (sd of the narrowest
// term), each truncated at 12 sd (mass beyond: < 1e-32); the tail is
// interpolated within the grid cell. With one dimension it equals
// ModelImpostorTail (kMean; of t / sqrt(d) under kZScore) within a relative
// 1e-3 down to tails of 2e-12 (checked in the tests); with several, the
// grid's error is of the same order (second order in step / sd), far below
// the binomial uncertainty of any measured rate it is compared with.
double ModelFusedImpostorTail(double t, absl::Span<const int> dimensions,
                              FusionRule rule);

// Writes DIR/PREFIX_det.csv (threshold, FMR, FNMR of the fused score),
// DIR/PREFIX_fpir.csv (threshold, FPIR, FNIR at ranks 1 and max_rank) and the
// gnuplot script DIR/PREFIX.gp, then runs `gnuplot` on it to write
// DIR/PREFIX_det.{png,svg} (FNMR vs FMR, log-log) and
// DIR/PREFIX_fnir_fpir.{png,svg}. With more than one modality it also writes
// DIR/PREFIX_det_<MODALITY>.csv per modality (its cosines) and draws those
// curves on the same DET plot as the fused one. `title` heads the plots.
// UNAVAILABLE if gnuplot is not installed or fails.
absl::Status WriteCurves(const EvalScores& scores, const std::string& dir,
                         const std::string& prefix, const std::string& title);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_EVAL_H_
