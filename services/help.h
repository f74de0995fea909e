// --help for our binaries: the usage message and the binary's own flags on
// stdout, exit code 0, as command-line tools conventionally do (Abseil's
// built-in --help exits 1).
#ifndef HAWIYA_SERVICES_HELP_H_
#define HAWIYA_SERVICES_HELP_H_

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace hawiya::services {

// Sets the usage message and restricts help to the flags defined in files
// whose path contains `flags_file` (by default our *_main.cc files); prints
// help and exits 0 if argv asks for it (--help or -h). Header-only, so the
// benchmarks can use it without linking the services.
inline void HandleHelp(int argc, char** argv, absl::string_view usage,
                       absl::string_view flags_file = "_main.") {
  static std::string* const file = new std::string();
  *file = std::string(flags_file);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view path) {
    return absl::StrContains(path, *file);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  absl::flags_internal::SetProgramInvocationName(argv[0]);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      absl::flags_internal::FlagsHelp(
          std::cout, *file, absl::flags_internal::HelpFormat::kHumanReadable,
          usage);
      std::exit(0);
    }
  }
}

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_HELP_H_
