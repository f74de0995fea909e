#include "matcher/kernel_storage.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#include "faiss/IndexScalarQuantizer.h"
#include "faiss/impl/DistanceComputer.h"
#include "faiss/impl/ScalarQuantizer.h"
#include "matcher/kernels.h"

namespace hawiya::matcher {

faiss::FlatCodesDistanceComputer* KernelFlatIP::get_FlatCodesDistanceComputer()
    const {
  return new Fp32KernelComputer(get_xb(), static_cast<size_t>(d));
}

KernelSq8Storage::KernelSq8Storage(int d)
    : faiss::IndexScalarQuantizer(d, faiss::ScalarQuantizer::QT_8bit,
                                  faiss::METRIC_INNER_PRODUCT) {}

void KernelSq8Storage::SetRanges(const std::vector<float>& vmin,
                                 const std::vector<float>& vdiff) {
  sq.trained.assign(vmin.begin(), vmin.end());
  sq.trained.insert(sq.trained.end(), vdiff.begin(), vdiff.end());
  is_trained = true;
}

void KernelSq8Storage::sa_encode(idx_t n, const float* x,
                                 uint8_t* bytes) const {
  const size_t dim = static_cast<size_t>(d);
  for (idx_t i = 0; i < n; ++i) {
    EncodeSq8(x + i * dim, vmin(), vdiff(), dim, bytes + i * code_size);
  }
}

void KernelSq8Storage::sa_decode(idx_t n, const uint8_t* bytes,
                                 float* x) const {
  const size_t dim = static_cast<size_t>(d);
  for (idx_t i = 0; i < n; ++i) {
    DecodeSq8(bytes + i * code_size, vmin(), vdiff(), dim, x + i * dim);
  }
}

faiss::FlatCodesDistanceComputer*
KernelSq8Storage::get_FlatCodesDistanceComputer() const {
  return new Sq8KernelComputer(*this);
}

Fp32KernelComputer::Fp32KernelComputer(const float* rows, size_t d)
    : faiss::FlatCodesDistanceComputer(reinterpret_cast<const uint8_t*>(rows),
                                       d * sizeof(float)),
      rows_(rows),
      d_(d) {}

float Fp32KernelComputer::distance_to_code(const uint8_t* code) {
  return InnerProduct(query_, reinterpret_cast<const float*>(code), d_);
}

float Fp32KernelComputer::symmetric_dis(idx_t i, idx_t j) {
  return InnerProduct(rows_ + i * d_, rows_ + j * d_, d_);
}

Sq8KernelComputer::Sq8KernelComputer(const KernelSq8Storage& storage)
    : faiss::FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
      storage_(storage),
      d_(static_cast<size_t>(storage.d)),
      decoded_{std::vector<float>(d_), std::vector<float>(d_)} {}

void Sq8KernelComputer::set_query(const float* x) {
  query_ = PrepareSq8Query(x, storage_.vmin(), storage_.vdiff(), d_);
}

float Sq8KernelComputer::distance_to_code(const uint8_t* code) {
  return InnerProductSq8(query_, code);
}

const float* Sq8KernelComputer::Decoded(idx_t i, int slot) {
  for (int s = 0; s < 2; ++s) {
    if (decoded_id_[s] == i) return decoded_[s].data();
  }
  DecodeSq8(storage_.code(i), storage_.vmin(), storage_.vdiff(), d_,
            decoded_[slot].data());
  decoded_id_[slot] = i;
  return decoded_[slot].data();
}

float Sq8KernelComputer::symmetric_dis(idx_t i, idx_t j) {
  const float* a = Decoded(i, 0);
  // Never evict the row just returned for i.
  const float* b = Decoded(j, decoded_id_[0] == i ? 1 : 0);
  return InnerProduct(a, b, d_);
}

}  // namespace hawiya::matcher
