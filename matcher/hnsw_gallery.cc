// The hnsw and auto galleries: FAISS's HNSW graph over our kernel storage
// (kernel_storage.h), candidates re-ranked exactly in fp32.
//
// Nodes. HNSW node ids are append-only, so the gallery keeps its own
// label <-> node maps. The fp32 unit vectors live in node order in a
// KernelFlatIP, which is the graph's storage itself when the graph is fp32;
// with hnsw.sq8_storage the graph runs on a KernelSq8Storage and the fp32
// rows serve re-ranking, ScoreSubject and snapshots only.
//
// Tombstones. Removing a template tombstones its node: the node leaves the
// maps, searches filter it out through FAISS's IDSelector, and its vector is
// zeroed at once (an erased person's template must not linger), which leaves
// the node in the graph as a weak waypoint. FAISS 1.7.3 honours
// SearchParameters::sel only on HNSW's default search path (upper_beam == 1,
// search_bounded_queue, faiss/impl/HNSW.cpp:536, 542, 582 and 702); the
// upper_beam > 1 and unbounded paths drop the parameters, so this file never
// changes those two HNSW fields. Filtered nodes are still traversed, so the
// graph stays navigable; results can only come back short of k.
//
// Rebuilds. A background thread builds a new generation (storage + graph)
// from the live nodes when
//   - tombstones reach a quarter of the nodes (and kCompactMinTombstones):
//     compaction;
//   - a gallery without a graph reaches GraphMinTemplates(): auto switching
//     to HNSW, or the SQ8 graph storage having enough templates to train its
//     ranges on.
// The rebuild copies the live nodes that existed when it started, chunk by
// chunk under the reader lock (searches go on; writers wait only for one
// chunk's copy), and builds the new graph outside any lock. Writes go on
// against the current generation meanwhile and are also journalled; the
// rebuild replays the journal onto the new generation in rounds outside the
// lock until little is left, replays the rest under the writer lock and swaps
// the generations in one step. The destructor stops a rebuild between chunks
// and joins the thread.
//
// Without a graph (auto below its threshold, SQ8 storage before training) a
// search is an exact scan of the live nodes, equal to the exact gallery's.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "faiss/IndexHNSW.h"
#include "faiss/impl/AuxIndexStructures.h"
#include "faiss/impl/HNSW.h"
#include "faiss/impl/IDSelector.h"
#include "faiss/utils/Heap.h"
#include "matcher/approximate_testing.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/gallery_kinds.h"
#include "matcher/kernel_storage.h"
#include "matcher/kernels.h"
#include "matcher/row_scan.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

using FaissIdx = faiss::Index::idx_t;

constexpr uint32_t kFormatVersion = 1;
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

// Filters tombstones out of FAISS's HNSW results.
class LiveSelector final : public faiss::IDSelector {
 public:
  explicit LiveSelector(const uint8_t* live) : live_(live) {}
  bool is_member(idx_t id) const override { return live_[id] != 0; }

 private:
  const uint8_t* live_;
};

// FAISS's IndexHNSW::search allocates a visited table of ntotal bytes per
// call and opens an OpenMP region even for one query; a search here runs on
// the caller's thread with a table kept per thread. HNSW::search leaves it
// clean (VisitedTable::advance) for the next search, whichever gallery.
faiss::VisitedTable& ThreadVisitedTable(size_t nodes) {
  thread_local std::unique_ptr<faiss::VisitedTable> table;
  if (table == nullptr || table->visited.size() < nodes) {
    const size_t size = std::min(kMaxIndexRows, nodes + nodes / 2 + 1024);
    table = std::make_unique<faiss::VisitedTable>(static_cast<int>(size));
  }
  return *table;
}

// One generation of the index: nodes in insertion order, tombstones, and
// (optionally) the graph. Not thread-safe: HnswGallery guards it.
class NodeIndex {
 public:
  // `graph`: whether to keep an HNSW graph. vmin/vdiff: the SQ8 ranges when
  // the graph's storage is SQ8, else empty. REQUIRES: vmin.empty() || graph.
  NodeIndex(int d, const HnswOptions& hnsw, bool graph,
            const std::vector<float>& vmin, const std::vector<float>& vdiff);

  NodeIndex(const NodeIndex&) = delete;
  NodeIndex& operator=(const NodeIndex&) = delete;

  size_t nodes() const { return node_label_.size(); }
  size_t live() const { return nodes() - tombstones_; }
  size_t tombstones() const { return tombstones_; }
  bool has_graph() const { return graph_ != nullptr; }
  bool sq8() const { return sq8_ != nullptr; }
  bool HasLabel(int64_t label) const { return label_node_.contains(label); }
  // Searches from now on use `ef_search` (still raised to the hits a search
  // asks for). REQUIRES: 1 <= ef_search <= kMaxHnswEf; no search runs.
  void SetEfSearch(int ef_search);

  // Appends one node per label, all or nothing (INTERNAL if FAISS fails).
  // REQUIRES: no label is present; vectors holds labels.size() unit rows.
  absl::Status Append(absl::Span<const int64_t> labels, const float* vectors);
  // Tombstones the label's node and zeroes its vector; false if absent.
  bool Remove(int64_t label);

  // The exact answer over the live nodes. REQUIRES: k > 0, book holds
  // exactly the live labels.
  std::vector<SubjectScore> ExactSearch(const float* unit,
                                        const SubjectBook& book,
                                        size_t k) const;
  // Up to `hits` live nodes found by FAISS's HNSW search (efSearch raised to
  // `hits` when larger), with exact fp32 scores.
  // REQUIRES: has_graph(); 0 < hits <= nodes(); unit holds d unit floats.
  absl::Status GraphCandidates(const float* unit, size_t hits,
                               std::vector<LabelHit>* out) const;
  // The exact score of the label's template. REQUIRES: HasLabel(label).
  float Score(const float* unit, int64_t label) const {
    return InnerProduct(unit, Row(label_node_.at(label)), d_);
  }

  // Copies the live nodes of [begin, end) (labels and rows).
  void CopyLive(size_t begin, size_t end, std::vector<int64_t>* labels,
                std::vector<float>* rows) const;

  // See HnswGallery::Save for the layout.
  absl::Status Save(SnapshotWriter* out, const SubjectBook& book) const;
  // Fills `book` with the live labels' subjects. REQUIRES: book is empty.
  static absl::StatusOr<std::unique_ptr<NodeIndex>> Load(
      int d, const HnswOptions& hnsw, bool sq8_storage, SnapshotReader* in,
      SubjectBook* book);

 private:
  const float* Row(size_t node) const { return flat_->get_xb() + node * d_; }
  // Truncates storages and graph back to n0 nodes after a failed add.
  void RollBack(size_t n0);
  absl::Status LoadGraph(SnapshotReader* in);

  const size_t d_;
  HnswOptions hnsw_;
  // fp32 unit rows in node order (the graph's storage unless sq8_).
  std::unique_ptr<KernelFlatIP> flat_;
  std::unique_ptr<KernelSq8Storage> sq8_;
  // Over flat_ or sq8_, which it does not own (declared after them, so it is
  // destroyed first).
  std::unique_ptr<faiss::IndexHNSW> graph_;
  // node -> label (0 for tombstones), node -> 1 live / 0 tombstone.
  std::vector<int64_t> node_label_;
  std::vector<uint8_t> live_;
  absl::flat_hash_map<int64_t, uint32_t> label_node_;
  size_t tombstones_ = 0;
};

NodeIndex::NodeIndex(int d, const HnswOptions& hnsw, bool graph,
                     const std::vector<float>& vmin,
                     const std::vector<float>& vdiff)
    : d_(static_cast<size_t>(d)),
      hnsw_(hnsw),
      flat_(std::make_unique<KernelFlatIP>(d)) {
  if (!graph) return;
  faiss::Index* storage = flat_.get();
  if (!vmin.empty()) {
    sq8_ = std::make_unique<KernelSq8Storage>(d);
    sq8_->SetRanges(vmin, vdiff);
    storage = sq8_.get();
  }
  graph_ = std::make_unique<faiss::IndexHNSW>(storage, hnsw.m);
  graph_->hnsw.efConstruction = hnsw.ef_construction;
  graph_->hnsw.efSearch = hnsw.ef_search;
}

void NodeIndex::SetEfSearch(int ef_search) {
  hnsw_.ef_search = ef_search;
  if (graph_ != nullptr) graph_->hnsw.efSearch = ef_search;
}

absl::Status NodeIndex::Append(absl::Span<const int64_t> labels,
                               const float* vectors) {
  const size_t n = labels.size();
  if (n == 0) return absl::OkStatus();
  const size_t n0 = nodes();
  try {
    GrowCapacity(node_label_, n0 + n);
    GrowCapacity(live_, n0 + n);
    label_node_.reserve(label_node_.size() + n);
    const FaissIdx count = static_cast<FaissIdx>(n);
    if (graph_ == nullptr) {
      flat_->add(count, vectors);
    } else if (sq8_ == nullptr) {
      // flat_ is the graph's storage: IndexHNSW::add fills it.
      graph_->add(count, vectors);
    } else {
      flat_->add(count, vectors);
      graph_->add(count, vectors);
    }
  } catch (const std::exception& e) {
    RollBack(n0);
    return FaissError("add", e);
  }
  for (size_t i = 0; i < n; ++i) {
    node_label_.push_back(labels[i]);
    live_.push_back(1);
    label_node_.emplace(labels[i], static_cast<uint32_t>(n0 + i));
  }
  return absl::OkStatus();
}

void NodeIndex::RollBack(size_t n0) {
  // FAISS's HNSW add can only throw before it links anything (allocation in
  // prepare_level_tab or of its locks; linking runs inside OpenMP regions,
  // which cannot throw out), so truncating restores the graph exactly.
  flat_->codes.resize(n0 * flat_->code_size);
  flat_->ntotal = static_cast<FaissIdx>(n0);
  if (sq8_ != nullptr) {
    sq8_->codes.resize(n0 * sq8_->code_size);
    sq8_->ntotal = static_cast<FaissIdx>(n0);
  }
  if (graph_ != nullptr) {
    faiss::HNSW& hnsw = graph_->hnsw;
    if (hnsw.levels.size() > n0) hnsw.levels.resize(n0);
    if (hnsw.offsets.size() > n0 + 1) hnsw.offsets.resize(n0 + 1);
    hnsw.neighbors.resize(hnsw.offsets.back());
    graph_->ntotal = static_cast<FaissIdx>(n0);
  }
}

bool NodeIndex::Remove(int64_t label) {
  auto it = label_node_.find(label);
  if (it == label_node_.end()) return false;
  const size_t node = it->second;
  label_node_.erase(it);
  live_[node] = 0;
  node_label_[node] = 0;
  ++tombstones_;
  std::memset(flat_->codes.data() + node * flat_->code_size, 0,
              flat_->code_size);
  if (sq8_ != nullptr) {
    const std::vector<float> zero(d_, 0.0f);
    sq8_->sa_encode(1, zero.data(), sq8_->codes.data() + node * d_);
  }
  return true;
}

std::vector<SubjectScore> NodeIndex::ExactSearch(const float* unit,
                                                 const SubjectBook& book,
                                                 size_t k) const {
  return matcher::ExactSearch(unit, flat_->get_xb(), nodes(), d_, live_.data(),
                              node_label_, book, k);
}

absl::Status NodeIndex::GraphCandidates(const float* unit, size_t hits,
                                        std::vector<LabelHit>* out) const {
  out->clear();
  std::vector<float> distances(hits);
  std::vector<FaissIdx> found(hits);
  faiss::maxheap_heapify(hits, distances.data(), found.data());
  faiss::VisitedTable& visited = ThreadVisitedTable(nodes());
  try {
    // What IndexHNSW::search does per query, on this thread: the storage's
    // distance computer (ours), negated for inner product, and FAISS's
    // search with per-query parameters. HNSW::search sizes its candidate
    // heap by max(hnsw.efSearch, k) and stops on params->efSearch
    // (faiss/impl/HNSW.cpp:696 and 535), so asking for `hits` results with
    // params.efSearch = max(ef_search, hits) searches with that ef.
    NegatedDistanceComputer dis(std::unique_ptr<faiss::DistanceComputer>(
        graph_->storage->get_distance_computer()));
    dis.set_query(unit);
    faiss::SearchParametersHNSW params;
    params.efSearch = std::max(hnsw_.ef_search, static_cast<int>(hits));
    LiveSelector selector(live_.data());
    params.sel = &selector;
    graph_->hnsw.search(dis, static_cast<int>(hits), found.data(),
                        distances.data(), visited, &params);
  } catch (const std::exception& e) {
    visited.advance();
    return FaissError("search", e);
  }
  faiss::maxheap_reorder(hits, distances.data(), found.data());
  out->reserve(hits);
  for (FaissIdx node : found) {
    if (node < 0 || live_[node] == 0) continue;
    out->push_back(
        LabelHit{InnerProduct(unit, Row(node), d_), node_label_[node]});
  }
  return absl::OkStatus();
}

void NodeIndex::CopyLive(size_t begin, size_t end, std::vector<int64_t>* labels,
                         std::vector<float>* rows) const {
  labels->clear();
  rows->clear();
  for (size_t node = begin; node < end; ++node) {
    if (live_[node] == 0) continue;
    labels->push_back(node_label_[node]);
    rows->insert(rows->end(), Row(node), Row(node) + d_);
  }
}

// Generation layout (after the gallery's header):
//   u64 nodes N, u64 tombstones T,
//   N x i64 node labels (chunked; 0 for tombstones),
//   T x i32 tombstoned node ids (chunked, ascending),
//   (N - T) x string subject of each live node, in node order,
//   u32 has_graph, u32 sq8, [d floats vmin, d floats vdiff if sq8],
//   N x d floats rows (chunked; tombstones are zero),
//   if has_graph: N x i32 levels (chunked), i32 neighbours (chunked, as many
//   as the levels imply), i64 entry_point, i64 max_level, string rng state.
// The SQ8 codes are not written: our EncodeSq8 rebuilds them bit for bit.
absl::Status NodeIndex::Save(SnapshotWriter* out,
                             const SubjectBook& book) const {
  absl::Status s = out->WriteU64(nodes());
  if (s.ok()) s = out->WriteU64(tombstones_);
  if (s.ok()) s = WriteChunkedI64s(out, node_label_);
  std::vector<int32_t> dead;
  dead.reserve(tombstones_);
  for (size_t node = 0; node < nodes(); ++node) {
    if (live_[node] == 0) dead.push_back(static_cast<int32_t>(node));
  }
  if (s.ok()) s = WriteChunkedI32s(out, dead);
  for (size_t node = 0; s.ok() && node < nodes(); ++node) {
    if (live_[node] != 0) {
      s = out->WriteString(*book.SubjectOf(node_label_[node]));
    }
  }
  if (s.ok()) s = out->WriteU32(has_graph() ? 1 : 0);
  if (s.ok()) s = out->WriteU32(sq8() ? 1 : 0);
  if (s.ok() && sq8()) {
    s = out->WriteFloats(absl::MakeConstSpan(sq8_->vmin(), d_));
    if (s.ok()) s = out->WriteFloats(absl::MakeConstSpan(sq8_->vdiff(), d_));
  }
  if (s.ok()) {
    s = WriteChunkedFloats(out,
                           absl::MakeConstSpan(flat_->get_xb(), nodes() * d_));
  }
  if (!s.ok() || !has_graph()) return s;
  const faiss::HNSW& hnsw = graph_->hnsw;
  s = WriteChunkedI32s(out, hnsw.levels);
  if (s.ok()) s = WriteChunkedI32s(out, hnsw.neighbors);
  if (s.ok()) s = out->WriteI64(hnsw.entry_point);
  if (s.ok()) s = out->WriteI64(hnsw.max_level);
  if (s.ok()) {
    // The level generator's state, so that a loaded gallery draws the same
    // levels for its next nodes as the saved one would have.
    std::ostringstream rng;
    rng << hnsw.rng.mt;
    s = out->WriteString(rng.str());
  }
  return s;
}

absl::StatusOr<std::unique_ptr<NodeIndex>> NodeIndex::Load(
    int d, const HnswOptions& hnsw, bool sq8_storage, SnapshotReader* in,
    SubjectBook* book) {
  const size_t dim = static_cast<size_t>(d);
  absl::StatusOr<uint64_t> nodes = in->ReadU64();
  if (!nodes.ok()) return nodes.status();
  absl::StatusOr<uint64_t> tombstones = in->ReadU64();
  if (!tombstones.ok()) return tombstones.status();
  if (*nodes > kMaxIndexRows || *tombstones > *nodes) {
    return absl::DataLossError(absl::StrCat("snapshot: ", *nodes, " nodes, ",
                                            *tombstones, " tombstones"));
  }
  const size_t n = *nodes;
  std::vector<int64_t> labels;
  if (absl::Status s = ReadChunkedI64s(in, n, &labels); !s.ok()) return s;
  std::vector<int32_t> dead;
  if (absl::Status s = ReadChunkedI32s(in, *tombstones, &dead); !s.ok()) {
    return s;
  }
  std::vector<uint8_t> live(n, 1);
  for (int32_t node : dead) {
    if (node < 0 || static_cast<size_t>(node) >= n || live[node] == 0) {
      return absl::DataLossError(
          absl::StrCat("snapshot: bad tombstone node ", node));
    }
    live[node] = 0;
  }
  for (size_t node = 0; node < n; ++node) {
    if (live[node] == 0) continue;
    absl::StatusOr<std::string> subject =
        in->ReadString(kMaxSnapshotSubjectBytes);
    if (!subject.ok()) return subject.status();
    if (subject->empty() || book->HasLabel(labels[node])) {
      return absl::DataLossError(
          absl::StrCat("snapshot: node ", node,
                       " has an empty subject or a repeated label"));
    }
    book->Add(labels[node], *subject);
  }
  absl::StatusOr<uint32_t> has_graph = in->ReadU32();
  if (!has_graph.ok()) return has_graph.status();
  absl::StatusOr<uint32_t> sq8 = in->ReadU32();
  if (!sq8.ok()) return sq8.status();
  if (*has_graph > 1 || *sq8 != (*has_graph == 1 && sq8_storage ? 1u : 0u)) {
    return absl::DataLossError(
        absl::StrCat("snapshot: graph flag ", *has_graph, " and SQ8 flag ",
                     *sq8, " do not fit the gallery's storage"));
  }
  std::vector<float> vmin;
  std::vector<float> vdiff;
  if (*sq8 == 1) {
    if (absl::Status s = in->ReadFloats(dim, &vmin); !s.ok()) return s;
    if (absl::Status s = in->ReadFloats(dim, &vdiff); !s.ok()) return s;
    if (vmin.size() != dim || vdiff.size() != dim) {
      return absl::DataLossError("snapshot: SQ8 ranges of the wrong size");
    }
    for (size_t j = 0; j < dim; ++j) {
      if (!std::isfinite(vmin[j]) || !std::isfinite(vdiff[j]) ||
          vdiff[j] < 0.0f) {
        return absl::DataLossError("snapshot: SQ8 ranges are not valid");
      }
    }
  }
  auto index =
      std::make_unique<NodeIndex>(d, hnsw, *has_graph == 1, vmin, vdiff);
  // The rows, chunk by chunk straight into the fp32 storage.
  KernelFlatIP& flat = *index->flat_;
  std::vector<float> chunk;
  for (size_t done = 0; done < n * dim;) {
    const size_t expected = std::min(kSnapshotChunkElements, n * dim - done);
    if (absl::Status s = in->ReadFloats(expected, &chunk); !s.ok()) return s;
    if (chunk.size() != expected) {
      return absl::DataLossError("snapshot: short chunk of template rows");
    }
    for (float x : chunk) {
      if (!std::isfinite(x)) {
        return absl::DataLossError("snapshot: a template is not finite");
      }
    }
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(chunk.data());
    flat.codes.insert(flat.codes.end(), bytes,
                      bytes + chunk.size() * sizeof(float));
    done += expected;
  }
  flat.ntotal = static_cast<FaissIdx>(n);
  if (index->sq8_ != nullptr) {
    index->sq8_->add(static_cast<FaissIdx>(n), flat.get_xb());
  }
  index->node_label_ = std::move(labels);
  index->live_ = std::move(live);
  index->tombstones_ = dead.size();
  index->label_node_.reserve(n - dead.size());
  for (size_t node = 0; node < n; ++node) {
    if (index->live_[node] != 0) {
      index->label_node_.emplace(index->node_label_[node],
                                 static_cast<uint32_t>(node));
    } else {
      index->node_label_[node] = 0;
    }
  }
  if (index->has_graph()) {
    if (absl::Status s = index->LoadGraph(in); !s.ok()) return s;
  }
  return index;
}

absl::Status NodeIndex::LoadGraph(SnapshotReader* in) {
  faiss::HNSW& hnsw = graph_->hnsw;
  const size_t n = nodes();
  // HNSW(m) already set the level probabilities and neighbour counts from m,
  // which the gallery checked against the snapshot.
  const int max_levels = static_cast<int>(hnsw.cum_nneighbor_per_level.size());
  std::vector<int32_t> levels;
  if (absl::Status s = ReadChunkedI32s(in, n, &levels); !s.ok()) return s;
  std::vector<size_t> offsets = {0};
  offsets.reserve(n + 1);
  for (int32_t level : levels) {
    if (level < 1 || level >= max_levels) {
      return absl::DataLossError(
          absl::StrCat("snapshot: HNSW level ", level, " out of range"));
    }
    offsets.push_back(offsets.back() + hnsw.cum_nb_neighbors(level));
  }
  std::vector<int32_t> neighbors;
  if (absl::Status s = ReadChunkedI32s(in, offsets.back(), &neighbors);
      !s.ok()) {
    return s;
  }
  // Every link must name a node that exists at the link's level, or a
  // search could read past a node's neighbour lists.
  for (size_t node = 0; node < n; ++node) {
    for (int level = 0; level < levels[node]; ++level) {
      const size_t begin = offsets[node] + hnsw.cum_nb_neighbors(level);
      const size_t end = offsets[node] + hnsw.cum_nb_neighbors(level + 1);
      for (size_t j = begin; j < end; ++j) {
        const int32_t other = neighbors[j];
        if (other == -1) continue;
        if (other < 0 || static_cast<size_t>(other) >= n ||
            levels[other] <= level) {
          return absl::DataLossError(absl::StrCat("snapshot: HNSW link ", node,
                                                  " -> ", other, " at level ",
                                                  level, " is not valid"));
        }
      }
    }
  }
  absl::StatusOr<int64_t> entry_point = in->ReadI64();
  if (!entry_point.ok()) return entry_point.status();
  absl::StatusOr<int64_t> max_level = in->ReadI64();
  if (!max_level.ok()) return max_level.status();
  const bool entry_ok = n == 0 ? *entry_point == -1 && *max_level == -1
                               : *entry_point >= 0 &&
                                     static_cast<size_t>(*entry_point) < n &&
                                     *max_level == levels[*entry_point] - 1;
  if (!entry_ok) {
    return absl::DataLossError(absl::StrCat("snapshot: HNSW entry point ",
                                            *entry_point, " at level ",
                                            *max_level, " is not valid"));
  }
  absl::StatusOr<std::string> rng = in->ReadString(1 << 16);
  if (!rng.ok()) return rng.status();
  std::istringstream rng_in(*rng);
  rng_in >> hnsw.rng.mt;
  if (rng_in.fail()) {
    return absl::DataLossError("snapshot: HNSW random state is not valid");
  }
  hnsw.levels = std::move(levels);
  hnsw.offsets = std::move(offsets);
  hnsw.neighbors = std::move(neighbors);
  hnsw.entry_point = static_cast<faiss::HNSW::storage_idx_t>(*entry_point);
  hnsw.max_level = static_cast<int>(*max_level);
  graph_->ntotal = static_cast<FaissIdx>(n);
  return absl::OkStatus();
}

// A write made while a rebuild runs, to replay onto the new generation.
struct JournalOp {
  bool add = false;
  std::vector<int64_t> labels;
  // Unit rows of the added templates (adds only).
  std::vector<float> vectors;
};

// Journalled templates are copies: clear them before they are freed, like
// every other copy of a template that may since have been erased.
void ZeroVectors(std::vector<JournalOp>* ops) {
  for (JournalOp& op : *ops) {
    std::fill(op.vectors.begin(), op.vectors.end(), 0.0f);
  }
}

class HnswGallery final : public Gallery {
 public:
  // REQUIRES: options.index.kind is kHnsw or kAuto, options were checked.
  // With `empty_generation`, the caller installs current_ (Load).
  explicit HnswGallery(const GalleryOptions& options,
                       bool empty_generation = true);
  ~HnswGallery() override;

  HnswGallery(const HnswGallery&) = delete;
  HnswGallery& operator=(const HnswGallery&) = delete;

  // Reads what Save wrote after the kind name.
  static absl::StatusOr<std::unique_ptr<Gallery>> Load(
      const GalleryOptions& options, SnapshotReader* in);

  absl::Status Add(absl::Span<const GalleryEntry> entries) override;
  size_t RemoveSubject(absl::string_view subject_id) override;
  absl::StatusOr<std::vector<SubjectScore>> Search(
      absl::Span<const float> probe, size_t k) const override;
  absl::StatusOr<float> ScoreSubject(
      absl::string_view subject_id,
      absl::Span<const float> probe) const override;

  int dimension() const override { return options_.dimension; }
  size_t size() const override {
    absl::ReaderMutexLock lock(&mu_);
    return book_.templates();
  }
  bool Contains(absl::string_view subject_id) const override {
    absl::ReaderMutexLock lock(&mu_);
    return book_.LabelsOf(subject_id) != nullptr;
  }
  std::string index_kind() const override;
  absl::Status Save(SnapshotWriter* out) const override;

  ApproximateIndexState State() const;
  void WaitForRebuilds() const;
  void SetTestHooks(RebuildTestHooks hooks);
  // REQUIRES: 1 <= ef_search <= kMaxHnswEf.
  void SetEfSearch(int ef_search);

 private:
  size_t d() const { return static_cast<size_t>(options_.dimension); }
  // Templates from which the gallery wants a graph: 0 for fp32 hnsw; the
  // auto threshold; at least kSq8TrainMinTemplates for SQ8 storage (its
  // ranges are trained on what the gallery holds then).
  size_t GraphMinTemplates() const;
  bool WantsGraph(size_t live) const { return live >= GraphMinTemplates(); }
  // Queues a rebuild if the current generation needs one (compaction or a
  // first graph), starting the worker thread on first use.
  void MaybeScheduleRebuild() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WorkPending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return rebuild_requested_ || shutting_down_;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !rebuilding_; }
  void WorkerLoop();
  // One rebuild: build, replay, swap. Takes and releases mu_ itself.
  void Rebuild();
  // Replays journalled writes onto a generation not yet shared.
  static absl::Status Replay(const std::vector<JournalOp>& ops,
                             NodeIndex* next);

  const GalleryOptions options_;

  mutable absl::Mutex mu_;
  std::unique_ptr<NodeIndex> current_ ABSL_GUARDED_BY(mu_);
  SubjectBook book_ ABSL_GUARDED_BY(mu_);
  // The efSearch of current_ and of every generation swapped in later:
  // options_.index.hnsw.ef_search until SetEfSearch changes it.
  int ef_search_ ABSL_GUARDED_BY(mu_);

  // Rebuild state. rebuilding_ runs from the request to the swap (or the
  // failure); journaling_ from the moment the rebuild fixed the nodes it
  // copies, so that every later write is in journal_.
  bool rebuild_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool rebuilding_ ABSL_GUARDED_BY(mu_) = false;
  bool journaling_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<JournalOp> journal_ ABSL_GUARDED_BY(mu_);
  size_t journal_templates_ ABSL_GUARDED_BY(mu_) = 0;
  size_t rebuilds_ ABSL_GUARDED_BY(mu_) = 0;
  // Why the last rebuild failed, for State(); a failed rebuild is retried by
  // the next write that finds one needed.
  absl::Status last_rebuild_error_ ABSL_GUARDED_BY(mu_);
  size_t chunk_nodes_ ABSL_GUARDED_BY(mu_) = kRebuildChunkNodes;
  size_t min_tombstones_ ABSL_GUARDED_BY(mu_) = kCompactMinTombstones;
  std::function<void()> after_chunk_ ABSL_GUARDED_BY(mu_);
  // Started by the first rebuild, runs until the destructor joins it.
  std::thread worker_ ABSL_GUARDED_BY(mu_);
};

HnswGallery::HnswGallery(const GalleryOptions& options, bool empty_generation)
    : options_(options), ef_search_(options.index.hnsw.ef_search) {
  if (empty_generation) {
    absl::MutexLock lock(&mu_);
    current_ = std::make_unique<NodeIndex>(
        options.dimension, options.index.hnsw, WantsGraph(0),
        std::vector<float>(), std::vector<float>());
  }
}

HnswGallery::~HnswGallery() {
  std::thread worker;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    worker = std::move(worker_);
  }
  if (worker.joinable()) worker.join();
}

size_t HnswGallery::GraphMinTemplates() const {
  size_t min = 0;
  if (options_.index.kind == IndexKind::kAuto) {
    min = options_.index.auto_hnsw_min_templates;
  }
  if (options_.index.hnsw.sq8_storage) {
    min = std::max(min, kSq8TrainMinTemplates);
  }
  return min;
}

std::string HnswGallery::index_kind() const {
  if (options_.index.kind == IndexKind::kHnsw) {
    return std::string(IndexKindName(IndexKind::kHnsw));
  }
  absl::ReaderMutexLock lock(&mu_);
  return std::string(IndexKindName(current_->has_graph() ? IndexKind::kHnsw
                                                         : IndexKind::kExact));
}

absl::Status HnswGallery::Add(absl::Span<const GalleryEntry> entries) {
  absl::StatusOr<std::vector<float>> vectors =
      NormalizedEntries(entries, options_.dimension);
  if (!vectors.ok()) return vectors.status();
  if (entries.empty()) return absl::OkStatus();
  std::vector<int64_t> labels;
  labels.reserve(entries.size());
  for (const GalleryEntry& entry : entries) labels.push_back(entry.label);

  absl::WriterMutexLock lock(&mu_);
  if (absl::Status s = book_.CheckNewLabels(entries); !s.ok()) return s;
  if (entries.size() > kMaxIndexRows - current_->nodes()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "entries: the index holds at most ", kMaxIndexRows, " nodes"));
  }
  if (absl::Status s = current_->Append(labels, vectors->data()); !s.ok()) {
    return s;
  }
  for (const GalleryEntry& entry : entries) {
    book_.Add(entry.label, entry.subject_id);
  }
  if (journaling_) {
    journal_templates_ += labels.size();
    journal_.push_back(JournalOp{true, std::move(labels), *std::move(vectors)});
  }
  MaybeScheduleRebuild();
  return absl::OkStatus();
}

size_t HnswGallery::RemoveSubject(absl::string_view subject_id) {
  absl::WriterMutexLock lock(&mu_);
  std::vector<int64_t> labels = book_.RemoveSubject(subject_id);
  if (labels.empty()) return 0;
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
    journal_.push_back(JournalOp{false, labels, {}});
  }
  MaybeScheduleRebuild();
  return labels.size();
}

absl::StatusOr<std::vector<SubjectScore>> HnswGallery::Search(
    absl::Span<const float> probe, size_t k) const {
  absl::StatusOr<std::vector<float>> unit =
      NormalizedProbe(probe, options_.dimension);
  if (!unit.ok()) return unit.status();
  absl::ReaderMutexLock lock(&mu_);
  const size_t live = book_.templates();
  if (k == 0 || live == 0) return std::vector<SubjectScore>();
  const size_t needed = book_.TemplatesToFetch(k);
  const size_t hits = std::min(
      live, needed * static_cast<size_t>(options_.index.rerank_factor));
  if (!current_->has_graph() || hits == live) {
    // Re-ranking every template is an exact scan: do it directly.
    return current_->ExactSearch(unit->data(), book_, k);
  }
  std::vector<LabelHit> candidates;
  if (absl::Status s =
          current_->GraphCandidates(unit->data(), hits, &candidates);
      !s.ok()) {
    return s;
  }
  std::vector<SubjectScore> subjects = CollapseToSubjects(candidates, book_);
  if (subjects.size() > k) subjects.resize(k);
  return subjects;
}

absl::StatusOr<float> HnswGallery::ScoreSubject(
    absl::string_view subject_id, absl::Span<const float> probe) const {
  absl::StatusOr<std::vector<float>> unit =
      NormalizedProbe(probe, options_.dimension);
  if (!unit.ok()) return unit.status();
  absl::ReaderMutexLock lock(&mu_);
  const std::vector<int64_t>* labels = book_.LabelsOf(subject_id);
  if (labels == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("subject_id: no template of ", subject_id));
  }
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t label : *labels) {
    best = std::max(best, current_->Score(unit->data(), label));
  }
  return best;
}

void HnswGallery::MaybeScheduleRebuild() {
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
      worker_ = std::thread(&HnswGallery::WorkerLoop, this);
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

void HnswGallery::WorkerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &HnswGallery::WorkPending));
      if (shutting_down_) return;
      rebuild_requested_ = false;
    }
    Rebuild();
  }
}

absl::Status HnswGallery::Replay(const std::vector<JournalOp>& ops,
                                 NodeIndex* next) {
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

void HnswGallery::Rebuild() {
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
  std::unique_ptr<NodeIndex> next;
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
    if (graph && options_.index.hnsw.sq8_storage) {
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
      next = std::make_unique<NodeIndex>(
          options_.dimension, options_.index.hnsw, graph, vmin, vdiff);
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
          ZeroVectors(&journal_);
          journal_.clear();
          journal_templates_ = 0;
          journaling_ = false;
          rebuilding_ = false;
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
    ZeroVectors(&journal_);
    journal_.clear();
    journal_templates_ = 0;
    journaling_ = false;
    rebuilding_ = false;
    last_rebuild_error_ = status;
  }
  // The old generation (or the unfinished new one) goes outside the lock.
  next.reset();
}

// Snapshot, after the kind name ("hnsw" or "auto"):
//   u32 format version, u32 dimension, u32 hnsw.m, u32 hnsw.sq8_storage,
//   then the current generation (NodeIndex::Save). A rebuild in progress is
//   not saved: the loaded gallery starts another when it needs one.
absl::Status HnswGallery::Save(SnapshotWriter* out) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::Status s = out->WriteString(IndexKindName(options_.index.kind));
  if (s.ok()) s = out->WriteU32(kFormatVersion);
  if (s.ok()) s = out->WriteU32(static_cast<uint32_t>(options_.dimension));
  if (s.ok()) s = out->WriteU32(static_cast<uint32_t>(options_.index.hnsw.m));
  if (s.ok()) s = out->WriteU32(options_.index.hnsw.sq8_storage ? 1 : 0);
  if (s.ok()) s = current_->Save(out, book_);
  return s;
}

absl::StatusOr<std::unique_ptr<Gallery>> HnswGallery::Load(
    const GalleryOptions& options, SnapshotReader* in) {
  absl::StatusOr<uint32_t> version = in->ReadU32();
  if (!version.ok()) return version.status();
  if (*version != kFormatVersion) {
    return absl::DataLossError(
        absl::StrCat("snapshot: HNSW format version ", *version,
                     " is not supported (expected ", kFormatVersion, ")"));
  }
  absl::StatusOr<uint32_t> dimension = in->ReadU32();
  if (!dimension.ok()) return dimension.status();
  if (*dimension != static_cast<uint32_t>(options.dimension)) {
    return OptionMismatch("dimension", *dimension, options.dimension);
  }
  absl::StatusOr<uint32_t> m = in->ReadU32();
  if (!m.ok()) return m.status();
  if (*m != static_cast<uint32_t>(options.index.hnsw.m)) {
    return OptionMismatch("index.hnsw.m", *m, options.index.hnsw.m);
  }
  absl::StatusOr<uint32_t> sq8 = in->ReadU32();
  if (!sq8.ok()) return sq8.status();
  if (*sq8 != (options.index.hnsw.sq8_storage ? 1u : 0u)) {
    return OptionMismatch("index.hnsw.sq8_storage", *sq8,
                          options.index.hnsw.sq8_storage ? 1 : 0);
  }
  auto gallery =
      std::make_unique<HnswGallery>(options, /*empty_generation=*/false);
  absl::MutexLock lock(&gallery->mu_);
  absl::StatusOr<std::unique_ptr<NodeIndex>> index =
      NodeIndex::Load(options.dimension, options.index.hnsw,
                      options.index.hnsw.sq8_storage, in, &gallery->book_);
  if (!index.ok()) return index.status();
  gallery->current_ = *std::move(index);
  // Options may now ask for a graph (a lower auto threshold) or the
  // snapshot may carry many tombstones.
  gallery->MaybeScheduleRebuild();
  return std::unique_ptr<Gallery>(std::move(gallery));
}

ApproximateIndexState HnswGallery::State() const {
  absl::ReaderMutexLock lock(&mu_);
  ApproximateIndexState state;
  state.nodes = current_->nodes();
  state.live = current_->live();
  state.tombstones = current_->tombstones();
  state.graph = current_->has_graph();
  state.sq8 = current_->sq8();
  state.rebuilding = rebuilding_;
  state.rebuilds = rebuilds_;
  state.templates = book_.templates();
  state.last_rebuild_error = last_rebuild_error_;
  state.ef_search = ef_search_;
  return state;
}

void HnswGallery::WaitForRebuilds() const {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &HnswGallery::Idle));
}

void HnswGallery::SetTestHooks(RebuildTestHooks hooks) {
  absl::MutexLock lock(&mu_);
  if (hooks.chunk_nodes > 0) chunk_nodes_ = hooks.chunk_nodes;
  if (hooks.min_tombstones > 0) min_tombstones_ = hooks.min_tombstones;
  after_chunk_ = std::move(hooks.after_chunk);
}

void HnswGallery::SetEfSearch(int ef_search) {
  // The writer lock: no search is inside the graph while its efSearch
  // changes.
  absl::WriterMutexLock lock(&mu_);
  ef_search_ = ef_search;
  current_->SetEfSearch(ef_search);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gallery>> OpenHnswGallery(
    const GalleryOptions& options) {
  try {
    return std::unique_ptr<Gallery>(std::make_unique<HnswGallery>(options));
  } catch (const std::exception& e) {
    return FaissError("open", e);
  }
}

absl::StatusOr<std::unique_ptr<Gallery>> LoadHnswGallery(
    const GalleryOptions& options, SnapshotReader* in) {
  try {
    return HnswGallery::Load(options, in);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("snapshot: cannot load the HNSW gallery: ", e.what()));
  }
}

absl::StatusOr<ApproximateIndexState> GetApproximateIndexState(
    const Gallery& gallery) {
  const auto* hnsw = dynamic_cast<const HnswGallery*>(&gallery);
  if (hnsw == nullptr) {
    return absl::InvalidArgumentError("not an hnsw or auto gallery");
  }
  return hnsw->State();
}

void WaitForRebuilds(const Gallery& gallery) {
  const auto* hnsw = dynamic_cast<const HnswGallery*>(&gallery);
  if (hnsw != nullptr) hnsw->WaitForRebuilds();
}

absl::Status SetRebuildTestHooks(Gallery& gallery, RebuildTestHooks hooks) {
  auto* hnsw = dynamic_cast<HnswGallery*>(&gallery);
  if (hnsw == nullptr) {
    return absl::InvalidArgumentError("not an hnsw or auto gallery");
  }
  hnsw->SetTestHooks(std::move(hooks));
  return absl::OkStatus();
}

absl::Status SetHnswEfSearch(Gallery& gallery, int ef_search) {
  auto* hnsw = dynamic_cast<HnswGallery*>(&gallery);
  if (hnsw == nullptr) {
    return absl::InvalidArgumentError("not an hnsw or auto gallery");
  }
  if (ef_search < 1 || ef_search > kMaxHnswEf) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ef_search: must be in [1, ", kMaxHnswEf, "], got ", ef_search));
  }
  hnsw->SetEfSearch(ef_search);
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
