#include "services/flag_check.h"

#include <cstdint>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace hawiya::services {
namespace {

// What a value of `flag` looks like, for the error naming a bad one.
std::string ExpectedValue(const absl::CommandLineFlag& flag) {
  if (flag.IsOfType<bool>()) return "true or false";
  if (flag.IsOfType<int>() || flag.IsOfType<int64_t>()) return "an integer";
  if (flag.IsOfType<uint32_t>() || flag.IsOfType<uint64_t>()) {
    return "a non-negative integer";
  }
  if (flag.IsOfType<double>()) return "a number";
  if (flag.IsOfType<absl::Duration>()) return "a duration such as 30s or 2m";
  if (flag.IsOfType<absl::Time>()) {
    return "an RFC 3339 time such as 2026-01-31T08:00:00Z";
  }
  return "a valid value";
}

// Abseil's own flags, which its parser handles (and FindCommandLineFlag
// does not list): help in its forms, --version, flag files and the like.
bool IsAbseilFlag(absl::string_view name) {
  for (absl::string_view own :
       {"help", "helpfull", "helpshort", "helppackage", "helpon", "helpmatch",
        "version", "only_check_args", "flagfile", "fromenv", "tryfromenv",
        "undefok"}) {
    if (name == own) return true;
  }
  return false;
}

}  // namespace

std::string FlagProblem(int argc, char** argv, absl::string_view flags_file,
                        std::vector<std::string>* positional) {
  std::string problem;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "-") || arg.empty()) {
      if (positional != nullptr) positional->emplace_back(argv[i]);
      continue;
    }
    absl::ConsumePrefix(&arg, "-");
    if (arg.empty()) break;  // "--": the rest is positional
    if (!problem.empty()) continue;
    const size_t equals = arg.find('=');
    const absl::string_view typed = arg.substr(0, equals);
    absl::string_view name = typed;
    if (IsAbseilFlag(name)) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negative = false;
    if (flag == nullptr && absl::ConsumePrefix(&name, "no")) {
      flag = absl::FindCommandLineFlag(name);
      negative = flag != nullptr;
      if (negative && !flag->IsOfType<bool>()) flag = nullptr;
    }
    if (flag == nullptr) {
      problem = absl::StrCat("unknown flag --", typed);
      continue;
    }
    std::string value;
    if (equals != absl::string_view::npos) {
      if (negative) {
        problem = absl::StrCat("--", typed, " takes no value");
        continue;
      }
      value = std::string(arg.substr(equals + 1));
    } else if (flag->IsOfType<bool>()) {
      value = negative ? "false" : "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      problem = absl::StrCat("--", typed, " needs a value (",
                             ExpectedValue(*flag), ")");
      continue;
    }
    if (!absl::StrContains(flag->Filename(), flags_file)) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      problem =
          absl::StrCat("--", name, "=", value, ": not ", ExpectedValue(*flag));
    }
  }
  return problem;
}

}  // namespace hawiya::services
