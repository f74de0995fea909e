#include "matcher/top_hits.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace hawiya::matcher {
namespace {

// Every live row, sorted by BetterHit, cut to `keep`: what a top list must
// hold, however the rows reach it.
std::vector<ScanHit> BruteForce(const std::vector<float>& scores,
                                const std::vector<uint8_t>& live, size_t keep) {
  std::vector<ScanHit> all;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (live.empty() || live[i] != 0) all.push_back({scores[i], i});
  }
  std::sort(all.begin(), all.end(), BetterHit);
  if (all.size() > keep) all.resize(keep);
  return all;
}

void ExpectSameHits(const std::vector<ScanHit>& got,
                    const std::vector<ScanHit>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].row, want[i].row) << "hit " << i;
    EXPECT_EQ(got[i].score, want[i].score) << "hit " << i;
  }
}

// Scores with many exact ties, so the row order decides which rows make a
// cut.
std::vector<float> TiedScores(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> level(0, 15);
  std::vector<float> scores(n);
  for (float& s : scores) s = static_cast<float>(level(rng)) / 16.0f;
  return scores;
}

TEST(TopHitsTest, BlocksInAnyOrderGiveTheBruteForceTop) {
  std::mt19937 rng(7);
  const size_t n = 1000;
  const std::vector<float> scores = TiedScores(n, rng);
  for (size_t keep :
       {size_t{1}, size_t{10}, size_t{999}, size_t{1000}, size_t{5000}}) {
    // Blocks of 64 rows, offered last block first: the list must not depend
    // on the order rows arrive in (the scan pool's threads, shards).
    std::vector<ScanHit> top;
    for (size_t begin = (n - 1) / 64 * 64;; begin -= 64) {
      const size_t count = std::min<size_t>(64, n - begin);
      AddToTop(scores.data() + begin, count, begin, /*live=*/nullptr, keep,
               &top);
      if (begin == 0) break;
    }
    SortBest(keep, &top);
    ExpectSameHits(top, BruteForce(scores, {}, keep));
  }
}

TEST(TopHitsTest, SkipsRowsThatAreNotLive) {
  std::mt19937 rng(11);
  const size_t n = 500;
  const std::vector<float> scores = TiedScores(n, rng);
  std::vector<uint8_t> live(n);
  std::bernoulli_distribution alive(0.5);
  for (uint8_t& l : live) l = alive(rng) ? 1 : 0;
  for (size_t keep : {size_t{1}, size_t{20}, size_t{n}}) {
    std::vector<ScanHit> top;
    for (size_t begin = 0; begin < n; begin += 100) {
      AddToTop(scores.data() + begin, 100, begin, live.data() + begin, keep,
               &top);
    }
    SortBest(keep, &top);
    ExpectSameHits(top, BruteForce(scores, live, keep));
  }
}

TEST(TopHitsTest, SortBestMergesListsAndKeepsTheBest) {
  std::mt19937 rng(13);
  const size_t n = 300;
  const std::vector<float> scores = TiedScores(n, rng);
  const size_t keep = 25;
  // Two lists over disjoint halves, concatenated, as the scan pool merges
  // its threads' lists.
  std::vector<ScanHit> first;
  std::vector<ScanHit> second;
  AddToTop(scores.data(), n / 2, 0, nullptr, keep, &first);
  AddToTop(scores.data() + n / 2, n - n / 2, n / 2, nullptr, keep, &second);
  first.insert(first.end(), second.begin(), second.end());
  SortBest(keep, &first);
  ExpectSameHits(first, BruteForce(scores, {}, keep));
}

}  // namespace
}  // namespace hawiya::matcher
