// Matcher::IdentifyBatch and Matcher::IdentifyAgainstEarlier against the
// per-set Identify they stand for: same candidates, same order, bit-identical
// scores, for every gallery kind and for probe sets that miss modalities.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/matcher.h"

namespace hawiya::matcher {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Small dimensions keep the galleries quick to build and scan.
std::vector<ModalitySpec> SmallSpecs(IndexKind kind) {
  IndexOptions index;
  index.kind = kind;
  index.hnsw.m = 4;
  index.hnsw.ef_construction = 16;
  index.hnsw.ef_search = 16;
  return {ModalitySpec{Modality::kFace, 24, 0.40f, index},
          ModalitySpec{Modality::kFingerprint, 16, 0.45f, index},
          ModalitySpec{Modality::kIris, 16, 0.45f, index, 0.05f, 0.2f}};
}

std::unique_ptr<Matcher> Open(std::vector<ModalitySpec> specs,
                              FusionRule rule = FusionRule::kMean) {
  MatcherOptions options{std::move(specs)};
  options.fusion.rule = rule;
  absl::StatusOr<std::unique_ptr<Matcher>> matcher = Matcher::Open(options);
  EXPECT_TRUE(matcher.ok()) << matcher.status();
  return matcher.ok() ? *std::move(matcher) : nullptr;
}

int Dimension(Modality modality) {
  return modality == Modality::kFace ? 24 : 16;
}

class Random {
 public:
  explicit Random(uint32_t seed) : rng_(seed) {}

  std::vector<float> Vector(int d) {
    std::normal_distribution<float> normal;
    std::vector<float> v(static_cast<size_t>(d));
    for (float& x : v) x = normal(rng_);
    return v;
  }
  // `base` plus noise: a second capture of the same person.
  std::vector<float> Near(const std::vector<float>& base) {
    std::vector<float> v = Vector(static_cast<int>(base.size()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = base[i] + 0.3f * v[i];
    return v;
  }
  size_t Below(size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

 private:
  std::mt19937 rng_;
};

// A probe set of 1-4 probes over a random subset of the modalities (so
// many sets miss some), each probe either random or near one of `near`.
std::vector<Probe> RandomSet(Random& random,
                             const std::vector<TemplateToAdd>& near) {
  std::vector<Probe> set;
  const size_t count = 1 + random.Below(4);
  for (size_t p = 0; p < count; ++p) {
    if (!near.empty() && random.Chance(0.5)) {
      const TemplateToAdd& t = near[random.Below(near.size())];
      set.push_back({t.modality, random.Near(t.vector)});
      continue;
    }
    const Modality modality = static_cast<Modality>(1 + random.Below(3));
    set.push_back({modality, random.Vector(Dimension(modality))});
  }
  return set;
}

// Enrols `subjects` subjects with 1-3 templates over random modalities;
// returns every template added.
std::vector<TemplateToAdd> Enrol(Matcher& matcher, Random& random,
                                 size_t subjects) {
  std::vector<TemplateToAdd> all;
  int64_t label = 0;
  for (size_t s = 0; s < subjects; ++s) {
    std::vector<TemplateToAdd> templates;
    const size_t count = 1 + random.Below(3);
    for (size_t t = 0; t < count; ++t) {
      const Modality modality = static_cast<Modality>(1 + random.Below(3));
      templates.push_back(
          {modality, ++label, random.Vector(Dimension(modality))});
    }
    EXPECT_TRUE(matcher.Add(absl::StrCat("s", s), templates).ok());
    all.insert(all.end(), templates.begin(), templates.end());
  }
  return all;
}

void ExpectSameMatches(const std::vector<Match>& got,
                       const std::vector<Match>& want,
                       const std::string& where) {
  ASSERT_THAT(got, SizeIs(want.size())) << where;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(absl::StrCat(where, ", match ", i));
    EXPECT_EQ(got[i].subject_id, want[i].subject_id);
    // Bit-identical, not merely close.
    EXPECT_EQ(got[i].score, want[i].score);
    EXPECT_EQ(got[i].threshold, want[i].threshold);
    ASSERT_THAT(got[i].modality_scores, SizeIs(want[i].modality_scores.size()));
    for (size_t m = 0; m < want[i].modality_scores.size(); ++m) {
      EXPECT_EQ(got[i].modality_scores[m].modality,
                want[i].modality_scores[m].modality);
      EXPECT_EQ(got[i].modality_scores[m].score,
                want[i].modality_scores[m].score);
      EXPECT_EQ(got[i].modality_scores[m].normalized,
                want[i].modality_scores[m].normalized);
    }
  }
}

// Every set's IdentifyBatch result equals its own Identify's.
void ExpectBatchEqualsIdentify(const Matcher& matcher,
                               const std::vector<std::vector<Probe>>& sets,
                               const IdentifyOptions& options) {
  absl::StatusOr<std::vector<std::vector<Match>>> batch =
      matcher.IdentifyBatch(sets, options);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_THAT(*batch, SizeIs(sets.size()));
  for (size_t i = 0; i < sets.size(); ++i) {
    absl::StatusOr<std::vector<Match>> single =
        matcher.Identify(sets[i], options);
    ASSERT_TRUE(single.ok()) << single.status();
    ExpectSameMatches((*batch)[i], *single, absl::StrCat("set ", i));
  }
}

class IdentifyBatchTest : public ::testing::TestWithParam<IndexKind> {};

TEST_P(IdentifyBatchTest, EqualsIdentifyPerSet) {
  for (FusionRule rule : {FusionRule::kMean, FusionRule::kZScore}) {
    SCOPED_TRACE(FusionRuleName(rule));
    std::unique_ptr<Matcher> matcher = Open(SmallSpecs(GetParam()), rule);
    ASSERT_NE(matcher, nullptr);
    Random random(7);
    // Enough face templates for SQ8 to train its ranges and for HNSW to
    // build a graph that is not trivially exact.
    const std::vector<TemplateToAdd> enrolled = Enrol(*matcher, random, 1500);
    // More sets than kExactBatchBlasMinProbes probes per modality, so the
    // exact kind's sgemm path is taken, and a few for the small-batch one.
    for (size_t count : {size_t{3}, size_t{60}}) {
      std::vector<std::vector<Probe>> sets;
      for (size_t i = 0; i < count; ++i) {
        sets.push_back(RandomSet(random, enrolled));
      }
      IdentifyOptions options;
      options.max_candidates = 5;
      ExpectBatchEqualsIdentify(*matcher, sets, options);
      options.min_score = 0.3f;
      ExpectBatchEqualsIdentify(*matcher, sets, options);
      options.min_score = -std::numeric_limits<float>::infinity();
      options.restrict_to = {"s3", "s10", "s999", "nobody"};
      ExpectBatchEqualsIdentify(*matcher, sets, options);
    }
  }
}

TEST_P(IdentifyBatchTest, EmptyGalleryFindsNothing) {
  std::unique_ptr<Matcher> matcher = Open(SmallSpecs(GetParam()));
  ASSERT_NE(matcher, nullptr);
  Random random(3);
  std::vector<std::vector<Probe>> sets;
  for (size_t i = 0; i < 30; ++i) sets.push_back(RandomSet(random, {}));
  absl::StatusOr<std::vector<std::vector<Match>>> batch =
      matcher->IdentifyBatch(sets, IdentifyOptions());
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_THAT(*batch, SizeIs(sets.size()));
  for (const std::vector<Match>& matches : *batch)
    EXPECT_THAT(matches, IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(AllKinds, IdentifyBatchTest,
                         ::testing::Values(IndexKind::kExact,
                                           IndexKind::kExactSq8,
                                           IndexKind::kHnsw),
                         [](const auto& info) {
                           return std::string(IndexKindName(info.param));
                         });

TEST(IdentifyBatchErrorsTest, RefuseABadProbeNamingItsSet) {
  std::unique_ptr<Matcher> matcher = Open(SmallSpecs(IndexKind::kExact));
  ASSERT_NE(matcher, nullptr);
  Random random(5);
  const std::vector<std::vector<Probe>> sets = {
      {{Modality::kFace, random.Vector(24)}},
      {{Modality::kFingerprint, random.Vector(24)}}};
  absl::StatusOr<std::vector<std::vector<Match>>> batch =
      matcher->IdentifyBatch(sets, IdentifyOptions());
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(batch.status().message(), HasSubstr("probe_sets[1].probes[0]"));
  batch = matcher->IdentifyAgainstEarlier({"a", "b"}, sets, IdentifyOptions());
  EXPECT_THAT(batch.status().message(), HasSubstr("probe_sets[1].probes[0]"));
  batch = matcher->IdentifyBatch({{}}, IdentifyOptions());
  EXPECT_THAT(batch.status().message(), HasSubstr("probe_sets[0].probes"));
  IdentifyOptions nan;
  nan.min_score = std::numeric_limits<float>::quiet_NaN();
  batch = matcher->IdentifyBatch({}, nan);
  EXPECT_THAT(batch.status().message(), HasSubstr("min_score"));
  const std::vector<std::vector<Probe>> two_good = {
      {{Modality::kFace, random.Vector(24)}},
      {{Modality::kFace, random.Vector(24)}}};
  batch =
      matcher->IdentifyAgainstEarlier({"a", "a"}, two_good, IdentifyOptions());
  EXPECT_THAT(batch.status().message(), HasSubstr("subject_ids[1]"));
  batch = matcher->IdentifyAgainstEarlier({"a"}, two_good, IdentifyOptions());
  EXPECT_THAT(batch.status().message(), HasSubstr("subject_ids"));
}

// IdentifyAgainstEarlier's result[j] against Identify on a matcher filled
// with sets 0..j-1, set by set: what BatchEnroll's deduplication used to do.
void ExpectEarlierEqualsIncremental(FusionRule rule,
                                    const std::vector<std::string>& ids,
                                    const std::vector<std::vector<Probe>>& sets,
                                    const IdentifyOptions& options) {
  std::unique_ptr<Matcher> incremental =
      Open(SmallSpecs(IndexKind::kExact), rule);
  std::unique_ptr<Matcher> empty = Open(SmallSpecs(IndexKind::kExact), rule);
  ASSERT_NE(incremental, nullptr);
  ASSERT_NE(empty, nullptr);
  absl::StatusOr<std::vector<std::vector<Match>>> earlier =
      empty->IdentifyAgainstEarlier(ids, sets, options);
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  ASSERT_THAT(*earlier, SizeIs(sets.size()));
  int64_t label = 0;
  for (size_t j = 0; j < sets.size(); ++j) {
    absl::StatusOr<std::vector<Match>> single =
        incremental->Identify(sets[j], options);
    ASSERT_TRUE(single.ok()) << single.status();
    ExpectSameMatches((*earlier)[j], *single, absl::StrCat("set ", j));
    std::vector<TemplateToAdd> adds;
    for (const Probe& p : sets[j])
      adds.push_back({p.modality, ++label, p.vector});
    ASSERT_TRUE(incremental->Add(ids[j], adds).ok());
  }
}

TEST(IdentifyAgainstEarlierTest, EqualsIdentifyOnAMatcherFilledSetBySet) {
  Random random(11);
  std::vector<std::string> ids;
  std::vector<std::vector<Probe>> sets;
  std::vector<TemplateToAdd> so_far;
  for (size_t j = 0; j < 80; ++j) {
    // Ids not in set order, so ties are broken by id, not by position.
    ids.push_back(absl::StrCat("b", 1000 - j));
    sets.push_back(RandomSet(random, so_far));
    for (const Probe& p : sets.back())
      so_far.push_back({p.modality, 0, p.vector});
  }
  // Exact ties: two sets identical to an earlier one.
  sets[50] = sets[10];
  sets[60] = sets[10];
  for (FusionRule rule : {FusionRule::kMean, FusionRule::kZScore}) {
    SCOPED_TRACE(FusionRuleName(rule));
    IdentifyOptions options;
    options.max_candidates = 3;
    ExpectEarlierEqualsIncremental(rule, ids, sets, options);
    options.max_candidates = 1;
    ExpectEarlierEqualsIncremental(rule, ids, sets, options);
    options.min_score = 0.5f;
    ExpectEarlierEqualsIncremental(rule, ids, sets, options);
    options.min_score = -std::numeric_limits<float>::infinity();
    options.restrict_to = {ids[2], ids[10], ids[70], "nobody"};
    ExpectEarlierEqualsIncremental(rule, ids, sets, options);
  }
}

TEST(IdentifyAgainstEarlierTest, FindsAnEarlierDuplicateAndOnlyEarlierOnes) {
  std::unique_ptr<Matcher> matcher = Open(SmallSpecs(IndexKind::kExact));
  ASSERT_NE(matcher, nullptr);
  Random random(13);
  const std::vector<float> face = random.Vector(24);
  const std::vector<std::vector<Probe>> sets = {
      {{Modality::kFace, face}},
      {{Modality::kIris,
        random.Vector(16)}},  // no face: never a face candidate
      {{Modality::kFace, random.Near(face)},
       {Modality::kFingerprint, random.Vector(16)}}};
  absl::StatusOr<std::vector<std::vector<Match>>> earlier =
      matcher->IdentifyAgainstEarlier({"x", "y", "z"}, sets, IdentifyOptions());
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  EXPECT_THAT((*earlier)[0], IsEmpty());
  EXPECT_THAT((*earlier)[1], IsEmpty());
  ASSERT_THAT((*earlier)[2], SizeIs(1));
  EXPECT_EQ((*earlier)[2][0].subject_id, "x");
  EXPECT_GT((*earlier)[2][0].score, 0.8f);
}

}  // namespace
}  // namespace hawiya::matcher
