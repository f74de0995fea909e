// Score normalisation and fusion rules (matcher/matcher.h).
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/matcher.h"
#include "matcher/synthetic.h"

namespace hawiya::matcher {
namespace {

using ::testing::HasSubstr;

constexpr Modality kFace = Modality::kFace;
constexpr Modality kFinger = Modality::kFingerprint;

std::unique_ptr<Matcher> Open(std::vector<ModalitySpec> specs,
                              FusionOptions fusion) {
  absl::StatusOr<std::unique_ptr<Matcher>> matcher =
      Matcher::Open(MatcherOptions{std::move(specs), fusion});
  EXPECT_TRUE(matcher.ok()) << matcher.status();
  return matcher.ok() ? *std::move(matcher) : nullptr;
}

SyntheticModel Model(int dimension, uint64_t seed) {
  SyntheticOptions options;
  options.dimension = dimension;
  options.seed = seed;
  return SyntheticModel(options);
}

FusionOptions ZScore() {
  FusionOptions fusion;
  fusion.rule = FusionRule::kZScore;
  return fusion;
}

// With one modality the z-score rule is a monotone map of the cosine and of
// the threshold: every decision is the one the mean rule (today's cosine
// threshold) makes, over genuine, impostor and borderline probes.
TEST(FusionTest, OneModalityZScoreDecidesAsTheCosineThreshold) {
  const ModalitySpec face{kFace, 512, 0.40f, IndexOptions()};
  std::unique_ptr<Matcher> mean = Open({face}, FusionOptions());
  std::unique_ptr<Matcher> z = Open({face}, ZScore());
  ASSERT_NE(mean, nullptr);
  ASSERT_NE(z, nullptr);
  const SyntheticModel model = Model(512, 3);
  for (uint64_t i = 0; i < 50; ++i) {
    for (Matcher* m : {mean.get(), z.get()}) {
      ASSERT_TRUE(m->Add(absl::StrCat("s", i),
                         {TemplateToAdd{kFace, static_cast<int64_t>(i),
                                        model.Capture(i, 0)}})
                      .ok());
    }
  }
  int matches = 0;
  for (uint64_t i = 0; i < 50; ++i) {
    // Genuine, impostor, and a blend that lands near the threshold.
    std::vector<float> blend = model.Capture(i, 1);
    const std::vector<float> other = model.Capture(i + 1000, 1);
    for (size_t k = 0; k < blend.size(); ++k) {
      blend[k] = (0.45f + 0.03f * static_cast<float>(i % 10)) * blend[k] +
                 0.6f * other[k];
    }
    for (const std::vector<float>& v : {model.Capture(i, 1), other, blend}) {
      const Probe probe[] = {Probe{kFace, v}};
      absl::StatusOr<Match> a = mean->Verify(absl::StrCat("s", i), probe);
      absl::StatusOr<Match> b = z->Verify(absl::StrCat("s", i), probe);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->score >= a->threshold, b->score >= b->threshold)
          << a->score << " " << b->score << " " << b->threshold;
      matches += b->score >= b->threshold;
      // Mean rule: the cosine itself; z rule: cosine * sqrt(512).
      EXPECT_EQ(a->score, a->modality_scores[0].score);
      EXPECT_FLOAT_EQ(b->score, a->score * std::sqrt(512.0f));
      EXPECT_FLOAT_EQ(b->threshold, 0.40f * std::sqrt(512.0f));
      EXPECT_FLOAT_EQ(a->modality_scores[0].normalized, b->score);
    }
  }
  // The blends straddle the threshold: both outcomes were exercised.
  EXPECT_GT(matches, 50);
  EXPECT_LT(matches, 150);
}

// Two modalities: z_m = (s_m - mean_m) / std_m, fused = sum / sqrt(k), and
// the fused threshold is derived from the per-modality ones.
TEST(FusionTest, ZScoreUsesCalibratedImpostorStatistics) {
  ModalitySpec face{kFace, 64, 0.40f, IndexOptions()};
  face.impostor_mean = 0.05f;
  face.impostor_std = 0.10f;
  ModalitySpec finger{kFinger, 32, 0.50f, IndexOptions()};  // 1/sqrt(32)
  std::unique_ptr<Matcher> m = Open({face, finger}, ZScore());
  ASSERT_NE(m, nullptr);
  const SyntheticModel faces = Model(64, 1);
  const SyntheticModel fingers = Model(32, 2);
  ASSERT_TRUE(m->Add("a", {TemplateToAdd{kFace, 1, faces.Capture(1, 0)},
                           TemplateToAdd{kFinger, 2, fingers.Capture(1, 0)}})
                  .ok());
  const Probe probes[] = {Probe{kFace, faces.Capture(1, 1)},
                          Probe{kFinger, fingers.Capture(1, 1)}};
  absl::StatusOr<Match> match = m->Verify("a", probes);
  ASSERT_TRUE(match.ok()) << match.status();
  ASSERT_EQ(match->modality_scores.size(), 2u);
  const float s_face = match->modality_scores[0].score;
  const float s_finger = match->modality_scores[1].score;
  const double z_face = (s_face - 0.05) / 0.10;
  const double z_finger = s_finger * std::sqrt(32.0);
  EXPECT_NEAR(match->modality_scores[0].normalized, z_face, 1e-4);
  EXPECT_NEAR(match->modality_scores[1].normalized, z_finger, 1e-4);
  EXPECT_NEAR(match->score, (z_face + z_finger) / std::sqrt(2.0), 1e-4);
  const double t =
      ((0.40 - 0.05) / 0.10 + 0.50 * std::sqrt(32.0)) / std::sqrt(2.0);
  EXPECT_NEAR(match->threshold, t, 1e-4);
  EXPECT_NEAR(m->FusedThreshold(probes), t, 1e-4);
}

// A modality the subject never enrolled is left out of the fusion: the
// face alone decides, exactly as if only the face had been probed.
TEST(FusionTest, MissingModalityIsNotAMismatch) {
  const ModalitySpec face{kFace, 512, 0.40f, IndexOptions()};
  const ModalitySpec finger{kFinger, 256, 0.45f, IndexOptions()};
  for (FusionOptions fusion : {FusionOptions(), ZScore()}) {
    std::unique_ptr<Matcher> m = Open({face, finger}, fusion);
    ASSERT_NE(m, nullptr);
    const SyntheticModel faces = Model(512, 4);
    const SyntheticModel fingers = Model(256, 5);
    ASSERT_TRUE(
        m->Add("face-only", {TemplateToAdd{kFace, 1, faces.Capture(9, 0)}})
            .ok());
    const Probe face_probe{kFace, faces.Capture(9, 1)};
    const Probe both[] = {face_probe, Probe{kFinger, fingers.Capture(9, 1)}};
    const Probe face_only[] = {face_probe};
    absl::StatusOr<Match> with_finger = m->Verify("face-only", both);
    absl::StatusOr<Match> alone = m->Verify("face-only", face_only);
    ASSERT_TRUE(with_finger.ok() && alone.ok());
    EXPECT_EQ(with_finger->score, alone->score);
    EXPECT_EQ(with_finger->threshold, alone->threshold);
    EXPECT_GE(with_finger->score, with_finger->threshold);
    ASSERT_EQ(with_finger->modality_scores.size(), 1u);
    absl::StatusOr<std::vector<Match>> found = m->Identify(both, {});
    ASSERT_TRUE(found.ok());
    ASSERT_EQ(found->size(), 1u);
    EXPECT_EQ((*found)[0].score, alone->score);
  }
}

// Under z fusion two genuine modalities that each fall just short of their
// own threshold add up to a match; the mean rule misses it.
TEST(FusionTest, ZScoreFusionAccumulatesEvidence) {
  ModalitySpec face{kFace, 512, 0.40f, IndexOptions()};
  ModalitySpec finger{kFinger, 256, 0.45f, IndexOptions()};
  FusionOptions z = ZScore();
  // Reached when both cosines are about 0.366 (z 8.3 and 5.9).
  z.fused_threshold = 10.0f;
  std::unique_ptr<Matcher> fused = Open({face, finger}, z);
  std::unique_ptr<Matcher> mean = Open({face, finger}, FusionOptions());
  ASSERT_NE(fused, nullptr);
  ASSERT_NE(mean, nullptr);
  const SyntheticModel faces = Model(512, 6);
  const SyntheticModel fingers = Model(256, 7);
  // Weak captures: cosine exactly 0.38 with the (unit) enrolled centre,
  // the rest of the vector along a stranger made orthogonal to it.
  auto weak = [](const std::vector<float>& own,
                 const std::vector<float>& stranger) {
    double dot = 0, norm = 0;
    for (size_t k = 0; k < own.size(); ++k) dot += own[k] * stranger[k];
    std::vector<double> u(own.size());
    for (size_t k = 0; k < own.size(); ++k) {
      u[k] = stranger[k] - dot * own[k];
      norm += u[k] * u[k];
    }
    const double a = 0.38, b = std::sqrt(1 - a * a) / std::sqrt(norm);
    std::vector<float> v(own.size());
    for (size_t k = 0; k < v.size(); ++k) {
      v[k] = static_cast<float>(a * own[k] + b * u[k]);
    }
    return v;
  };
  for (Matcher* m : {fused.get(), mean.get()}) {
    ASSERT_TRUE(m->Add("p", {TemplateToAdd{kFace, 1, faces.Centre(1)},
                             TemplateToAdd{kFinger, 2, fingers.Centre(1)}})
                    .ok());
  }
  const Probe weak_probes[] = {
      Probe{kFace, weak(faces.Centre(1), faces.Centre(500))},
      Probe{kFinger, weak(fingers.Centre(1), fingers.Centre(500))}};
  absl::StatusOr<Match> f = fused->Verify("p", weak_probes);
  absl::StatusOr<Match> a = mean->Verify("p", weak_probes);
  ASSERT_TRUE(f.ok() && a.ok());
  for (const ModalityScore& s : f->modality_scores) {
    EXPECT_NEAR(s.score, 0.38f, 1e-4);
  }
  EXPECT_LT(a->score, a->threshold);
  EXPECT_GE(f->score, f->threshold);
  EXPECT_EQ(f->threshold, 10.0f);
}

// Identify's default min_score keeps every candidate, even one whose z
// score is far below -1 (a cosine of -1 is z = -sqrt(d)).
TEST(FusionTest, IdentifyKeepsNegativeZScoresByDefault) {
  std::unique_ptr<Matcher> m =
      Open({ModalitySpec{kFace, 64, 0.40f, IndexOptions()}}, ZScore());
  ASSERT_NE(m, nullptr);
  const std::vector<float> v = Model(64, 8).Capture(1, 0);
  std::vector<float> opposite = v;
  for (float& x : opposite) x = -x;
  ASSERT_TRUE(m->Add("a", {TemplateToAdd{kFace, 1, v}}).ok());
  const Probe probe[] = {Probe{kFace, opposite}};
  absl::StatusOr<std::vector<Match>> found = m->Identify(probe, {});
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_NEAR((*found)[0].score, -8.0f, 1e-3);  // -1 * sqrt(64)
  IdentifyOptions above;
  above.min_score = -7.0f;
  found = m->Identify(probe, above);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->empty());
}

TEST(FusionTest, RefusesBadOptions) {
  ModalitySpec face{kFace, 64, 0.40f, IndexOptions()};
  face.impostor_std = -1.0f;
  absl::Status s = Matcher::Open(MatcherOptions{{face}, {}}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("impostor"));
  face.impostor_std = 0.0f;
  FusionOptions fusion = ZScore();
  fusion.fused_threshold = std::numeric_limits<float>::infinity();
  s = Matcher::Open(MatcherOptions{{face}, fusion}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("fusion.fused_threshold"));
  EXPECT_EQ(*ParseFusionRule("zscore"), FusionRule::kZScore);
  EXPECT_EQ(*ParseFusionRule("mean"), FusionRule::kMean);
  EXPECT_FALSE(ParseFusionRule("max").ok());
}

// A mate whose every modality is mediocre but whose fused score is the best
// is found: each modality's search shortlists FusionOptions::shortlist
// subjects, not only max_candidates. Ten decoys beat the mate on the face
// alone (and are far off on the finger), ten others on the finger alone.
TEST(FusionTest, MultiModalSearchShortlistsBeyondMaxCandidates) {
  constexpr int kDim = 32;
  const ModalitySpec face{kFace, kDim, 0.40f, IndexOptions()};
  const ModalitySpec finger{kFinger, kDim, 0.40f, IndexOptions()};
  // c * e0 + sqrt(1 - c^2) * e_axis: cosine c with the probe e0.
  const auto at = [](float c, int axis) {
    std::vector<float> v(kDim, 0.0f);
    v[0] = c;
    v[axis] = std::sqrt(1.0f - c * c);
    return v;
  };
  std::vector<float> e0(kDim, 0.0f);
  e0[0] = 1.0f;
  const std::vector<Probe> probes = {Probe{kFace, e0}, Probe{kFinger, e0}};
  IdentifyOptions options;
  options.max_candidates = 10;
  // The best candidate of Identify and of IdentifyBatch.
  const auto best = [&](const FusionOptions& fusion) {
    std::unique_ptr<Matcher> matcher = Open({face, finger}, fusion);
    EXPECT_NE(matcher, nullptr);
    if (matcher == nullptr) return std::string("no matcher");
    int64_t label = 0;
    EXPECT_TRUE(
        matcher
            ->Add("mate", {TemplateToAdd{kFace, ++label, at(0.5f, 1)},
                           TemplateToAdd{kFinger, ++label, at(0.5f, 1)}})
            .ok());
    for (int i = 0; i < 10; ++i) {
      const int axis = 2 + i;
      EXPECT_TRUE(matcher
                      ->Add(absl::StrCat("face-decoy", i),
                            {TemplateToAdd{kFace, ++label, at(0.6f, axis)},
                             TemplateToAdd{kFinger, ++label, at(-0.5f, axis)}})
                      .ok());
      EXPECT_TRUE(
          matcher
              ->Add(absl::StrCat("finger-decoy", i),
                    {TemplateToAdd{kFace, ++label, at(-0.5f, axis + 10)},
                     TemplateToAdd{kFinger, ++label, at(0.6f, axis + 10)}})
              .ok());
    }
    absl::StatusOr<std::vector<Match>> found =
        matcher->Identify(probes, options);
    absl::StatusOr<std::vector<std::vector<Match>>> batch =
        matcher->IdentifyBatch({probes}, options);
    EXPECT_TRUE(found.ok()) << found.status();
    EXPECT_TRUE(batch.ok()) << batch.status();
    if (!found.ok() || found->empty() || !batch.ok()) return std::string();
    EXPECT_EQ((*batch)[0][0].subject_id, (*found)[0].subject_id);
    return (*found)[0].subject_id;
  };
  for (FusionOptions fusion : {FusionOptions(), ZScore()}) {
    EXPECT_EQ(best(fusion), "mate");
    // Shortlisting only each modality's top ten misses it.
    fusion.shortlist = 0;
    EXPECT_NE(best(fusion), "mate");
    fusion.shortlist = 11;
    EXPECT_EQ(best(fusion), "mate");
  }
}

}  // namespace
}  // namespace hawiya::matcher
