// Gallery::Save / Gallery::Load (the exact gallery) and Matcher::Save /
// Matcher::Load: what comes back searches exactly like what was saved, and a
// snapshot made with other options or damaged is refused, never half-used.
#include <cstddef>
#include <cstdint>
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
#include "matcher/matcher.h"
#include "matcher/snapshot.h"
#include "tests/testing/gallery_contents.h"

namespace hawiya::matcher {
namespace {

using ::testing::HasSubstr;

std::vector<float> RandomVector(std::mt19937_64& rng, int d) {
  std::normal_distribution<float> normal;
  std::vector<float> v(d);
  for (float& x : v) x = normal(rng);
  return v;
}

std::unique_ptr<Gallery> Open(int dimension) {
  absl::StatusOr<std::unique_ptr<Gallery>> gallery =
      Gallery::Open(GalleryOptions{dimension});
  EXPECT_TRUE(gallery.ok()) << gallery.status();
  return gallery.ok() ? *std::move(gallery) : nullptr;
}

std::string Save(const Gallery& gallery) {
  StringSnapshotWriter out;
  EXPECT_TRUE(gallery.Save(&out).ok());
  return out.bytes();
}

absl::StatusOr<std::unique_ptr<Gallery>> Load(const GalleryOptions& options,
                                              const std::string& bytes) {
  StringSnapshotReader in(bytes);
  absl::StatusOr<std::unique_ptr<Gallery>> gallery =
      Gallery::Load(options, &in);
  if (gallery.ok()) {
    EXPECT_TRUE(in.at_end());
  }
  return gallery;
}

// Equal search results, scores bit for bit.
void ExpectSameSearches(const Gallery& a, const Gallery& b, int d,
                        std::mt19937_64& rng) {
  ASSERT_EQ(a.size(), b.size());
  for (int q = 0; q < 20; ++q) {
    const std::vector<float> probe = RandomVector(rng, d);
    absl::StatusOr<std::vector<SubjectScore>> x = a.Search(probe, 7);
    absl::StatusOr<std::vector<SubjectScore>> y = b.Search(probe, 7);
    ASSERT_TRUE(x.ok() && y.ok());
    ASSERT_EQ(x->size(), y->size());
    for (size_t i = 0; i < x->size(); ++i) {
      EXPECT_EQ((*x)[i].subject_id, (*y)[i].subject_id);
      EXPECT_EQ((*x)[i].score, (*y)[i].score);
      absl::StatusOr<float> sa = a.ScoreSubject((*x)[i].subject_id, probe);
      absl::StatusOr<float> sb = b.ScoreSubject((*x)[i].subject_id, probe);
      ASSERT_TRUE(sa.ok() && sb.ok());
      EXPECT_EQ(*sa, *sb);
    }
  }
}

class ExactSnapshotTest : public ::testing::Test {
 protected:
  static constexpr int kD = 16;

  void SetUp() override {
    gallery_ = Open(kD);
    // Subjects with 1 to 3 templates, then removals, so that rows have moved
    // and labels are not in row order.
    int64_t label = 100;
    for (int s = 0; s < 60; ++s) {
      std::vector<GalleryEntry> entries;
      for (int t = 0; t <= s % 3; ++t) {
        entries.push_back(
            {label++, absl::StrCat("subject-", s), RandomVector(rng_, kD)});
      }
      ASSERT_TRUE(gallery_->Add(entries).ok());
    }
    for (int s = 0; s < 60; s += 7) {
      gallery_->RemoveSubject(absl::StrCat("subject-", s));
    }
  }

  std::mt19937_64 rng_{7};
  std::unique_ptr<Gallery> gallery_;
};

TEST_F(ExactSnapshotTest, RoundTripSearchesExactlyTheSame) {
  absl::StatusOr<std::unique_ptr<Gallery>> loaded =
      Load(GalleryOptions{kD}, Save(*gallery_));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->index_kind(), "exact");
  EXPECT_EQ((*loaded)->dimension(), kD);
  EXPECT_EQ((*loaded)->size(), gallery_->size());
  for (int s = 0; s < 60; ++s) {
    const std::string id = absl::StrCat("subject-", s);
    EXPECT_EQ((*loaded)->Contains(id), gallery_->Contains(id)) << id;
  }
  ExpectSameSearches(*gallery_, **loaded, kD, rng_);
  // Nothing was lost or added: the same rows, labels, subjects and vector
  // bits (the byte order of a save follows hash-map order).
  const std::string original_bytes = Save(*gallery_);
  const std::string reloaded_bytes = Save(**loaded);
  StringSnapshotReader original(original_bytes);
  StringSnapshotReader reloaded(reloaded_bytes);
  absl::StatusOr<std::vector<testing::GalleryRow>> a =
      testing::ReadExactGallery(&original);
  absl::StatusOr<std::vector<testing::GalleryRow>> b =
      testing::ReadExactGallery(&reloaded);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->size(), gallery_->size());
  EXPECT_TRUE(*a == *b);
}

TEST_F(ExactSnapshotTest, LoadedGalleryKeepsWorking) {
  absl::StatusOr<std::unique_ptr<Gallery>> loaded =
      Load(GalleryOptions{kD}, Save(*gallery_));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // Its labels are known: adding one again is refused.
  EXPECT_EQ((*loaded)->Add({{101, "someone", RandomVector(rng_, kD)}}).code(),
            absl::StatusCode::kAlreadyExists);
  // Removal and addition behave as on the original.
  EXPECT_EQ((*loaded)->RemoveSubject("subject-2"),
            gallery_->RemoveSubject("subject-2"));
  const std::vector<float> v = RandomVector(rng_, kD);
  ASSERT_TRUE((*loaded)->Add({{5000, "new", v}, {5001, "subject-4", v}}).ok());
  ASSERT_TRUE(gallery_->Add({{5000, "new", v}, {5001, "subject-4", v}}).ok());
  ExpectSameSearches(*gallery_, **loaded, kD, rng_);
  // The per-subject template counts were rebuilt: Search sizes its fetch on
  // them, and with none it would fetch a single row and find one subject.
  absl::StatusOr<std::vector<SubjectScore>> top = (*loaded)->Search(v, 2);
  ASSERT_TRUE(top.ok());
  ASSERT_EQ(top->size(), 2u);
  EXPECT_EQ((*top)[0].subject_id, "new");
  EXPECT_EQ((*top)[1].subject_id, "subject-4");
}

TEST(ExactSnapshotEmptyTest, EmptyGalleryRoundTrips) {
  std::unique_ptr<Gallery> empty = Open(8);
  absl::StatusOr<std::unique_ptr<Gallery>> loaded =
      Load(GalleryOptions{8}, Save(*empty));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->size(), 0u);
  EXPECT_TRUE((*loaded)->Search(std::vector<float>(8, 1.0f), 3)->empty());
}

TEST_F(ExactSnapshotTest, OtherOptionsAreRefused) {
  const std::string bytes = Save(*gallery_);
  absl::StatusOr<std::unique_ptr<Gallery>> loaded =
      Load(GalleryOptions{kD * 2}, bytes);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr("dimension"));

  GalleryOptions hnsw{kD};
  hnsw.index.kind = IndexKind::kHnsw;
  loaded = Load(hnsw, bytes);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("index.kind: the snapshot holds a exact gallery"));

  EXPECT_EQ(Load(GalleryOptions{0}, bytes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Every kind's snapshot reaches that kind's loader: a stream holding only
// the kind name is then truncated (DATA_LOSS), not refused as unsupported;
// an unknown name is DATA_LOSS too.
TEST(GalleryLoadTest, EveryKindDispatchesToItsLoader) {
  for (IndexKind kind : {IndexKind::kExact, IndexKind::kExactSq8,
                         IndexKind::kHnsw, IndexKind::kAuto}) {
    StringSnapshotWriter out;
    ASSERT_TRUE(out.WriteString(IndexKindName(kind)).ok());
    GalleryOptions options{8};
    options.index.kind = kind;
    absl::StatusOr<std::unique_ptr<Gallery>> loaded =
        Load(options, out.bytes());
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss)
        << IndexKindName(kind) << ": " << loaded.status();
  }
  StringSnapshotWriter out;
  ASSERT_TRUE(out.WriteString("quantum").ok());
  EXPECT_EQ(Load(GalleryOptions{8}, out.bytes()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(ExactSnapshotTest, EveryTruncationIsDataLoss) {
  const std::string bytes = Save(*gallery_);
  for (size_t n = 0; n < bytes.size(); ++n) {
    absl::StatusOr<std::unique_ptr<Gallery>> loaded =
        Load(GalleryOptions{kD}, bytes.substr(0, n));
    ASSERT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss)
        << "truncated to " << n;
  }
}

TEST_F(ExactSnapshotTest, InconsistentStreamsAreDataLoss) {
  // Hand-made streams: the layout of ExactGallery::Save with one field off.
  auto stream = [](std::vector<int64_t> labels, size_t rows_of_floats,
                   std::string ids, std::vector<int64_t> ends,
                   std::vector<int32_t> row_subject) {
    StringSnapshotWriter out;
    EXPECT_TRUE(out.WriteString("exact").ok());
    EXPECT_TRUE(out.WriteU64(2).ok());
    EXPECT_TRUE(out.WriteI64s(labels).ok());
    EXPECT_TRUE(out.WriteBytes(absl::MakeConstSpan(
                                   reinterpret_cast<const uint8_t*>(ids.data()),
                                   ids.size()))
                    .ok());
    EXPECT_TRUE(out.WriteI64s(ends).ok());
    EXPECT_TRUE(out.WriteI32s(row_subject).ok());
    std::vector<float> floats(rows_of_floats * 2, 0.5f);
    EXPECT_TRUE(
        out.WriteBytes(absl::MakeConstSpan(
                           reinterpret_cast<const uint8_t*>(floats.data()),
                           floats.size() * sizeof(float)))
            .ok());
    return out.bytes();
  };
  // The good one first, so the others fail for the one thing changed.
  ASSERT_TRUE(
      Load(GalleryOptions{2}, stream({1, 2}, 2, "ab", {1, 2}, {0, 1})).ok());
  for (const std::string& bad : {
           stream({1, 2}, 3, "ab", {1, 2}, {0, 1}),  // rows vs vectors
           stream({1, 1}, 2, "ab", {1, 2}, {0, 1}),  // a label twice
           stream({1, 2}, 2, "ab", {1, 2}, {0, 2}),  // no such subject
           stream({1, 2}, 2, "ab", {1, 2}, {0, -1}),
           stream({1, 2}, 2, "ab", {1, 2}, {0}),         // rows vs row subjects
           stream({1, 2}, 2, "ab", {0, 2}, {0, 1}),      // empty subject id
           stream({1, 2}, 2, "ab", {2, 1}, {0, 1}),      // bounds out of order
           stream({1, 2}, 2, "abc", {1, 2}, {0, 1}),     // stray id bytes
           stream({1, 2}, 2, "aa", {1, 2}, {0, 1}),      // a subject twice
           stream({1, 2}, 2, "abc", {1, 2, 3}, {0, 1}),  // subject, no row
       }) {
    EXPECT_EQ(Load(GalleryOptions{2}, bad).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

MatcherOptions ThreeModalities() {
  MatcherOptions options;
  options.modalities = {{Modality::kFace, 16, 0.4f, IndexOptions()},
                        {Modality::kFingerprint, 8, 0.45f, IndexOptions()},
                        {Modality::kIris, 8, 0.45f, IndexOptions()}};
  return options;
}

TEST(MatcherSnapshotTest, RoundTripMatchesTheSame) {
  std::mt19937_64 rng(3);
  absl::StatusOr<std::unique_ptr<Matcher>> matcher =
      Matcher::Open(ThreeModalities());
  ASSERT_TRUE(matcher.ok());
  int64_t label = 1;
  for (int s = 0; s < 30; ++s) {
    std::vector<TemplateToAdd> templates = {
        {Modality::kFace, label++, RandomVector(rng, 16)}};
    if (s % 2 == 0) {
      templates.push_back({Modality::kIris, label++, RandomVector(rng, 8)});
    }
    if (s % 3 == 0) {
      templates.push_back(
          {Modality::kFingerprint, label++, RandomVector(rng, 8)});
    }
    ASSERT_TRUE((*matcher)->Add(absl::StrCat("s", s), templates).ok());
  }
  StringSnapshotWriter out;
  ASSERT_TRUE((*matcher)->Save(&out).ok());

  // Thresholds shape no index: new ones apply to the loaded matcher.
  MatcherOptions options = ThreeModalities();
  options.modalities[0].threshold = 0.5f;
  StringSnapshotReader in(out.bytes());
  absl::StatusOr<std::unique_ptr<Matcher>> loaded = Matcher::Load(options, &in);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(in.at_end());
  EXPECT_FLOAT_EQ((*loaded)->spec(Modality::kFace)->threshold, 0.5f);
  const std::vector<GalleryInfo> before = (*matcher)->Info();
  const std::vector<GalleryInfo> after = (*loaded)->Info();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].templates, after[i].templates);
  }
  for (int q = 0; q < 10; ++q) {
    const std::vector<Probe> probes = {{Modality::kFace, RandomVector(rng, 16)},
                                       {Modality::kIris, RandomVector(rng, 8)}};
    absl::StatusOr<std::vector<Match>> a =
        (*matcher)->Identify(probes, IdentifyOptions());
    absl::StatusOr<std::vector<Match>> b =
        (*loaded)->Identify(probes, IdentifyOptions());
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size(); ++i) {
      EXPECT_EQ((*a)[i].subject_id, (*b)[i].subject_id);
      EXPECT_EQ((*a)[i].score, (*b)[i].score);
    }
  }
}

TEST(MatcherSnapshotTest, OtherModalitiesOrDimensionsAreRefused) {
  absl::StatusOr<std::unique_ptr<Matcher>> matcher =
      Matcher::Open(ThreeModalities());
  ASSERT_TRUE(matcher.ok());
  StringSnapshotWriter out;
  ASSERT_TRUE((*matcher)->Save(&out).ok());

  MatcherOptions fewer = ThreeModalities();
  fewer.modalities.pop_back();
  StringSnapshotReader in(out.bytes());
  absl::StatusOr<std::unique_ptr<Matcher>> loaded = Matcher::Load(fewer, &in);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr("modalities"));

  MatcherOptions wider = ThreeModalities();
  wider.modalities[1].dimension = 16;
  StringSnapshotReader again(out.bytes());
  loaded = Matcher::Load(wider, &again);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("FINGERPRINT gallery: dimension"));

  StringSnapshotReader junk("not a matcher");
  EXPECT_EQ(Matcher::Load(ThreeModalities(), &junk).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace hawiya::matcher
