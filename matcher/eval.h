// Accuracy evaluation (ISO/IEC 19795-1 terms) of one modality through the
// real Matcher: genuine and impostor 1:1 comparisons (FMR / FNMR at a
// threshold) and mated / non-mated 1:N searches (FPIR / FNIR at a threshold
// and a candidate-list length), thresholds that meet error-rate targets, and
// the CSV and gnuplot files behind `hawiya eval`.
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
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "matcher/matcher.h"

namespace hawiya::matcher {

// A labelled template: the person it belongs to and the vector.
struct LabelledTemplate {
  std::string subject;
  std::vector<float> vector;
};

// What an evaluation runs on. Each probe whose subject is enrolled is mated
// (one genuine comparison, one mated search); every other probe is
// non-mated (one non-mated search). Impostor comparisons pair mated probes
// with other enrolled subjects.
struct EvalSet {
  int dimension = 0;
  std::vector<LabelledTemplate> enrolled;
  std::vector<LabelledTemplate> probes;
};

struct GenerateOptions {
  size_t identities = 1000;  // enrolled
  size_t mated_probes = 1000;
  size_t nonmated_probes = 1000;
  uint64_t seed = 42;
  bool hard = false;
  int dimension = 512;
  // The model's capture noise s (DESIGN.md: 0.8). Larger values bring the
  // genuine scores down towards the impostors (harder data).
  float capture_noise = 0.8f;
};

// Draws a set from the DESIGN.md model (matcher/synthetic.h): identity i is
// enrolled with capture 0 and probed with capture 1. Non-mated identities
// are interleaved with the enrolled ones (every stride-th identity number),
// so that under `hard` their look-alikes are enrolled. Mated probes are the
// first identities, spread evenly over the population. INVALID_ARGUMENT
// naming the option if a count is 0 or mated_probes > identities.
absl::StatusOr<EvalSet> GenerateSet(const GenerateOptions& options);

// Reads a labelled set. Text, one template a line:
//   E <subject> <v1> <v2> ... <vd>     an enrolled template
//   P <subject> <v1> <v2> ... <vd>     a probe
// Blank lines and lines starting with '#' are skipped; every vector has the
// same dimension; a subject may have several enrolled templates.
// INVALID_ARGUMENT naming the line ("line 7: ...") otherwise.
absl::StatusOr<EvalSet> ReadSet(std::istream& in);
// Writes `set` in the format ReadSet reads.
void WriteSet(const EvalSet& set, std::ostream& out);

struct EvalOptions {
  // The gallery the set is enrolled into; every template is `modality`.
  MatcherOptions matcher;
  Modality modality = Modality::kFace;
  // Impostor comparisons per mated probe, against distinct enrolled
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

struct EvalScores {
  std::vector<float> genuine;
  std::vector<float> impostor;
  std::vector<MatedSearch> mated;
  // Best candidate's score of each non-mated search (-inf: none).
  std::vector<float> nonmated_best;
  size_t gallery_size = 0;  // enrolled subjects
  size_t max_rank = 0;
};

// Enrolls set.enrolled in a fresh Matcher and runs the comparisons and
// searches. INVALID_ARGUMENT if the set is empty or its dimension is not the
// configured one; errors from the matcher as they come.
absl::StatusOr<EvalScores> RunEval(const EvalSet& set,
                                   const EvalOptions& options);

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

// Writes DIR/PREFIX_det.csv (threshold, FMR, FNMR), DIR/PREFIX_fpir.csv
// (threshold, FPIR, FNIR at ranks 1 and max_rank) and the gnuplot script
// DIR/PREFIX.gp, then runs `gnuplot` on it to write DIR/PREFIX_det.{png,svg}
// (FNMR vs FMR, log-log) and DIR/PREFIX_fnir_fpir.{png,svg}. `title` heads
// the plots. UNAVAILABLE if gnuplot is not installed or fails.
absl::Status WriteCurves(const EvalScores& scores, const std::string& dir,
                         const std::string& prefix, const std::string& title);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_EVAL_H_
