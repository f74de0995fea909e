// What a binary was built from: the project version, the git commit and the
// CMake build type, for `--version` and the start-up log. The values are
// written at build time (cmake/version_info.cmake), so they name the commit
// that was built even when CMake was configured at an older one.
#ifndef HAWIYA_SERVICES_VERSION_H_
#define HAWIYA_SERVICES_VERSION_H_

#include <string>

namespace hawiya::services {

struct BuildInfo {
  const char* version;     // project(hawiya VERSION ...), e.g. "0.1.0"
  const char* commit;      // 12 hex digits, "-dirty" if the tree differed
                           // from it; "unknown" outside a git checkout
  const char* build_type;  // CMAKE_BUILD_TYPE, e.g. "RelWithDebInfo"
};

const BuildInfo& GetBuildInfo();

// "PROGRAM 0.1.0 (commit 0123456789ab, RelWithDebInfo build)".
std::string VersionLine(const char* program);

// If argv holds --version: prints VersionLine(program) on stdout and exits
// 0. Call before absl::ParseCommandLine, whose own --version would print
// Abseil's build mode instead.
void HandleVersion(int argc, char** argv, const char* program);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_VERSION_H_
