#include "matcher/matcher.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/gallery.h"
#include "matcher/synthetic.h"

namespace hawiya::matcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr Modality kFace = Modality::kFace;
constexpr Modality kFinger = Modality::kFingerprint;
constexpr Modality kIris = Modality::kIris;

double Cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

std::unique_ptr<Matcher> OpenMatcher(std::vector<ModalitySpec> modalities) {
  absl::StatusOr<std::unique_ptr<Matcher>> matcher =
      Matcher::Open(MatcherOptions{std::move(modalities)});
  EXPECT_TRUE(matcher.ok()) << matcher.status();
  return matcher.ok() ? *std::move(matcher) : nullptr;
}

std::vector<std::string> Ids(const std::vector<Match>& matches) {
  std::vector<std::string> ids;
  for (const Match& m : matches) ids.push_back(m.subject_id);
  return ids;
}

// One independent synthetic model per modality, at its default dimension.
class Population {
 public:
  Population()
      : face_(Options(512, 1)),
        finger_(Options(256, 2)),
        iris_(Options(256, 3)) {}

  std::vector<float> Capture(Modality modality, uint64_t identity,
                             uint64_t capture) const {
    switch (modality) {
      case Modality::kFace:
        return face_.Capture(identity, capture);
      case Modality::kFingerprint:
        return finger_.Capture(identity, capture);
      case Modality::kIris:
        return iris_.Capture(identity, capture);
    }
    return {};
  }

  // Enrols capture 0 of the identity in the given modalities, as subject
  // "p<identity>" with labels derived from the identity.
  absl::Status Enrol(Matcher& matcher, uint64_t identity,
                     std::vector<Modality> modalities) const {
    std::vector<TemplateToAdd> templates;
    for (Modality m : modalities) {
      templates.push_back(
          {m, static_cast<int64_t>(identity * 10 + static_cast<int>(m)),
           Capture(m, identity, 0)});
    }
    return matcher.Add(Subject(identity), templates);
  }

  Probe MakeProbe(Modality modality, uint64_t identity,
                  uint64_t capture = 1) const {
    return Probe{modality, Capture(modality, identity, capture)};
  }

  static std::string Subject(uint64_t identity) {
    return absl::StrCat("p", identity);
  }

 private:
  static SyntheticOptions Options(int dimension, uint64_t seed) {
    SyntheticOptions options;
    options.dimension = dimension;
    options.seed = seed;
    return options;
  }

  SyntheticModel face_;
  SyntheticModel finger_;
  SyntheticModel iris_;
};

TEST(MatcherTest, ModalityNamesAndDefaults) {
  EXPECT_EQ(ModalityName(kFace), "FACE");
  EXPECT_EQ(ModalityName(kFinger), "FINGERPRINT");
  EXPECT_EQ(ModalityName(kIris), "IRIS");
  const std::vector<ModalitySpec> defaults = DefaultModalities();
  ASSERT_EQ(defaults.size(), 3u);
  EXPECT_EQ(defaults[0].modality, kFace);
  EXPECT_EQ(defaults[0].dimension, 512);
  EXPECT_FLOAT_EQ(defaults[0].threshold, 0.40f);
  EXPECT_EQ(defaults[1].modality, kFinger);
  EXPECT_EQ(defaults[1].dimension, 256);
  EXPECT_FLOAT_EQ(defaults[1].threshold, 0.45f);
  EXPECT_EQ(defaults[2].modality, kIris);
  EXPECT_EQ(defaults[2].dimension, 256);
  EXPECT_FLOAT_EQ(defaults[2].threshold, 0.45f);
}

TEST(MatcherTest, OpenValidatesOptions) {
  auto open = [](std::vector<ModalitySpec> specs) {
    return Matcher::Open(MatcherOptions{std::move(specs)}).status();
  };
  absl::Status s = open({});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("modalities"));

  s = open({{kFace, 512, 0.4f}, {kIris, 256, 0.45f}, {kFace, 128, 0.4f}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("modalities[2].modality: FACE"));

  s = open({{kFace, 0, 0.4f}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("modalities[0].dimension"));

  s = open({{kFace, 512, 0.4f}, {kIris, 256, NAN}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("modalities[1].threshold"));

  s = open({{kFace, 512, INFINITY}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);

  s = open({{static_cast<Modality>(0), 512, 0.4f}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("modalities[0].modality"));
}

TEST(MatcherTest, InfoAndSpecDescribeTheConfiguredGalleries) {
  // Configured out of order; reported in Modality order.
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kIris, 64, 0.5f}, {kFace, 128, 0.3f}});
  ASSERT_NE(matcher, nullptr);
  ASSERT_TRUE(matcher
                  ->Add("a", {{kFace, 1, std::vector<float>(128, 1.0f)},
                              {kFace, 2, std::vector<float>(128, -1.0f)},
                              {kIris, 3, std::vector<float>(64, 1.0f)}})
                  .ok());
  const std::vector<GalleryInfo> info = matcher->Info();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[0].spec.modality, kFace);
  EXPECT_EQ(info[0].spec.dimension, 128);
  EXPECT_FLOAT_EQ(info[0].spec.threshold, 0.3f);
  EXPECT_EQ(info[0].templates, 2u);
  EXPECT_EQ(info[0].index_kind, "exact");
  EXPECT_EQ(info[1].spec.modality, kIris);
  EXPECT_EQ(info[1].templates, 1u);

  ASSERT_NE(matcher->spec(kIris), nullptr);
  EXPECT_EQ(matcher->spec(kIris)->dimension, 64);
  EXPECT_EQ(matcher->spec(kFinger), nullptr);
  EXPECT_EQ(matcher->spec(static_cast<Modality>(9)), nullptr);
}

TEST(MatcherTest, CheckProbesNamesTheOffendingProbe) {
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kFace, 4, 0.4f}, {kIris, 2, 0.45f}});
  ASSERT_NE(matcher, nullptr);
  EXPECT_TRUE(
      matcher->CheckProbes({{kFace, {1, 2, 3, 4}}, {kIris, {1, 0}}}).ok());

  absl::Status s = matcher->CheckProbes({});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "probes: at least one probe is required");

  s = matcher->CheckProbes({{kFace, {1, 2, 3, 4}}, {kFinger, {1, 2}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "probes[1].modality: FINGERPRINT is not configured");

  s = matcher->CheckProbes({{kIris, {1, 0}}, {kFace, {1, 2, 3}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "probes[1].vector: vector has 3 components, expected 4");

  s = matcher->CheckProbes({{kIris, {1, NAN}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("probes[0].vector: component 1"));

  s = matcher->CheckProbes({{kIris, {0, 0}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("probes[0].vector: vector has zero norm"));

  // Verify and Identify check their probes the same way.
  EXPECT_EQ(matcher->Verify("a", {{kFinger, {1, 2}}}).status().message(),
            "probes[0].modality: FINGERPRINT is not configured");
  EXPECT_EQ(matcher->Identify({}, IdentifyOptions()).status().message(),
            "probes: at least one probe is required");
}

TEST(MatcherTest, AddValidatesEveryTemplateAndAddsNothingOnError) {
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kFace, 4, 0.4f}, {kFinger, 2, 0.45f}});
  ASSERT_NE(matcher, nullptr);
  const TemplateToAdd face{kFace, 1, {1, 2, 3, 4}};
  const TemplateToAdd finger{kFinger, 2, {1, 2}};

  absl::Status s = matcher->Add("a", {face, finger, {kIris, 3, {1, 2}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "templates[2].modality: IRIS is not configured");

  s = matcher->Add("a", {face, {kFinger, 3, {1, 2, 3, 4}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "templates[1].vector: vector has 4 components, expected 2");

  s = matcher->Add("a", {face, finger, {kFinger, 2, {2, 1}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("templates[2].label"));

  s = matcher->Add("", {face});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);

  for (const GalleryInfo& info : matcher->Info()) {
    EXPECT_EQ(info.templates, 0u) << ModalityName(info.spec.modality);
  }
  // The same label in two galleries is fine: each gallery has its own.
  EXPECT_TRUE(matcher->Add("a", {face, {kFinger, 1, {1, 2}}}).ok());
}

TEST(MatcherTest, AddRollsBackEarlierGalleriesWhenALaterOneRefuses) {
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kFace, 4, 0.4f}, {kFinger, 2, 0.45f}});
  ASSERT_NE(matcher, nullptr);
  ASSERT_TRUE(
      matcher->Add("a", {{kFace, 1, {1, 2, 3, 4}}, {kFinger, 2, {1, 2}}}).ok());
  // FACE is added first and accepts label 10; FINGERPRINT refuses label 2.
  absl::Status s =
      matcher->Add("b", {{kFace, 10, {4, 3, 2, 1}}, {kFinger, 2, {2, 1}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("FINGERPRINT"));
  const std::vector<GalleryInfo> info = matcher->Info();
  EXPECT_EQ(info[0].templates, 1u);
  EXPECT_EQ(info[1].templates, 1u);
  EXPECT_EQ(matcher->Verify("b", {{kFace, {4, 3, 2, 1}}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Label 10 was released by the rollback.
  EXPECT_TRUE(matcher->Add("b", {{kFace, 10, {4, 3, 2, 1}}}).ok());
}

// Galleries where the subject is new are added first, because only there
// is a rollback exact.
TEST(MatcherTest, AddRollsBackExactlyWhenTheSubjectAlreadyHasTemplates) {
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kFace, 4, 0.4f}, {kFinger, 2, 0.45f}});
  ASSERT_NE(matcher, nullptr);
  ASSERT_TRUE(matcher->Add("a", {{kFace, 1, {1, 2, 3, 4}}}).ok());
  absl::Status s =
      matcher->Add("a", {{kFace, 1, {4, 3, 2, 1}}, {kFinger, 5, {2, 1}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("FACE gallery"));
  EXPECT_THAT(s.message(), Not(HasSubstr("could not roll back")));
  std::vector<GalleryInfo> info = matcher->Info();
  EXPECT_EQ(info[0].templates, 1u);
  EXPECT_EQ(info[1].templates, 0u);
  absl::StatusOr<Match> kept = matcher->Verify("a", {{kFace, {1, 2, 3, 4}}});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_FLOAT_EQ(kept->score, 1.0f);

  // With templates in both galleries already, the gallery added first cannot
  // be rolled back without losing the old templates; the error says so.
  ASSERT_TRUE(matcher->Add("a", {{kFinger, 5, {2, 1}}}).ok());
  s = matcher->Add("a", {{kFace, 2, {4, 3, 2, 1}}, {kFinger, 5, {1, 1}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("could not roll back the FACE templates"));
}

TEST(MatcherTest, VerifySeparatesGenuineFromImpostorProbes) {
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  for (uint64_t i = 0; i < 50; ++i) {
    ASSERT_TRUE(population.Enrol(*matcher, i, {kFace}).ok());
  }
  for (uint64_t i = 0; i < 50; ++i) {
    const std::string subject = Population::Subject(i);
    absl::StatusOr<Match> genuine =
        matcher->Verify(subject, {population.MakeProbe(kFace, i)});
    ASSERT_TRUE(genuine.ok()) << genuine.status();
    EXPECT_EQ(genuine->subject_id, subject);
    EXPECT_FLOAT_EQ(genuine->threshold, 0.40f);
    EXPECT_GT(genuine->score, genuine->threshold) << subject;
    EXPECT_NEAR(genuine->score,
                Cosine(population.Capture(kFace, i, 0),
                       population.Capture(kFace, i, 1)),
                1e-4);
    // Never-enrolled identities.
    absl::StatusOr<Match> impostor =
        matcher->Verify(subject, {population.MakeProbe(kFace, 10000 + i)});
    ASSERT_TRUE(impostor.ok()) << impostor.status();
    EXPECT_LT(impostor->score, impostor->threshold) << subject;
  }
}

TEST(MatcherTest, VerifyFusesModalitiesByMean) {
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  ASSERT_TRUE(population.Enrol(*matcher, 1, {kFace, kFinger, kIris}).ok());

  // Probes out of Modality order, two fingerprints of which the better
  // counts.
  const Probe iris = population.MakeProbe(kIris, 1);
  const Probe finger_bad = population.MakeProbe(kFinger, 99);
  const Probe finger = population.MakeProbe(kFinger, 1);
  const Probe face = population.MakeProbe(kFace, 1);
  absl::StatusOr<Match> match =
      matcher->Verify("p1", {iris, finger_bad, face, finger});
  ASSERT_TRUE(match.ok()) << match.status();

  const double face_score =
      Cosine(population.Capture(kFace, 1, 0), face.vector);
  const double finger_score =
      Cosine(population.Capture(kFinger, 1, 0), finger.vector);
  const double iris_score =
      Cosine(population.Capture(kIris, 1, 0), iris.vector);
  ASSERT_EQ(match->modality_scores.size(), 3u);
  EXPECT_EQ(match->modality_scores[0].modality, kFace);
  EXPECT_NEAR(match->modality_scores[0].score, face_score, 1e-4);
  EXPECT_EQ(match->modality_scores[1].modality, kFinger);
  EXPECT_NEAR(match->modality_scores[1].score, finger_score, 1e-4);
  EXPECT_EQ(match->modality_scores[2].modality, kIris);
  EXPECT_NEAR(match->modality_scores[2].score, iris_score, 1e-4);
  EXPECT_NEAR(match->score, (face_score + finger_score + iris_score) / 3, 1e-4);
  EXPECT_NEAR(match->threshold, (0.40 + 0.45 + 0.45) / 3, 1e-6);

  absl::StatusOr<Match> two = matcher->Verify("p1", {finger, face});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_NEAR(two->score, (face_score + finger_score) / 2, 1e-4);
  EXPECT_NEAR(two->threshold, 0.425, 1e-6);
}

TEST(MatcherTest, VerifySkipsModalitiesTheSubjectHasNoTemplateOf) {
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  ASSERT_TRUE(population.Enrol(*matcher, 1, {kFace}).ok());
  ASSERT_TRUE(population.Enrol(*matcher, 2, {kIris}).ok());

  const Probe face = population.MakeProbe(kFace, 1);
  absl::StatusOr<Match> match =
      matcher->Verify("p1", {population.MakeProbe(kFinger, 1), face});
  ASSERT_TRUE(match.ok()) << match.status();
  ASSERT_EQ(match->modality_scores.size(), 1u);
  EXPECT_EQ(match->modality_scores[0].modality, kFace);
  EXPECT_FLOAT_EQ(match->score, match->modality_scores[0].score);
  EXPECT_FLOAT_EQ(match->threshold, 0.40f);

  absl::Status s = matcher->Verify("p2", {face}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "subject_id: subject has no template of the probed modalities");
  EXPECT_EQ(matcher->Verify("nobody", {face}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(MatcherTest, FusedThresholdIsTheMeanOverDistinctProbedModalities) {
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kFace, 2, 0.40f}, {kFinger, 2, 0.45f}, {kIris, 2, 0.6f}});
  ASSERT_NE(matcher, nullptr);
  const Probe face{kFace, {1, 0}};
  const Probe finger{kFinger, {1, 0}};
  const Probe iris{kIris, {1, 0}};
  EXPECT_FLOAT_EQ(matcher->FusedThreshold({face}), 0.40f);
  EXPECT_FLOAT_EQ(matcher->FusedThreshold({finger, face, finger, finger}),
                  0.425f);
  EXPECT_FLOAT_EQ(matcher->FusedThreshold({iris, finger, face}),
                  (0.40f + 0.45f + 0.6f) / 3);
}

TEST(MatcherTest, IdentifyScoresCandidatesOnEveryProbedModality) {
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  for (uint64_t i = 0; i < 30; ++i) {
    ASSERT_TRUE(
        population
            .Enrol(*matcher, i,
                   i % 2 ? std::vector{kFace, kFinger} : std::vector{kFace})
            .ok());
  }
  const Probe face = population.MakeProbe(kFace, 7);
  const Probe finger = population.MakeProbe(kFinger, 7);
  IdentifyOptions options;
  options.max_candidates = 5;
  absl::StatusOr<std::vector<Match>> found =
      matcher->Identify({face, finger}, options);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 5u);
  const Match& best = found->front();
  EXPECT_EQ(best.subject_id, "p7");
  ASSERT_EQ(best.modality_scores.size(), 2u);
  absl::StatusOr<Match> verified = matcher->Verify("p7", {face, finger});
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(best.score, verified->score);
  EXPECT_FLOAT_EQ(best.threshold, 0.425f);
  EXPECT_GT(best.score, best.threshold);
  for (size_t i = 1; i < found->size(); ++i) {
    const Match& m = (*found)[i];
    EXPECT_LE(m.score, (*found)[i - 1].score);
    // Candidates without fingerprints are fused over the face alone.
    const uint64_t identity = std::stoull(m.subject_id.substr(1));
    EXPECT_EQ(m.modality_scores.size(), identity % 2 ? 2u : 1u);
    EXPECT_FLOAT_EQ(m.threshold, identity % 2 ? 0.425f : 0.40f);
    EXPECT_LT(m.score, m.threshold);
  }
}

TEST(MatcherTest, IdentifyHonoursRestrictToMinScoreAndMaxCandidates) {
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  for (uint64_t i = 0; i < 40; ++i) {
    ASSERT_TRUE(population.Enrol(*matcher, i, {kFace}).ok());
  }
  ASSERT_TRUE(population.Enrol(*matcher, 100, {kIris}).ok());
  const std::vector<Probe> probes = {population.MakeProbe(kFace, 3)};

  IdentifyOptions restricted;
  restricted.restrict_to = {"p10", "p3", "unknown", "p10", "p20", "p100"};
  absl::StatusOr<std::vector<Match>> found =
      matcher->Identify(probes, restricted);
  ASSERT_TRUE(found.ok()) << found.status();
  // p100 has no face; "unknown" is not enrolled; p10 is listed twice.
  EXPECT_THAT(Ids(*found), UnorderedElementsAre("p3", "p10", "p20"));
  EXPECT_EQ(found->front().subject_id, "p3");

  // A subject outside everyone's top list is still scored when restricted to.
  IdentifyOptions only_impostor;
  only_impostor.restrict_to = {"p20"};
  only_impostor.max_candidates = 1;
  found = matcher->Identify(probes, only_impostor);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(Ids(*found), ElementsAre("p20"));

  IdentifyOptions all;
  all.max_candidates = 100;
  found = matcher->Identify(probes, all);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 40u);
  const float third = (*found)[2].score;

  IdentifyOptions min_score = all;
  min_score.min_score = third;
  found = matcher->Identify(probes, min_score);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 3u);
  for (const Match& m : *found) EXPECT_GE(m.score, third);

  min_score.min_score = 0.40f;
  found = matcher->Identify(probes, min_score);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(Ids(*found), ElementsAre("p3"));

  IdentifyOptions few;
  few.max_candidates = 4;
  found = matcher->Identify(probes, few);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->size(), 4u);

  few.max_candidates = 0;
  found = matcher->Identify(probes, few);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, IsEmpty());

  IdentifyOptions nan;
  nan.min_score = NAN;
  EXPECT_EQ(matcher->Identify(probes, nan).status().code(),
            absl::StatusCode::kInvalidArgument);

  // No subject enrolled in the probed modality.
  found = matcher->Identify({population.MakeProbe(kFinger, 3)}, all);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, IsEmpty());
}

TEST(MatcherTest, RemovedSubjectsAreGoneFromEveryModality) {
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(population.Enrol(*matcher, i, {kFace, kIris}).ok());
  }
  matcher->RemoveSubject("p4");
  matcher->RemoveSubject("never-enrolled");
  for (const GalleryInfo& info : matcher->Info()) {
    EXPECT_EQ(info.templates, info.spec.modality == kFinger ? 0u : 9u);
  }
  const std::vector<Probe> probes = {population.MakeProbe(kFace, 4),
                                     population.MakeProbe(kIris, 4)};
  EXPECT_EQ(matcher->Verify("p4", probes).status().code(),
            absl::StatusCode::kFailedPrecondition);
  IdentifyOptions options;
  options.max_candidates = 100;
  absl::StatusOr<std::vector<Match>> found = matcher->Identify(probes, options);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->size(), 9u);
  for (const Match& m : *found) EXPECT_NE(m.subject_id, "p4");
  // Re-enrolment after removal (ReplaceTemplates) reuses nothing but works.
  EXPECT_TRUE(
      matcher->Add("p4", {{kFace, 1000, population.Capture(kFace, 4, 2)}})
          .ok());
  EXPECT_TRUE(matcher->Verify("p4", probes).ok());
}

TEST(MatcherTest, ReplaceSwapsEveryModalityOrChangesNothing) {
  std::unique_ptr<Matcher> matcher =
      OpenMatcher({{kFace, 4, 0.4f}, {kFinger, 2, 0.45f}});
  ASSERT_NE(matcher, nullptr);
  ASSERT_TRUE(
      matcher->Add("a", {{kFace, 1, {1, 0, 0, 0}}, {kFinger, 2, {1, 0}}}).ok());

  // A refused replacement leaves the old templates in place.
  absl::Status s = matcher->Replace("a", {{kFace, 3, {1, 2, 3}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "templates[0].vector: vector has 3 components, expected 4");
  absl::StatusOr<Match> old = matcher->Verify(
      "a", {Probe{kFace, {1, 0, 0, 0}}, Probe{kFinger, {1, 0}}});
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_FLOAT_EQ(old->score, 1.0f);

  // The new face replaces the old one; the finger, not resubmitted, is gone.
  ASSERT_TRUE(matcher->Replace("a", {{kFace, 3, {0, 1, 0, 0}}}).ok());
  absl::StatusOr<Match> now =
      matcher->Verify("a", {Probe{kFace, {0, 1, 0, 0}}});
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_FLOAT_EQ(now->score, 1.0f);
  EXPECT_EQ(matcher->Verify("a", {Probe{kFinger, {1, 0}}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (const GalleryInfo& info : matcher->Info()) {
    EXPECT_EQ(info.templates, info.spec.modality == kFace ? 1u : 0u);
  }
  // Replacing with nothing removes the subject.
  ASSERT_TRUE(matcher->Replace("a", {}).ok());
  for (const GalleryInfo& info : matcher->Info()) {
    EXPECT_EQ(info.templates, 0u);
  }
}

// The synthetic population (matcher/synthetic.h) at a realistic scale: every
// mated probe at rank 1 and above threshold, every non-mated probe below it.
TEST(MatcherTest, IdentifyFindsMatedProbesAtRankOne) {
  constexpr uint64_t kEnrolled = 2000;
  const Population population;
  std::unique_ptr<Matcher> matcher = OpenMatcher(DefaultModalities());
  ASSERT_NE(matcher, nullptr);
  for (uint64_t i = 0; i < kEnrolled; ++i) {
    ASSERT_TRUE(population.Enrol(*matcher, i, {kFace}).ok());
  }
  IdentifyOptions options;
  options.max_candidates = 10;
  int rank_one = 0;
  for (uint64_t n = 0; n < 100; ++n) {
    const uint64_t identity = n * (kEnrolled / 100) + n % 7;
    absl::StatusOr<std::vector<Match>> found =
        matcher->Identify({population.MakeProbe(kFace, identity)}, options);
    ASSERT_TRUE(found.ok()) << found.status();
    ASSERT_EQ(found->size(), 10u);
    if (found->front().subject_id == Population::Subject(identity)) ++rank_one;
    EXPECT_GT(found->front().score, found->front().threshold);
    EXPECT_LT((*found)[1].score, (*found)[1].threshold);
  }
  EXPECT_EQ(rank_one, 100);

  for (uint64_t n = 0; n < 100; ++n) {
    absl::StatusOr<std::vector<Match>> found =
        matcher->Identify({population.MakeProbe(kFace, 1000000 + n)}, options);
    ASSERT_TRUE(found.ok()) << found.status();
    ASSERT_FALSE(found->empty());
    EXPECT_LT(found->front().score, found->front().threshold);
  }
}

}  // namespace
}  // namespace hawiya::matcher
