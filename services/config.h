// Server configuration: a text-format hawiya.config.ServerConfig.
#ifndef HAWIYA_SERVICES_CONFIG_H_
#define HAWIYA_SERVICES_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "enroll/registry.h"
#include "hawiya/config/config.pb.h"
#include "matcher/matcher.h"
#include "matcher/scan_pool.h"

namespace hawiya::services {

// Reads and checks a config file. An empty path gives the defaults.
// INVALID_ARGUMENT naming the file, line and field on a bad file.
absl::StatusOr<config::ServerConfig> LoadConfig(const std::string& path);

// Checks partner_policies (enroll/partner.h), and that each names one of
// the principals (or of the default ones) holding role partner, or the
// --insecure caller hawiya://dev/insecure; INVALID_ARGUMENT naming the
// field.
absl::Status CheckPartnerPolicies(const config::ServerConfig& config);

// The answers a development partner may get per UTC day.
inline constexpr uint64_t kDevelopmentPartnerDailyQuota = 1000;

// The data-sharing policy a development server gives its development
// partner: every purpose, every attribute, face probes, and
// kDevelopmentPartnerDailyQuota answers a day. For development only.
config::PartnerPolicy DevelopmentPartnerPolicy(const std::string& principal);

// Gives the development partner DevelopmentPartnerPolicy, so that the
// development set-up answers partner calls out of the box: only on a
// development transport (the development PKI, or `insecure`), only if the
// config has no partner_policies, and only if the development partner
// (hawiya://dev/partner, under `insecure` hawiya://dev/insecure) holds role
// partner. Returns the principal given the policy; empty if none was.
std::string AddDevelopmentPartnerPolicy(bool development_transport,
                                        bool insecure,
                                        config::ServerConfig* config);

// Checks the scan_* fields; INVALID_ARGUMENT naming the field.
absl::Status CheckScanPool(const config::ServerConfig& config);

// The scan pool's options: defaults overridden by the config's scan_*
// fields. REQUIRES: CheckScanPool(config) is OK.
matcher::ScanPoolOptions ScanPoolOptions(const config::ServerConfig& config);

// Checks the dedup fields; INVALID_ARGUMENT naming the field.
absl::Status CheckDedup(const config::ServerConfig& config);

// The registry's deduplication options: defaults overridden by the config's
// dedup message. REQUIRES: CheckDedup(config) is OK.
enroll::DedupOptions DedupOptionsOf(const config::ServerConfig& config);

// Checks the limits fields; INVALID_ARGUMENT naming the field.
absl::Status CheckInputLimits(const config::ServerConfig& config);

// What one person may hold: defaults overridden by the config's limits
// message. REQUIRES: CheckInputLimits(config) is OK.
enroll::InputLimits InputLimitsOf(const config::ServerConfig& config);

// The modality specs: defaults overridden by the config's entries
// (modalities, and fusion.impostor_stats for the z-score normalisation).
absl::StatusOr<std::vector<matcher::ModalitySpec>> ModalitySpecs(
    const config::ServerConfig& config);

// The fusion rule and threshold of config.fusion; INVALID_ARGUMENT naming
// the field ("fusion.rule: ...").
absl::StatusOr<matcher::FusionOptions> FusionOptions(
    const config::ServerConfig& config);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_CONFIG_H_
