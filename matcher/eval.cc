#include "matcher/eval.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "matcher/matcher.h"
#include "matcher/synthetic.h"

namespace hawiya::matcher {
namespace {

std::string SubjectName(uint64_t identity) {
  return absl::StrCat("id", identity);
}

// Fraction of `sorted` (ascending) that is >= t.
double FractionAtLeast(const std::vector<float>& sorted, float t) {
  if (sorted.empty()) return 0.0;
  const auto it = std::lower_bound(sorted.begin(), sorted.end(), t);
  return static_cast<double>(sorted.end() - it) /
         static_cast<double>(sorted.size());
}

// Fraction of `sorted` (ascending) that is < t.
double FractionBelow(const std::vector<float>& sorted, float t) {
  return sorted.empty() ? 0.0 : 1.0 - FractionAtLeast(sorted, t);
}

std::vector<float> Sorted(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The lowest t among the scores (or just above the highest) with
// FractionAtLeast(sorted, t) <= target.
float LowestThreshold(const std::vector<float>& sorted, double target) {
  if (sorted.empty()) return -1.0f;
  const double n = static_cast<double>(sorted.size());
  // At most floor(target * n) scores may be >= t.
  const size_t allowed = static_cast<size_t>(std::floor(target * n));
  if (allowed >= sorted.size()) return sorted.front();
  // t must exceed sorted[n - allowed - 1]; the smallest such float.
  float t = std::nextafter(sorted[sorted.size() - allowed - 1],
                           std::numeric_limits<float>::infinity());
  return t;
}

}  // namespace

absl::StatusOr<EvalSet> GenerateSet(const GenerateOptions& options) {
  if (options.identities == 0) {
    return absl::InvalidArgumentError("identities: must be positive");
  }
  if (options.mated_probes == 0 || options.mated_probes > options.identities) {
    return absl::InvalidArgumentError(
        "mated_probes: must be in [1, identities]");
  }
  if (options.nonmated_probes == 0) {
    return absl::InvalidArgumentError("nonmated_probes: must be positive");
  }
  if (!(options.capture_noise >= 0.0f && options.capture_noise <= 100.0f)) {
    return absl::InvalidArgumentError("capture_noise: must be in [0, 100]");
  }
  if (options.dimension <= 0) {
    return absl::InvalidArgumentError("dimension: must be positive");
  }
  SyntheticOptions model_options;
  model_options.dimension = options.dimension;
  model_options.seed = options.seed;
  model_options.hard = options.hard;
  model_options.capture_noise = options.capture_noise;
  const SyntheticModel model(model_options);

  // Every stride-th identity number is non-mated, the rest enrolled, until
  // both counts are reached.
  const size_t stride =
      std::max<size_t>(2, (options.identities + options.nonmated_probes) /
                              options.nonmated_probes);
  EvalSet set;
  set.dimension = options.dimension;
  set.enrolled.reserve(options.identities);
  std::vector<uint64_t> enrolled_ids;
  enrolled_ids.reserve(options.identities);
  for (uint64_t i = 0; set.enrolled.size() < options.identities ||
                       set.probes.size() < options.nonmated_probes;
       ++i) {
    const bool nonmated = (i % stride == stride - 1 &&
                           set.probes.size() < options.nonmated_probes) ||
                          set.enrolled.size() >= options.identities;
    if (nonmated) {
      set.probes.push_back({SubjectName(i), model.Capture(i, 1)});
    } else {
      set.enrolled.push_back({SubjectName(i), model.Capture(i, 0)});
      enrolled_ids.push_back(i);
    }
  }
  // Mated probes spread evenly over the enrolled population.
  for (size_t k = 0; k < options.mated_probes; ++k) {
    const uint64_t i =
        enrolled_ids[k * options.identities / options.mated_probes];
    set.probes.push_back({SubjectName(i), model.Capture(i, 1)});
  }
  return set;
}

absl::StatusOr<EvalSet> ReadSet(std::istream& in) {
  EvalSet set;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    const std::string where = absl::StrCat("line ", number, ": ");
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.empty() || fields[0][0] == '#') continue;
    if (fields.size() < 3 || (fields[0] != "E" && fields[0] != "P")) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "expected 'E|P SUBJECT V1 ... Vd', got '", fields[0], "'"));
    }
    LabelledTemplate t;
    t.subject = std::string(fields[1]);
    for (size_t i = 2; i < fields.size(); ++i) {
      float v = 0.0f;
      if (!absl::SimpleAtof(fields[i], &v) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "component ", i - 2,
                         " is not a finite number: '", fields[i], "'"));
      }
      t.vector.push_back(v);
    }
    const int dimension = static_cast<int>(t.vector.size());
    if (set.dimension == 0) set.dimension = dimension;
    if (dimension != set.dimension) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "dimension ", dimension, ", earlier lines ", set.dimension));
    }
    (fields[0] == "E" ? set.enrolled : set.probes).push_back(std::move(t));
  }
  if (set.enrolled.empty() || set.probes.empty()) {
    return absl::InvalidArgumentError(
        "set: needs at least one E and one P line");
  }
  return set;
}

void WriteSet(const EvalSet& set, std::ostream& out) {
  out.precision(9);
  auto write = [&out](char kind, const LabelledTemplate& t) {
    out << kind << ' ' << t.subject;
    for (float v : t.vector) out << ' ' << v;
    out << '\n';
  };
  for (const LabelledTemplate& t : set.enrolled) write('E', t);
  for (const LabelledTemplate& t : set.probes) write('P', t);
}

absl::StatusOr<EvalScores> RunEval(const EvalSet& set,
                                   const EvalOptions& options) {
  if (set.enrolled.empty() || set.probes.empty()) {
    return absl::InvalidArgumentError("set: no enrolled template or no probe");
  }
  absl::StatusOr<std::unique_ptr<Matcher>> opened =
      Matcher::Open(options.matcher);
  if (!opened.ok()) return opened.status();
  Matcher& matcher = **opened;
  const ModalitySpec* spec = matcher.spec(options.modality);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "modality: ", ModalityName(options.modality), " is not configured"));
  }
  if (spec->dimension != set.dimension) {
    return absl::InvalidArgumentError(absl::StrCat(
        "set: dimension ", set.dimension, ", the ",
        ModalityName(options.modality), " gallery takes ", spec->dimension));
  }
  auto progress = [&options](absl::string_view phase, size_t done,
                             size_t total) {
    if (options.progress) options.progress(phase, done, total);
  };

  // Enroll: one Add per subject, with all its templates.
  absl::flat_hash_map<std::string, std::vector<TemplateToAdd>> by_subject;
  std::vector<std::string> subjects;
  for (size_t i = 0; i < set.enrolled.size(); ++i) {
    const LabelledTemplate& t = set.enrolled[i];
    auto [it, inserted] = by_subject.try_emplace(t.subject);
    if (inserted) subjects.push_back(t.subject);
    it->second.push_back(
        TemplateToAdd{options.modality, static_cast<int64_t>(i), t.vector});
  }
  for (size_t i = 0; i < subjects.size(); ++i) {
    if (absl::Status s = matcher.Add(subjects[i], by_subject[subjects[i]]);
        !s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("enrolling ", subjects[i], ": ", s.message()));
    }
    if (i % 10000 == 0) progress("enroll", i, subjects.size());
  }
  progress("enroll", subjects.size(), subjects.size());

  EvalScores scores;
  scores.gallery_size = subjects.size();
  scores.max_rank = std::max<size_t>(1, options.max_rank);
  const size_t impostors =
      std::min(options.impostors_per_probe, subjects.size() - 1);
  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<size_t> pick(0, subjects.size() - 1);
  IdentifyOptions identify;
  identify.max_candidates = scores.max_rank;

  for (size_t p = 0; p < set.probes.size(); ++p) {
    const LabelledTemplate& t = set.probes[p];
    const Probe probe[] = {Probe{options.modality, t.vector}};
    const bool mated = by_subject.contains(t.subject);
    if (mated) {
      absl::StatusOr<Match> genuine = matcher.Verify(t.subject, probe);
      if (!genuine.ok()) return genuine.status();
      scores.genuine.push_back(genuine->score);
      absl::flat_hash_set<size_t> drawn;
      while (drawn.size() < impostors) {
        const size_t other = pick(rng);
        if (subjects[other] == t.subject || !drawn.insert(other).second) {
          continue;
        }
        absl::StatusOr<Match> impostor = matcher.Verify(subjects[other], probe);
        if (!impostor.ok()) return impostor.status();
        scores.impostor.push_back(impostor->score);
      }
    }
    absl::StatusOr<std::vector<Match>> candidates =
        matcher.Identify(probe, identify);
    if (!candidates.ok()) return candidates.status();
    if (mated) {
      MatedSearch search;
      for (size_t r = 0; r < candidates->size(); ++r) {
        if ((*candidates)[r].subject_id != t.subject) continue;
        search.rank = r + 1;
        search.score = (*candidates)[r].score;
        break;
      }
      scores.mated.push_back(search);
    } else {
      scores.nonmated_best.push_back(
          candidates->empty() ? -std::numeric_limits<float>::infinity()
                              : candidates->front().score);
    }
    if (p % 100 == 0) progress("probe", p, set.probes.size());
  }
  progress("probe", set.probes.size(), set.probes.size());
  return scores;
}

double Fmr(const EvalScores& scores, float threshold) {
  return FractionAtLeast(Sorted(scores.impostor), threshold);
}

double Fnmr(const EvalScores& scores, float threshold) {
  return FractionBelow(Sorted(scores.genuine), threshold);
}

double Fpir(const EvalScores& scores, float threshold) {
  return FractionAtLeast(Sorted(scores.nonmated_best), threshold);
}

double Fnir(const EvalScores& scores, float threshold, size_t rank) {
  if (scores.mated.empty()) return 0.0;
  size_t misses = 0;
  for (const MatedSearch& m : scores.mated) {
    misses += m.rank == 0 || m.rank > rank || m.score < threshold;
  }
  return static_cast<double>(misses) / static_cast<double>(scores.mated.size());
}

float ThresholdForFmr(const EvalScores& scores, double target) {
  return LowestThreshold(Sorted(scores.impostor), target);
}

float ThresholdForFpir(const EvalScores& scores, double target) {
  return LowestThreshold(Sorted(scores.nonmated_best), target);
}

ImpostorStats ImpostorStatistics(const EvalScores& scores) {
  ImpostorStats stats;
  if (scores.impostor.empty()) return stats;
  double sum = 0.0, sum2 = 0.0;
  for (float s : scores.impostor) {
    sum += s;
    sum2 += static_cast<double>(s) * s;
  }
  const double n = static_cast<double>(scores.impostor.size());
  stats.mean = sum / n;
  stats.std = std::sqrt(std::max(0.0, sum2 / n - stats.mean * stats.mean));
  return stats;
}

double ModelImpostorTail(double t, int dimension) {
  if (t <= -1.0) return 1.0;
  if (t >= 1.0) return 0.0;
  if (t < 0.0) return 1.0 - ModelImpostorTail(-t, dimension);
  const double a = (dimension - 3) / 2.0;
  // 1 / B(1/2, (d-1)/2): the density's normalising constant, in logs.
  const double log_norm = std::lgamma(dimension / 2.0) - std::lgamma(0.5) -
                          std::lgamma((dimension - 1) / 2.0);
  // Simpson's rule over [t, 1]; the integrand is smooth and decreasing.
  constexpr int kIntervals = 20000;  // even
  const double h = (1.0 - t) / kIntervals;
  double sum = 0.0;
  for (int i = 0; i <= kIntervals; ++i) {
    const double x = t + i * h;
    const double f =
        x >= 1.0 ? 0.0 : std::exp(a * std::log1p(-x * x) + log_norm);
    sum += f * (i == 0 || i == kIntervals ? 1 : (i % 2 == 1 ? 4 : 2));
  }
  return sum * h / 3.0;
}

absl::Status WriteCurves(const EvalScores& scores, const std::string& dir,
                         const std::string& prefix, const std::string& title) {
  const std::string base = absl::StrCat(dir, "/", prefix);
  const std::vector<float> impostor = Sorted(scores.impostor);
  const std::vector<float> genuine = Sorted(scores.genuine);
  const std::vector<float> nonmated = Sorted(scores.nonmated_best);
  // Thresholds: every observed score would be exact but huge; a fine grid
  // over the range of all scores is enough for a curve.
  float lo = std::numeric_limits<float>::infinity();
  float hi = -lo;
  for (const std::vector<float>* v : {&impostor, &genuine, &nonmated}) {
    for (float s : *v) {
      if (!std::isfinite(s)) continue;
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
  }
  if (!std::isfinite(lo)) {
    return absl::InvalidArgumentError("scores: nothing to plot");
  }
  constexpr int kSteps = 1000;
  {
    std::ofstream det(base + "_det.csv");
    std::ofstream ident(base + "_fpir.csv");
    det << "threshold,fmr,fnmr\n";
    ident << "threshold,fpir,fnir_rank1,fnir_rank" << scores.max_rank << "\n";
    for (int i = 0; i <= kSteps; ++i) {
      const float t = lo + (hi - lo) * static_cast<float>(i) / kSteps;
      det << t << ',' << FractionAtLeast(impostor, t) << ','
          << FractionBelow(genuine, t) << '\n';
      ident << t << ',' << FractionAtLeast(nonmated, t) << ','
            << Fnir(scores, t, 1) << ',' << Fnir(scores, t, scores.max_rank)
            << '\n';
    }
    if (!det || !ident) {
      return absl::UnavailableError(
          absl::StrCat("cannot write ", base, "_*.csv"));
    }
  }
  // Log axes cannot show a rate of 0: it is drawn at 1/(2n), half the
  // smallest rate n trials can measure (the plots' footnote says so).
  auto floor_of = [](size_t n) { return 0.5 / std::max<size_t>(1, n); };
  const double fmr_floor = floor_of(impostor.size());
  const double fnmr_floor = floor_of(genuine.size());
  const double fpir_floor = floor_of(nonmated.size());
  const double fnir_floor = floor_of(scores.mated.size());
  std::ofstream gp(base + ".gp");
  gp << "set datafile separator ','\n"
     << "z(r, f) = r > 0 ? r : f\n"
     << "set format xy '%.0e'\n"
     << "set label 1 'a rate of 0 is drawn at 1/(2n)' at graph 0.02, graph "
        "0.04\n"
     << "set logscale xy\n"
     << "set grid\n"
     << "set key top right\n";
  for (const char* terminal : {"png", "svg"}) {
    const std::string ext = terminal;
    gp << "set terminal " << terminal << " size 900,650\n"
       << "set title '" << title << " - DET (1:1, " << genuine.size()
       << " genuine, " << impostor.size() << " impostor)'\n"
       << "set xlabel 'FMR'\nset ylabel 'FNMR'\n"
       << "set output '" << base << "_det." << ext << "'\n"
       << "plot '" << base << "_det.csv' every ::1 using (z($2," << fmr_floor
       << ")):(z($3," << fnmr_floor << ")) with lines lw 2 "
       << "title 'FNMR vs FMR'\n"
       << "set title '" << title << " - 1:N (gallery " << scores.gallery_size
       << ", " << scores.mated.size() << " mated, " << nonmated.size()
       << " non-mated)'\n"
       << "set xlabel 'FPIR'\nset ylabel 'FNIR'\n"
       << "set output '" << base << "_fnir_fpir." << ext << "'\n"
       << "plot '" << base << "_fpir.csv' every ::1 using (z($2," << fpir_floor
       << ")):(z($3," << fnir_floor << ")) with lines lw 2 title 'rank 1', '"
       << base << "_fpir.csv' every ::1 using (z($2," << fpir_floor
       << ")):(z($4," << fnir_floor << ")) with lines lw 2 dt 2 title 'rank "
       << scores.max_rank << "'\n"
       << "unset output\n";
  }
  gp.close();
  if (!gp) return absl::UnavailableError(absl::StrCat("cannot write ", base));
  const std::string command =
      absl::StrCat("gnuplot '", base, ".gp' 2>'", base, ".gnuplot.log'");
  const int rc = std::system(command.c_str());
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(
        "gnuplot failed (exit ", rc, "; is gnuplot-nox installed?), see ", base,
        ".gnuplot.log"));
  }
  std::remove((base + ".gnuplot.log").c_str());
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
