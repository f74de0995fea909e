// Minimal structured logging to stderr (Abseil 20220623 has no absl/log).
// Never log PII or templates: callers pass ids and codes only.
#ifndef HAWIYA_SERVICES_LOG_H_
#define HAWIYA_SERVICES_LOG_H_

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hawiya::services {

template <typename... Args>
void Log(const char* level, const Args&... args) {
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " ", level, " ", args..., "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_LOG_H_
