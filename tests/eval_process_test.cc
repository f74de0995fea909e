// `hawiya eval` as a process: the report, the CSV files and the plots.
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

::hawiya::testing::CommandResult RunEval(const std::string& args) {
  return ::hawiya::testing::RunCommand(
      absl::StrCat(HAWIYA_CLI_PATH, " eval ", args, " 2>/dev/null"));
}

TEST(EvalProcessTest, GenerateWritesReportCsvAndPlots) {
  const std::string dir = ::hawiya::testing::NewTempDir("eval-process");
  const ::hawiya::testing::CommandResult result = RunEval(
      absl::StrCat("--generate --variant=hard --identities=300 --mated=100 "
                   "--nonmated=100 --impostors=20 --seed=5 --out_dir=",
                   dir, " --prefix=hard"));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  EXPECT_THAT(result.out, HasSubstr("gallery 300 subjects"));
  EXPECT_THAT(result.out, HasSubstr("verification_fmr 0.0001: threshold"));
  EXPECT_THAT(result.out,
              HasSubstr("fusion { impostor_stats { modality: FACE mean:"));
  EXPECT_THAT(::hawiya::testing::ReadFileBytes(dir + "/hard_det.csv"),
              StartsWith("threshold,fmr,fnmr\n"));
  EXPECT_THAT(::hawiya::testing::ReadFileBytes(dir + "/hard_fpir.csv"),
              StartsWith("threshold,fpir,fnir_rank1,fnir_rank10\n"));
  for (const char* plot : {"det", "fnir_fpir"}) {
    const std::string png = ::hawiya::testing::ReadFileBytes(
        absl::StrCat(dir, "/hard_", plot, ".png"));
    ASSERT_GT(png.size(), 1000u) << plot;
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << plot;
    const std::string svg = ::hawiya::testing::ReadFileBytes(
        absl::StrCat(dir, "/hard_", plot, ".svg"));
    EXPECT_THAT(svg, HasSubstr("<svg")) << plot;
    EXPECT_THAT(svg, HasSubstr("<path")) << plot;
  }
  std::filesystem::remove_all(dir);
}

// Face and fingerprint fused by z-score, a quarter of the probe sets lacking
// one: the fused threshold and each modality's impostor statistics as
// config lines, and one DET plot with a curve per modality and the fused
// one.
TEST(EvalProcessTest, MultiModalZScorePrintsFusedConfigAndPlots) {
  const std::string dir = ::hawiya::testing::NewTempDir("eval-multi");
  const ::hawiya::testing::CommandResult result = RunEval(absl::StrCat(
      "--generate --modalities=FACE,FINGERPRINT --fusion=zscore "
      "--identities=300 --mated=100 --nonmated=100 --impostors=20 --seed=5 "
      "--missing=0.25 --out_dir=",
      dir, " --prefix=mm"));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  EXPECT_THAT(result.out, HasSubstr("FACE d=512, FINGERPRINT d=256"));
  EXPECT_THAT(result.out, HasSubstr("fusion zscore"));
  EXPECT_THAT(result.out, HasSubstr("FINGERPRINT cosine"));
  EXPECT_THAT(result.out, HasSubstr("fused zscore"));
  EXPECT_THAT(result.out,
              HasSubstr("fusion { rule: \"zscore\" fused_threshold: "));
  EXPECT_THAT(result.out, HasSubstr("impostor_stats { modality: FACE mean: "));
  EXPECT_THAT(result.out,
              HasSubstr("impostor_stats { modality: FINGERPRINT mean: "));
  for (const char* csv :
       {"mm_det.csv", "mm_det_FACE.csv", "mm_det_FINGERPRINT.csv"}) {
    EXPECT_THAT(::hawiya::testing::ReadFileBytes(absl::StrCat(dir, "/", csv)),
                StartsWith("threshold,fmr,fnmr\n"))
        << csv;
  }
  const std::string png = ::hawiya::testing::ReadFileBytes(dir + "/mm_det.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const std::string svg = ::hawiya::testing::ReadFileBytes(dir + "/mm_det.svg");
  EXPECT_THAT(svg, HasSubstr("<path"));
  for (const char* curve : {"fused", "FACE", "FINGERPRINT"}) {
    EXPECT_THAT(svg, HasSubstr(absl::StrCat(">", curve, "<"))) << curve;
  }
  // --missing needs two modalities.
  EXPECT_EQ(RunEval("--generate --missing=0.5 --identities=10 --mated=2 "
                    "--nonmated=2")
                .exit_code,
            2);
  std::filesystem::remove_all(dir);
}

TEST(EvalProcessTest, ReadsALabelledSetAndRefusesBadInput) {
  const std::string dir = ::hawiya::testing::NewTempDir("eval-set");
  // Two subjects in 3 dimensions, one mated and one non-mated probe.
  {
    std::ofstream set(dir + "/set.txt");
    set << "# subject vectors\n"
           "E alice 1 0 0\nE bob 0 1 0\n"
           "P alice 0.9 0.1 0\nP carol 0 0 1\n";
  }
  ::hawiya::testing::CommandResult result = RunEval(
      absl::StrCat("--set=", dir, "/set.txt --plots=false --impostors=1"));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  EXPECT_THAT(result.out, HasSubstr("FACE d=3"));
  EXPECT_THAT(result.out, HasSubstr("gallery 2 subjects; 1 mated and 1 "
                                    "non-mated searches"));
  {
    std::ofstream bad(dir + "/bad.txt");
    bad << "E alice 1 0 0\nE bob 0 1\n";
  }
  EXPECT_EQ(RunEval(absl::StrCat("--set=", dir, "/bad.txt")).exit_code, 3);
  EXPECT_EQ(RunEval("--generate --variant=medium").exit_code, 2);
  EXPECT_EQ(RunEval("").exit_code, 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hawiya
