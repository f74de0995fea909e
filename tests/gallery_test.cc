#include "matcher/gallery.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hawiya::matcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<float> RandomVector(std::mt19937_64& rng, int d) {
  std::normal_distribution<float> normal;
  std::vector<float> v(d);
  for (float& x : v) x = normal(rng);
  return v;
}

// v + eps * noise: scores close to, but below, 1 against v.
std::vector<float> Near(std::mt19937_64& rng, const std::vector<float>& v,
                        float eps) {
  std::vector<float> out = RandomVector(rng, static_cast<int>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] + eps * out[i];
  return out;
}

double Cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

std::unique_ptr<Gallery> OpenGallery(int dimension) {
  absl::StatusOr<std::unique_ptr<Gallery>> gallery =
      Gallery::Open(GalleryOptions{dimension});
  EXPECT_TRUE(gallery.ok()) << gallery.status();
  return gallery.ok() ? *std::move(gallery) : nullptr;
}

std::vector<std::string> Ids(const std::vector<SubjectScore>& scores) {
  std::vector<std::string> ids;
  for (const SubjectScore& s : scores) ids.push_back(s.subject_id);
  return ids;
}

std::string TwoDigitId(size_t n) {
  return absl::StrCat("s", n < 10 ? "0" : "", n);
}

// The gallery's contents, kept independently, scored in double precision.
class Reference {
 public:
  void Add(const GalleryEntry& entry) {
    templates_[entry.subject_id].push_back(entry.vector);
  }
  void Remove(const std::string& subject_id) { templates_.erase(subject_id); }

  double Score(const std::string& subject_id,
               const std::vector<float>& probe) const {
    double best = -2.0;
    for (const std::vector<float>& t : templates_.at(subject_id)) {
      best = std::max(best, Cosine(t, probe));
    }
    return best;
  }

  // Every subject, best first, ties by id.
  std::vector<std::pair<std::string, double>> Rank(
      const std::vector<float>& probe) const {
    std::vector<std::pair<std::string, double>> out;
    for (const auto& [subject, unused] : templates_) {
      out.emplace_back(subject, Score(subject, probe));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    return out;
  }

  const std::map<std::string, std::vector<std::vector<float>>>& templates()
      const {
    return templates_;
  }

 private:
  std::map<std::string, std::vector<std::vector<float>>> templates_;
};

// Checks Search(probe, k) against the reference: same length, every score
// within 1e-4 of the double-precision one, and the same subjects in the same
// order wherever the reference ranking is not a float-level near tie.
void ExpectSearchMatchesReference(const Gallery& gallery,
                                  const Reference& reference,
                                  const std::vector<float>& probe, size_t k) {
  SCOPED_TRACE(absl::StrCat("k=", k));
  absl::StatusOr<std::vector<SubjectScore>> got = gallery.Search(probe, k);
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<std::pair<std::string, double>> want =
      reference.Rank(probe);
  ASSERT_EQ(got->size(), std::min(k, want.size()));
  for (size_t i = 0; i < got->size(); ++i) {
    const SubjectScore& g = (*got)[i];
    EXPECT_NEAR(g.score, want[i].second, 1e-4) << "rank " << i;
    EXPECT_NEAR(g.score, reference.Score(g.subject_id, probe), 1e-4);
    const bool clear_above =
        i == 0 || want[i - 1].second - want[i].second > 1e-5;
    const bool clear_below =
        i + 1 == want.size() || want[i].second - want[i + 1].second > 1e-5;
    if (clear_above && clear_below) {
      EXPECT_EQ(g.subject_id, want[i].first) << "rank " << i;
    }
    if (i > 0) {
      const SubjectScore& prev = (*got)[i - 1];
      EXPECT_TRUE(prev.score > g.score ||
                  (prev.score == g.score && prev.subject_id < g.subject_id))
          << "not best first at rank " << i;
    }
  }
}

TEST(CheckVectorTest, AcceptsFiniteNonZeroVectorOfTheRightDimension) {
  EXPECT_TRUE(CheckVector({0.0f, -3.0f, 1e30f}, 3).ok());
  // Squares of these underflow in float; the norm is still positive.
  EXPECT_TRUE(CheckVector({1e-30f, 0.0f}, 2).ok());
}

TEST(CheckVectorTest, RejectsWrongDimension) {
  const absl::Status s = CheckVector({1.0f, 2.0f, 3.0f}, 4);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "vector has 3 components, expected 4");
}

TEST(CheckVectorTest, RejectsNonFiniteComponentNamingItsIndex) {
  const absl::Status nan = CheckVector({1.0f, 2.0f, NAN, 4.0f}, 4);
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nan.message(), HasSubstr("component 2"));
  const absl::Status inf = CheckVector({-INFINITY, 2.0f}, 2);
  EXPECT_EQ(inf.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(inf.message(), HasSubstr("component 0"));
}

TEST(CheckVectorTest, RejectsZeroNorm) {
  const absl::Status s = CheckVector({0.0f, -0.0f, 0.0f}, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("zero norm"));
}

TEST(NormalizedTest, ReturnsUnitVectorInTheSameDirection) {
  const std::vector<float> v = Normalized({3.0f, 0.0f, -4.0f});
  ASSERT_EQ(v.size(), 3u);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.0f);
  EXPECT_FLOAT_EQ(v[2], -0.8f);
  // Components whose squares overflow float.
  const std::vector<float> big = Normalized({3e30f, 4e30f});
  EXPECT_FLOAT_EQ(big[0], 0.6f);
  EXPECT_FLOAT_EQ(big[1], 0.8f);
}

TEST(GalleryTest, OpenRejectsNonPositiveDimension) {
  EXPECT_EQ(Gallery::Open(GalleryOptions{0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Gallery::Open(GalleryOptions{-5}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GalleryTest, EmptyGallery) {
  std::unique_ptr<Gallery> gallery = OpenGallery(4);
  ASSERT_NE(gallery, nullptr);
  EXPECT_EQ(gallery->dimension(), 4);
  EXPECT_EQ(gallery->size(), 0u);
  EXPECT_EQ(gallery->index_kind(), "exact");
  EXPECT_FALSE(gallery->Contains("a"));
  absl::StatusOr<std::vector<SubjectScore>> found =
      gallery->Search({1, 0, 0, 0}, 10);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, IsEmpty());
  EXPECT_EQ(gallery->RemoveSubject("a"), 0u);
  EXPECT_TRUE(gallery->Add({}).ok());
}

TEST(GalleryTest, ScoresAreCosineSimilarityOfNormalisedVectors) {
  std::unique_ptr<Gallery> gallery = OpenGallery(2);
  ASSERT_NE(gallery, nullptr);
  ASSERT_TRUE(gallery->Add({{1, "a", {1000.0f, 0.0f}}}).ok());
  absl::StatusOr<float> same = gallery->ScoreSubject("a", {0.001f, 0.0f});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FLOAT_EQ(*same, 1.0f);
  absl::StatusOr<float> diagonal = gallery->ScoreSubject("a", {-2.0f, 2.0f});
  ASSERT_TRUE(diagonal.ok()) << diagonal.status();
  EXPECT_NEAR(*diagonal, -std::sqrt(0.5), 1e-6);
}

TEST(GalleryTest, MatchesBruteForceWithSeveralTemplatesPerSubject) {
  constexpr int kDim = 48;
  std::mt19937_64 rng(7);
  std::unique_ptr<Gallery> gallery = OpenGallery(kDim);
  ASSERT_NE(gallery, nullptr);
  Reference reference;
  std::vector<GalleryEntry> entries;
  int64_t label = 100;
  for (int s = 0; s < 300; ++s) {
    const int templates = 1 + s % 4;
    for (int t = 0; t < templates; ++t) {
      entries.push_back(
          {label++, absl::StrCat("s", s), RandomVector(rng, kDim)});
      reference.Add(entries.back());
    }
  }
  // In two batches, so that Add appends to a non-empty index.
  const size_t half = entries.size() / 2;
  ASSERT_TRUE(gallery->Add(absl::MakeSpan(entries).subspan(0, half)).ok());
  ASSERT_TRUE(gallery->Add(absl::MakeSpan(entries).subspan(half)).ok());
  EXPECT_EQ(gallery->size(), entries.size());

  for (int p = 0; p < 20; ++p) {
    SCOPED_TRACE(absl::StrCat("probe ", p));
    // Half the probes lie near an enrolled template, like mated searches.
    const std::vector<float> probe =
        p % 2 == 0 ? RandomVector(rng, kDim)
                   : Near(rng, entries[rng() % entries.size()].vector, 0.5f);
    for (size_t k : {1, 5, 17, 300, 1000}) {
      ExpectSearchMatchesReference(*gallery, reference, probe, k);
    }
    for (const auto& [subject, unused] : reference.templates()) {
      absl::StatusOr<float> score = gallery->ScoreSubject(subject, probe);
      ASSERT_TRUE(score.ok()) << score.status();
      EXPECT_NEAR(*score, reference.Score(subject, probe), 1e-4) << subject;
    }
    // Search and ScoreSubject agree bit for bit: Identify mixes them.
    absl::StatusOr<std::vector<SubjectScore>> top = gallery->Search(probe, 3);
    ASSERT_TRUE(top.ok()) << top.status();
    for (const SubjectScore& s : *top) {
      EXPECT_EQ(*gallery->ScoreSubject(s.subject_id, probe), s.score);
    }
  }
}

// A subject with many templates close to the probe must not crowd the other
// subjects out of a top-k that fetches only k templates.
TEST(GalleryTest, SubjectWithManyTemplatesDoesNotCrowdOutOthers) {
  constexpr int kDim = 32;
  std::mt19937_64 rng(11);
  std::unique_ptr<Gallery> gallery = OpenGallery(kDim);
  ASSERT_NE(gallery, nullptr);
  const std::vector<float> probe = RandomVector(rng, kDim);
  std::vector<GalleryEntry> entries;
  int64_t label = 0;
  for (int t = 0; t < 8; ++t) {
    entries.push_back({label++, "crowd", Near(rng, probe, 0.05f)});
  }
  entries.push_back({label++, "b", Near(rng, probe, 0.5f)});
  entries.push_back({label++, "c", Near(rng, probe, 1.0f)});
  entries.push_back({label++, "d", Near(rng, probe, 3.0f)});
  for (int s = 0; s < 50; ++s) {
    entries.push_back({label++, absl::StrCat("z", s), RandomVector(rng, kDim)});
  }
  ASSERT_TRUE(gallery->Add(entries).ok());
  absl::StatusOr<std::vector<SubjectScore>> top = gallery->Search(probe, 3);
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_THAT(Ids(*top), ElementsAre("crowd", "b", "c"));

  // With the crowd gone, the per-subject fetch shrinks; still exact.
  EXPECT_EQ(gallery->RemoveSubject("crowd"), 8u);
  top = gallery->Search(probe, 2);
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_THAT(Ids(*top), ElementsAre("b", "c"));
}

// Duplicate enrolments of one image tie exactly; the tie must go to the
// smallest subject_id even when FAISS's fetch cuts through the tied scores.
TEST(GalleryTest, ExactTiesAreBrokenBySubjectId) {
  constexpr int kDim = 16;
  std::mt19937_64 rng(3);
  std::unique_ptr<Gallery> gallery = OpenGallery(kDim);
  ASSERT_NE(gallery, nullptr);
  const std::vector<float> image = RandomVector(rng, kDim);
  std::vector<GalleryEntry> entries;
  int64_t label = 0;
  // Added in reverse order, so insertion order favours the wrong answer.
  for (int s = 19; s >= 0; --s) {
    entries.push_back({label++, TwoDigitId(s), image});
  }
  // Three templates for one subject make the fetch k * 3 template hits.
  for (int t = 0; t < 3; ++t) {
    entries.push_back({label++, "multi", RandomVector(rng, kDim)});
  }
  ASSERT_TRUE(gallery->Add(entries).ok());
  for (size_t k : {1, 2, 5}) {
    absl::StatusOr<std::vector<SubjectScore>> top = gallery->Search(image, k);
    ASSERT_TRUE(top.ok()) << top.status();
    ASSERT_EQ(top->size(), k);
    for (size_t i = 0; i < k; ++i) {
      EXPECT_EQ((*top)[i].subject_id, TwoDigitId(i));
    }
  }
}

TEST(GalleryTest, RemovedSubjectsAreNeverReturned) {
  constexpr int kDim = 24;
  std::mt19937_64 rng(5);
  std::unique_ptr<Gallery> gallery = OpenGallery(kDim);
  ASSERT_NE(gallery, nullptr);
  Reference reference;
  std::vector<GalleryEntry> entries;
  for (int s = 0; s < 100; ++s) {
    for (int t = 0; t < 1 + s % 3; ++t) {
      entries.push_back({static_cast<int64_t>(entries.size()),
                         absl::StrCat("s", s), RandomVector(rng, kDim)});
      reference.Add(entries.back());
    }
  }
  ASSERT_TRUE(gallery->Add(entries).ok());

  size_t remaining = entries.size();
  std::vector<GalleryEntry> removed_entries;
  for (int s = 0; s < 100; s += 3) {
    const std::string subject = absl::StrCat("s", s);
    const size_t templates = 1 + s % 3;
    EXPECT_EQ(gallery->RemoveSubject(subject), templates);
    EXPECT_EQ(gallery->RemoveSubject(subject), 0u);
    EXPECT_FALSE(gallery->Contains(subject));
    EXPECT_EQ(gallery->ScoreSubject(subject, entries[0].vector).status().code(),
              absl::StatusCode::kNotFound);
    reference.Remove(subject);
    remaining -= templates;
  }
  EXPECT_EQ(gallery->size(), remaining);

  // Probing with a removed template itself must not find its subject.
  for (const GalleryEntry& e : entries) {
    const bool removed = reference.templates().count(e.subject_id) == 0;
    absl::StatusOr<std::vector<SubjectScore>> all =
        gallery->Search(e.vector, 1000);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->size(), reference.templates().size());
    for (const SubjectScore& s : *all) {
      ASSERT_TRUE(reference.templates().count(s.subject_id)) << s.subject_id;
    }
    if (!removed) {
      EXPECT_EQ(all->front().subject_id, e.subject_id);
      EXPECT_NEAR(all->front().score, 1.0f, 1e-5);
    }
  }
  ExpectSearchMatchesReference(*gallery, reference, RandomVector(rng, kDim), 7);

  // The labels of removed templates stay free to use again.
  ASSERT_TRUE(gallery->Add({{0, "s0", entries[0].vector}}).ok());
  EXPECT_TRUE(gallery->Contains("s0"));
}

TEST(GalleryTest, BadVectorsAreRejectedAndNothingIsAdded) {
  std::unique_ptr<Gallery> gallery = OpenGallery(4);
  ASSERT_NE(gallery, nullptr);
  const GalleryEntry good{1, "a", {1, 2, 3, 4}};

  absl::Status s = gallery->Add({good, {2, "b", {1, 2, 3}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "entries[1].vector: vector has 3 components, expected 4");

  s = gallery->Add({good, {2, "b", {1, 2, 3, 4}}, {3, "b", {1, NAN, 3, 4}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("entries[2].vector: component 1"));

  s = gallery->Add({good, {2, "b", {0, 0, 0, 0}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("entries[1].vector: vector has zero norm"));

  s = gallery->Add({good, {2, "", {1, 2, 3, 4}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("entries[1].subject_id"));

  EXPECT_EQ(gallery->size(), 0u);
  EXPECT_FALSE(gallery->Contains("a"));

  ASSERT_TRUE(gallery->Add({good}).ok());
  absl::StatusOr<std::vector<SubjectScore>> bad_search =
      gallery->Search({1, 2, INFINITY, 4}, 1);
  EXPECT_EQ(bad_search.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_search.status().message(), HasSubstr("probe: component 2"));
  EXPECT_EQ(gallery->Search({1, 2}, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gallery->ScoreSubject("a", {0, 0, 0, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GalleryTest, DuplicateLabelsAreRejectedAndNothingIsAdded) {
  std::unique_ptr<Gallery> gallery = OpenGallery(2);
  ASSERT_NE(gallery, nullptr);
  ASSERT_TRUE(gallery->Add({{7, "a", {1, 0}}}).ok());

  absl::Status s = gallery->Add({{8, "b", {0, 1}}, {7, "b", {1, 1}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("entries[1].label: label 7"));

  s = gallery->Add({{9, "c", {0, 1}}, {10, "c", {1, 1}}, {9, "d", {1, 2}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("entries[2].label: label 9"));

  EXPECT_EQ(gallery->size(), 1u);
  EXPECT_FALSE(gallery->Contains("b"));
  EXPECT_FALSE(gallery->Contains("c"));
  EXPECT_FALSE(gallery->Contains("d"));
  // The refused labels were not taken.
  EXPECT_TRUE(gallery->Add({{8, "b", {0, 1}}, {9, "c", {0, 1}}}).ok());
  EXPECT_EQ(gallery->size(), 3u);
}

TEST(GalleryTest, SearchScoreStaysConsistentWhileSubjectsComeAndGo) {
  constexpr int kDim = 32;
  constexpr int kStable = 200;
  std::mt19937_64 rng(13);
  std::unique_ptr<Gallery> gallery = OpenGallery(kDim);
  ASSERT_NE(gallery, nullptr);
  std::vector<GalleryEntry> stable;
  for (int s = 0; s < kStable; ++s) {
    stable.push_back({s, absl::StrCat("stable", s), RandomVector(rng, kDim)});
  }
  ASSERT_TRUE(gallery->Add(stable).ok());

  // Churn vectors are random, so they never come near a stable template: any
  // search for a stable template must find its own subject first, at 1.
  std::vector<std::vector<float>> churn_vectors;
  for (int i = 0; i < 64; ++i) churn_vectors.push_back(RandomVector(rng, kDim));

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int> searches{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      // Every reader runs at least one full pass, however fast the writer.
      for (int i = r; !done.load() || i < kStable + r; ++i) {
        const GalleryEntry& e = stable[i % kStable];
        absl::StatusOr<std::vector<SubjectScore>> top =
            gallery->Search(e.vector, 4);
        if (!top.ok() || top->size() != 4 ||
            top->front().subject_id != e.subject_id ||
            std::abs(top->front().score - 1.0f) > 1e-5f ||
            !std::is_sorted(top->begin(), top->end(),
                            [](const SubjectScore& a, const SubjectScore& b) {
                              return a.score > b.score;
                            })) {
          ++failures;
        }
        absl::StatusOr<float> own =
            gallery->ScoreSubject(e.subject_id, e.vector);
        if (!own.ok() || std::abs(*own - 1.0f) > 1e-5f) ++failures;
        const size_t size = gallery->size();
        if (size < kStable || size > kStable + 3 * 200) {
          ++failures;
        }
        ++searches;
      }
    });
  }
  std::thread writer([&] {
    int64_t label = 1000;
    for (int round = 0; round < 200; ++round) {
      const std::string subject = absl::StrCat("churn", round % 16);
      if (round % 3 == 2) {
        gallery->RemoveSubject(subject);
        continue;
      }
      std::vector<GalleryEntry> batch;
      for (int t = 0; t < 1 + round % 3; ++t) {
        batch.push_back({label++, subject,
                         churn_vectors[(round + t) % churn_vectors.size()]});
      }
      if (!gallery->Add(batch).ok()) ++failures;
      absl::StatusOr<float> score =
          gallery->ScoreSubject(subject, batch.front().vector);
      if (!score.ok() || std::abs(*score - 1.0f) > 1e-5f) ++failures;
    }
    done.store(true);
  });
  writer.join();
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(searches.load(), 3 * kStable);
  for (int s = 0; s < 16; ++s) gallery->RemoveSubject(absl::StrCat("churn", s));
  EXPECT_EQ(gallery->size(), static_cast<size_t>(kStable));
}

}  // namespace
}  // namespace hawiya::matcher
