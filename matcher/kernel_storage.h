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
  // Stored vector i prepared as a query against codes (the Sq8Query of its
  // decoded code, with a float bias). REQUIRES: out->scale holds d floats.
  void PrepareStored(size_t i, Sq8Query* out) const;
  const uint8_t* code(size_t i) const { return codes.data() + i * code_size; }

  // Our EncodeSq8 / DecodeSq8 (bit-compatible with FAISS's codec).
  void sa_encode(idx_t n, const float* x, uint8_t* bytes) const override;
  void sa_decode(idx_t n, const uint8_t* bytes, float* x) const override;

  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer()
      const override;

 private:
  // Component j of code c decodes to x = offset_j + c * step_j (step =
  // vdiff / 255, offset = vmin + step / 2). Prepared as a query, x gives
  //   scale_j = x * step_j = offset_j * step_j + c * step_j^2,
  //   bias = sum_j x * offset_j = sum_j offset_j^2 + sum_j c * step_j *
  //   offset_j,
  // so both are affine in the code: scale by one vectorisable pass, bias by
  // InnerProductSq8 with bias_query_.
  std::vector<float> step_squared_;
  Sq8Query bias_query_;  // scale_j = offset_j * step_j, bias = sum offset^2
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
// multiply-add per byte for each code (InnerProductSq8).
//
// Stored-to-stored distances prepare one side's decoded code as a query the
// same way and score the other side's code: FAISS's HNSW asks
// symmetric_dis in runs that share one argument (a point against its
// candidate neighbours, in either position), so the shared one is prepared
// once per run and every other call costs one InnerProductSq8, where
// decoding both codes would cost three passes over d.
class Sq8KernelComputer : public faiss::FlatCodesDistanceComputer {
 public:
  // REQUIRES: storage is trained and outlives this.
  explicit Sq8KernelComputer(const KernelSq8Storage& storage);

  void set_query(const float* x) override;
  float distance_to_code(const uint8_t* code) override;
  float symmetric_dis(idx_t i, idx_t j) override;

 private:
  // Makes prepared_ the decoded code of stored vector i.
  void Prepare(idx_t i);

  const KernelSq8Storage& storage_;
  Sq8Query query_;
  Sq8Query prepared_;
  idx_t prepared_id_ = -1;
  // The previous symmetric_dis call's arguments.
  idx_t last_i_ = -1;
  idx_t last_j_ = -1;
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
