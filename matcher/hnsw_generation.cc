#include "matcher/hnsw_generation.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "faiss/IndexHNSW.h"
#include "faiss/impl/AuxIndexStructures.h"
#include "faiss/impl/HNSW.h"
#include "faiss/impl/IDSelector.h"
#include "faiss/utils/Heap.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/kernel_storage.h"
#include "matcher/kernels.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

using FaissIdx = faiss::Index::idx_t;

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

}  // namespace

HnswGeneration::HnswGeneration(int d, const HnswOptions& hnsw, bool graph,
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

void HnswGeneration::SetEfSearch(int ef_search) {
  hnsw_.ef_search = ef_search;
  if (graph_ != nullptr) graph_->hnsw.efSearch = ef_search;
}

absl::Status HnswGeneration::Append(absl::Span<const int64_t> labels,
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

void HnswGeneration::RollBack(size_t n0) {
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

bool HnswGeneration::Remove(int64_t label) {
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

std::vector<SubjectScore> HnswGeneration::ExactSearch(const float* unit,
                                                      const SubjectBook& book,
                                                      size_t k) const {
  return matcher::ExactSearch(unit, flat_->get_xb(), nodes(), d_, live_.data(),
                              node_label_, book, k);
}

absl::Status HnswGeneration::GraphCandidates(const float* unit, size_t hits,
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

void HnswGeneration::CopyLive(size_t begin, size_t end,
                              std::vector<int64_t>* labels,
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
absl::Status HnswGeneration::Save(SnapshotWriter* out,
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
    s = WriteSq8Ranges(out, absl::MakeConstSpan(sq8_->vmin(), d_),
                       absl::MakeConstSpan(sq8_->vdiff(), d_));
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

absl::StatusOr<std::unique_ptr<HnswGeneration>> HnswGeneration::Load(
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
    if (absl::Status s = ReadSq8Ranges(in, dim, &vmin, &vdiff); !s.ok()) {
      return s;
    }
  }
  auto index =
      std::make_unique<HnswGeneration>(d, hnsw, *has_graph == 1, vmin, vdiff);
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

absl::Status HnswGeneration::LoadGraph(SnapshotReader* in) {
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

}  // namespace hawiya::matcher
