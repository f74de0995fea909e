#include "matcher/eval.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
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

constexpr Modality kModalities[] = {Modality::kFace, Modality::kFingerprint,
                                    Modality::kIris};

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

// Curves are drawn on a grid of thresholds: every observed score would be
// exact but huge; a fine grid over the range of the scores is enough.
constexpr int kCurveSteps = 1000;

// The lowest and highest finite score of the (sorted) lists; nullopt if none.
std::optional<std::pair<float, float>> ScoreRange(
    std::initializer_list<const std::vector<float>*> lists) {
  float lo = std::numeric_limits<float>::infinity();
  float hi = -lo;
  for (const std::vector<float>* v : lists) {
    for (float s : *v) {
      if (!std::isfinite(s)) continue;
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
  }
  if (!std::isfinite(lo)) return std::nullopt;
  return std::make_pair(lo, hi);
}

// Writes `path`: threshold, FMR, FNMR at kCurveSteps + 1 thresholds over
// [lo, hi], from sorted impostor and genuine scores.
absl::Status WriteDetCsv(const std::string& path,
                         const std::vector<float>& impostor,
                         const std::vector<float>& genuine, float lo,
                         float hi) {
  std::ofstream det(path);
  det << "threshold,fmr,fnmr\n";
  for (int i = 0; i <= kCurveSteps; ++i) {
    const float t = lo + (hi - lo) * static_cast<float>(i) / kCurveSteps;
    det << t << ',' << FractionAtLeast(impostor, t) << ','
        << FractionBelow(genuine, t) << '\n';
  }
  det.close();
  if (!det) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Modality> ParseModalityName(absl::string_view name) {
  for (Modality m : kModalities) {
    if (name == ModalityName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("modality '", name, "': must be FACE, FINGERPRINT or IRIS"));
}

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
  if (options.modalities.empty()) {
    return absl::InvalidArgumentError("modalities: at least one");
  }
  if (!(options.missing_probe_fraction >= 0.0 &&
        options.missing_probe_fraction <= 1.0) ||
      (options.missing_probe_fraction > 0.0 && options.modalities.size() < 2)) {
    return absl::InvalidArgumentError(
        "missing_probe_fraction: must be in [0, 1], and 0 with one modality");
  }
  EvalSet set;
  // One model per modality: independent identity vectors. FACE keeps the
  // seed as given (sets drawn before modalities existed are unchanged);
  // others use a seed derived from it and the modality number.
  std::vector<SyntheticModel> models;
  for (const ModalityDimension& m : options.modalities) {
    if (m.dimension <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("modalities: ", ModalityName(m.modality),
                       " dimension must be positive"));
    }
    if (!set.dimensions.emplace(m.modality, m.dimension).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "modalities: ", ModalityName(m.modality), " listed twice"));
    }
    SyntheticOptions model_options;
    model_options.dimension = m.dimension;
    model_options.seed =
        m.modality == Modality::kFace
            ? options.seed
            : options.seed +
                  0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(m.modality);
    model_options.hard = options.hard;
    model_options.capture_noise = options.capture_noise;
    models.emplace_back(model_options);
  }
  // Appends identity i's capture `capture` in every modality, except that
  // the k-th probe set the fraction picks lacks modalities[k % size].
  size_t dropped = 0;
  double missing_due = 0.0;
  auto add = [&](std::vector<LabelledTemplate>& to, uint64_t i,
                 uint64_t capture) {
    size_t skip = models.size();
    if (capture == 1) {
      missing_due += options.missing_probe_fraction;
      if (missing_due >= 1.0) {
        missing_due -= 1.0;
        skip = dropped % models.size();
        ++dropped;
      }
    }
    for (size_t m = 0; m < models.size(); ++m) {
      if (m == skip) continue;
      to.push_back({SubjectName(i), models[m].Capture(i, capture),
                    options.modalities[m].modality});
    }
  };

  // Every stride-th identity number is non-mated, the rest enrolled, until
  // both counts are reached.
  const size_t stride =
      std::max<size_t>(2, (options.identities + options.nonmated_probes) /
                              options.nonmated_probes);
  std::vector<uint64_t> enrolled_ids;
  enrolled_ids.reserve(options.identities);
  size_t nonmated = 0;
  for (uint64_t i = 0; enrolled_ids.size() < options.identities ||
                       nonmated < options.nonmated_probes;
       ++i) {
    if ((i % stride == stride - 1 && nonmated < options.nonmated_probes) ||
        enrolled_ids.size() >= options.identities) {
      add(set.probes, i, 1);
      ++nonmated;
    } else {
      add(set.enrolled, i, 0);
      enrolled_ids.push_back(i);
    }
  }
  // Mated probes spread evenly over the enrolled population.
  for (size_t k = 0; k < options.mated_probes; ++k) {
    add(set.probes, enrolled_ids[k * options.identities / options.mated_probes],
        1);
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
          where, "expected 'E|P SUBJECT [MODALITY] V1 ... Vd', got '",
          fields[0], "'"));
    }
    LabelledTemplate t;
    t.subject = std::string(fields[1]);
    size_t first = 2;
    // A third field that is not a number names the modality.
    float v = 0.0f;
    if (!absl::SimpleAtof(fields[2], &v)) {
      absl::StatusOr<Modality> modality = ParseModalityName(fields[2]);
      if (!modality.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, modality.status().message()));
      }
      t.modality = *modality;
      first = 3;
    }
    for (size_t i = first; i < fields.size(); ++i) {
      if (!absl::SimpleAtof(fields[i], &v) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "component ", i - first,
                         " is not a finite number: '", fields[i], "'"));
      }
      t.vector.push_back(v);
    }
    if (t.vector.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "no vector"));
    }
    const int dimension = static_cast<int>(t.vector.size());
    const int known =
        set.dimensions.try_emplace(t.modality, dimension).first->second;
    if (dimension != known) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ModalityName(t.modality), " dimension ",
                       dimension, ", earlier lines ", known));
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
  const bool face_only = set.dimensions.size() == 1 &&
                         set.dimensions.begin()->first == Modality::kFace;
  out.precision(9);
  auto write = [&](char kind, const LabelledTemplate& t) {
    out << kind << ' ' << t.subject;
    if (!face_only) out << ' ' << ModalityName(t.modality);
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
  EvalScores scores;
  // Index of each modality's lists in scores.modalities.
  absl::flat_hash_map<Modality, size_t> slot;
  for (const auto& [modality, dimension] : set.dimensions) {
    const ModalitySpec* spec = matcher.spec(modality);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "modality: ", ModalityName(modality), " is not configured"));
    }
    if (spec->dimension != dimension) {
      return absl::InvalidArgumentError(
          absl::StrCat("set: ", ModalityName(modality), " dimension ",
                       dimension, ", the gallery takes ", spec->dimension));
    }
    slot[modality] = scores.modalities.size();
    scores.modalities.push_back({modality, {}, {}});
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
        TemplateToAdd{t.modality, static_cast<int64_t>(i), t.vector});
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
  // Nothing is added from here on, so these are the statistics every z
  // score below was computed with.
  for (ModalityComparisons& m : scores.modalities) {
    m.normalized_with = matcher.ImpostorStatsOf(m.modality);
  }

  // Probe sets: all the probe templates of a subject, in order of first
  // appearance.
  absl::flat_hash_map<std::string, size_t> probe_set_of;
  std::vector<std::pair<std::string, std::vector<Probe>>> probe_sets;
  for (const LabelledTemplate& t : set.probes) {
    auto [it, inserted] =
        probe_set_of.try_emplace(t.subject, probe_sets.size());
    if (inserted) probe_sets.push_back({t.subject, {}});
    probe_sets[it->second].second.push_back(Probe{t.modality, t.vector});
  }

  scores.gallery_size = subjects.size();
  scores.max_rank = std::max<size_t>(1, options.max_rank);
  const size_t impostors =
      std::min(options.impostors_per_probe, subjects.size() - 1);
  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<size_t> pick(0, subjects.size() - 1);
  IdentifyOptions identify;
  identify.max_candidates = scores.max_rank;
  // Appends a comparison's fused score to `fused` and each modality's cosine
  // to that modality's list (`genuine` or impostor). A subject enrolled in
  // none of the probed modalities is no comparison: false, nothing added.
  auto compare = [&](const std::string& subject, absl::Span<const Probe> probe,
                     bool genuine) -> absl::StatusOr<bool> {
    absl::StatusOr<Match> match = matcher.Verify(subject, probe);
    if (absl::IsFailedPrecondition(match.status())) return false;
    if (!match.ok()) return match.status();
    (genuine ? scores.genuine : scores.impostor).push_back(match->score);
    for (const ModalityScore& m : match->modality_scores) {
      ModalityComparisons& lists = scores.modalities[slot.at(m.modality)];
      (genuine ? lists.genuine : lists.impostor).push_back(m.score);
    }
    return true;
  };

  for (size_t p = 0; p < probe_sets.size(); ++p) {
    const std::string& subject = probe_sets[p].first;
    const std::vector<Probe>& probe = probe_sets[p].second;
    const bool mated = by_subject.contains(subject);
    if (mated) {
      if (absl::StatusOr<bool> done = compare(subject, probe, true);
          !done.ok()) {
        return done.status();
      }
      absl::flat_hash_set<size_t> drawn;
      while (drawn.size() < impostors) {
        const size_t other = pick(rng);
        if (subjects[other] == subject || !drawn.insert(other).second) {
          continue;
        }
        if (absl::StatusOr<bool> done = compare(subjects[other], probe, false);
            !done.ok()) {
          return done.status();
        }
      }
    }
    absl::StatusOr<std::vector<Match>> candidates =
        matcher.Identify(probe, identify);
    if (!candidates.ok()) return candidates.status();
    if (mated) {
      MatedSearch search;
      for (size_t r = 0; r < candidates->size(); ++r) {
        if ((*candidates)[r].subject_id != subject) continue;
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
    if (p % 100 == 0) progress("probe", p, probe_sets.size());
  }
  progress("probe", probe_sets.size(), probe_sets.size());
  return scores;
}

EvalScores OneModality(const EvalScores& scores, Modality modality) {
  EvalScores one;
  for (const ModalityComparisons& m : scores.modalities) {
    if (m.modality != modality) continue;
    one.genuine = m.genuine;
    one.impostor = m.impostor;
    one.modalities = {m};
  }
  return one;
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

double ModelFusedImpostorTail(double t, absl::Span<const int> dimensions,
                              FusionRule rule) {
  if (dimensions.empty()) return 0.0;
  const double k = static_cast<double>(dimensions.size());
  // Term m of the fused score is w_m cos_m, of standard deviation
  // w_m / sqrt(d_m).
  std::vector<double> weight, sd;
  for (int d : dimensions) {
    weight.push_back(rule == FusionRule::kZScore ? std::sqrt(d / k) : 1.0 / k);
    sd.push_back(weight.back() / std::sqrt(static_cast<double>(d)));
  }
  const double h = *std::min_element(sd.begin(), sd.end()) / 100.0;
  // Masses on the lattice i * h (i from -offset), convolved term by term.
  std::vector<double> mass = {1.0};
  long offset = 0;
  for (size_t m = 0; m < dimensions.size(); ++m) {
    const int d = dimensions[m];
    const double a = (d - 3) / 2.0;
    const double half = std::min(weight[m], 12.0 * sd[m]);
    const long n = static_cast<long>(std::floor(half / h));
    std::vector<double> term(2 * n + 1);
    double total = 0.0;
    for (long i = -n; i <= n; ++i) {
      const double x = i * h / weight[m];  // the cosine
      const double f = x * x >= 1.0 ? 0.0 : std::exp(a * std::log1p(-x * x));
      term[i + n] = f;
      total += f;
    }
    std::vector<double> sum(mass.size() + term.size() - 1, 0.0);
    for (size_t i = 0; i < mass.size(); ++i) {
      if (mass[i] == 0.0) continue;
      for (size_t j = 0; j < term.size(); ++j) {
        sum[i + j] += mass[i] * term[j] / total;
      }
    }
    mass = std::move(sum);
    offset += n;
  }
  // Mass i stands for the cell [x_i - h/2, x_i + h/2]; the cell holding t
  // counts in proportion to its part above t.
  const double position = t / h + static_cast<double>(offset);
  double tail = 0.0;
  for (size_t i = mass.size(); i-- > 0;) {
    const double above = static_cast<double>(i) + 0.5 - position;
    if (above <= 0.0) break;
    tail += mass[i] * std::min(1.0, above);
  }
  return tail;
}

absl::Status WriteCurves(const EvalScores& scores, const std::string& dir,
                         const std::string& prefix, const std::string& title) {
  const std::string base = absl::StrCat(dir, "/", prefix);
  const std::vector<float> impostor = Sorted(scores.impostor);
  const std::vector<float> genuine = Sorted(scores.genuine);
  const std::vector<float> nonmated = Sorted(scores.nonmated_best);
  const std::optional<std::pair<float, float>> range =
      ScoreRange({&impostor, &genuine, &nonmated});
  if (!range.has_value()) {
    return absl::InvalidArgumentError("scores: nothing to plot");
  }
  const auto [lo, hi] = *range;
  {
    std::ofstream ident(base + "_fpir.csv");
    ident << "threshold,fpir,fnir_rank1,fnir_rank" << scores.max_rank << "\n";
    for (int i = 0; i <= kCurveSteps; ++i) {
      const float t = lo + (hi - lo) * static_cast<float>(i) / kCurveSteps;
      ident << t << ',' << FractionAtLeast(nonmated, t) << ','
            << Fnir(scores, t, 1) << ',' << Fnir(scores, t, scores.max_rank)
            << '\n';
    }
    if (!ident) {
      return absl::UnavailableError(
          absl::StrCat("cannot write ", base, "_fpir.csv"));
    }
  }
  if (absl::Status s =
          WriteDetCsv(base + "_det.csv", impostor, genuine, lo, hi);
      !s.ok()) {
    return s;
  }
  // Log axes cannot show a rate of 0: it is drawn at 1/(2n), half the
  // smallest rate n trials can measure (the plots' footnote says so).
  auto floor_of = [](size_t n) { return 0.5 / std::max<size_t>(1, n); };
  auto det_curve = [&](const std::string& csv, size_t impostors,
                       size_t genuines, absl::string_view name,
                       absl::string_view style) {
    return absl::StrCat("'", csv, "' every ::1 using (z($2,",
                        floor_of(impostors), ")):(z($3,", floor_of(genuines),
                        ")) with lines ", style, " title '", name, "'");
  };
  // The fused curve, and with several modalities one per modality (its
  // cosines) on the same plot: DET curves do not depend on the score scale.
  std::string det_plot =
      det_curve(base + "_det.csv", impostor.size(), genuine.size(),
                scores.modalities.size() > 1 ? "fused" : "FNMR vs FMR", "lw 3");
  if (scores.modalities.size() > 1) {
    for (const ModalityComparisons& m : scores.modalities) {
      const std::vector<float> m_impostor = Sorted(m.impostor);
      const std::vector<float> m_genuine = Sorted(m.genuine);
      const std::optional<std::pair<float, float>> m_range =
          ScoreRange({&m_impostor, &m_genuine});
      if (!m_range.has_value()) continue;
      const std::string csv =
          absl::StrCat(base, "_det_", ModalityName(m.modality), ".csv");
      if (absl::Status s = WriteDetCsv(csv, m_impostor, m_genuine,
                                       m_range->first, m_range->second);
          !s.ok()) {
        return s;
      }
      absl::StrAppend(&det_plot, ", ",
                      det_curve(csv, m_impostor.size(), m_genuine.size(),
                                ModalityName(m.modality), "lw 2 dt 2"));
    }
  }
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
       << "plot " << det_plot << "\n"
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
