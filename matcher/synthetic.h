// Synthetic face-like embeddings. No real biometric data is ever shipped:
// tests, benchmarks and the CLI's `synth` commands draw from this model
// (docs/API.md, "Synthetic templates", describes it for client authors).
//
//   centre   c_i = normalize(g_i), g_i ~ N(0, I_d), seeded by (seed, i)
//   hard     c_i = normalize(m_k + 1.5 g_i / sqrt(d)), k = i / cluster_size,
//            m_k a unit cluster centre drawn as an easy c_i is
//   capture  x = normalize(c_i + s n / sqrt(d)), n ~ N(0, I_d), s = 0.8
//
// Two captures of one identity then score ~0.61 (1 / (1 + s^2), genuine),
// of two identities ~0 +- 0.044 at d = 512 (1 / sqrt(d), impostor), and in
// the hard variant two look-alikes of one cluster ~0.19 (+- 0.04 at
// d = 512). Enrolled and probe captures are different draws; non-mated
// probes come from identities never enrolled.
//
// Every draw is a pure function of (seed, identity, capture), so two
// processes produce the same vectors.
#ifndef HAWIYA_MATCHER_SYNTHETIC_H_
#define HAWIYA_MATCHER_SYNTHETIC_H_

#include <cstdint>
#include <vector>

namespace hawiya::matcher {

struct SyntheticOptions {
  int dimension = 512;
  uint64_t seed = 42;
  float capture_noise = 0.8f;  // s
  bool hard = false;           // clustered look-alikes
  int cluster_size = 100;
  float cluster_spread = 1.5f;
};

class SyntheticModel {
 public:
  explicit SyntheticModel(const SyntheticOptions& options);

  // Unit-norm identity centre c_i.
  std::vector<float> Centre(uint64_t identity) const;
  // Unit-norm capture number `capture` of identity i. Captures with different
  // numbers are independent draws.
  std::vector<float> Capture(uint64_t identity, uint64_t capture) const;

  const SyntheticOptions& options() const { return options_; }

 private:
  SyntheticOptions options_;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_SYNTHETIC_H_
