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
  step_squared_.resize(vdiff.size());
  bias_query_.scale.resize(vdiff.size());
  double bias = 0.0;
  for (size_t j = 0; j < vdiff.size(); ++j) {
    const float step = vdiff[j] / 255.0f;
    const float offset = vmin[j] + 0.5f * step;
    step_squared_[j] = step * step;
    bias_query_.scale[j] = offset * step;
    bias += static_cast<double>(offset) * offset;
  }
  bias_query_.bias = static_cast<float>(bias);
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

void KernelSq8Storage::PrepareStored(size_t i, Sq8Query* out) const {
  const uint8_t* c = code(i);
  const float* base = bias_query_.scale.data();
  const float* squared = step_squared_.data();
  float* scale = out->scale.data();
  for (size_t j = 0; j < step_squared_.size(); ++j) {
    scale[j] = base[j] + c[j] * squared[j];
  }
  out->bias = InnerProductSq8(bias_query_, c);
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
      storage_(storage) {
  prepared_.scale.resize(static_cast<size_t>(storage.d));
}

void Sq8KernelComputer::set_query(const float* x) {
  query_ = PrepareSq8Query(x, storage_.vmin(), storage_.vdiff(),
                           static_cast<size_t>(storage_.d));
}

float Sq8KernelComputer::distance_to_code(const uint8_t* code) {
  return InnerProductSq8(query_, code);
}

void Sq8KernelComputer::Prepare(idx_t i) {
  storage_.PrepareStored(static_cast<size_t>(i), &prepared_);
  prepared_id_ = i;
}

float Sq8KernelComputer::symmetric_dis(idx_t i, idx_t j) {
  idx_t other = j;
  if (prepared_id_ == j) {
    other = i;
  } else if (prepared_id_ != i) {
    // Prepare the argument the previous call shared with this one.
    if (j == last_i_ || j == last_j_) {
      Prepare(j);
      other = i;
    } else {
      Prepare(i);
    }
  }
  last_i_ = i;
  last_j_ = j;
  return InnerProductSq8(prepared_, storage_.code(other));
}

}  // namespace hawiya::matcher
