#include "services/config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "enroll/partner.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "hawiya/v1/partner.pb.h"
#include "matcher/gallery.h"
#include "services/auth.h"
#include "services/rate_limit.h"
#include "services/roles.h"

namespace hawiya::services {
namespace {

// Collects the parser's errors so the caller sees line and column.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

// Out-of-range values stay out of range (CheckIndexOptions refuses them)
// instead of wrapping to small or negative ints.
int ToInt(uint32_t value) {
  return static_cast<int>(std::min<uint32_t>(value, INT_MAX));
}

// Applies a modality's index section over the defaults in *options.
// `field` names the modality ("modalities[0]").
absl::Status ApplyIndexConfig(const config::IndexConfig& index,
                              const std::string& field,
                              matcher::IndexOptions* options) {
  if (!index.kind().empty()) {
    absl::StatusOr<matcher::IndexKind> kind =
        matcher::ParseIndexKind(index.kind());
    if (!kind.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".index.kind: ", kind.status().message()));
    }
    options->kind = *kind;
  }
  const config::HnswConfig& hnsw = index.hnsw();
  if (hnsw.has_m()) options->hnsw.m = ToInt(hnsw.m());
  if (hnsw.has_ef_construction()) {
    options->hnsw.ef_construction = ToInt(hnsw.ef_construction());
  }
  if (hnsw.has_ef_search()) options->hnsw.ef_search = ToInt(hnsw.ef_search());
  if (hnsw.has_sq8_storage()) options->hnsw.sq8_storage = hnsw.sq8_storage();
  if (index.has_rerank_factor()) {
    options->rerank_factor = ToInt(index.rerank_factor());
  }
  if (index.has_auto_hnsw_min_templates()) {
    options->auto_hnsw_min_templates = index.auto_hnsw_min_templates();
  }
  // The matcher's messages name the option from "index." on, as the config
  // spells it.
  if (absl::Status s = matcher::CheckIndexOptions(*options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<config::ServerConfig> LoadConfig(const std::string& path) {
  config::ServerConfig config;
  if (path.empty()) return config;
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("config ", path, ": cannot read"));
  }
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ":", errors.first()));
  }
  if (config.max_receive_message_bytes() > 1u << 30) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", path, ": max_receive_message_bytes: at most 1 GiB"));
  }
  if (absl::Status s = CheckScanPool(config); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", s.message()));
  }
  if (absl::StatusOr<std::vector<matcher::ModalitySpec>> specs =
          ModalitySpecs(config);
      !specs.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", specs.status().message()));
  }
  if (absl::StatusOr<matcher::FusionOptions> fusion = FusionOptions(config);
      !fusion.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", fusion.status().message()));
  }
  if (absl::StatusOr<AccessPolicy> access = AccessPolicy::FromConfig(config);
      !access.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", access.status().message()));
  }
  if (absl::StatusOr<std::unique_ptr<RateLimiter>> limits =
          RateLimiter::FromConfig(config);
      !limits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", limits.status().message()));
  }
  if (absl::Status s = CheckPartnerPolicies(config); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", s.message()));
  }
  if (absl::Status s = CheckDedup(config); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", s.message()));
  }
  if (absl::Status s = CheckInputLimits(config); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": ", s.message()));
  }
  return config;
}

absl::Status CheckInputLimits(const config::ServerConfig& config) {
  const config::InputLimitsConfig& limits = config.limits();
  const std::pair<const char*, std::pair<uint32_t, uint32_t>> fields[] = {
      {"max_documents", {limits.max_documents(), 10000}},
      {"max_faces", {limits.max_faces(), 100}},
      {"max_fingerprints", {limits.max_fingerprints(), 10}},
      {"max_irises", {limits.max_irises(), 2}},
  };
  for (const auto& [name, value_and_max] : fields) {
    const auto [value, max] = value_and_max;
    if (value > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("limits.", name, ": ", value, " is more than ", max));
    }
  }
  return absl::OkStatus();
}

enroll::InputLimits InputLimitsOf(const config::ServerConfig& config) {
  const config::InputLimitsConfig& limits = config.limits();
  enroll::InputLimits options;
  if (limits.max_documents() > 0) {
    options.max_documents = limits.max_documents();
  }
  if (limits.max_faces() > 0) options.max_faces = limits.max_faces();
  if (limits.max_fingerprints() > 0) {
    options.max_fingerprints = limits.max_fingerprints();
  }
  if (limits.max_irises() > 0) options.max_irises = limits.max_irises();
  return options;
}

absl::Status CheckDedup(const config::ServerConfig& config) {
  const config::DedupConfig& dedup = config.dedup();
  if (!std::isfinite(dedup.threshold()) || dedup.threshold() < 0.0f ||
      dedup.threshold() > 1.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup.threshold: ", dedup.threshold(),
                     " out of range [0, 1] (0: the fused decision threshold)"));
  }
  if (dedup.max_candidates() > 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dedup.max_candidates: ", dedup.max_candidates(), " is more than 100"));
  }
  return absl::OkStatus();
}

enroll::DedupOptions DedupOptionsOf(const config::ServerConfig& config) {
  const config::DedupConfig& dedup = config.dedup();
  enroll::DedupOptions options;
  if (dedup.has_enabled()) options.enabled = dedup.enabled();
  options.threshold = dedup.threshold();
  if (dedup.max_candidates() > 0)
    options.max_candidates = dedup.max_candidates();
  if (dedup.has_demographic_check()) {
    options.demographic_check = dedup.demographic_check();
  }
  return options;
}

namespace {

// Whether `principal` holds role partner under the config's principals (or
// the default ones).
bool HoldsPartnerRole(const config::ServerConfig& config,
                      const std::string& principal) {
  // The --insecure caller holds every role (plaintext, development).
  if (principal == kInsecurePrincipal) return true;
  std::vector<config::PrincipalRoles> principals(config.principals().begin(),
                                                 config.principals().end());
  if (principals.empty()) principals = AccessPolicy::DefaultPrincipals();
  for (const config::PrincipalRoles& entry : principals) {
    if (entry.principal() != principal) continue;
    for (const std::string& role : entry.roles()) {
      if (role == "partner") return true;
    }
  }
  return false;
}

}  // namespace

absl::Status CheckPartnerPolicies(const config::ServerConfig& config) {
  absl::StatusOr<enroll::PartnerPolicies> policies =
      enroll::PartnerPolicies::FromConfig(config);
  if (!policies.ok()) return policies.status();
  for (int i = 0; i < config.partner_policies_size(); ++i) {
    const std::string& principal = config.partner_policies(i).principal();
    if (!HoldsPartnerRole(config, principal)) {
      return absl::InvalidArgumentError(
          absl::StrCat("partner_policies[", i, "].principal: ", principal,
                       " is not one of the principals with role partner"));
    }
  }
  return absl::OkStatus();
}

config::PartnerPolicy DevelopmentPartnerPolicy(const std::string& principal) {
  config::PartnerPolicy policy;
  policy.set_principal(principal);
  const google::protobuf::EnumDescriptor* purposes = v1::Purpose_descriptor();
  for (int i = 0; i < purposes->value_count(); ++i) {
    if (purposes->value(i)->number() == v1::PURPOSE_UNSPECIFIED) continue;
    policy.add_allowed_purposes(purposes->value(i)->name());
  }
  for (const std::string& attribute : enroll::PartnerAttributes()) {
    policy.add_disclosable_attributes(attribute);
  }
  policy.set_biometric_allowed(true);
  policy.set_daily_quota(kDevelopmentPartnerDailyQuota);
  return policy;
}

std::string AddDevelopmentPartnerPolicy(bool development_transport,
                                        bool insecure,
                                        config::ServerConfig* config) {
  if (!development_transport || config->partner_policies_size() > 0) {
    return "";
  }
  const std::string principal =
      insecure ? std::string(kInsecurePrincipal) : DevPrincipal("partner");
  if (!HoldsPartnerRole(*config, principal)) return "";
  *config->add_partner_policies() = DevelopmentPartnerPolicy(principal);
  return principal;
}

absl::Status CheckScanPool(const config::ServerConfig& config) {
  if (config.scan_threads() > 256) {
    return absl::InvalidArgumentError("scan_threads: at most 256");
  }
  if (config.scan_max_batch() > 64) {
    return absl::InvalidArgumentError("scan_max_batch: at most 64");
  }
  if (config.scan_max_wait_us() > 1000) {
    return absl::InvalidArgumentError("scan_max_wait_us: at most 1000 (1 ms)");
  }
  return absl::OkStatus();
}

matcher::ScanPoolOptions ScanPoolOptions(const config::ServerConfig& config) {
  matcher::ScanPoolOptions options;
  options.threads = static_cast<int>(config.scan_threads());
  if (config.scan_max_batch() > 0) {
    options.max_batch = static_cast<int>(config.scan_max_batch());
  }
  options.max_wait = absl::Microseconds(config.scan_max_wait_us());
  return options;
}

absl::StatusOr<std::vector<matcher::ModalitySpec>> ModalitySpecs(
    const config::ServerConfig& config) {
  std::vector<matcher::ModalitySpec> specs = matcher::DefaultModalities();
  for (int i = 0; i < config.modalities_size(); ++i) {
    const config::ModalityConfig& m = config.modalities(i);
    const std::string field = absl::StrCat("modalities[", i, "]");
    matcher::ModalitySpec* spec = nullptr;
    for (matcher::ModalitySpec& s : specs) {
      if (static_cast<int>(s.modality) == m.modality()) spec = &s;
    }
    if (spec == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".modality: must be FACE, FINGERPRINT or IRIS"));
    }
    if (m.dimension() > 0) {
      if (m.dimension() > 8192) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".dimension: at most 8192"));
      }
      spec->dimension = static_cast<int>(m.dimension());
    }
    if (m.has_threshold()) {
      if (!std::isfinite(m.threshold()) || m.threshold() < -1.0f ||
          m.threshold() > 1.0f) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".threshold: must be in [-1, 1]"));
      }
      spec->threshold = m.threshold();
    }
    if (absl::Status s = ApplyIndexConfig(m.index(), field, &spec->index);
        !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < config.fusion().impostor_stats_size(); ++i) {
    const config::ImpostorStats& stats = config.fusion().impostor_stats(i);
    const std::string field = absl::StrCat("fusion.impostor_stats[", i, "]");
    matcher::ModalitySpec* spec = nullptr;
    for (matcher::ModalitySpec& s : specs) {
      if (static_cast<int>(s.modality) == stats.modality()) spec = &s;
    }
    if (spec == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".modality: must be FACE, FINGERPRINT or IRIS"));
    }
    if (!std::isfinite(stats.mean()) || stats.mean() < -1.0f ||
        stats.mean() > 1.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".mean: must be in [-1, 1]"));
    }
    if (!std::isfinite(stats.std()) || stats.std() < 0.0f ||
        stats.std() > 2.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".std: must be in [0, 2]"));
    }
    spec->impostor_mean = stats.mean();
    spec->impostor_std = stats.std();
  }
  return specs;
}

absl::StatusOr<matcher::FusionOptions> FusionOptions(
    const config::ServerConfig& config) {
  matcher::FusionOptions fusion;
  if (!config.fusion().rule().empty()) {
    absl::StatusOr<matcher::FusionRule> rule =
        matcher::ParseFusionRule(config.fusion().rule());
    if (!rule.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fusion.rule: ", rule.status().message()));
    }
    fusion.rule = *rule;
  }
  if (config.fusion().has_fused_threshold()) {
    if (!std::isfinite(config.fusion().fused_threshold())) {
      return absl::InvalidArgumentError(
          "fusion.fused_threshold: must be finite");
    }
    if (fusion.rule != matcher::FusionRule::kZScore) {
      return absl::InvalidArgumentError(
          "fusion.fused_threshold: only with rule \"zscore\"");
    }
    fusion.fused_threshold = config.fusion().fused_threshold();
  }
  if (config.fusion().has_impostor_min_scores()) {
    const uint32_t min_scores = config.fusion().impostor_min_scores();
    if (min_scores < 1 || min_scores > 1000000000) {
      return absl::InvalidArgumentError(
          "fusion.impostor_min_scores: must be in [1, 1000000000]");
    }
    fusion.impostor_min_scores = min_scores;
  }
  if (config.fusion().has_shortlist()) {
    if (config.fusion().shortlist() > 10000) {
      return absl::InvalidArgumentError(
          absl::StrCat("fusion.shortlist: ", config.fusion().shortlist(),
                       " is more than 10000"));
    }
    fusion.shortlist = config.fusion().shortlist();
  }
  const config::AccuracyTargets& targets = config.accuracy_targets();
  if (targets.verification_fmr() < 0.0 || targets.verification_fmr() >= 1.0 ||
      std::isnan(targets.verification_fmr())) {
    return absl::InvalidArgumentError(
        "accuracy_targets.verification_fmr: must be in [0, 1)");
  }
  if (targets.identification_fpir() < 0.0 ||
      targets.identification_fpir() >= 1.0 ||
      std::isnan(targets.identification_fpir())) {
    return absl::InvalidArgumentError(
        "accuracy_targets.identification_fpir: must be in [0, 1)");
  }
  return fusion;
}

}  // namespace hawiya::services
