#include "services/config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

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
  return config;
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
  }
  return specs;
}

}  // namespace hawiya::services
