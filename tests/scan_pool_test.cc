#include "matcher/scan_pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/gallery.h"
#include "matcher/kernels.h"

namespace hawiya::matcher {
namespace {

using ::testing::Each;
using ::testing::Le;

std::vector<float> RandomFloats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Rows and queries, and the single-threaded answer: every row scored with
// the one-query kernel, sorted by BetterHit.
struct Data {
  Data(size_t rows, size_t d, size_t queries, uint32_t seed)
      : rows(rows), d(d) {
    std::mt19937 rng(seed);
    base = RandomFloats(rows * d, rng);
    // Exact duplicates, so ties at the cut are common.
    for (size_t i = 0; i + 7 < rows; i += 97) {
      std::copy(base.begin() + i * d, base.begin() + (i + 1) * d,
                base.begin() + (i + 7) * d);
    }
    for (size_t k = 0; k < queries; ++k) {
      // Some queries are rows themselves (score ties with their duplicates).
      if (k % 3 == 0) {
        const size_t row = (k * 7919) % rows;
        this->queries.emplace_back(base.begin() + row * d,
                                   base.begin() + (row + 1) * d);
      } else {
        this->queries.push_back(RandomFloats(d, rng));
      }
    }
  }

  std::vector<ScanHit> Reference(size_t k, size_t fetch) const {
    std::vector<float> scores(rows);
    InnerProducts(queries[k].data(), base.data(), rows, d, scores.data());
    std::vector<ScanHit> all(rows);
    for (size_t i = 0; i < rows; ++i) all[i] = {scores[i], i};
    std::sort(all.begin(), all.end(), BetterHit);
    all.resize(std::min(fetch, rows));
    return all;
  }

  size_t rows;
  size_t d;
  std::vector<float> base;
  std::vector<std::vector<float>> queries;
};

void ExpectSameHits(const std::vector<ScanHit>& got,
                    const std::vector<ScanHit>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    // Bit for bit: same rows, same scores, same order.
    ASSERT_EQ(got[i].row, want[i].row) << "rank " << i;
    ASSERT_EQ(got[i].score, want[i].score) << "rank " << i;
  }
}

// Wraps a source: records the size of each pass (the batch seen by its
// first chunk) and which queries it saw, and while a gate is set, holds
// every Score call there until the gate is notified (so that tests can
// queue queries behind a running pass, with every pool thread busy).
class RecordingSource final : public ScanSource {
 public:
  explicit RecordingSource(const ScanSource* inner) : inner_(inner) {}

  const void* batch_key() const override { return inner_->batch_key(); }
  size_t rows() const override { return inner_->rows(); }
  void Score(absl::Span<const void* const> queries, size_t begin, size_t end,
             float* scores) const override {
    absl::Notification* gate = nullptr;
    bool first_at_gate = false;
    {
      absl::MutexLock lock(&mu_);
      if (begin == 0) {
        batches_.push_back(queries.size());
        for (const void* q : queries) seen_.push_back(q);
      }
      gate = gate_;
      first_at_gate = gate != nullptr && !entered_once_;
      if (first_at_gate) entered_once_ = true;
    }
    if (first_at_gate) entered_.Notify();
    if (gate != nullptr) gate->WaitForNotification();
    inner_->Score(queries, begin, end, scores);
  }

  void set_gate(absl::Notification* gate) {
    absl::MutexLock lock(&mu_);
    gate_ = gate;
  }
  // Notified when a Score call reaches the gate.
  absl::Notification& entered() { return entered_; }
  std::vector<size_t> batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  std::vector<const void*> seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  const ScanSource* const inner_;
  mutable absl::Mutex mu_;
  mutable absl::Notification* gate_ ABSL_GUARDED_BY(mu_) = nullptr;
  mutable bool entered_once_ ABSL_GUARDED_BY(mu_) = false;
  mutable std::vector<size_t> batches_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<const void*> seen_ ABSL_GUARDED_BY(mu_);
  mutable absl::Notification entered_;
};

void WaitUntil(const std::function<bool()>& condition) {
  // Polls rather than sleeps for a fixed time: no timing assumption, only
  // the test's own timeout bounds it.
  while (!condition()) absl::SleepFor(absl::Milliseconds(1));
}

TEST(ScanPoolTest, OneQueryMatchesSingleThreadedScan) {
  const Data data(5000, 37, 6, 1);
  const F32RowsSource source(&data, data.base.data(), data.rows, data.d);
  for (int threads : {1, 2, 3}) {
    ScanPool pool(ScanPoolOptions{threads});
    EXPECT_EQ(pool.threads(), threads);
    for (size_t k = 0; k < data.queries.size(); ++k) {
      for (size_t fetch :
           {size_t{1}, size_t{10}, size_t{1000}, data.rows, data.rows + 5}) {
        SCOPED_TRACE(
            absl::StrCat("threads=", threads, " k=", k, " fetch=", fetch));
        ExpectSameHits(pool.Search(source, data.queries[k].data(), fetch),
                       data.Reference(k, fetch));
      }
    }
  }
}

TEST(ScanPoolTest, SearchManySharesPassesAndMatchesSearch) {
  const Data data(5000, 37, 10, 4);
  const F32RowsSource inner(&data, data.base.data(), data.rows, data.d);
  const RecordingSource source(&inner);
  std::vector<const void*> queries;
  for (const std::vector<float>& q : data.queries) queries.push_back(q.data());
  // One thread: passes run strictly one after the other.
  ScanPool pool(ScanPoolOptions{1, 4});
  const std::vector<std::vector<ScanHit>> got =
      pool.SearchMany(source, queries, 20);
  ASSERT_EQ(got.size(), queries.size());
  for (size_t k = 0; k < queries.size(); ++k) {
    SCOPED_TRACE(absl::StrCat("query ", k));
    ExpectSameHits(got[k], data.Reference(k, 20));
  }
  // Queued together: full passes of max_batch, in order.
  EXPECT_EQ(source.batches(), (std::vector<size_t>{4, 4, 2}));
  EXPECT_EQ(source.seen(), queries);
  EXPECT_TRUE(pool.SearchMany(source, {}, 20).empty());

  // After Shutdown, on the caller's thread, still correct.
  pool.Shutdown();
  const std::vector<std::vector<ScanHit>> inline_got =
      pool.SearchMany(inner, queries, 20);
  ASSERT_EQ(inline_got.size(), queries.size());
  for (size_t k = 0; k < queries.size(); ++k) {
    ExpectSameHits(inline_got[k], data.Reference(k, 20));
  }
  EXPECT_EQ(pool.stats().inline_queries, queries.size());
}

TEST(ScanPoolTest, EmptySourceOrZeroFetchGivesNothing) {
  ScanPool pool(ScanPoolOptions{2});
  const float query[3] = {1, 2, 3};
  const F32RowsSource empty(&pool, nullptr, 0, 3);
  EXPECT_TRUE(pool.Search(empty, query, 10).empty());
  const F32RowsSource one(&pool, query, 1, 3);
  EXPECT_TRUE(pool.Search(one, query, 0).empty());
  EXPECT_EQ(pool.Search(one, query, 10).size(), 1u);
}

TEST(ScanPoolTest, Sq8SourceMatchesSingleQueryKernel) {
  const size_t rows = 3000, d = 40;
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> codes(rows * d);
  for (uint8_t& c : codes) c = static_cast<uint8_t>(byte(rng));
  std::vector<float> vmin(d, -1.0f), vdiff(d, 2.0f);
  std::vector<Sq8Query> queries;
  for (int k = 0; k < 5; ++k) {
    const std::vector<float> q = RandomFloats(d, rng);
    queries.push_back(PrepareSq8Query(q.data(), vmin.data(), vdiff.data(), d));
  }
  const Sq8RowsSource source(&codes, codes.data(), rows, d);
  ScanPool pool(ScanPoolOptions{2, 8});
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (size_t k = 0; k < queries.size(); ++k) {
    threads.emplace_back([&, k] {
      std::vector<float> scores(rows);
      InnerProductsSq8(queries[k], codes.data(), rows, scores.data());
      std::vector<ScanHit> want(rows);
      for (size_t i = 0; i < rows; ++i) want[i] = {scores[i], i};
      std::sort(want.begin(), want.end(), BetterHit);
      want.resize(20);
      const std::vector<ScanHit> got = pool.Search(source, &queries[k], 20);
      for (size_t i = 0; i < 20; ++i) {
        if (got.size() != 20 || got[i].row != want[i].row ||
            got[i].score != want[i].score) {
          ++failures;
          break;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// The server's shape: many threads (its match queue, plus more) searching
// at once. Every result must equal the single-threaded scan, however the
// queries were batched.
TEST(ScanPoolTest, ManyConcurrentSearchersGetSingleThreadedResults) {
  const Data data(20000, 64, 48, 3);
  std::vector<std::vector<ScanHit>> want;
  for (size_t k = 0; k < data.queries.size(); ++k) {
    want.push_back(data.Reference(k, 10 + k % 5));
  }
  const F32RowsSource source(&data, data.base.data(), data.rows, data.d);
  ScanPool pool(ScanPoolOptions{2, 4});
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 12; ++i) {
        const size_t k = (t * 12 + i) % data.queries.size();
        const std::vector<ScanHit> got =
            pool.Search(source, data.queries[k].data(), 10 + k % 5);
        bool same = got.size() == want[k].size();
        for (size_t r = 0; same && r < got.size(); ++r) {
          same =
              got[r].row == want[k][r].row && got[r].score == want[k][r].score;
        }
        if (!same) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const ScanPool::Stats stats = pool.stats();
  EXPECT_EQ(stats.queries, 16u * 12u);
  EXPECT_LE(stats.largest_batch, 4u);
  EXPECT_EQ(stats.inline_queries, 0u);
}

// Queries that arrive while a pass runs share the next passes, max_batch at
// a time, in arrival order.
TEST(ScanPoolTest, QueriesQueuedDuringAPassShareTheNextUpToTheCap) {
  const Data data(3000, 16, 8, 4);
  const F32RowsSource inner(&data, data.base.data(), data.rows, data.d);
  RecordingSource source(&inner);
  absl::Notification gate;
  source.set_gate(&gate);
  ScanPool pool(ScanPoolOptions{2, 3});
  std::vector<std::vector<ScanHit>> got(8);
  std::vector<std::thread> threads;
  threads.emplace_back(
      [&] { got[0] = pool.Search(source, data.queries[0].data(), 5); });
  source.entered().WaitForNotification();  // the first pass is running
  for (size_t k = 1; k < 8; ++k) {
    threads.emplace_back(
        [&, k] { got[k] = pool.Search(source, data.queries[k].data(), 5); });
  }
  WaitUntil([&] { return pool.queued() == 7; });
  gate.Notify();
  for (std::thread& t : threads) t.join();
  for (size_t k = 0; k < 8; ++k) ExpectSameHits(got[k], data.Reference(k, 5));
  std::vector<size_t> batches = source.batches();
  EXPECT_THAT(batches, Each(Le(3u)));
  // The gated pass, then 3 + 3 + 1 (passes may overlap, hence sorted).
  std::sort(batches.begin(), batches.end());
  EXPECT_EQ(batches, (std::vector<size_t>{1, 1, 3, 3}));
  const ScanPool::Stats stats = pool.stats();
  EXPECT_EQ(stats.passes, 4u);
  EXPECT_EQ(stats.queries, 8u);
  EXPECT_EQ(stats.largest_batch, 3u);
}

TEST(ScanPoolTest, SourcesWithDifferentKeysNeverShareAPass) {
  const Data a(2000, 8, 4, 5);
  const Data b(1500, 8, 4, 6);
  const F32RowsSource inner_a(&a, a.base.data(), a.rows, a.d);
  const F32RowsSource inner_b(&b, b.base.data(), b.rows, b.d);
  RecordingSource source_a(&inner_a);
  RecordingSource source_b(&inner_b);
  absl::Notification gate;
  source_a.set_gate(&gate);
  ScanPool pool(ScanPoolOptions{1, 8});
  std::vector<std::vector<ScanHit>> got_a(4), got_b(4);
  std::vector<std::thread> threads;
  threads.emplace_back(
      [&] { got_a[0] = pool.Search(source_a, a.queries[0].data(), 3); });
  source_a.entered().WaitForNotification();
  // Interleaved arrivals: b, a, b, a, ...
  for (size_t k = 0; k < 4; ++k) {
    threads.emplace_back(
        [&, k] { got_b[k] = pool.Search(source_b, b.queries[k].data(), 3); });
    WaitUntil([&] { return pool.queued() == 2 * k + 1; });
    if (k == 3) break;
    threads.emplace_back([&, k] {
      got_a[k + 1] = pool.Search(source_a, a.queries[k + 1].data(), 3);
    });
    WaitUntil([&] { return pool.queued() == 2 * k + 2; });
  }
  gate.Notify();
  for (std::thread& t : threads) t.join();
  for (size_t k = 0; k < 4; ++k) {
    ExpectSameHits(got_a[k], a.Reference(k, 3));
    ExpectSameHits(got_b[k], b.Reference(k, 3));
  }
  // Each source saw only its own queries, in two passes: the gated one,
  // then the b queries (the front of the queue) together, then the a ones.
  for (const void* q : source_a.seen()) {
    EXPECT_TRUE(std::any_of(a.queries.begin(), a.queries.end(),
                            [&](const auto& v) { return v.data() == q; }));
  }
  for (const void* q : source_b.seen()) {
    EXPECT_TRUE(std::any_of(b.queries.begin(), b.queries.end(),
                            [&](const auto& v) { return v.data() == q; }));
  }
  EXPECT_EQ(source_a.batches(), (std::vector<size_t>{1, 3}));
  EXPECT_EQ(source_b.batches(), (std::vector<size_t>{4}));
}

TEST(ScanPoolTest, ShutdownFinishesQueuedQueriesThenRunsSearchesInline) {
  const Data data(4000, 24, 6, 7);
  const F32RowsSource inner(&data, data.base.data(), data.rows, data.d);
  RecordingSource source(&inner);
  absl::Notification gate;
  source.set_gate(&gate);
  auto pool = std::make_unique<ScanPool>(ScanPoolOptions{2, 2});
  std::vector<std::vector<ScanHit>> got(6);
  std::vector<std::thread> threads;
  threads.emplace_back(
      [&] { got[0] = pool->Search(source, data.queries[0].data(), 4); });
  source.entered().WaitForNotification();
  for (size_t k = 1; k < 5; ++k) {
    threads.emplace_back(
        [&, k] { got[k] = pool->Search(source, data.queries[k].data(), 4); });
  }
  WaitUntil([&] { return pool->queued() == 4; });
  std::thread stopper([&] { pool->Shutdown(); });
  WaitUntil([&] { return pool->shutting_down(); });
  // Shutdown waits for the queued queries, which wait for the gate.
  gate.Notify();
  stopper.join();
  for (std::thread& t : threads) t.join();
  for (size_t k = 0; k < 5; ++k) ExpectSameHits(got[k], data.Reference(k, 4));
  EXPECT_EQ(pool->stats().queries, 5u);
  // After Shutdown, on the caller's thread.
  ExpectSameHits(pool->Search(source, data.queries[5].data(), 4),
                 data.Reference(5, 4));
  EXPECT_EQ(pool->stats().inline_queries, 1u);
  pool->Shutdown();  // idempotent
  pool.reset();
}

TEST(ScanPoolTest, MaxWaitStartsThePassOnceTheBatchIsFull) {
  const Data data(2000, 16, 3, 8);
  const F32RowsSource inner(&data, data.base.data(), data.rows, data.d);
  RecordingSource source(&inner);
  // Far longer than the test may take: the pass must start because the
  // batch is full, not because the wait ran out.
  ScanPool pool(ScanPoolOptions{2, 3, absl::Hours(1)});
  std::vector<std::vector<ScanHit>> got(3);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < 3; ++k) {
    threads.emplace_back(
        [&, k] { got[k] = pool.Search(source, data.queries[k].data(), 6); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t k = 0; k < 3; ++k) ExpectSameHits(got[k], data.Reference(k, 6));
  EXPECT_EQ(source.batches(), (std::vector<size_t>{3}));
}

TEST(ScanPoolTest, ShutdownEndsAMaxWait) {
  const Data data(500, 8, 1, 9);
  const F32RowsSource source(&data, data.base.data(), data.rows, data.d);
  ScanPool pool(ScanPoolOptions{1, 8, absl::Hours(1)});
  std::vector<ScanHit> got;
  std::thread searcher(
      [&] { got = pool.Search(source, data.queries[0].data(), 2); });
  WaitUntil([&] { return pool.queued() == 1; });
  pool.Shutdown();
  searcher.join();
  ExpectSameHits(got, data.Reference(0, 2));
}

TEST(ScanPoolTest, DefaultPoolOptions) {
  EXPECT_EQ(ScanPool::SetDefaultOptions(ScanPoolOptions{-1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ScanPool::SetDefaultOptions(ScanPoolOptions{1, 0}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ScanPool::SetDefaultOptions(ScanPoolOptions{1, 1, absl::Seconds(-1)})
          .code(),
      absl::StatusCode::kInvalidArgument);
  ScanPool& pool = ScanPool::Default();
  EXPECT_GE(pool.threads(), 1);
  EXPECT_EQ(&pool, &ScanPool::Default());
  EXPECT_EQ(ScanPool::SetDefaultOptions(ScanPoolOptions{}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Galleries on their own pool while subjects come and go: a search never
// returns a subject removed before it started, stable subjects are always
// found, and nothing crashes. A few seconds at most.
TEST(ScanPoolGalleryTest, SearchesDuringAddsAndRemovesNeverSeeRemovedSubjects) {
  constexpr int kDim = 32;
  constexpr int kStable = 3000;  // several chunks per pass
  constexpr int kChurn = 1000;
  ScanPool pool(ScanPoolOptions{2, 4});
  absl::StatusOr<std::unique_ptr<Gallery>> opened =
      Gallery::Open(GalleryOptions{kDim, IndexOptions(), &pool});
  ASSERT_TRUE(opened.ok()) << opened.status();
  Gallery& gallery = **opened;
  std::mt19937 rng(10);
  std::vector<GalleryEntry> stable;
  for (int s = 0; s < kStable; ++s) {
    stable.push_back({s, absl::StrCat("stable", s), RandomFloats(kDim, rng)});
  }
  ASSERT_TRUE(gallery.Add(stable).ok());
  std::vector<std::vector<float>> churn;
  for (int c = 0; c < kChurn; ++c) churn.push_back(RandomFloats(kDim, rng));
  // removed[c] is set once churn subject c has been removed for good.
  std::vector<std::atomic<bool>> removed(kChurn);

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<int> searches{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 6; ++r) {
    readers.emplace_back([&, r] {
      for (int i = r; !done.load() || i < 200 + r; ++i) {
        if (i % 2 == 0) {
          // A churn vector: its subject, if present, scores 1.
          const int c = (i * 31) % kChurn;
          const bool gone_before = removed[c].load();
          absl::StatusOr<std::vector<SubjectScore>> top =
              gallery.Search(churn[c], 3);
          if (!top.ok() || top->size() != 3) {
            ++failures;
            continue;
          }
          const std::string id = absl::StrCat("churn", c);
          for (const SubjectScore& s : *top) {
            if (gone_before && s.subject_id == id) ++failures;
          }
        } else {
          const GalleryEntry& e = stable[(i * 7) % kStable];
          absl::StatusOr<std::vector<SubjectScore>> top =
              gallery.Search(e.vector, 2);
          if (!top.ok() || top->empty() ||
              top->front().subject_id != e.subject_id ||
              std::abs(top->front().score - 1.0f) > 1e-5f) {
            ++failures;
          }
        }
        ++searches;
      }
    });
  }
  std::thread writer([&] {
    int64_t label = 100000;
    for (int c = 0; c < kChurn; ++c) {
      const std::string id = absl::StrCat("churn", c);
      if (!gallery.Add({{label++, id, churn[c]}, {label++, id, churn[c]}})
               .ok()) {
        ++failures;
      }
      if (c >= 2) {
        // Remove an older one for good.
        const int old = c - 2;
        if (gallery.RemoveSubject(absl::StrCat("churn", old)) != 2) {
          ++failures;
        }
        removed[old].store(true);
      }
    }
    done.store(true);
  });
  writer.join();
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(searches.load(), 6 * 200);
  EXPECT_EQ(gallery.size(), static_cast<size_t>(kStable + 2 * 2));
  EXPECT_GE(pool.stats().queries, 6u * 200u);
}

}  // namespace
}  // namespace hawiya::matcher
