#include "services/version.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hawiya::services {

std::string VersionLine(const char* program) {
  const BuildInfo& info = GetBuildInfo();
  return absl::StrCat(program, " ", info.version, " (commit ", info.commit,
                      ", ", info.build_type, " build)");
}

void HandleVersion(int argc, char** argv, const char* program) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("%s\n", VersionLine(program).c_str());
      std::exit(0);
    }
  }
}

}  // namespace hawiya::services
