// Internal to matcher/: the current generation (hnsw_generation.h) of an
// hnsw or auto gallery, and the background rebuilds that replace it.
//
// A background thread builds a new generation (storage + graph) from the
// live nodes when
//   - tombstones reach a quarter of the nodes (and kCompactMinTombstones):
//     compaction;
//   - a generation without a graph reaches graph_min_templates: auto
//     switching to HNSW, or the SQ8 graph storage having enough templates to
//     train its ranges on.
// The rebuild copies the live nodes that existed when it started, chunk by
// chunk under the reader lock (searches go on; writers wait only for one
// chunk's copy), and builds the new graph outside any lock. Writes go on
// against the current generation meanwhile and are also journalled; the
// rebuild replays the journal onto the new generation in rounds outside the
// lock until little is left, replays the rest under the writer lock and swaps
// the generations in one step. The destructor stops a rebuild between chunks
// and joins the thread.
//
// Locking: mu() is the gallery's one lock. The rebuilder owns it because a
// rebuild takes and releases it between its steps; the gallery guards what
// it keeps beside the generation (its SubjectBook) with the same lock, so
// that a write changes both under one writer lock.
#ifndef HAWIYA_MATCHER_HNSW_REBUILDER_H_
#define HAWIYA_MATCHER_HNSW_REBUILDER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "matcher/approximate_testing.h"
#include "matcher/gallery.h"
#include "matcher/hnsw_generation.h"

namespace hawiya::matcher {

class HnswRebuilder {
 public:
  struct Options {
    int dimension = 0;
    HnswOptions hnsw;
    // Live templates from which a generation wants a graph.
    size_t graph_min_templates = 0;
  };

  // REQUIRES: current != nullptr, built with options.dimension and
  // options.hnsw.
  HnswRebuilder(const Options& options,
                std::unique_ptr<HnswGeneration> current);
  // Stops a rebuild between chunks and joins the thread.
  ~HnswRebuilder();

  HnswRebuilder(const HnswRebuilder&) = delete;
  HnswRebuilder& operator=(const HnswRebuilder&) = delete;

  absl::Mutex& mu() const ABSL_LOCK_RETURNED(mu_) { return mu_; }
  const HnswGeneration& current() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return *current_;
  }
  // Whether a generation with `live` templates wants a graph.
  bool WantsGraph(size_t live) const {
    return live >= options_.graph_min_templates;
  }

  // HnswGeneration::Append on current(); the write is journalled for a
  // rebuild in progress. REQUIRES: as HnswGeneration::Append, vectors holds
  // labels.size() unit rows.
  absl::Status Append(std::vector<int64_t> labels, std::vector<float> vectors)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // HnswGeneration::Remove on current() for each label; journalled copies
  // of their templates are zeroed.
  void Remove(absl::Span<const int64_t> labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a rebuild if current() needs one (compaction or a first graph),
  // starting the thread on first use. Append and Remove call it.
  void MaybeScheduleRebuild() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Fills the generation and rebuild fields of *state (not `templates`).
  void FillState(ApproximateIndexState* state) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Blocks until no rebuild is queued or running.
  void WaitForRebuilds() const ABSL_LOCKS_EXCLUDED(mu_);
  void SetTestHooks(RebuildTestHooks hooks) ABSL_LOCKS_EXCLUDED(mu_);
  // current() and every generation swapped in later search with ef_search.
  // REQUIRES: 1 <= ef_search <= kMaxHnswEf.
  void SetEfSearch(int ef_search) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A write made while a rebuild runs, to replay onto the new generation.
  struct JournalOp {
    bool add = false;
    std::vector<int64_t> labels;
    // Unit rows of the added templates (adds only).
    std::vector<float> vectors;
  };

  size_t d() const { return static_cast<size_t>(options_.dimension); }
  bool WorkPending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return rebuild_requested_ || shutting_down_;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !rebuilding_; }
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // One rebuild: build, replay, swap. Takes and releases mu_ itself.
  void Rebuild() ABSL_LOCKS_EXCLUDED(mu_);
  // Replays journalled writes onto a generation not yet shared.
  static absl::Status Replay(const std::vector<JournalOp>& ops,
                             HnswGeneration* next);
  // Journalled templates are copies: clear them before they are freed, like
  // every other copy of a template that may since have been erased.
  static void ZeroVectors(std::vector<JournalOp>* ops);
  // Ends journaling (after a swap or a failure) and clears the journal.
  void StopJournal() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;

  mutable absl::Mutex mu_;
  std::unique_ptr<HnswGeneration> current_ ABSL_GUARDED_BY(mu_);
  // The efSearch of current_ and of every generation swapped in later:
  // options_.hnsw.ef_search until SetEfSearch changes it.
  int ef_search_ ABSL_GUARDED_BY(mu_);

  // rebuilding_ runs from the request to the swap (or the failure);
  // journaling_ from the moment the rebuild fixed the nodes it copies, so
  // that every later write is in journal_.
  bool rebuild_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool rebuilding_ ABSL_GUARDED_BY(mu_) = false;
  bool journaling_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<JournalOp> journal_ ABSL_GUARDED_BY(mu_);
  size_t journal_templates_ ABSL_GUARDED_BY(mu_) = 0;
  size_t rebuilds_ ABSL_GUARDED_BY(mu_) = 0;
  // Why the last rebuild failed, for FillState; a failed rebuild is retried
  // by the next write that finds one needed.
  absl::Status last_rebuild_error_ ABSL_GUARDED_BY(mu_);
  size_t chunk_nodes_ ABSL_GUARDED_BY(mu_);
  size_t min_tombstones_ ABSL_GUARDED_BY(mu_);
  std::function<void()> after_chunk_ ABSL_GUARDED_BY(mu_);
  // Started by the first rebuild, runs until the destructor joins it.
  std::thread worker_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_HNSW_REBUILDER_H_
