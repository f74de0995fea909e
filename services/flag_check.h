// Usage errors in command-line flags, found before absl::ParseCommandLine
// runs: Abseil's parser exits 1 on an unknown flag or a bad value, and our
// binaries exit 2 for every usage error (1 is a negative answer).
#ifndef HAWIYA_SERVICES_FLAG_CHECK_H_
#define HAWIYA_SERVICES_FLAG_CHECK_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace hawiya::services {

// The first usage error of argv as one line ("unknown flag --nationalid",
// "--timeout needs a value (a duration such as 30s or 2m)"), or empty.
// Reads argv as absl::ParseCommandLine does (--name=value, --name value,
// --bool, --nobool, -name; "--" ends the flags). The values of flags
// defined in files whose path contains `flags_file` are parsed into them
// (ParseCommandLine then repeats that); Abseil's own flags (--flagfile, ...)
// are left to it. Appends the positional arguments to `positional` if not
// null.
std::string FlagProblem(int argc, char** argv, absl::string_view flags_file,
                        std::vector<std::string>* positional);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_FLAG_CHECK_H_
