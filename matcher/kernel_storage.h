// Internal to matcher/: FAISS flat storages whose distance computers are our
// SIMD kernels (matcher/kernels.h), so that anything FAISS builds over them
// (IndexHNSW in particular) computes every distance with our kernels.
//
// FAISS asks a flat storage for a distance computer through
// IndexFlatCodes::get_FlatCodesDistanceComputer() (reached through
// Index::get_distance_computer()); IndexHNSW, for METRIC_INNER_PRODUCT,
// wraps it in a computer that negates the similarity (FAISS 1.7.3,
// faiss/IndexHNSW.cpp:77-109, storage_distance_computer) and uses it both
// while adding (hnsw_add_vertices) and while searching.
//
// Both storages hold unit vectors and score by inner product (= cosine).
#ifndef HAWIYA_MATCHER_KERNEL_STORAGE_H_
#define HAWIYA_MATCHER_KERNEL_STORAGE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "faiss/IndexFlat.h"
#include "faiss/IndexScalarQuantizer.h"
#include "faiss/impl/DistanceComputer.h"
#include "matcher/kernels.h"

namespace hawiya::matcher {

// fp32 rows in an IndexFlatIP's codes; distances by InnerProduct.
class KernelFlatIP : public faiss::IndexFlatIP {
 public:
  explicit KernelFlatIP(int d) : faiss::IndexFlatIP(d) {}

  // The caller owns the result. It reads the rows in place: it is valid
  // until the storage changes.
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer()
      const override;
};

// SQ8 codes (FAISS QT_8bit layout, inner product) whose ranges we train;
// encoding by EncodeSq8, distances by InnerProductSq8 against a query
// prepared once per set_query.
class KernelSq8Storage : public faiss::IndexScalarQuantizer {
 public:
  explicit KernelSq8Storage(int d);

  // Sets the per-dimension ranges and marks the storage trained.
  // REQUIRES: ntotal == 0; vmin and vdiff hold d values.
  void SetRanges(const std::vector<float>& vmin,
                 const std::vector<float>& vdiff);
  const float* vmin() const { return sq.trained.data(); }
  const float* vdiff() const { return sq.trained.data() + d; }
  const uint8_t* code(size_t i) const { return codes.data() + i * code_size; }

  // Our EncodeSq8 / DecodeSq8 (bit-compatible with FAISS's codec).
  void sa_encode(idx_t n, const float* x, uint8_t* bytes) const override;
  void sa_decode(idx_t n, const uint8_t* bytes, float* x) const override;

  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer()
      const override;
};

// The fp32 computer: the query against rows, by InnerProduct.
class Fp32KernelComputer : public faiss::FlatCodesDistanceComputer {
 public:
  // REQUIRES: rows holds the storage's rows of d floats; they outlive this.
  Fp32KernelComputer(const float* rows, size_t d);

  void set_query(const float* x) override { query_ = x; }
  float distance_to_code(const uint8_t* code) override;
  float symmetric_dis(idx_t i, idx_t j) override;

 private:
  const float* rows_;
  size_t d_;
  const float* query_ = nullptr;
};

// The SQ8 computer: the query prepared once (PrepareSq8Query), then one
// multiply-add per byte for each code; stored-to-stored distances decode
// both codes.
class Sq8KernelComputer : public faiss::FlatCodesDistanceComputer {
 public:
  // REQUIRES: storage is trained and outlives this.
  explicit Sq8KernelComputer(const KernelSq8Storage& storage);

  void set_query(const float* x) override;
  float distance_to_code(const uint8_t* code) override;
  float symmetric_dis(idx_t i, idx_t j) override;

 private:
  // Decodes a stored code into one of two one-entry caches: FAISS's HNSW
  // asks symmetric_dis(i, j) in runs where i or j stays the same (one new
  // point against its candidate neighbours), so most calls decode one code.
  const float* Decoded(idx_t i, int slot);

  const KernelSq8Storage& storage_;
  size_t d_;
  Sq8Query query_;
  std::vector<float> decoded_[2];
  idx_t decoded_id_[2] = {-1, -1};
};

// Similarity -> distance, as IndexHNSW does for METRIC_INNER_PRODUCT (its
// own wrapper is internal to IndexHNSW.cpp): FAISS's HNSW keeps the
// smallest distances.
class NegatedDistanceComputer : public faiss::DistanceComputer {
 public:
  explicit NegatedDistanceComputer(
      std::unique_ptr<faiss::DistanceComputer> base)
      : base_(std::move(base)) {}

  void set_query(const float* x) override { base_->set_query(x); }
  float operator()(idx_t i) override { return -(*base_)(i); }
  float symmetric_dis(idx_t i, idx_t j) override {
    return -base_->symmetric_dis(i, j);
  }

 private:
  std::unique_ptr<faiss::DistanceComputer> base_;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_KERNEL_STORAGE_H_
