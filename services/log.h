// Logging to stderr, one line per event, as text or JSON (Abseil 20220623
// has no absl/log). gRPC core's own lines go through the same writer
// (ConfigureLogging), so a server's log has one format.
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
// and template. So a JSON line has no request id field: the only request
// ids are the clients' own.
#ifndef HAWIYA_SERVICES_LOG_H_
#define HAWIYA_SERVICES_LOG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hawiya::services {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat {
  kText,  // "2026-12-07T10:00:00.123Z INFO message" (component if not ours)
  kJson,  // {"time":...,"level":"INFO","component":"server","message":...}
};

struct LogOptions {
  LogFormat format = LogFormat::kText;
  // Lines of a lower level are dropped. gRPC core logs its errors only,
  // unless this is kDebug, when it logs everything it has.
  LogLevel level = LogLevel::kInfo;
};

// "debug", "info", "warning", "error"; INVALID_ARGUMENT naming the flag.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
// "text", "json".
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text);

// Applies `options` to the process and routes gRPC core's log
// (gpr_set_log_function) through WriteLog as component "grpc". Call once,
// early in main; until then lines are text at level INFO.
void ConfigureLogging(const LogOptions& options);

// One formatted line, newline included. Non-UTF-8 bytes in JSON strings are
// replaced (U+FFFD), so each line is valid JSON.
std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view component,
                          absl::string_view message);

bool LogEnabled(LogLevel level);
void WriteLog(LogLevel level, absl::string_view component,
              absl::string_view message);

// The server's own lines: Log("INFO" | "WARNING" | "ERROR" | "DEBUG", ...).
template <typename... Args>
void Log(const char* level, const Args&... args) {
  const LogLevel parsed = level[0] == 'E'   ? LogLevel::kError
                          : level[0] == 'W' ? LogLevel::kWarning
                          : level[0] == 'D' ? LogLevel::kDebug
                                            : LogLevel::kInfo;
  if (!LogEnabled(parsed)) return;
  WriteLog(parsed, "server", absl::StrCat(args...));
}

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_LOG_H_
