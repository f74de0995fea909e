// ScanPool: the threads that run exact (brute-force) scans of galleries.
//
// A flat scan is memory-bound: one core reads ~21-24 GB/s, two ~40 GB/s on
// the machines we measured, so a single query over 1M x 512 fp32 rows (2 GB)
// needs both cores to come near the memory-read limit, and two queries scanned
// separately cost twice the memory traffic of two queries scanned together.
// The pool therefore runs *passes*: a pass takes a batch of pending queries
// against the same rows and scores every row once for all of them
// (InnerProductsMulti), with the rows split across the pool's threads; each
// thread keeps per-query top-`fetch` lists for the rows it scanned, merged at
// the end of the pass.
//
// Batching is natural: when the pool is idle a query starts at once; queries
// that arrive while a pass runs wait for it and share the next one (up to
// max_batch). An optional bounded wait (max_wait) lets a pass that could take
// more queries wait for them; it is 0 by default (see docs/PERFORMANCE.md).
//
// Consistency: ScanPool never locks the rows it scans. A caller must keep its
// source's rows unchanged from before Search until it returns, typically by
// holding the index's reader lock across the call; sources with the same
// batch_key() share passes, so every caller of one index must do so. Lock
// order: index lock, then the pool's internal mutex; pool threads take only
// the latter, so callers blocked in Search never block a pass. A writer
// waiting for the index lock waits for the passes of the queries already
// queued (their callers hold the reader lock), at most
// ceil(queued / max_batch) + 1 passes; new readers queue behind it (absl::Mutex
// favours a waiting writer), so writers do not starve.
//
// Thread safety: all methods may be called concurrently, from any number of
// threads, except from inside a ScanSource::Score.
#ifndef HAWIYA_MATCHER_SCAN_POOL_H_
#define HAWIYA_MATCHER_SCAN_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "matcher/kernels.h"
#include "matcher/top_hits.h"

namespace hawiya::matcher {

// The rows a pass scans and how to score them, supplied by an index.
class ScanSource {
 public:
  virtual ~ScanSource() = default;

  // Requests whose sources have equal keys may share a pass, scored by the
  // source of the first of them: sources with equal keys must describe the
  // same rows, scored the same way (the index's address is a good key, given
  // the locking rule in the file comment).
  virtual const void* batch_key() const = 0;

  // The rows are [0, rows()).
  virtual size_t rows() const = 0;

  // For every k < queries.size() and begin <= i < end:
  //   scores[k * (end - begin) + (i - begin)] = query k's score for row i.
  // queries are the `query` arguments of the batched Search calls. Called
  // from several threads at once, on disjoint ranges; must not block.
  // REQUIRES: begin < end <= rows(); scores holds queries.size() * (end -
  // begin) floats.
  virtual void Score(absl::Span<const void* const> queries, size_t begin,
                     size_t end, float* scores) const = 0;
};

// float32 rows scored with InnerProductsMulti; queries are `const float*`
// holding d floats.
class F32RowsSource final : public ScanSource {
 public:
  // REQUIRES: base holds rows * d floats.
  F32RowsSource(const void* key, const float* base, size_t rows, size_t d)
      : key_(key), base_(base), rows_(rows), d_(d) {}
  const void* batch_key() const override { return key_; }
  size_t rows() const override { return rows_; }
  void Score(absl::Span<const void* const> queries, size_t begin, size_t end,
             float* scores) const override;

 private:
  const void* const key_;
  const float* const base_;
  const size_t rows_;
  const size_t d_;
};

// SQ8 codes (one byte per component) scored with InnerProductsSq8Multi;
// queries are `const Sq8Query*` with scale.size() == d.
class Sq8RowsSource final : public ScanSource {
 public:
  // REQUIRES: codes holds rows * d bytes.
  Sq8RowsSource(const void* key, const uint8_t* codes, size_t rows, size_t d)
      : key_(key), codes_(codes), rows_(rows), d_(d) {}
  const void* batch_key() const override { return key_; }
  size_t rows() const override { return rows_; }
  void Score(absl::Span<const void* const> queries, size_t begin, size_t end,
             float* scores) const override;

 private:
  const void* const key_;
  const uint8_t* const codes_;
  const size_t rows_;
  const size_t d_;
};

struct ScanPoolOptions {
  // Threads that run passes; 0 = one per core
  // (std::thread::hardware_concurrency()). REQUIRES: >= 0.
  int threads = 0;
  // Most queries in one pass. Up to about 8 (d = 512, AVX2) a pass costs
  // little more than a one-query pass (memory-bound); beyond, the
  // arithmetic dominates and a larger batch only makes its queries wait
  // longer. REQUIRES: >= 1.
  int max_batch = 8;
  // How long a pass that could take more queries waits for them before it
  // starts, when fewer than max_batch are queued. Zero: never waits.
  // REQUIRES: >= 0.
  absl::Duration max_wait = absl::ZeroDuration();
};

class ScanPool {
 public:
  // Counters since construction, for tests and benchmarks.
  struct Stats {
    uint64_t passes = 0;
    uint64_t queries = 0;  // queries scanned by passes
    size_t largest_batch = 0;
    uint64_t inline_queries = 0;  // run on the caller's thread (after Shutdown)
  };

  // The process-wide pool that galleries use unless given another one.
  // Created on first use with the options of SetDefaultOptions (defaults
  // otherwise) and never destroyed.
  static ScanPool& Default();
  // Sets the options Default() will be created with. FAILED_PRECONDITION if
  // it was already created; INVALID_ARGUMENT for options out of range.
  static absl::Status SetDefaultOptions(const ScanPoolOptions& options);

  // Starts the threads. Options out of range are clamped to the nearest
  // valid value (threads 0 and max_batch 0 mean the defaults).
  explicit ScanPool(const ScanPoolOptions& options = ScanPoolOptions());
  // Shutdown(). REQUIRES: no Search call is in progress.
  ~ScanPool();

  ScanPool(const ScanPool&) = delete;
  ScanPool& operator=(const ScanPool&) = delete;

  // The min(fetch, source.rows()) best rows of `source` against `query`, in
  // BetterHit order (top_hits.h; best first). Blocks until done. Scores
  // are whatever source.Score gives, bit for bit.
  // REQUIRES: fetch >= 1; source, query and the rows they describe stay
  // valid and unchanged until this returns, and so do those of every source
  // with the same batch_key() that is in a Search call meanwhile (see the
  // file comment); not called from a ScanSource::Score.
  std::vector<ScanHit> Search(const ScanSource& source, const void* query,
                              size_t fetch);

  // Search for each of `queries` against the same source, queued together
  // so that they share passes (up to max_batch() per pass) even when the
  // caller is a single thread: result[i] is what Search(source, queries[i],
  // fetch) returns, bit for bit. Blocks until all are done.
  // REQUIRES: as Search, for every query.
  std::vector<std::vector<ScanHit>> SearchMany(
      const ScanSource& source, absl::Span<const void* const> queries,
      size_t fetch);

  // Runs every query already queued, then stops the threads; Search calls
  // after it run on their caller's thread, one query per pass, still
  // correct. Idempotent.
  void Shutdown();

  int threads() const { return threads_; }
  int max_batch() const { return max_batch_; }
  absl::Duration max_wait() const { return max_wait_; }
  Stats stats() const;
  // Queries waiting for a pass (not counting the one running).
  size_t queued() const;
  // Whether Shutdown has begun.
  bool shutting_down() const;

 private:
  struct Request;
  struct Pass;

  void WorkerLoop(int worker);
  // Moves the front request and up to max_batch_ - 1 later ones with the
  // same batch key into a new pass. REQUIRES: queue_ is not empty.
  std::unique_ptr<Pass> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Scores chunks of the pass until none is left, into participant `slot`'s
  // lists. Runs without mu_.
  static void ScanChunks(Pass* pass, size_t slot, std::vector<float>* scores);
  // Merges the participants' lists into each request's result and wakes
  // the callers. Runs without mu_, after the last participant has left.
  static void Finish(Pass* pass);

  const int threads_;
  const int max_batch_;
  const absl::Duration max_wait_;

  mutable absl::Mutex mu_;
  // Signalled when there is something for a worker to do: a request
  // queued, a pass to join, a stop.
  absl::CondVar work_cv_;
  std::deque<Request*> queue_ ABSL_GUARDED_BY(mu_);
  // The running pass, while some of its rows are unclaimed or being scored.
  Pass* pass_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t pass_id_ ABSL_GUARDED_BY(mu_) = 0;
  // A worker is waiting (max_wait) to start the next pass.
  bool forming_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
  // Serialises Shutdown's join.
  absl::Mutex shutdown_mu_;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_SCAN_POOL_H_
