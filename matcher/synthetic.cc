#include "matcher/synthetic.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace hawiya::matcher {
namespace {

// Distinct streams, so that e.g. identity 7's centre and cluster 7's centre
// are unrelated draws.
constexpr uint64_t kCentreStream = 0x63656e747265ULL;     // "centre"
constexpr uint64_t kCaptureStream = 0x63617074ULL;        // "capt"
constexpr uint64_t kClusterStream = 0x636c7573746572ULL;  // "cluster"

constexpr double kTwoPi = 6.283185307179586476925286766559;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Every generator is seeded from its whole key, so each vector is a pure
// function of (seed, stream, identity or cluster, capture) and no draw
// depends on which other vectors were generated before it.
uint64_t StreamSeed(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ stream);
  h = SplitMix64(h ^ a);
  return SplitMix64(h ^ b);
}

// Standard normals. std::normal_distribution's algorithm is unspecified and
// differs between standard libraries; mt19937_64 is fully specified, and
// Box-Muller over our own uniforms is the same everywhere (up to libm).
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : engine_(seed) {}

  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // 1 - u is in (0, 1], so the logarithm is finite.
    const double u1 = 1.0 - Uniform();
    const double u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = kTwoPi * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }

 private:
  // In [0, 1), with the 53 bits a double holds.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1p-53; }

  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

void Normalize(std::vector<double>& v) {
  double sum = 0.0;
  for (double x : v) sum += x * x;
  const double norm = std::sqrt(sum);
  // A Gaussian draw of a positive dimension is zero with probability 0; the
  // guard only keeps a degenerate draw from producing NaNs.
  if (norm == 0.0) return;
  for (double& x : v) x /= norm;
}

// normalize(base + scale * N(0, I)), drawing from `seed`.
std::vector<double> Perturbed(const std::vector<double>& base, double scale,
                              uint64_t seed) {
  Gaussian gaussian(seed);
  std::vector<double> out(base);
  for (double& x : out) x += scale * gaussian.Next();
  Normalize(out);
  return out;
}

std::vector<float> ToFloat(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// Kept in double until the end so that Capture adds its noise to exactly the
// centre Centre returns before rounding.
std::vector<double> CentreOf(const SyntheticOptions& options,
                             uint64_t identity) {
  if (options.dimension <= 0) return {};
  const size_t d = static_cast<size_t>(options.dimension);
  const std::vector<double> zero(d, 0.0);
  const uint64_t centre_seed =
      StreamSeed(options.seed, kCentreStream, identity, 0);
  if (!options.hard) return Perturbed(zero, 1.0, centre_seed);
  // A non-positive cluster size would divide by zero; treat it as
  // singleton clusters.
  const uint64_t cluster_size =
      options.cluster_size > 0 ? static_cast<uint64_t>(options.cluster_size)
                               : 1;
  const std::vector<double> cluster_centre = Perturbed(
      zero, 1.0,
      StreamSeed(options.seed, kClusterStream, identity / cluster_size, 0));
  return Perturbed(cluster_centre,
                   options.cluster_spread / std::sqrt(static_cast<double>(d)),
                   centre_seed);
}

}  // namespace

SyntheticModel::SyntheticModel(const SyntheticOptions& options)
    : options_(options) {}

std::vector<float> SyntheticModel::Centre(uint64_t identity) const {
  return ToFloat(CentreOf(options_, identity));
}

std::vector<float> SyntheticModel::Capture(uint64_t identity,
                                           uint64_t capture) const {
  const std::vector<double> centre = CentreOf(options_, identity);
  if (centre.empty()) return {};
  return ToFloat(Perturbed(
      centre,
      options_.capture_noise / std::sqrt(static_cast<double>(centre.size())),
      StreamSeed(options_.seed, kCaptureStream, identity, capture)));
}

}  // namespace hawiya::matcher
