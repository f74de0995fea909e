#include "matcher/hnsw_rebuilder.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "matcher/approximate_testing.h"
#include "matcher/hnsw_generation.h"
#include "matcher/row_scan.h"

namespace hawiya::matcher {
namespace {

// Compaction starts once tombstones are this fraction of the nodes...
constexpr double kCompactFraction = 0.25;
// ...and at least this many (rebuilding a small graph for a few removals is
// not worth it).
constexpr size_t kCompactMinTombstones = 256;
// Nodes a rebuild copies (under the reader lock) and adds per step.
constexpr size_t kRebuildChunkNodes = 4096;
// Journalled templates a rebuild replays under the writer lock at the end;
// larger journals are replayed outside the lock first...
constexpr size_t kFinalReplayTemplates = 256;
// ...for at most this many rounds (writes could outpace the replay).
constexpr int kMaxReplayRounds = 8;

}  // namespace

HnswRebuilder::HnswRebuilder(const Options& options,
                             std::unique_ptr<HnswGeneration> current)
    : options_(options),
      current_(std::move(current)),
      ef_search_(options.hnsw.ef_search),
      chunk_nodes_(kRebuildChunkNodes),
      min_tombstones_(kCompactMinTombstones) {}

HnswRebuilder::~HnswRebuilder() {
  std::thread worker;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    worker = std::move(worker_);
  }
  if (worker.joinable()) worker.join();
}

absl::Status HnswRebuilder::Append(std::vector<int64_t> labels,
                                   std::vector<float> vectors) {
  if (absl::Status s = current_->Append(labels, vectors.data()); !s.ok()) {
    return s;
  }
  if (journaling_) {
    journal_templates_ += labels.size();
    journal_.push_back(JournalOp{true, std::move(labels), std::move(vectors)});
  }
  MaybeScheduleRebuild();
  return absl::OkStatus();
}

void HnswRebuilder::Remove(absl::Span<const int64_t> labels) {
  for (int64_t label : labels) current_->Remove(label);
  if (journaling_) {
    // The journal must not keep an erased template either.
    const absl::flat_hash_set<int64_t> removed(labels.begin(), labels.end());
    for (JournalOp& op : journal_) {
      if (!op.add) continue;
      for (size_t i = 0; i < op.labels.size(); ++i) {
        if (removed.contains(op.labels[i])) {
          std::fill_n(op.vectors.begin() + i * d(), d(), 0.0f);
        }
      }
    }
    journal_templates_ += labels.size();
    journal_.push_back(JournalOp{
        false, std::vector<int64_t>(labels.begin(), labels.end()), {}});
  }
  MaybeScheduleRebuild();
}

void HnswRebuilder::MaybeScheduleRebuild() {
  if (rebuilding_ || shutting_down_) return;
  const size_t tombstones = current_->tombstones();
  const bool compact =
      tombstones >= min_tombstones_ &&
      static_cast<double>(tombstones) >=
          kCompactFraction * static_cast<double>(current_->nodes());
  const bool first_graph =
      !current_->has_graph() && WantsGraph(current_->live());
  if (!compact && !first_graph) return;
  if (!worker_.joinable()) {
    try {
      worker_ = std::thread(&HnswRebuilder::WorkerLoop, this);
    } catch (const std::system_error& e) {
      // Searches stay correct without the rebuild; the next write retries.
      last_rebuild_error_ = absl::ResourceExhaustedError(
          absl::StrCat("cannot start the rebuild thread: ", e.what()));
      return;
    }
  }
  rebuilding_ = true;
  rebuild_requested_ = true;
}

void HnswRebuilder::WorkerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &HnswRebuilder::WorkPending));
      if (shutting_down_) return;
      rebuild_requested_ = false;
    }
    Rebuild();
  }
}

absl::Status HnswRebuilder::Replay(const std::vector<JournalOp>& ops,
                                   HnswGeneration* next) {
  for (const JournalOp& op : ops) {
    if (!op.add) {
      for (int64_t label : op.labels) next->Remove(label);
      continue;
    }
    for (int64_t label : op.labels) {
      if (next->HasLabel(label)) {
        return absl::InternalError(absl::StrCat(
            "rebuild: journalled label ", label, " is already in the index"));
      }
    }
    if (absl::Status s = next->Append(op.labels, op.vectors.data()); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

void HnswRebuilder::ZeroVectors(std::vector<JournalOp>* ops) {
  for (JournalOp& op : *ops) {
    std::fill(op.vectors.begin(), op.vectors.end(), 0.0f);
  }
}

void HnswRebuilder::StopJournal() {
  ZeroVectors(&journal_);
  journal_.clear();
  journal_templates_ = 0;
  journaling_ = false;
  rebuilding_ = false;
}

void HnswRebuilder::Rebuild() {
  size_t base = 0;
  bool graph = false;
  size_t chunk_nodes = kRebuildChunkNodes;
  std::function<void()> after_chunk;
  {
    absl::MutexLock lock(&mu_);
    base = current_->nodes();
    graph = current_->has_graph() || WantsGraph(current_->live());
    chunk_nodes = chunk_nodes_;
    after_chunk = after_chunk_;
    journal_.clear();
    journal_templates_ = 0;
    journaling_ = true;
  }
  absl::Status status;
  std::unique_ptr<HnswGeneration> next;
  std::vector<int64_t> labels;
  std::vector<float> rows;
  // Copies the live nodes of one chunk; false once the gallery is closing.
  auto copy_chunk = [&](size_t begin) {
    absl::ReaderMutexLock lock(&mu_);
    if (shutting_down_) return false;
    current_->CopyLive(begin, std::min(base, begin + chunk_nodes), &labels,
                       &rows);
    return true;
  };
  const absl::Status cancelled =
      absl::CancelledError("rebuild: the gallery is closing");
  try {
    std::vector<float> vmin;
    std::vector<float> vdiff;
    if (graph && options_.hnsw.sq8_storage) {
      Sq8RangeTrainer trainer(d());
      for (size_t begin = 0; status.ok() && begin < base;
           begin += chunk_nodes) {
        if (!copy_chunk(begin)) {
          status = cancelled;
          break;
        }
        trainer.Observe(rows.data(), labels.size());
      }
      trainer.Finish(kSq8RangeMargin, &vmin, &vdiff);
    }
    if (status.ok()) {
      next = std::make_unique<HnswGeneration>(options_.dimension, options_.hnsw,
                                              graph, vmin, vdiff);
    }
    for (size_t begin = 0; status.ok() && begin < base; begin += chunk_nodes) {
      if (!copy_chunk(begin)) {
        status = cancelled;
        break;
      }
      status = next->Append(labels, rows.data());
      if (status.ok() && after_chunk) after_chunk();
    }
  } catch (const std::exception& e) {
    status = absl::ResourceExhaustedError(absl::StrCat("rebuild: ", e.what()));
  }
  // The copies may hold a template erased since: clear them.
  std::fill(rows.begin(), rows.end(), 0.0f);

  bool swapped = false;
  for (int round = 0; status.ok() && !swapped; ++round) {
    std::vector<JournalOp> ops;
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) {
        status = cancelled;
        break;
      }
      if (journal_templates_ <= kFinalReplayTemplates ||
          round >= kMaxReplayRounds) {
        status = Replay(journal_, next.get());
        if (status.ok()) {
          // Built with options_'s efSearch; SetEfSearch may have changed it.
          next->SetEfSearch(ef_search_);
          std::swap(current_, next);
          ++rebuilds_;
          swapped = true;
          StopJournal();
          // Removals replayed onto the new generation may call for another.
          MaybeScheduleRebuild();
        }
        continue;
      }
      ops.swap(journal_);
      journal_templates_ = 0;
    }
    status = Replay(ops, next.get());
    ZeroVectors(&ops);
  }
  if (!swapped) {
    absl::MutexLock lock(&mu_);
    StopJournal();
    last_rebuild_error_ = status;
  }
  // The old generation (or the unfinished new one) goes outside the lock.
  next.reset();
}

void HnswRebuilder::FillState(ApproximateIndexState* state) const {
  state->nodes = current_->nodes();
  state->live = current_->live();
  state->tombstones = current_->tombstones();
  state->graph = current_->has_graph();
  state->sq8 = current_->sq8();
  state->rebuilding = rebuilding_;
  state->rebuilds = rebuilds_;
  state->last_rebuild_error = last_rebuild_error_;
  state->ef_search = ef_search_;
}

void HnswRebuilder::WaitForRebuilds() const {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &HnswRebuilder::Idle));
}

void HnswRebuilder::SetTestHooks(RebuildTestHooks hooks) {
  absl::MutexLock lock(&mu_);
  if (hooks.chunk_nodes > 0) chunk_nodes_ = hooks.chunk_nodes;
  if (hooks.min_tombstones > 0) min_tombstones_ = hooks.min_tombstones;
  after_chunk_ = std::move(hooks.after_chunk);
}

void HnswRebuilder::SetEfSearch(int ef_search) {
  // The writer lock: no search is inside the graph while its efSearch
  // changes.
  absl::WriterMutexLock lock(&mu_);
  ef_search_ = ef_search;
  current_->SetEfSearch(ef_search);
}

}  // namespace hawiya::matcher
