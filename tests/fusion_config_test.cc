// The fusion and accuracy_targets sections of the server config
// (config.proto fields 100-101), and the z-score fusion through a running
// server.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "matcher/matcher.h"
#include "matcher/synthetic.h"
#include "services/config.h"
#include "services/synthetic_requests.h"
#include "tests/testing/fixtures.h"
#include "tests/testing/server_process.h"

namespace hawiya::services {
namespace {

using ::hawiya::testing::Ctx;
using ::hawiya::testing::NewTempDir;
using ::hawiya::testing::ServerProcess;
using ::testing::HasSubstr;

// The commented zscore example in deploy/hawiya.textproto.
std::string ZScoreExample() {
  std::ifstream example(std::string(HAWIYA_SOURCE_DIR) +
                        "/deploy/hawiya.textproto");
  std::string text;
  for (std::string line; std::getline(example, line);) {
    if (absl::StartsWith(line, "#   fusion")) text += line.substr(4) + "\n";
  }
  return text;
}

// The FACE gallery's entry of GetStats (default if there is none).
v1::GalleryStats FaceStats(ServerProcess& server) {
  v1::GetStatsResponse stats;
  EXPECT_TRUE(v1::AdminService::NewStub(server.NewChannel())
                  ->GetStats(Ctx().get(), v1::GetStatsRequest(), &stats)
                  .ok());
  for (const v1::GalleryStats& gallery : stats.galleries()) {
    if (gallery.modality() == v1::FACE) return gallery;
  }
  ADD_FAILURE() << "no FACE gallery in " << stats.DebugString();
  return v1::GalleryStats();
}

absl::StatusOr<config::ServerConfig> Load(const std::string& dir,
                                          const std::string& text) {
  const std::string path = dir + "/config.textproto";
  std::ofstream(path, std::ios::trunc) << text;
  return LoadConfig(path);
}

TEST(FusionConfigTest, ExampleAndDefaultsLoad) {
  const std::string dir = NewTempDir("hawiya-fusion-config");
  const std::string example = ZScoreExample();
  ASSERT_FALSE(example.empty());
  absl::StatusOr<config::ServerConfig> config = Load(dir, example);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<matcher::FusionOptions> fusion = FusionOptions(*config);
  ASSERT_TRUE(fusion.ok()) << fusion.status();
  EXPECT_EQ(fusion->rule, matcher::FusionRule::kZScore);
  EXPECT_EQ(fusion->fused_threshold, 9.0f);
  absl::StatusOr<std::vector<matcher::ModalitySpec>> specs =
      ModalitySpecs(*config);
  ASSERT_TRUE(specs.ok()) << specs.status();
  for (const matcher::ModalitySpec& spec : *specs) {
    if (spec.modality == matcher::Modality::kFingerprint) {
      EXPECT_FLOAT_EQ(spec.impostor_std, 0.0625f);
    }
    if (spec.modality == matcher::Modality::kIris) {
      EXPECT_EQ(spec.impostor_std, 0.0f);  // not listed: 1/sqrt(d)
    }
  }
  // The whole example file (fusion "mean", targets 1e-4 / 1e-3) loads.
  config =
      LoadConfig(std::string(HAWIYA_SOURCE_DIR) + "/deploy/hawiya.textproto");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_DOUBLE_EQ(config->accuracy_targets().verification_fmr(), 1e-4);
  EXPECT_DOUBLE_EQ(config->accuracy_targets().identification_fpir(), 1e-3);
  EXPECT_EQ(FusionOptions(*config)->rule, matcher::FusionRule::kMean);
  EXPECT_EQ(FusionOptions(*config)->shortlist, 100u);
  config = Load(dir, "fusion { shortlist: 0 }");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(FusionOptions(*config)->shortlist, 0u);
  config = Load(dir, "fusion { shortlist: 250 }");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(FusionOptions(*config)->shortlist, 250u);
  std::filesystem::remove_all(dir);
}

TEST(FusionConfigTest, BadEntriesAreNamed) {
  const std::string dir = NewTempDir("hawiya-fusion-bad");
  const struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"fusion { rule: \"max\" }", "fusion.rule: "},
      {"fusion { fused_threshold: 3 }", "fusion.fused_threshold: only"},
      {"fusion { impostor_stats { modality: FACE std: -1 } }",
       "fusion.impostor_stats[0].std"},
      {"fusion { impostor_stats { mean: 0.1 } }",
       "fusion.impostor_stats[0].modality"},
      {"fusion { impostor_min_scores: 0 }", "fusion.impostor_min_scores"},
      {"fusion { shortlist: 10001 }", "fusion.shortlist"},
      {"accuracy_targets { verification_fmr: 2 }",
       "accuracy_targets.verification_fmr"},
      {"accuracy_targets { identification_fpir: -0.1 }",
       "accuracy_targets.identification_fpir"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<config::ServerConfig> config = Load(dir, c.text);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument)
        << c.text;
    EXPECT_THAT(config.status().message(), HasSubstr(c.error)) << c.text;
  }
  std::filesystem::remove_all(dir);
}

// A server configured for z-score fusion answers Verify and Identify on the
// z scale (face alone: cosine * sqrt(512)) and still decides as the 0.40
// cosine threshold does.
TEST(FusionConfigTest, ServerReportsZScores) {
  const std::string dir = NewTempDir("hawiya-fusion-server");
  const std::string config_path = dir + "/config.textproto";
  std::ofstream(config_path) << "fusion { rule: \"zscore\" }\n";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(HAWIYA_SERVER_PATH, dir + "/data",
                           {"--config=" + config_path, "--shutdown_grace=1s"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = (*server)->NewChannel();
  auto enrollment = v1::EnrollmentService::NewStub(channel);
  auto match = v1::MatchService::NewStub(channel);
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  v1::EnrollResponse enrolled;
  ASSERT_TRUE(enrollment
                  ->Enroll(Ctx().get(),
                           ::hawiya::testing::MakeEnrollRequest(model, 3),
                           &enrolled)
                  .ok());
  const double sqrt_d = std::sqrt(512.0);
  v1::VerifyRequest request;
  request.set_subject_id(enrolled.person().subject_id());
  *request.add_probes() = SyntheticFaceTemplate(model, 3, 1);
  v1::VerifyResponse genuine;
  ASSERT_TRUE(match->Verify(Ctx().get(), request, &genuine).ok());
  ASSERT_EQ(genuine.modality_scores_size(), 1);
  const float cosine = genuine.modality_scores(0).score();
  EXPECT_NEAR(cosine, 0.61, 0.1);
  EXPECT_NEAR(genuine.modality_scores(0).normalized_score(), cosine * sqrt_d,
              1e-3);
  EXPECT_NEAR(genuine.score(), cosine * sqrt_d, 1e-3);
  EXPECT_NEAR(genuine.threshold(), 0.40 * sqrt_d, 1e-3);
  EXPECT_TRUE(genuine.match());

  *request.mutable_probes(0) = SyntheticFaceTemplate(model, 4, 1);
  v1::VerifyResponse impostor;
  ASSERT_TRUE(match->Verify(Ctx().get(), request, &impostor).ok());
  EXPECT_FALSE(impostor.match());
  EXPECT_LT(impostor.score(), 4.0);  // an impostor's z: ~N(0, 1)

  v1::IdentifyRequest identify;
  *identify.add_probes() = SyntheticFaceTemplate(model, 3, 1);
  v1::IdentifyResponse found;
  ASSERT_TRUE(match->Identify(Ctx().get(), identify, &found).ok());
  ASSERT_EQ(found.candidates_size(), 1);
  EXPECT_NEAR(found.candidates(0).score(), genuine.score(), 1e-4);
  EXPECT_NEAR(found.candidates(0).modality_scores(0).normalized_score(),
              genuine.score(), 1e-4);
  EXPECT_NEAR(found.threshold(), 0.40 * sqrt_d, 1e-3);
  // Too few impostor scores yet for the gallery's own estimate: the model's.
  const v1::GalleryStats face = FaceStats(**server);
  EXPECT_EQ(face.impostor_source(), "MODEL");
  EXPECT_EQ(face.impostor_scores(), 0);
  EXPECT_EQ(face.impostor_mean(), 0.0);
  EXPECT_DOUBLE_EQ(face.impostor_std(), 1 / sqrt_d);
  // min_score is on the z scale too: beyond the cosine range, accepted.
  identify.set_min_score(5.0f);
  ASSERT_TRUE(match->Identify(Ctx().get(), identify, &found).ok());
  EXPECT_EQ(found.candidates_size(), 1);
  identify.set_min_score(30.0f);
  ASSERT_TRUE(match->Identify(Ctx().get(), identify, &found).ok());
  EXPECT_EQ(found.candidates_size(), 0);
  server->reset();
  std::filesystem::remove_all(dir);
}

// With fusion.impostor_min_scores reached, GetStats reports the gallery's
// own impostor statistics, zscore normalises with them, and a restart from
// the snapshot written at shutdown reports exactly the same ones. A person
// revoked before the restart keeps its scores in the estimate (a rebuild
// from the store's active templates would have fewer: 32).
TEST(FusionConfigTest, GalleryImpostorStatsSurviveARestart) {
  const std::string dir = NewTempDir("hawiya-fusion-impostor");
  const std::string config_path = dir + "/config.textproto";
  std::ofstream(config_path)
      << "fusion { rule: \"zscore\" impostor_min_scores: 20 }\n";
  const std::vector<std::string> args = {"--config=" + config_path,
                                         "--shutdown_grace=1s"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(HAWIYA_SERVER_PATH, dir + "/data", args);
  ASSERT_TRUE(server.ok()) << server.status();
  auto enrollment = v1::EnrollmentService::NewStub((*server)->NewChannel());
  const matcher::SyntheticModel model{matcher::SyntheticOptions{}};
  std::vector<std::string> subjects;
  for (uint64_t n = 10; n < 16; ++n) {
    v1::EnrollResponse enrolled;
    ASSERT_TRUE(enrollment
                    ->Enroll(Ctx().get(),
                             ::hawiya::testing::MakeEnrollRequest(model, n),
                             &enrolled)
                    .ok());
    subjects.push_back(enrolled.person().subject_id());
  }
  const v1::GalleryStats before = FaceStats(**server);
  EXPECT_EQ(before.impostor_source(), "GALLERY");
  // The first face met an empty reservoir; each of the 5 others 8 draws.
  EXPECT_EQ(before.impostor_scores(), 40);
  EXPECT_GT(before.impostor_std(), 0.0);
  EXPECT_NE(before.impostor_std(), 1 / std::sqrt(512.0));

  v1::VerifyRequest request;
  request.set_subject_id(subjects.back());
  *request.add_probes() = SyntheticFaceTemplate(model, 15, 1);
  v1::VerifyResponse verified;
  ASSERT_TRUE(v1::MatchService::NewStub((*server)->NewChannel())
                  ->Verify(Ctx().get(), request, &verified)
                  .ok());
  const double cosine = verified.modality_scores(0).score();
  EXPECT_NEAR(verified.score(),
              (cosine - before.impostor_mean()) / before.impostor_std(), 1e-3);
  EXPECT_NEAR(verified.threshold(),
              (0.40 - before.impostor_mean()) / before.impostor_std(), 1e-3);

  v1::DeletePersonRequest revoke;
  revoke.set_subject_id(subjects[2]);
  revoke.set_reason("test");
  google::protobuf::Empty revoked;
  ASSERT_TRUE(enrollment->DeletePerson(Ctx().get(), revoke, &revoked).ok());
  ASSERT_EQ(FaceStats(**server).impostor_scores(), 40);

  ASSERT_EQ((*server)->Terminate(), 0);  // writes a snapshot
  server = ServerProcess::Start(HAWIYA_SERVER_PATH, dir + "/data", args);
  ASSERT_TRUE(server.ok()) << server.status();
  const v1::GalleryStats after = FaceStats(**server);
  EXPECT_EQ(after.impostor_source(), "GALLERY");
  EXPECT_EQ(after.impostor_scores(), before.impostor_scores());
  EXPECT_EQ(after.impostor_mean(), before.impostor_mean());
  EXPECT_EQ(after.impostor_std(), before.impostor_std());
  server->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hawiya::services
