#include "matcher/impostor_stats.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "matcher/gallery_common.h"
#include "matcher/kernels.h"
#include "matcher/snapshot.h"

namespace hawiya::matcher {
namespace {

// Snapshot layout: "impostor", u32 dimension, u64 reservoir capacity,
// u64 count, f64 mean, f64 M2 (as their u64 bits), u64 generator state,
// u64 templates seen, u64 reservoir templates n, n subject ids, then the
// n * dimension floats.
constexpr absl::string_view kSnapshotTag = "impostor";

uint64_t Bits(double value) {
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

double FromBits(uint64_t bits) {
  double value = 0.0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace

ImpostorEstimator::ImpostorEstimator(int dimension, const Options& options)
    : dimension_(dimension), options_(options), rng_state_(options.seed) {}

double ImpostorEstimator::std() const {
  if (count_ < 2) return 0.0;
  return std::sqrt(m2_ / static_cast<double>(count_ - 1));
}

uint64_t ImpostorEstimator::Uniform(uint64_t n) {
  // splitmix64: a full-period 64-bit generator whose whole state is one
  // word, so it is saved and restored exactly.
  rng_state_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = rng_state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  // Lemire's multiply-shift: uniform up to a bias of n / 2^64.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(z) * n) >> 64);
}

void ImpostorEstimator::Observe(absl::string_view subject_id,
                                absl::Span<const float> unit_vector) {
  const size_t d = static_cast<size_t>(dimension_);
  if (!subjects_.empty()) {
    for (int i = 0; i < options_.comparisons; ++i) {
      const uint64_t slot = Uniform(subjects_.size());
      // A draw of the subject's own template is no impostor pair; it is
      // skipped rather than redrawn so that the cost stays bounded.
      if (subjects_[slot] == subject_id) continue;
      const double score =
          InnerProduct(unit_vector.data(), &vectors_[slot * d], d);
      ++count_;
      const double delta = score - mean_;
      mean_ += delta / static_cast<double>(count_);
      m2_ += delta * (score - mean_);
    }
  }
  // Algorithm R; below capacity (at first, or after removals) every
  // template is kept.
  ++seen_;
  size_t slot = subjects_.size();
  if (subjects_.size() >= options_.reservoir_size) {
    slot = Uniform(seen_);
    if (slot >= options_.reservoir_size) return;
    subjects_[slot] = std::string(subject_id);
  } else {
    subjects_.emplace_back(subject_id);
    vectors_.resize(subjects_.size() * d);
  }
  std::memcpy(&vectors_[slot * d], unit_vector.data(), d * sizeof(float));
}

void ImpostorEstimator::RemoveSubject(absl::string_view subject_id) {
  const size_t d = static_cast<size_t>(dimension_);
  for (size_t slot = 0; slot < subjects_.size();) {
    if (subjects_[slot] != subject_id) {
      ++slot;
      continue;
    }
    // Swap with the last template and drop it: order within the reservoir
    // carries no meaning (every draw is uniform over it).
    const size_t last = subjects_.size() - 1;
    if (slot != last) {
      subjects_[slot] = std::move(subjects_[last]);
      std::memcpy(&vectors_[slot * d], &vectors_[last * d], d * sizeof(float));
    }
    subjects_.pop_back();
    vectors_.resize(subjects_.size() * d);
  }
}

size_t ImpostorEstimator::ReservoirTemplatesOf(
    absl::string_view subject_id) const {
  size_t n = 0;
  for (const std::string& s : subjects_) n += s == subject_id;
  return n;
}

absl::Status ImpostorEstimator::Save(SnapshotWriter* out) const {
  absl::Status s = out->WriteString(kSnapshotTag);
  if (s.ok()) s = out->WriteU32(static_cast<uint32_t>(dimension_));
  if (s.ok()) s = out->WriteU64(options_.reservoir_size);
  if (s.ok()) s = out->WriteU64(count_);
  if (s.ok()) s = out->WriteU64(Bits(mean_));
  if (s.ok()) s = out->WriteU64(Bits(m2_));
  if (s.ok()) s = out->WriteU64(rng_state_);
  if (s.ok()) s = out->WriteU64(seen_);
  if (s.ok()) s = out->WriteU64(subjects_.size());
  for (const std::string& subject : subjects_) {
    if (!s.ok()) return s;
    s = out->WriteString(subject);
  }
  if (s.ok()) s = out->WriteFloats(vectors_);
  return s;
}

absl::Status ImpostorEstimator::Load(SnapshotReader* in) {
  absl::StatusOr<std::string> tag = in->ReadString(kSnapshotTag.size());
  if (!tag.ok()) return tag.status();
  if (*tag != kSnapshotTag) {
    return absl::DataLossError(
        "snapshot: no impostor statistics where they were expected");
  }
  absl::StatusOr<uint32_t> dimension = in->ReadU32();
  if (!dimension.ok()) return dimension.status();
  uint64_t capacity = 0, count = 0, mean_bits = 0, m2_bits = 0, rng_state = 0,
           seen = 0, n = 0;
  for (uint64_t* field :
       {&capacity, &count, &mean_bits, &m2_bits, &rng_state, &seen, &n}) {
    absl::StatusOr<uint64_t> value = in->ReadU64();
    if (!value.ok()) return value.status();
    *field = *value;
  }
  const double mean = FromBits(mean_bits);
  const double m2 = FromBits(m2_bits);
  if (*dimension != static_cast<uint32_t>(dimension_) ||
      capacity != options_.reservoir_size) {
    return absl::DataLossError(
        absl::StrCat("snapshot: impostor statistics of dimension ", *dimension,
                     " and reservoir ", capacity, ", expected ", dimension_,
                     " and ", options_.reservoir_size));
  }
  if (!std::isfinite(mean) || !std::isfinite(m2) || m2 < 0.0 || n > capacity ||
      n > seen) {
    return absl::DataLossError("snapshot: malformed impostor statistics");
  }
  std::vector<std::string> subjects;
  subjects.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    absl::StatusOr<std::string> subject =
        in->ReadString(kMaxSnapshotSubjectBytes);
    if (!subject.ok()) return subject.status();
    subjects.push_back(*std::move(subject));
  }
  std::vector<float> vectors;
  if (absl::Status s = in->ReadFloats(n * dimension_, &vectors); !s.ok()) {
    return s;
  }
  if (vectors.size() != n * dimension_) {
    return absl::DataLossError(
        "snapshot: impostor reservoir vectors do not match its subjects");
  }
  count_ = count;
  mean_ = mean;
  m2_ = m2;
  rng_state_ = rng_state;
  seen_ = seen;
  subjects_ = std::move(subjects);
  vectors_ = std::move(vectors);
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
