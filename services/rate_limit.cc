#include "services/rate_limit.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/auth.h"

namespace hawiya::services {
namespace {

// Health probes (load balancers, orchestrators) never count: refusing them
// would take a healthy server out of rotation.
constexpr absl::string_view kHealthService = "/grpc.health.v1.Health/";

absl::StatusOr<RateLimitSpec> SpecOf(const config::RateLimit& limit,
                                     const std::string& field) {
  const double rate = limit.requests_per_second();
  if (!std::isfinite(rate) || rate < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".requests_per_second: must be finite and >= 0, not ", rate));
  }
  RateLimitSpec spec;
  spec.requests_per_second = rate;
  spec.burst = limit.burst() > 0 ? static_cast<double>(limit.burst())
                                 : std::max(1.0, std::ceil(rate));
  return spec;
}

std::string Describe(const RateLimitSpec& spec) {
  return absl::StrCat(spec.requests_per_second, " requests/s (burst ",
                      spec.burst, ")");
}

}  // namespace

absl::StatusOr<std::unique_ptr<RateLimiter>> RateLimiter::FromConfig(
    const config::ServerConfig& config, Clock clock) {
  std::set<std::string> known;
  if (config.principals().empty()) {
    for (const config::PrincipalRoles& p : AccessPolicy::DefaultPrincipals()) {
      known.insert(p.principal());
    }
  } else {
    for (const config::PrincipalRoles& p : config.principals()) {
      known.insert(p.principal());
    }
  }
  std::map<std::string, RateLimitSpec, std::less<>> limits;
  for (int i = 0; i < config.rate_limits_size(); ++i) {
    const std::string field = absl::StrCat("rate_limits[", i, "]");
    const config::RateLimit& entry = config.rate_limits(i);
    if (entry.principal().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".principal: empty"));
    }
    if (known.count(entry.principal()) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".principal: ", entry.principal(),
                       " is not one of the principals"));
    }
    absl::StatusOr<RateLimitSpec> spec = SpecOf(entry, field);
    if (!spec.ok()) return spec.status();
    if (!limits.emplace(entry.principal(), *spec).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".principal: ", entry.principal(), " is listed twice"));
    }
  }
  // A partner's data-sharing policy may carry its rate limit: the same
  // bucket, as if it were a rate_limits entry.
  for (int i = 0; i < config.partner_policies_size(); ++i) {
    const config::PartnerPolicy& policy = config.partner_policies(i);
    if (policy.requests_per_second() == 0 && policy.burst() == 0) continue;
    const std::string field = absl::StrCat("partner_policies[", i, "]");
    config::RateLimit entry;
    entry.set_principal(policy.principal());
    entry.set_requests_per_second(policy.requests_per_second());
    entry.set_burst(policy.burst());
    if (known.count(entry.principal()) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".principal: ", entry.principal(),
                       " is not one of the principals"));
    }
    absl::StatusOr<RateLimitSpec> spec = SpecOf(entry, field);
    if (!spec.ok()) return spec.status();
    if (!limits.emplace(entry.principal(), *spec).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".requests_per_second: ", entry.principal(),
          " has a rate_limits entry already; give its limit in one place"));
    }
  }
  absl::StatusOr<RateLimitSpec> default_limit =
      SpecOf(config.default_rate_limit(), "default_rate_limit");
  if (!default_limit.ok()) return default_limit.status();
  return std::unique_ptr<RateLimiter>(
      new RateLimiter(std::move(limits), *default_limit, std::move(clock)));
}

bool RateLimiter::any_limit() const {
  if (!default_limit_.unlimited()) return true;
  return std::any_of(limits_.begin(), limits_.end(), [](const auto& entry) {
    return !entry.second.unlimited();
  });
}

RateLimitSpec RateLimiter::LimitOf(absl::string_view principal) const {
  auto it = limits_.find(principal);
  return it == limits_.end() ? default_limit_ : it->second;
}

absl::Status RateLimiter::Admit(absl::string_view principal,
                                absl::string_view method, bool* first_refusal) {
  if (first_refusal != nullptr) *first_refusal = false;
  if (absl::StartsWith(method, kHealthService)) return absl::OkStatus();
  const RateLimitSpec spec = LimitOf(principal);
  if (spec.unlimited()) return absl::OkStatus();
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) {
    // A new bucket starts full.
    it =
        buckets_.emplace(std::string(principal), Bucket{spec.burst, now}).first;
  }
  Bucket& bucket = it->second;
  // A clock that steps back adds nothing (and takes nothing away).
  const double elapsed =
      std::max(0.0, absl::ToDoubleSeconds(now - bucket.last));
  bucket.tokens =
      std::min(spec.burst, bucket.tokens + elapsed * spec.requests_per_second);
  bucket.last = std::max(bucket.last, now);
  // The epsilon absorbs rounding: 10 s at 0.1/s must make a whole token.
  if (bucket.tokens >= 1.0 - 1e-9) {
    bucket.tokens = std::max(0.0, bucket.tokens - 1.0);
    bucket.refusing = false;
    return absl::OkStatus();
  }
  if (first_refusal != nullptr) *first_refusal = !bucket.refusing;
  bucket.refusing = true;
  return absl::ResourceExhaustedError(
      absl::StrCat("principal ", principal, " is over its rate limit of ",
                   Describe(spec), "; retry later"));
}

}  // namespace hawiya::services
