#include "matcher/scan_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "matcher/kernels.h"
#include "matcher/top_hits.h"

namespace hawiya::matcher {
namespace {

// Rows per Score call ("chunk"): at least this many, so the kernels' four
// streams are long enough for the hardware prefetchers...
constexpr size_t kMinChunkRows = 1024;
// ...at most this many scores per call (q * rows), 64 KiB, so the scores
// are still in L2 when the top-k pass reads them...
constexpr size_t kMaxChunkScores = 16384;
// ...and about this many chunks per thread, so a thread that the OS
// deschedules (the cores are shared with gRPC, SQLite, other processes)
// leaves its share to the others instead of holding up the pass.
constexpr size_t kChunksPerThread = 8;

size_t ChunkRows(size_t rows, size_t queries, int threads) {
  const size_t per_thread = static_cast<size_t>(threads) * kChunksPerThread;
  const size_t balanced = (rows + per_thread - 1) / per_thread;
  return std::max(kMinChunkRows, std::min(kMaxChunkScores / queries, balanced));
}

int DefaultThreads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

absl::Status CheckOptions(const ScanPoolOptions& options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError("threads: must be >= 0");
  }
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError("max_batch: must be >= 1");
  }
  if (options.max_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_wait: must be >= 0");
  }
  return absl::OkStatus();
}

absl::Mutex default_mu(absl::kConstInit);
ScanPoolOptions* default_options ABSL_GUARDED_BY(default_mu) = nullptr;
ScanPool* default_pool ABSL_GUARDED_BY(default_mu) = nullptr;

}  // namespace

void F32RowsSource::Score(absl::Span<const void* const> queries, size_t begin,
                          size_t end, float* scores) const {
  absl::InlinedVector<const float*, 8> typed(queries.size());
  for (size_t k = 0; k < queries.size(); ++k) {
    typed[k] = static_cast<const float*>(queries[k]);
  }
  InnerProductsMulti(typed.data(), typed.size(), base_ + begin * d_,
                     end - begin, d_, scores);
}

void Sq8RowsSource::Score(absl::Span<const void* const> queries, size_t begin,
                          size_t end, float* scores) const {
  absl::InlinedVector<const Sq8Query*, 8> typed(queries.size());
  for (size_t k = 0; k < queries.size(); ++k) {
    typed[k] = static_cast<const Sq8Query*>(queries[k]);
  }
  InnerProductsSq8Multi(typed.data(), typed.size(), codes_ + begin * d_,
                        end - begin, scores);
}

// One Search call, on its caller's stack.
struct ScanPool::Request {
  const ScanSource* source = nullptr;
  const void* query = nullptr;
  size_t fetch = 0;
  // Written by the thread that finishes the pass, before `done`.
  std::vector<ScanHit> result;
  absl::Notification done;
};

// A batch of requests against one source, scanned in chunks that the
// participating threads claim in order.
struct ScanPool::Pass {
  Pass(std::vector<Request*> batch, int slots, int threads)
      : requests(std::move(batch)),
        source(requests.front()->source),
        rows(source->rows()),
        chunk_rows(ChunkRows(rows, requests.size(), threads)),
        chunks((rows + chunk_rows - 1) / chunk_rows),
        lists(static_cast<size_t>(slots),
              std::vector<std::vector<ScanHit>>(requests.size())) {
    queries.reserve(requests.size());
    for (const Request* r : requests) queries.push_back(r->query);
  }

  const std::vector<Request*> requests;
  const ScanSource* const source;
  std::vector<const void*> queries;
  const size_t rows;
  const size_t chunk_rows;
  const size_t chunks;
  std::atomic<size_t> next_chunk{0};
  // lists[slot][k]: the best rows for query k among those that participant
  // `slot` scanned. Each slot belongs to one participant until it leaves.
  std::vector<std::vector<std::vector<ScanHit>>> lists;
  // Pool bookkeeping, under the pool's mu_: participants that joined (the
  // next slot), and those still scanning.
  size_t joined = 0;
  int participants = 0;
};

absl::Status ScanPool::SetDefaultOptions(const ScanPoolOptions& options) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  absl::MutexLock lock(&default_mu);
  if (default_pool != nullptr) {
    return absl::FailedPreconditionError(
        "the default scan pool is already running");
  }
  delete default_options;
  default_options = new ScanPoolOptions(options);
  return absl::OkStatus();
}

ScanPool& ScanPool::Default() {
  absl::MutexLock lock(&default_mu);
  if (default_pool == nullptr) {
    default_pool = new ScanPool(default_options != nullptr ? *default_options
                                                           : ScanPoolOptions());
  }
  return *default_pool;
}

ScanPool::ScanPool(const ScanPoolOptions& options)
    : threads_(options.threads > 0 ? options.threads : DefaultThreads()),
      max_batch_(std::max(1, options.max_batch)),
      max_wait_(std::max(absl::ZeroDuration(), options.max_wait)) {
  workers_.reserve(static_cast<size_t>(threads_));
  for (int i = 0; i < threads_; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ScanPool::~ScanPool() { Shutdown(); }

void ScanPool::Shutdown() {
  absl::MutexLock join_lock(&shutdown_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_cv_.SignalAll();
  }
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

ScanPool::Stats ScanPool::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

size_t ScanPool::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

bool ScanPool::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

std::vector<ScanHit> ScanPool::Search(const ScanSource& source,
                                      const void* query, size_t fetch) {
  if (source.rows() == 0 || fetch == 0) return {};
  Request request;
  request.source = &source;
  request.query = query;
  request.fetch = fetch;
  bool on_this_thread = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      on_this_thread = true;
      ++stats_.inline_queries;
    } else {
      queue_.push_back(&request);
      // All, not one: an idle worker forms the pass, and a worker waiting
      // out max_wait counts the queue.
      work_cv_.SignalAll();
    }
  }
  if (on_this_thread) {
    Pass pass({&request}, /*slots=*/1, /*threads=*/1);
    std::vector<float> scores;
    ScanChunks(&pass, 0, &scores);
    Finish(&pass);
  }
  request.done.WaitForNotification();
  return std::move(request.result);
}

std::vector<std::vector<ScanHit>> ScanPool::SearchMany(
    const ScanSource& source, absl::Span<const void* const> queries,
    size_t fetch) {
  std::vector<std::vector<ScanHit>> results(queries.size());
  if (source.rows() == 0 || fetch == 0 || queries.empty()) return results;
  // Not movable (Notification): sized once, never reallocated.
  std::vector<Request> requests(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    requests[i].source = &source;
    requests[i].query = queries[i];
    requests[i].fetch = fetch;
  }
  bool on_this_thread = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      on_this_thread = true;
      stats_.inline_queries += queries.size();
    } else {
      for (Request& request : requests) queue_.push_back(&request);
      work_cv_.SignalAll();
    }
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (on_this_thread) {
      // One query per pass, as Search does after Shutdown.
      Pass pass({&requests[i]}, /*slots=*/1, /*threads=*/1);
      std::vector<float> scores;
      ScanChunks(&pass, 0, &scores);
      Finish(&pass);
    }
    requests[i].done.WaitForNotification();
    results[i] = std::move(requests[i].result);
  }
  return results;
}

std::unique_ptr<ScanPool::Pass> ScanPool::TakeBatch() {
  std::vector<Request*> batch;
  const void* key = queue_.front()->source->batch_key();
  for (auto it = queue_.begin();
       it != queue_.end() && batch.size() < static_cast<size_t>(max_batch_);) {
    if ((*it)->source->batch_key() == key) {
      batch.push_back(*it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  ++stats_.passes;
  stats_.queries += batch.size();
  stats_.largest_batch = std::max(stats_.largest_batch, batch.size());
  return std::make_unique<Pass>(std::move(batch), threads_, threads_);
}

void ScanPool::ScanChunks(Pass* pass, size_t slot, std::vector<float>* scores) {
  const size_t q = pass->requests.size();
  std::vector<std::vector<ScanHit>>& lists = pass->lists[slot];
  scores->resize(q * pass->chunk_rows);
  while (true) {
    const size_t chunk =
        pass->next_chunk.fetch_add(1, std::memory_order_relaxed);
    if (chunk >= pass->chunks) break;
    const size_t begin = chunk * pass->chunk_rows;
    const size_t end = std::min(pass->rows, begin + pass->chunk_rows);
    const size_t n = end - begin;
    pass->source->Score(pass->queries, begin, end, scores->data());
    for (size_t k = 0; k < q; ++k) {
      AddToTop(scores->data() + k * n, n, begin, /*live=*/nullptr,
               pass->requests[k]->fetch, &lists[k]);
    }
  }
}

void ScanPool::Finish(Pass* pass) {
  for (size_t k = 0; k < pass->requests.size(); ++k) {
    Request* request = pass->requests[k];
    std::vector<ScanHit> merged;
    for (std::vector<std::vector<ScanHit>>& slot : pass->lists) {
      if (merged.empty()) {
        merged = std::move(slot[k]);
      } else {
        merged.insert(merged.end(), slot[k].begin(), slot[k].end());
      }
    }
    SortBest(request->fetch, &merged);
    request->result = std::move(merged);
    // The caller may return, destroying *request, as soon as this is done.
    request->done.Notify();
  }
}

void ScanPool::WorkerLoop(int worker) {
  char name[16];
  std::snprintf(name, sizeof(name), "hawiya-scan-%d", worker);
  pthread_setname_np(pthread_self(), name);
  std::vector<float> scores;  // this worker's chunk scores, reused
  uint64_t last_joined = 0;   // pass ids start at 1
  // Held except while scanning and finishing (explicit Lock/Unlock, as the
  // loop releases it in the middle).
  mu_.Lock();
  while (true) {
    if (pass_ == nullptr && !forming_ && !queue_.empty()) {
      if (max_wait_ > absl::ZeroDuration() && !stopping_ &&
          queue_.size() < static_cast<size_t>(max_batch_)) {
        // Wait for more queries; mu_ is released meanwhile, so forming_
        // keeps the other workers from starting a pass of their own.
        forming_ = true;
        const absl::Time deadline = absl::Now() + max_wait_;
        while (!stopping_ && queue_.size() < static_cast<size_t>(max_batch_) &&
               !work_cv_.WaitWithDeadline(&mu_, deadline)) {
        }
        forming_ = false;
      }
      pass_ = TakeBatch().release();
      ++pass_id_;
      // The others join it.
      work_cv_.SignalAll();
    }
    if (pass_ != nullptr && pass_id_ != last_joined) {
      Pass* pass = pass_;
      last_joined = pass_id_;
      const size_t slot = pass->joined++;
      ++pass->participants;
      mu_.Unlock();
      ScanChunks(pass, slot, &scores);
      mu_.Lock();
      // Every chunk is claimed: nobody else may join, and the next pass can
      // start while the last chunks of this one are scored.
      if (pass_ == pass) pass_ = nullptr;
      if (--pass->participants == 0) {
        // Every chunk is scored.
        mu_.Unlock();
        Finish(pass);
        delete pass;
        mu_.Lock();
      }
      continue;
    }
    if (stopping_ && queue_.empty() && pass_ == nullptr && !forming_) break;
    work_cv_.Wait(&mu_);
  }
  mu_.Unlock();
}

}  // namespace hawiya::matcher
