// Internal to matcher/, for tests and benchmarks: a look inside the hnsw and
// auto galleries (graph, tombstones, background rebuilds), hooks to hold a
// rebuild open, and efSearch changed at run time.
#ifndef HAWIYA_MATCHER_APPROXIMATE_TESTING_H_
#define HAWIYA_MATCHER_APPROXIMATE_TESTING_H_

#include <cstddef>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "matcher/gallery.h"

namespace hawiya::matcher {

struct ApproximateIndexState {
  // HNSW node ids in use, live or tombstoned.
  size_t nodes = 0;
  size_t live = 0;
  size_t tombstones = 0;
  // Whether searches go through a graph (else they scan exactly).
  bool graph = false;
  // Whether the graph's storage is SQ8.
  bool sq8 = false;
  // A rebuild (compaction or first graph) is queued or running.
  bool rebuilding = false;
  // Rebuilds swapped in so far.
  size_t rebuilds = 0;
  // Templates (labels) in the subject book; equals `live` whenever the
  // gallery is consistent.
  size_t templates = 0;
  // Why the last rebuild failed (OK if none has); the next write that finds
  // a rebuild needed retries it.
  absl::Status last_rebuild_error;
  // The efSearch searches use (before raising it to the hits they need):
  // HnswOptions::ef_search, or what SetHnswEfSearch set last.
  int ef_search = 0;
};

// INVALID_ARGUMENT unless the gallery is an hnsw or auto gallery.
absl::StatusOr<ApproximateIndexState> GetApproximateIndexState(
    const Gallery& gallery);

// Blocks until no rebuild is queued or running. No-op for other kinds.
void WaitForRebuilds(const Gallery& gallery);

struct RebuildTestHooks {
  // Nodes a rebuild copies per step (0 keeps the default).
  size_t chunk_nodes = 0;
  // Tombstones before compaction is considered (0 keeps the default); the
  // fraction (a quarter of the nodes) still applies.
  size_t min_tombstones = 0;
  // Run by the rebuild thread after each chunk is added to the new index,
  // with no lock held: a test can block here to write while a rebuild is
  // half done.
  std::function<void()> after_chunk;
};

// INVALID_ARGUMENT unless the gallery is an hnsw or auto gallery.
absl::Status SetRebuildTestHooks(Gallery& gallery, RebuildTestHooks hooks);

// For benchmarks that sweep efSearch over one graph (building one at 1M
// templates takes many minutes): searches started after the call use
// `ef_search` in place of HnswOptions::ef_search, still raised to the number
// of candidates a search needs, and so does every graph a later background
// rebuild (first graph of an auto or SQ8 gallery, compaction) swaps in.
// Waits for running searches (takes the writer lock). Not persisted: a
// snapshot loads with the options' ef_search.
// INVALID_ARGUMENT unless the gallery is an hnsw or auto gallery and
// 1 <= ef_search <= kMaxHnswEf.
absl::Status SetHnswEfSearch(Gallery& gallery, int ef_search);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_APPROXIMATE_TESTING_H_
