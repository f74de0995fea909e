// Per-principal rate limits: one token bucket per principal, sized from the
// config (ServerConfig.rate_limits, .default_rate_limit, and the
// requests_per_second / burst of a partner's data-sharing policy, which act
// as that principal's rate_limits entry). The access check
// (services/auth.cc) asks it once per call, after authentication and
// authorisation, and refuses a call over the limit with RESOURCE_EXHAUSTED.
//
// A bucket holds at most `burst` tokens and gains requests_per_second of
// them per second; a call takes one, or is refused if there is less than
// one. The clock is injected so that tests need no sleeps.
//
// Thread safety: Admit may be called concurrently (one mutex; a few
// arithmetic operations under it, so it can run on gRPC's threads).
#ifndef HAWIYA_SERVICES_RATE_LIMIT_H_
#define HAWIYA_SERVICES_RATE_LIMIT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hawiya/config/config.pb.h"

namespace hawiya::services {

// One principal's limit. requests_per_second <= 0: unlimited.
struct RateLimitSpec {
  double requests_per_second = 0;
  double burst = 0;

  bool unlimited() const { return requests_per_second <= 0; }
};

class RateLimiter {
 public:
  using Clock = std::function<absl::Time()>;

  // The config's limits. INVALID_ARGUMENT naming the field if a rate is
  // negative or not finite, a principal is empty, listed twice (in
  // rate_limits, or there and in a partner policy with a rate), or not one
  // of the config's principals (or of the default ones if it lists none).
  static absl::StatusOr<std::unique_ptr<RateLimiter>> FromConfig(
      const config::ServerConfig& config, Clock clock = absl::Now);

  // Whether any principal has a limit (else Admit always says OK).
  bool any_limit() const;

  // Takes a token from the principal's bucket: OK, or RESOURCE_EXHAUSTED
  // naming the principal and its limit. Calls to grpc.health.v1.Health are
  // not counted. `first_refusal`, if given, is set to whether this is the
  // first refusal since the principal's last admitted call (so that a
  // flood is logged once, not once per call).
  absl::Status Admit(absl::string_view principal, absl::string_view method,
                     bool* first_refusal = nullptr);

  // The limit that applies to `principal`.
  RateLimitSpec LimitOf(absl::string_view principal) const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time last;
    bool refusing = false;
  };

  RateLimiter(std::map<std::string, RateLimitSpec, std::less<>> limits,
              RateLimitSpec default_limit, Clock clock)
      : limits_(std::move(limits)),
        default_limit_(default_limit),
        clock_(std::move(clock)) {}

  // Set at construction, then only read.
  const std::map<std::string, RateLimitSpec, std::less<>> limits_;
  const RateLimitSpec default_limit_;
  const Clock clock_;

  absl::Mutex mu_;
  // One per principal that has made a limited call. Only authenticated
  // principals reach Admit, so this is bounded by the config's principals.
  std::map<std::string, Bucket, std::less<>> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_RATE_LIMIT_H_
