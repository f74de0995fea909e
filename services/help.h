// --help for our binaries: the usage message and the binary's own flags on
// stdout, exit code 0, as command-line tools conventionally do (Abseil's
// built-in --help exits 1).
#ifndef HAWIYA_SERVICES_HELP_H_
#define HAWIYA_SERVICES_HELP_H_

#include <cstdlib>
#include <cstring>
#include <iostream>

#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace hawiya::services {

// Sets the usage message and restricts help to flags defined in *_main.cc;
// prints help and exits 0 if argv asks for it (--help or -h).
inline void HandleHelp(int argc, char** argv, absl::string_view usage) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "_main.");
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  absl::flags_internal::SetProgramInvocationName(argv[0]);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      absl::flags_internal::FlagsHelp(
          std::cout, "_main.", absl::flags_internal::HelpFormat::kHumanReadable,
          usage);
      std::exit(0);
    }
  }
}

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_HELP_H_
