// Impostor statistics estimated by the matcher from its own galleries
// (matcher/impostor_stats.h, Matcher::ImpostorStatsOf).
#include "matcher/impostor_stats.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "matcher/matcher.h"
#include "matcher/snapshot.h"
#include "matcher/synthetic.h"

namespace hawiya::matcher {
namespace {

constexpr Modality kFace = Modality::kFace;
constexpr Modality kFinger = Modality::kFingerprint;
constexpr int kDim = 512;

std::unique_ptr<Matcher> Open(std::vector<ModalitySpec> specs,
                              FusionOptions fusion = FusionOptions()) {
  absl::StatusOr<std::unique_ptr<Matcher>> matcher =
      Matcher::Open(MatcherOptions{std::move(specs), fusion});
  EXPECT_TRUE(matcher.ok()) << matcher.status();
  return matcher.ok() ? *std::move(matcher) : nullptr;
}

ModalitySpec Face() { return ModalitySpec{kFace, kDim, 0.40f, IndexOptions()}; }

SyntheticModel Model(int dimension, bool hard) {
  SyntheticOptions options;
  options.dimension = dimension;
  options.seed = 11;
  options.hard = hard;
  return SyntheticModel(options);
}

// Adds subjects "s<first>".."s<last - 1>", one capture each of every
// modality in `specs`' order (each modality its own model, dimension).
void AddSubjects(Matcher& matcher, uint64_t first, uint64_t last,
                 bool hard = false) {
  const SyntheticModel face = Model(kDim, hard);
  const SyntheticModel finger = Model(256, hard);
  for (uint64_t i = first; i < last; ++i) {
    std::vector<TemplateToAdd> templates;
    const int64_t label = static_cast<int64_t>(i);
    if (matcher.spec(kFace) != nullptr) {
      templates.push_back({kFace, label, face.Capture(i, 0)});
    }
    if (matcher.spec(kFinger) != nullptr) {
      templates.push_back({kFinger, label, finger.Capture(i, 0)});
    }
    ASSERT_TRUE(matcher.Add(absl::StrCat("s", i), templates).ok());
  }
}

void ExpectSameStats(const ImpostorEstimate& a, const ImpostorEstimate& b) {
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_EQ(a.std, b.std);
  EXPECT_EQ(a.scores, b.scores);
  EXPECT_EQ(a.source, b.source);
}

// The synthetic model's captures of two identities (matcher/synthetic.h)
// are independent isotropic unit vectors: their cosine has mean 0 and
// variance exactly 1/d. Scores that share a reservoir template are
// uncorrelated (E[(a.b)(a.c)] = 0 and likewise for the squares), so over n
// scores the mean has standard error sigma/sqrt(n) and the sample std about
// sigma/sqrt(2n) (near-normal scores). 5 standard errors: a correct
// estimator fails with probability < 1e-6 (and the seeds are fixed). With
// 2000 subjects n is ~16000: the mean within 0.0017, the std within 2.8% of
// 1/sqrt(512).
TEST(ImpostorStatsTest, ConvergesToTheModelOnAnEasyGallery) {
  std::unique_ptr<Matcher> matcher = Open({Face()});
  ASSERT_NE(matcher, nullptr);
  AddSubjects(*matcher, 0, 2000);
  const ImpostorEstimate stats = matcher->ImpostorStatsOf(kFace);
  EXPECT_EQ(stats.source, ImpostorSource::kGallery);
  // 8 draws per template, minus the few while the reservoir was tiny.
  EXPECT_GT(stats.scores, 15900u);
  EXPECT_LE(stats.scores, 8u * 1999);
  const double sigma = 1.0 / std::sqrt(static_cast<double>(kDim));
  const double n = static_cast<double>(stats.scores);
  EXPECT_NEAR(stats.mean, 0.0, 5 * sigma / std::sqrt(n));
  EXPECT_NEAR(stats.std, sigma, 5 * sigma / std::sqrt(2 * n));
}

// Look-alike clusters (hard variant): two random subjects are in the same
// cluster with probability ~1/20 (2000 subjects, clusters of 100), and such
// a pair's cosine is ~0.2, so the impostor mean rises by ~0.01, about 30
// standard errors above the easy gallery's; the spread widens too.
TEST(ImpostorStatsTest, LookAlikeGalleryHasALargerMean) {
  std::unique_ptr<Matcher> easy = Open({Face()});
  std::unique_ptr<Matcher> hard = Open({Face()});
  ASSERT_NE(easy, nullptr);
  ASSERT_NE(hard, nullptr);
  AddSubjects(*easy, 0, 2000, /*hard=*/false);
  AddSubjects(*hard, 0, 2000, /*hard=*/true);
  const ImpostorEstimate e = easy->ImpostorStatsOf(kFace);
  const ImpostorEstimate h = hard->ImpostorStatsOf(kFace);
  ASSERT_EQ(h.source, ImpostorSource::kGallery);
  EXPECT_GT(h.mean, e.mean + 0.005);
  EXPECT_GT(h.std, e.std);
}

TEST(ImpostorStatsTest, SourceSwitchesFromModelToGalleryAtTheMinimum) {
  FusionOptions fusion;
  fusion.impostor_min_scores = 100;
  std::unique_ptr<Matcher> matcher = Open({Face()}, fusion);
  ASSERT_NE(matcher, nullptr);
  bool switched = false;
  for (uint64_t i = 0; i < 40; ++i) {
    const ImpostorEstimate stats = matcher->ImpostorStatsOf(kFace);
    if (stats.scores < 100) {
      EXPECT_EQ(stats.source, ImpostorSource::kModel) << stats.scores;
      EXPECT_EQ(stats.mean, 0.0);
      EXPECT_DOUBLE_EQ(stats.std, 1.0 / std::sqrt(512.0));
    } else {
      EXPECT_EQ(stats.source, ImpostorSource::kGallery) << stats.scores;
      EXPECT_NE(stats.std, 1.0 / std::sqrt(512.0));
      switched = true;
    }
    AddSubjects(*matcher, i, i + 1);
  }
  EXPECT_TRUE(switched);
}

TEST(ImpostorStatsTest, ConfiguredStatsWin) {
  ModalitySpec face = Face();
  face.impostor_mean = 0.1f;
  face.impostor_std = 0.05f;
  FusionOptions fusion;
  fusion.impostor_min_scores = 10;
  std::unique_ptr<Matcher> matcher = Open({face}, fusion);
  ASSERT_NE(matcher, nullptr);
  AddSubjects(*matcher, 0, 200);
  const ImpostorEstimate stats = matcher->ImpostorStatsOf(kFace);
  EXPECT_EQ(stats.source, ImpostorSource::kConfigured);
  EXPECT_EQ(stats.mean, 0.1f);
  EXPECT_EQ(stats.std, 0.05f);
  EXPECT_GT(stats.scores, 1000u);  // still estimated, for GetStats
}

// A restart from a snapshot gives the same statistics, and the same ones
// again after further adds (generator and reservoir restored too).
TEST(ImpostorStatsTest, SaveLoadRoundTripsTheEstimateExactly) {
  const MatcherOptions options{
      {Face(), ModalitySpec{kFinger, 256, 0.45f, IndexOptions()}},
      FusionOptions()};
  std::unique_ptr<Matcher> matcher = Open(options.modalities);
  ASSERT_NE(matcher, nullptr);
  AddSubjects(*matcher, 0, 1500);
  matcher->RemoveSubject("s3");
  StringSnapshotWriter out;
  ASSERT_TRUE(matcher->Save(&out).ok());
  StringSnapshotReader in(out.bytes());
  absl::StatusOr<std::unique_ptr<Matcher>> loaded = Matcher::Load(options, &in);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (Modality m : {kFace, kFinger}) {
    ASSERT_EQ(matcher->ImpostorStatsOf(m).source, ImpostorSource::kGallery);
    ExpectSameStats((*loaded)->ImpostorStatsOf(m), matcher->ImpostorStatsOf(m));
  }
  AddSubjects(*matcher, 1500, 1600);
  AddSubjects(**loaded, 1500, 1600);
  for (Modality m : {kFace, kFinger}) {
    ExpectSameStats((*loaded)->ImpostorStatsOf(m), matcher->ImpostorStatsOf(m));
  }
  // A stream cut inside the statistics is refused, not read as empty.
  StringSnapshotReader truncated(
      absl::string_view(out.bytes()).substr(0, out.bytes().size() - 4));
  EXPECT_EQ(Matcher::Load(options, &truncated).status().code(),
            absl::StatusCode::kDataLoss);
}

// The same adds in the same order give the same statistics.
TEST(ImpostorStatsTest, IsDeterministic) {
  std::unique_ptr<Matcher> a = Open({Face()});
  std::unique_ptr<Matcher> b = Open({Face()});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  AddSubjects(*a, 0, 300);
  AddSubjects(*b, 0, 300);
  ExpectSameStats(a->ImpostorStatsOf(kFace), b->ImpostorStatsOf(kFace));
}

std::vector<float> Unit(const SyntheticModel& model, uint64_t i, uint64_t c) {
  return model.Capture(i, c);  // unit norm already
}

TEST(ImpostorStatsTest, RemovingASubjectKeepsTheEstimateAndEmptiesTheSlot) {
  const SyntheticModel model = Model(64, false);
  ImpostorEstimator estimator(64);
  for (uint64_t i = 0; i < 50; ++i) {
    for (uint64_t c = 0; c < 2; ++c) {
      estimator.Observe(absl::StrCat("s", i), Unit(model, i, c));
    }
  }
  ASSERT_EQ(estimator.reservoir_templates(), 100u);
  ASSERT_EQ(estimator.ReservoirTemplatesOf("s7"), 2u);
  const uint64_t count = estimator.count();
  const double mean = estimator.mean();
  const double std = estimator.std();
  estimator.RemoveSubject("s7");
  EXPECT_EQ(estimator.ReservoirTemplatesOf("s7"), 0u);
  EXPECT_EQ(estimator.reservoir_templates(), 98u);
  EXPECT_EQ(estimator.count(), count);
  EXPECT_EQ(estimator.mean(), mean);
  EXPECT_EQ(estimator.std(), std);
  // The freed slots are refilled by the next templates.
  estimator.Observe("s50", Unit(model, 50, 0));
  EXPECT_EQ(estimator.reservoir_templates(), 99u);

  // Through the matcher: RemoveSubject keeps the statistics.
  std::unique_ptr<Matcher> matcher = Open({Face()});
  ASSERT_NE(matcher, nullptr);
  AddSubjects(*matcher, 0, 200);
  const ImpostorEstimate before = matcher->ImpostorStatsOf(kFace);
  for (uint64_t i = 0; i < 100; ++i) {
    matcher->RemoveSubject(absl::StrCat("s", i));
  }
  ExpectSameStats(matcher->ImpostorStatsOf(kFace), before);
}

// A subject's own templates are no impostor pairs; the reservoir stays
// bounded.
TEST(ImpostorStatsTest, NeverScoresASubjectAgainstItselfAndStaysBounded) {
  const SyntheticModel model = Model(64, false);
  ImpostorEstimator::Options options;
  options.reservoir_size = 16;
  ImpostorEstimator estimator(64, options);
  for (uint64_t c = 0; c < 10; ++c) {
    estimator.Observe("same", Unit(model, 1, c));
  }
  EXPECT_EQ(estimator.count(), 0u);
  for (uint64_t i = 2; i < 100; ++i) {
    estimator.Observe(absl::StrCat("s", i), Unit(model, i, 0));
  }
  EXPECT_EQ(estimator.reservoir_templates(), 16u);
  EXPECT_GT(estimator.count(), 0u);
}

// Under zscore, Verify and Identify normalise with the statistics the
// gallery reports: z = (cosine - mean) / std, the threshold likewise. The
// look-alike gallery's mean is far enough from the model's 0 that the
// model's statistics would give other numbers.
TEST(ImpostorStatsTest, ZScoreScoresUseTheGalleryStatistics) {
  FusionOptions fusion;
  fusion.rule = FusionRule::kZScore;
  fusion.impostor_min_scores = 100;
  std::unique_ptr<Matcher> matcher = Open({Face()}, fusion);
  ASSERT_NE(matcher, nullptr);
  AddSubjects(*matcher, 0, 500, /*hard=*/true);
  const ImpostorEstimate stats = matcher->ImpostorStatsOf(kFace);
  ASSERT_EQ(stats.source, ImpostorSource::kGallery);
  ASSERT_GT(std::abs(stats.mean), 0.003);
  const SyntheticModel model = Model(kDim, /*hard=*/true);
  const std::vector<Probe> probes = {Probe{kFace, model.Capture(7, 1)}};
  absl::StatusOr<Match> match = matcher->Verify("s7", probes);
  ASSERT_TRUE(match.ok()) << match.status();
  ASSERT_EQ(match->modality_scores.size(), 1u);
  const double cosine = match->modality_scores[0].score;
  const double z = (cosine - stats.mean) / stats.std;
  EXPECT_NEAR(match->modality_scores[0].normalized, z, 1e-4 * std::abs(z));
  EXPECT_NEAR(match->score, z, 1e-4 * std::abs(z));
  const double threshold = (0.40 - stats.mean) / stats.std;
  EXPECT_NEAR(match->threshold, threshold, 1e-4 * threshold);
  EXPECT_NEAR(matcher->FusedThreshold(probes), threshold, 1e-4 * threshold);

  absl::StatusOr<std::vector<Match>> found =
      matcher->Identify(probes, IdentifyOptions());
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_FALSE(found->empty());
  EXPECT_EQ((*found)[0].subject_id, "s7");
  EXPECT_EQ((*found)[0].score, match->score);
  for (const Match& candidate : *found) {
    const double s = candidate.modality_scores[0].score;
    EXPECT_NEAR(candidate.score, (s - stats.mean) / stats.std, 1e-3);
  }
}

// A side gallery opened with impostor_stats_from (the registry's pending
// persons) normalises with the main matcher's statistics, not its own
// estimate: the same cosine gets the same z in both, so one threshold
// serves both.
TEST(ImpostorStatsTest, SideGalleryBorrowsTheMainStatistics) {
  FusionOptions fusion;
  fusion.rule = FusionRule::kZScore;
  fusion.impostor_min_scores = 100;
  std::unique_ptr<Matcher> main = Open({Face()}, fusion);
  ASSERT_NE(main, nullptr);
  AddSubjects(*main, 0, 400, /*hard=*/true);
  absl::StatusOr<std::unique_ptr<Matcher>> side =
      Matcher::Open(MatcherOptions{{Face()}, fusion, main.get()});
  ASSERT_TRUE(side.ok()) << side.status();
  std::unique_ptr<Matcher> alone = Open({Face()}, fusion);
  ASSERT_NE(alone, nullptr);
  // The side gallery's own adds would give it other (easy) statistics.
  AddSubjects(**side, 1000, 1300);
  AddSubjects(*alone, 1000, 1300);
  const ImpostorEstimate main_stats = main->ImpostorStatsOf(kFace);
  ASSERT_EQ(main_stats.source, ImpostorSource::kGallery);
  ExpectSameStats((*side)->ImpostorStatsOf(kFace), main_stats);
  ASSERT_NE(alone->ImpostorStatsOf(kFace).mean, main_stats.mean);

  const SyntheticModel model = Model(kDim, /*hard=*/false);
  const std::vector<Probe> probes = {Probe{kFace, model.Capture(1007, 1)}};
  absl::StatusOr<Match> match = (*side)->Verify("s1007", probes);
  ASSERT_TRUE(match.ok()) << match.status();
  const double z =
      (match->modality_scores[0].score - main_stats.mean) / main_stats.std;
  EXPECT_NEAR(match->score, z, 1e-4 * std::abs(z));
  EXPECT_EQ((*side)->FusedThreshold(probes), main->FusedThreshold(probes));
  // The main matcher's estimate moves on; the side gallery follows it.
  AddSubjects(*main, 400, 600, /*hard=*/true);
  ExpectSameStats((*side)->ImpostorStatsOf(kFace),
                  main->ImpostorStatsOf(kFace));
}

}  // namespace
}  // namespace hawiya::matcher
