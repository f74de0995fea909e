// services/log.h: every JSON line is one valid JSON object with the fields
// a log shipper indexes, whatever bytes a message holds.
#include "services/log.h"

#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace hawiya::services {
namespace {

google::protobuf::Struct ParseJson(const std::string& line) {
  google::protobuf::Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(
      line.substr(0, line.size() - 1), &parsed);
  EXPECT_TRUE(status.ok()) << status << " in " << line;
  return parsed;
}

const absl::Time kTime = absl::FromUnixMillis(1796000000123);

TEST(LogTest, JsonLineHasTimeLevelComponentMessage) {
  const std::string line = FormatLogLine(LogFormat::kJson, kTime,
                                         LogLevel::kWarning, "grpc", "hello");
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const google::protobuf::Struct parsed = ParseJson(line);
  EXPECT_EQ(parsed.fields().at("time").string_value(),
            "2026-11-30T00:53:20.123Z");
  EXPECT_EQ(parsed.fields().at("level").string_value(), "WARNING");
  EXPECT_EQ(parsed.fields().at("component").string_value(), "grpc");
  EXPECT_EQ(parsed.fields().at("message").string_value(), "hello");
  EXPECT_EQ(parsed.fields().size(), 4);
}

TEST(LogTest, JsonEscapesQuotesControlsAndReplacesInvalidUtf8) {
  const std::string message =
      std::string("quote \" back \\ newline \n tab \t nul ") + '\0' +
      " esc \x1b del \x7f arabic \xd9\x87\xd9\x88\xd9\x8a\xd8\xa9 bad \xff\xc3 "
      "surrogate \xed\xa0\x80 end";
  const std::string line = FormatLogLine(LogFormat::kJson, kTime,
                                         LogLevel::kError, "server", message);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const google::protobuf::Struct parsed = ParseJson(line);
  const std::string decoded = parsed.fields().at("message").string_value();
  EXPECT_THAT(decoded, ::testing::HasSubstr("quote \" back \\ newline \n"));
  EXPECT_THAT(decoded, ::testing::HasSubstr(std::string("nul ") + '\0'));
  EXPECT_THAT(decoded, ::testing::HasSubstr("arabic هوية bad \xef\xbf\xbd"));
  EXPECT_THAT(decoded, ::testing::HasSubstr("surrogate \xef\xbf\xbd"));
  EXPECT_THAT(decoded, ::testing::EndsWith(" end"));
}

TEST(LogTest, TextLineKeepsTheShortFormForTheServer) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kInfo, "server",
                          "serving"),
            "2026-11-30T00:53:20.123Z INFO serving\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kError, "grpc",
                          "handshake"),
            "2026-11-30T00:53:20.123Z ERROR [grpc] handshake\n");
}

TEST(LogTest, ParsesLevelsAndFormatsAndNamesTheFlag) {
  EXPECT_EQ(*ParseLogLevel("WARNING"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_THAT(ParseLogLevel("loud").status().message(),
              ::testing::HasSubstr("--log_level"));
  EXPECT_THAT(ParseLogFormat("xml").status().message(),
              ::testing::HasSubstr("--log_format"));
}

}  // namespace
}  // namespace hawiya::services
