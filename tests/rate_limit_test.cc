// RateLimiter (services/rate_limit.h): token buckets per principal from the
// config, on an injected clock (no sleeps, nothing timed).
#include "services/rate_limit.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "enroll/partner.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "hawiya/v1/partner.pb.h"
#include "services/config.h"
#include "tests/testing/server_process.h"

namespace hawiya::services {
namespace {

using ::testing::HasSubstr;

constexpr char kBorder[] = "hawiya://dev/border";
constexpr char kRegistrar[] = "hawiya://dev/registrar";
constexpr char kIdentify[] = "/hawiya.v1.MatchService/Identify";

config::ServerConfig Config(const std::string& text) {
  config::ServerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

// A clock the test moves by hand.
struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1700000000);
  RateLimiter::Clock AsClock() {
    return [this] { return now; };
  }
};

std::unique_ptr<RateLimiter> MustMake(const std::string& text,
                                      FakeClock& clock) {
  absl::StatusOr<std::unique_ptr<RateLimiter>> limiter =
      RateLimiter::FromConfig(Config(text), clock.AsClock());
  EXPECT_TRUE(limiter.ok()) << limiter.status();
  return limiter.ok() ? *std::move(limiter) : nullptr;
}

// Calls admitted of `n` made at the current time.
int Admitted(RateLimiter& limiter, const std::string& principal, int n) {
  int admitted = 0;
  for (int i = 0; i < n; ++i) {
    if (limiter.Admit(principal, kIdentify).ok()) ++admitted;
  }
  return admitted;
}

TEST(RateLimiterTest, BurstThenRefusedThenRefilledAtTheRate) {
  FakeClock clock;
  auto limiter = MustMake(
      R"pb(rate_limits {
             principal: "hawiya://dev/border"
             requests_per_second: 2
             burst: 3
           })pb",
      clock);
  ASSERT_NE(limiter, nullptr);
  EXPECT_EQ(Admitted(*limiter, kBorder, 3), 3);
  const absl::Status refused = limiter->Admit(kBorder, kIdentify);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.message(),
            "principal hawiya://dev/border is over its rate limit of 2 "
            "requests/s (burst 3); retry later");
  // Half a second at 2/s: one token.
  clock.now += absl::Milliseconds(500);
  EXPECT_EQ(Admitted(*limiter, kBorder, 5), 1);
  // A long pause refills to the burst, no more.
  clock.now += absl::Hours(1);
  EXPECT_EQ(Admitted(*limiter, kBorder, 10), 3);
}

TEST(RateLimiterTest, PrincipalsHaveTheirOwnBuckets) {
  FakeClock clock;
  auto limiter = MustMake(
      R"pb(rate_limits {
             principal: "hawiya://dev/border"
             requests_per_second: 1
             burst: 2
           }
           default_rate_limit { requests_per_second: 100 burst: 50 })pb",
      clock);
  ASSERT_NE(limiter, nullptr);
  EXPECT_EQ(Admitted(*limiter, kBorder, 10), 2);
  // The registrar is unlisted: the default, in a bucket of its own.
  EXPECT_EQ(Admitted(*limiter, kRegistrar, 60), 50);
  EXPECT_EQ(Admitted(*limiter, "hawiya://dev/admin", 60), 50);
  EXPECT_DOUBLE_EQ(limiter->LimitOf(kRegistrar).requests_per_second, 100);
  EXPECT_DOUBLE_EQ(limiter->LimitOf(kBorder).burst, 2);
}

TEST(RateLimiterTest, UnlimitedByDefaultAndHealthNeverCounts) {
  FakeClock clock;
  auto none = MustMake("", clock);
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->any_limit());
  EXPECT_EQ(Admitted(*none, kBorder, 1000), 1000);

  auto limiter = MustMake(
      R"pb(rate_limits {
             principal: "hawiya://dev/border"
             requests_per_second: 0.5
           })pb",
      clock);
  ASSERT_NE(limiter, nullptr);
  EXPECT_TRUE(limiter->any_limit());
  // burst 0: the rate rounded up, at least 1.
  EXPECT_DOUBLE_EQ(limiter->LimitOf(kBorder).burst, 1);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(limiter->Admit(kBorder, "/grpc.health.v1.Health/Check").ok());
  }
  EXPECT_TRUE(limiter->Admit(kBorder, kIdentify).ok());
  EXPECT_FALSE(limiter->Admit(kBorder, kIdentify).ok());
  // Two seconds at 0.5/s.
  clock.now += absl::Seconds(2);
  EXPECT_TRUE(limiter->Admit(kBorder, kIdentify).ok());
}

TEST(RateLimiterTest, FirstRefusalOfEachRunIsFlagged) {
  FakeClock clock;
  auto limiter = MustMake(
      R"pb(rate_limits {
             principal: "hawiya://dev/border"
             requests_per_second: 1
             burst: 1
           })pb",
      clock);
  ASSERT_NE(limiter, nullptr);
  bool first = true;
  EXPECT_TRUE(limiter->Admit(kBorder, kIdentify, &first).ok());
  EXPECT_FALSE(first);
  EXPECT_FALSE(limiter->Admit(kBorder, kIdentify, &first).ok());
  EXPECT_TRUE(first);
  EXPECT_FALSE(limiter->Admit(kBorder, kIdentify, &first).ok());
  EXPECT_FALSE(first);
  clock.now += absl::Seconds(1);
  EXPECT_TRUE(limiter->Admit(kBorder, kIdentify, &first).ok());
  EXPECT_FALSE(limiter->Admit(kBorder, kIdentify, &first).ok());
  EXPECT_TRUE(first);
}

TEST(RateLimiterTest, ClockSteppingBackAddsNothing) {
  FakeClock clock;
  auto limiter = MustMake(
      R"pb(rate_limits {
             principal: "hawiya://dev/border"
             requests_per_second: 1
             burst: 1
           })pb",
      clock);
  ASSERT_NE(limiter, nullptr);
  EXPECT_TRUE(limiter->Admit(kBorder, kIdentify).ok());
  clock.now -= absl::Hours(1);
  EXPECT_FALSE(limiter->Admit(kBorder, kIdentify).ok());
  clock.now += absl::Hours(1);  // back where it was: still nothing
  EXPECT_FALSE(limiter->Admit(kBorder, kIdentify).ok());
  clock.now += absl::Seconds(1);
  EXPECT_TRUE(limiter->Admit(kBorder, kIdentify).ok());
}

TEST(RateLimiterTest, ConcurrentCallsTakeExactlyTheBurst) {
  FakeClock clock;  // never moves: no refill
  auto limiter = MustMake(
      R"pb(rate_limits {
             principal: "hawiya://dev/border"
             requests_per_second: 1
             burst: 1000
           })pb",
      clock);
  ASSERT_NE(limiter, nullptr);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] { admitted += Admitted(*limiter, kBorder, 500); });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 1000);
}

TEST(RateLimiterTest, ConfigErrorsNameTheField) {
  struct Case {
    const char* config;
    const char* error;
  };
  for (const Case& c : {
           Case{R"pb(rate_limits { requests_per_second: 1 })pb",
                "rate_limits[0].principal: empty"},
           Case{R"pb(rate_limits {
                       principal: "hawiya://dev/nobody"
                       requests_per_second: 1
                     })pb",
                "rate_limits[0].principal: hawiya://dev/nobody is not one of "
                "the principals"},
           Case{R"pb(rate_limits {
                       principal: "hawiya://dev/border"
                       requests_per_second: 1
                     }
                     rate_limits {
                       principal: "hawiya://dev/border"
                       requests_per_second: 2
                     })pb",
                "rate_limits[1].principal: hawiya://dev/border is listed "
                "twice"},
           Case{R"pb(rate_limits {
                       principal: "hawiya://dev/border"
                       requests_per_second: -1
                     })pb",
                "rate_limits[0].requests_per_second: must be finite"},
           Case{R"pb(default_rate_limit { requests_per_second: inf })pb",
                "default_rate_limit.requests_per_second: must be finite"},
           // A configured principal list replaces the development ones.
           Case{R"pb(principals { principal: "gate-7" roles: "border" }
                     rate_limits {
                       principal: "hawiya://dev/border"
                       requests_per_second: 1
                     })pb",
                "is not one of the principals"},
       }) {
    SCOPED_TRACE(c.config);
    absl::StatusOr<std::unique_ptr<RateLimiter>> limiter =
        RateLimiter::FromConfig(Config(c.config));
    EXPECT_EQ(limiter.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(limiter.status().message(), HasSubstr(c.error));
  }
}

// The example in deploy/hawiya.textproto, uncommented, is a valid config
// with the limits it describes; and LoadConfig names a bad entry.
TEST(RateLimitConfigTest, ExampleLinesParseAndLoadConfigNamesBadEntries) {
  std::ifstream example(std::string(HAWIYA_SOURCE_DIR) +
                        "/deploy/hawiya.textproto");
  ASSERT_TRUE(example.good());
  std::string text;
  for (std::string line; std::getline(example, line);) {
    if (absl::StartsWith(line, "#   rate_limits")) {
      text += line.substr(4) + "\n";
    }
  }
  ASSERT_FALSE(text.empty());
  const std::string dir = ::hawiya::testing::NewTempDir("hawiya-rate-config");
  const std::string path = dir + "/limits.textproto";
  std::ofstream(path) << text;
  absl::StatusOr<config::ServerConfig> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<RateLimiter>> limiter =
      RateLimiter::FromConfig(*config);
  ASSERT_TRUE(limiter.ok()) << limiter.status();
  EXPECT_DOUBLE_EQ((*limiter)->LimitOf(kBorder).requests_per_second, 50);
  EXPECT_DOUBLE_EQ((*limiter)->LimitOf(kBorder).burst, 100);
  EXPECT_TRUE((*limiter)->LimitOf(kRegistrar).unlimited());

  std::ofstream(path, std::ios::trunc)
      << "rate_limits { principal: \"gate-9\" requests_per_second: 1 }\n";
  config = LoadConfig(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              HasSubstr("config " + path +
                        ": rate_limits[0].principal: gate-9 is not one of "
                        "the principals"));
  std::filesystem::remove_all(dir);
}

// The partner policy example in deploy/hawiya.textproto, uncommented, is a
// valid config; its rate limit is the principal's bucket (one place: a
// rate_limits entry for the same principal is refused), and LoadConfig
// names a bad policy.
TEST(PartnerPolicyConfigTest, ExampleParsesAndItsRateLimitIsThePrincipals) {
  std::ifstream example(std::string(HAWIYA_SOURCE_DIR) +
                        "/deploy/hawiya.textproto");
  ASSERT_TRUE(example.good());
  std::string text;
  for (std::string line; std::getline(example, line);) {
    if (absl::StartsWith(line, "#   partner_policies")) {
      text += line.substr(4) + "\n";
    }
  }
  ASSERT_FALSE(text.empty());
  const std::string dir = ::hawiya::testing::NewTempDir("hawiya-partner-cfg");
  const std::string path = dir + "/partner.textproto";
  std::ofstream(path) << text;
  absl::StatusOr<config::ServerConfig> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<enroll::PartnerPolicies> policies =
      enroll::PartnerPolicies::FromConfig(*config);
  ASSERT_TRUE(policies.ok()) << policies.status();
  absl::StatusOr<const enroll::PartnerPolicy*> policy =
      policies->Find("hawiya://dev/partner");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE((*policy)->biometric_allowed);
  EXPECT_EQ((*policy)->daily_quota, 10000);
  EXPECT_TRUE((*policy)->may("state"));
  EXPECT_FALSE((*policy)->may("civil_status"));
  absl::StatusOr<std::unique_ptr<RateLimiter>> limiter =
      RateLimiter::FromConfig(*config);
  ASSERT_TRUE(limiter.ok()) << limiter.status();
  EXPECT_DOUBLE_EQ(
      (*limiter)->LimitOf("hawiya://dev/partner").requests_per_second, 20);
  EXPECT_DOUBLE_EQ((*limiter)->LimitOf("hawiya://dev/partner").burst, 40);

  config->add_rate_limits()->set_principal("hawiya://dev/partner");
  EXPECT_THAT(RateLimiter::FromConfig(*config).status().message(),
              HasSubstr("partner_policies[0].requests_per_second: "
                        "hawiya://dev/partner has a rate_limits entry "
                        "already"));

  std::ofstream(path, std::ios::trunc)
      << "partner_policies { principal: \"p\" allowed_purposes: "
         "\"BORDER_CROSSING\" disclosable_attributes: \"passport\" }\n";
  config = LoadConfig(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              HasSubstr("config " + path +
                        ": partner_policies[0].disclosable_attributes: "
                        "unknown attribute 'passport'"));

  // A policy for a principal that is not a partner.
  std::ofstream(path, std::ios::trunc)
      << "partner_policies { principal: \"hawiya://dev/border\" "
         "allowed_purposes: \"BORDER_CROSSING\" }\n";
  config = LoadConfig(path);
  EXPECT_THAT(config.status().message(),
              HasSubstr("partner_policies[0].principal: hawiya://dev/border "
                        "is not one of the principals with role partner"));
  std::filesystem::remove_all(dir);
}

// ServerConfig.dedup: unset means on with the defaults; the example line of
// deploy/hawiya.textproto loads; a bad value is named.
TEST(DedupConfigTest, DefaultsExampleAndErrors) {
  const enroll::DedupOptions defaults = DedupOptionsOf(config::ServerConfig());
  EXPECT_TRUE(defaults.enabled);
  EXPECT_TRUE(defaults.demographic_check);
  EXPECT_EQ(defaults.threshold, 0.0f);
  EXPECT_EQ(defaults.max_candidates, 10u);

  absl::StatusOr<config::ServerConfig> example =
      LoadConfig(std::string(HAWIYA_SOURCE_DIR) + "/deploy/hawiya.textproto");
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_TRUE(example->dedup().has_enabled());
  EXPECT_TRUE(DedupOptionsOf(*example).enabled);

  config::ServerConfig config;
  config.mutable_dedup()->set_enabled(false);
  config.mutable_dedup()->set_threshold(0.55f);
  config.mutable_dedup()->set_max_candidates(3);
  config.mutable_dedup()->set_demographic_check(false);
  const enroll::DedupOptions set = DedupOptionsOf(config);
  EXPECT_FALSE(set.enabled);
  EXPECT_FALSE(set.demographic_check);
  EXPECT_FLOAT_EQ(set.threshold, 0.55f);
  EXPECT_EQ(set.max_candidates, 3u);
  EXPECT_TRUE(CheckDedup(config).ok());

  config.mutable_dedup()->set_threshold(1.5f);
  EXPECT_THAT(std::string(CheckDedup(config).message()),
              HasSubstr("dedup.threshold: "));
  config.mutable_dedup()->set_threshold(0.5f);
  config.mutable_dedup()->set_max_candidates(1000);
  EXPECT_THAT(std::string(CheckDedup(config).message()),
              HasSubstr("dedup.max_candidates: "));
}

// The development partner's policy: given only on a development transport
// (development PKI or --insecure), only when the config has no partner
// policy, only to a development principal holding role partner; it passes
// the checks a configured policy passes.
TEST(PartnerPolicyConfigTest, DevelopmentPolicyOnlyOnADevelopmentTransport) {
  config::ServerConfig config;
  EXPECT_EQ(AddDevelopmentPartnerPolicy(/*development_transport=*/true,
                                        /*insecure=*/false, &config),
            "hawiya://dev/partner");
  ASSERT_EQ(config.partner_policies_size(), 1);
  EXPECT_TRUE(CheckPartnerPolicies(config).ok());
  absl::StatusOr<enroll::PartnerPolicies> policies =
      enroll::PartnerPolicies::FromConfig(config);
  ASSERT_TRUE(policies.ok()) << policies.status();
  absl::StatusOr<const enroll::PartnerPolicy*> policy =
      policies->Find("hawiya://dev/partner");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE((*policy)->biometric_allowed);
  EXPECT_EQ((*policy)->daily_quota, 1000);
  for (const std::string& attribute : enroll::PartnerAttributes()) {
    EXPECT_TRUE((*policy)->may(attribute)) << attribute;
  }
  EXPECT_EQ((*policy)->purposes.size(),
            static_cast<size_t>(v1::Purpose_descriptor()->value_count() - 1));
  // Once given, the config has a policy: never a second one.
  EXPECT_EQ(AddDevelopmentPartnerPolicy(true, false, &config), "");
  EXPECT_EQ(config.partner_policies_size(), 1);

  config::ServerConfig insecure;
  EXPECT_EQ(AddDevelopmentPartnerPolicy(true, /*insecure=*/true, &insecure),
            "hawiya://dev/insecure");
  EXPECT_EQ(insecure.partner_policies(0).principal(), "hawiya://dev/insecure");

  // Production transport (--tls_* flags): none.
  config::ServerConfig production;
  EXPECT_EQ(AddDevelopmentPartnerPolicy(/*development_transport=*/false, false,
                                        &production),
            "");
  EXPECT_EQ(production.partner_policies_size(), 0);

  // A configured policy is kept alone.
  config::ServerConfig configured;
  configured.add_partner_policies()->set_principal("hawiya://dev/partner");
  EXPECT_EQ(AddDevelopmentPartnerPolicy(true, false, &configured), "");
  EXPECT_EQ(configured.partner_policies_size(), 1);

  // Own principals without the development partner: none.
  config::ServerConfig own;
  config::PrincipalRoles* partner = own.add_principals();
  partner->set_principal("hawiya://partner/SAU-MOI");
  partner->add_roles("partner");
  EXPECT_EQ(AddDevelopmentPartnerPolicy(true, false, &own), "");
  EXPECT_EQ(own.partner_policies_size(), 0);
}

}  // namespace
}  // namespace hawiya::services
