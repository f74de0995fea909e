// Internal to matcher/: one generation of an hnsw or auto gallery's index
// (hnsw_gallery.cc): its nodes in insertion order, their tombstones and,
// optionally, FAISS's HNSW graph over our kernel storage (kernel_storage.h).
//
// Nodes. HNSW node ids are append-only, so a generation keeps its own
// label <-> node maps. The fp32 unit vectors live in node order in a
// KernelFlatIP, which is the graph's storage itself when the graph is fp32;
// with hnsw.sq8_storage the graph runs on a KernelSq8Storage and the fp32
// rows serve re-ranking, scoring and snapshots only.
//
// Tombstones. Removing a template tombstones its node: the node leaves the
// maps, searches filter it out through FAISS's IDSelector, and its vector is
// zeroed at once (an erased person's template must not linger), which leaves
// the node in the graph as a weak waypoint. FAISS 1.7.3 honours
// SearchParameters::sel only on HNSW's default search path (upper_beam == 1,
// search_bounded_queue, faiss/impl/HNSW.cpp:536, 542, 582 and 702); the
// upper_beam > 1 and unbounded paths drop the parameters, so this file never
// changes those two HNSW fields. Filtered nodes are still traversed, so the
// graph stays navigable; results can only come back short of k. A rebuild
// (hnsw_rebuilder.h) replaces a generation full of tombstones.
//
// Not thread-safe: the gallery guards its generation with its lock.
#ifndef HAWIYA_MATCHER_HNSW_GENERATION_H_
#define HAWIYA_MATCHER_HNSW_GENERATION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "faiss/IndexHNSW.h"
#include "matcher/gallery.h"
#include "matcher/gallery_common.h"
#include "matcher/kernel_storage.h"
#include "matcher/kernels.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {

class HnswGeneration {
 public:
  // `graph`: whether to keep an HNSW graph. vmin/vdiff: the SQ8 ranges when
  // the graph's storage is SQ8, else empty. REQUIRES: vmin.empty() || graph.
  HnswGeneration(int d, const HnswOptions& hnsw, bool graph,
                 const std::vector<float>& vmin,
                 const std::vector<float>& vdiff);

  HnswGeneration(const HnswGeneration&) = delete;
  HnswGeneration& operator=(const HnswGeneration&) = delete;

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

  // Writes the generation, with each live node's subject from `book`.
  // REQUIRES: book holds exactly the live labels.
  absl::Status Save(SnapshotWriter* out, const SubjectBook& book) const;
  // Reads what Save wrote and fills `book` with the live labels' subjects.
  // REQUIRES: book is empty.
  static absl::StatusOr<std::unique_ptr<HnswGeneration>> Load(
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

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_HNSW_GENERATION_H_
