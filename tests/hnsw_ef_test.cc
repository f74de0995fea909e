// SetHnswEfSearch (matcher/approximate_testing.h): efSearch changed at run
// time on hnsw and auto galleries, kept by graphs that background rebuilds
// swap in later, safe with concurrent searches.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/approximate_testing.h"
#include "matcher/gallery.h"
#include "matcher/synthetic.h"

namespace hawiya::matcher {
namespace {

using ::testing::HasSubstr;

constexpr int kDim = 128;
constexpr uint64_t kIdentities = 3000;

std::string Subject(uint64_t identity) { return absl::StrCat("s", identity); }

std::vector<GalleryEntry> Entries(const SyntheticModel& model, uint64_t first,
                                  uint64_t count) {
  std::vector<GalleryEntry> entries;
  for (uint64_t i = first; i < first + count; ++i) {
    entries.push_back(
        GalleryEntry{static_cast<int64_t>(i), Subject(i), model.Capture(i, 0)});
  }
  return entries;
}

SyntheticModel HardModel(uint64_t seed) {
  SyntheticOptions options{kDim, seed};
  options.hard = true;
  return SyntheticModel(options);
}

// A deliberately weak graph (degree 16, narrow construction) searched for one
// candidate per query (rerank_factor 1, k = 1), so that efSearch alone
// decides how often the search finds the best template on hard data.
GalleryOptions WeakGraph(IndexKind kind, int ef_search) {
  GalleryOptions options{kDim};
  options.index.kind = kind;
  options.index.hnsw.m = 8;
  options.index.hnsw.ef_construction = 16;
  options.index.hnsw.ef_search = ef_search;
  options.index.rerank_factor = 1;
  return options;
}

std::unique_ptr<Gallery> MustOpen(const GalleryOptions& options) {
  absl::StatusOr<std::unique_ptr<Gallery>> gallery = Gallery::Open(options);
  EXPECT_TRUE(gallery.ok()) << gallery.status();
  return gallery.ok() ? *std::move(gallery) : nullptr;
}

void AddAll(Gallery& gallery, const std::vector<GalleryEntry>& entries) {
  constexpr size_t kBatch = 500;
  for (size_t start = 0; start < entries.size(); start += kBatch) {
    const absl::Status s = gallery.Add(absl::MakeConstSpan(entries).subspan(
        start, std::min(kBatch, entries.size() - start)));
    ASSERT_TRUE(s.ok()) << s;
  }
}

// Fraction of the identities' capture-1 probes whose best subject in
// `gallery` is their own (every listed identity is enrolled, and on the
// synthetic model a mated capture outscores any look-alike by far, so this
// is rank-1 agreement with exact search).
double Rank1(const Gallery& gallery, const SyntheticModel& model,
             const std::vector<uint64_t>& identities) {
  size_t hits = 0;
  for (uint64_t i : identities) {
    absl::StatusOr<std::vector<SubjectScore>> got =
        gallery.Search(model.Capture(i, 1), 1);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok() && !got->empty() && (*got)[0].subject_id == Subject(i)) {
      ++hits;
    }
  }
  return static_cast<double>(hits) / identities.size();
}

// Every step-th identity below n, less the odd ones below
// odd_removed_below (which a test removed).
std::vector<uint64_t> Probes(uint64_t n, uint64_t step,
                             uint64_t odd_removed_below = 0) {
  std::vector<uint64_t> out;
  for (uint64_t i = 0; i < n; i += step) {
    if (i % 2 == 1 && i < odd_removed_below) continue;
    out.push_back(i);
  }
  return out;
}

int EfOf(const Gallery& gallery) {
  absl::StatusOr<ApproximateIndexState> state =
      GetApproximateIndexState(gallery);
  EXPECT_TRUE(state.ok()) << state.status();
  return state.ok() ? state->ef_search : -1;
}

TEST(HnswEfSearchTest, RefusesOtherKindsAndOutOfRangeValues) {
  for (IndexKind kind : {IndexKind::kExact, IndexKind::kExactSq8}) {
    GalleryOptions options{kDim};
    options.index.kind = kind;
    std::unique_ptr<Gallery> gallery = MustOpen(options);
    const absl::Status s = SetHnswEfSearch(*gallery, 64);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
        << IndexKindName(kind);
  }
  for (IndexKind kind : {IndexKind::kHnsw, IndexKind::kAuto}) {
    SCOPED_TRACE(IndexKindName(kind));
    std::unique_ptr<Gallery> gallery = MustOpen(WeakGraph(kind, 64));
    EXPECT_EQ(EfOf(*gallery), 64);
    for (int bad : {0, -1, kMaxHnswEf + 1}) {
      const absl::Status s = SetHnswEfSearch(*gallery, bad);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
      EXPECT_THAT(s.message(), HasSubstr("ef_search"));
    }
    EXPECT_EQ(EfOf(*gallery), 64);
    for (int good : {1, kMaxHnswEf, 32}) {
      EXPECT_TRUE(SetHnswEfSearch(*gallery, good).ok()) << good;
      EXPECT_EQ(EfOf(*gallery), good);
    }
  }
}

TEST(HnswEfSearchTest, HigherEfFindsMoreOnHardData) {
  const SyntheticModel model = HardModel(41);
  std::unique_ptr<Gallery> gallery = MustOpen(WeakGraph(IndexKind::kHnsw, 64));
  AddAll(*gallery, Entries(model, 0, kIdentities));
  WaitForRebuilds(*gallery);
  const std::vector<uint64_t> probes = Probes(kIdentities, 7);
  std::vector<double> rank1;
  for (int ef : {1, 16, 256}) {
    ASSERT_TRUE(SetHnswEfSearch(*gallery, ef).ok());
    rank1.push_back(Rank1(*gallery, model, probes));
    RecordProperty(absl::StrCat("rank1_ef", ef), absl::StrCat(rank1.back()));
  }
  EXPECT_GE(rank1[1], rank1[0]);
  EXPECT_GE(rank1[2], rank1[1]);
  // ef = 1 is a greedy walk on a weak graph: it must miss some.
  EXPECT_LT(rank1[0], rank1[2]);
  EXPECT_GE(rank1[2], 0.97);
}

// A compaction started before SetHnswEfSearch (its new graph already built
// with the options' ef) swaps in a graph searched with the new value.
TEST(HnswEfSearchTest, SurvivesACompactionRebuild) {
  const SyntheticModel model = HardModel(42);
  std::unique_ptr<Gallery> gallery = MustOpen(WeakGraph(IndexKind::kHnsw, 256));
  AddAll(*gallery, Entries(model, 0, kIdentities));
  WaitForRebuilds(*gallery);
  const size_t rebuilds_before = GetApproximateIndexState(*gallery)->rebuilds;

  absl::Notification started, proceed;
  RebuildTestHooks hooks;
  hooks.chunk_nodes = 256;
  hooks.after_chunk = [&] {
    if (started.HasBeenNotified()) return;
    started.Notify();
    proceed.WaitForNotification();
  };
  ASSERT_TRUE(SetRebuildTestHooks(*gallery, hooks).ok());
  // The odd identities below 1600: 800 of 3000 nodes, over a quarter.
  for (uint64_t i = 1; i < 1600; i += 2) {
    ASSERT_EQ(gallery->RemoveSubject(Subject(i)), 1u);
  }
  started.WaitForNotification();
  ASSERT_TRUE(GetApproximateIndexState(*gallery)->rebuilding);
  ASSERT_TRUE(SetHnswEfSearch(*gallery, 1).ok());
  proceed.Notify();
  WaitForRebuilds(*gallery);

  const ApproximateIndexState state = *GetApproximateIndexState(*gallery);
  ASSERT_EQ(state.rebuilds, rebuilds_before + 1);
  EXPECT_EQ(state.tombstones, 0u);
  EXPECT_TRUE(state.graph);
  EXPECT_EQ(state.ef_search, 1);
  const std::vector<uint64_t> probes = Probes(kIdentities, 5, 1600);
  const double rank1_ef1 = Rank1(*gallery, model, probes);
  ASSERT_TRUE(SetHnswEfSearch(*gallery, 256).ok());
  const double rank1_ef256 = Rank1(*gallery, model, probes);
  RecordProperty("rank1_ef1", absl::StrCat(rank1_ef1));
  RecordProperty("rank1_ef256", absl::StrCat(rank1_ef256));
  // Had the new graph kept the options' 256, both would be equal.
  EXPECT_LT(rank1_ef1, rank1_ef256);
  EXPECT_GE(rank1_ef256, 0.97);
}

// Set while an auto gallery still scans exactly, the value reaches the graph
// it builds when it crosses its threshold.
TEST(HnswEfSearchTest, AppliesToTheGraphAnAutoGalleryBuildsLater) {
  const SyntheticModel model = HardModel(43);
  GalleryOptions options = WeakGraph(IndexKind::kAuto, 256);
  options.index.auto_hnsw_min_templates = 1000;
  std::unique_ptr<Gallery> gallery = MustOpen(options);
  const std::vector<GalleryEntry> entries = Entries(model, 0, kIdentities);
  ASSERT_TRUE(gallery->Add(absl::MakeConstSpan(entries).subspan(0, 500)).ok());
  WaitForRebuilds(*gallery);
  ASSERT_EQ(gallery->index_kind(), "exact");
  ASSERT_TRUE(SetHnswEfSearch(*gallery, 1).ok());
  AddAll(*gallery,
         std::vector<GalleryEntry>(entries.begin() + 500, entries.end()));
  WaitForRebuilds(*gallery);
  ASSERT_EQ(gallery->index_kind(), "hnsw");
  EXPECT_EQ(EfOf(*gallery), 1);

  const std::vector<uint64_t> probes = Probes(kIdentities, 7);
  const double rank1_ef1 = Rank1(*gallery, model, probes);
  ASSERT_TRUE(SetHnswEfSearch(*gallery, 256).ok());
  const double rank1_ef256 = Rank1(*gallery, model, probes);
  EXPECT_LT(rank1_ef1, rank1_ef256);
  EXPECT_GE(rank1_ef256, 0.97);
}

// Searches running while efSearch changes always get full, valid answers.
TEST(HnswEfSearchTest, ChangesUnderConcurrentSearches) {
  const SyntheticModel model = HardModel(44);
  std::unique_ptr<Gallery> gallery = MustOpen(WeakGraph(IndexKind::kHnsw, 64));
  AddAll(*gallery, Entries(model, 0, 1000));
  std::atomic<bool> stop{false};
  std::atomic<size_t> searches{0};
  std::atomic<size_t> bad{0};
  std::vector<std::thread> searchers;
  for (int t = 0; t < 2; ++t) {
    searchers.emplace_back([&, t] {
      for (uint64_t i = t; !stop.load(); i = (i + 2) % 1000) {
        absl::StatusOr<std::vector<SubjectScore>> got =
            gallery->Search(model.Capture(i, 0), 5);
        if (!got.ok() || got->size() != 5) ++bad;
        ++searches;
        std::this_thread::yield();
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    ASSERT_TRUE(SetHnswEfSearch(*gallery, 1 + round % 300).ok());
    std::this_thread::yield();
  }
  while (searches.load() < 100) std::this_thread::yield();
  stop = true;
  for (std::thread& t : searchers) t.join();
  EXPECT_EQ(bad.load(), 0u);
}

}  // namespace
}  // namespace hawiya::matcher
