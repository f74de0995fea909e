// Minimal structured logging to stderr (Abseil 20220623 has no absl/log).
//
// Log policy: no line carries PII (names, national ids, dates of birth,
// document numbers, places, reasons, client-chosen request ids) or any part
// of a template. Callers pass server-made ids (subject ids, template ids,
// key versions), principals, method names, codes, counts and paths. Client
// errors (INVALID_ARGUMENT, ALREADY_EXISTS, NOT_FOUND, ...) whose messages
// quote the request go back to the client only and are never logged; the
// messages of INTERNAL, UNKNOWN and DATA_LOSS errors, which are logged, are
// built from server-made ids only. tests/limits_test.cc
// (LogPolicyProcessTest) checks a server's whole log for a person's fields
// and template.
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
