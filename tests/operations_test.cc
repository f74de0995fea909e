// What an operator's tooling relies on: --version names the build, and
// under systemd (Type=notify) the server reports READY only once it serves
// and STOPPING when told to stop.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "tests/testing/server_process.h"

namespace hawiya {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(VersionTest, BothBinariesNameVersionCommitAndBuildType) {
  for (const char* binary : {HAWIYA_SERVER_PATH, HAWIYA_CLI_PATH}) {
    const testing::CommandResult result =
        testing::RunCommand(absl::StrCat(binary, " --version"));
    EXPECT_EQ(result.exit_code, 0) << binary;
    // Abseil's own --version would say "Debug build (NDEBUG not #defined)".
    EXPECT_THAT(result.out, Not(HasSubstr("NDEBUG"))) << binary;
    const std::string expected =
        absl::StrCat("hawiya(-server)? ", HAWIYA_PROJECT_VERSION,
                     " \\(commit ([0-9a-f]{12}(-dirty)?|unknown), ",
                     HAWIYA_BUILD_TYPE, " build\\)\n");
    EXPECT_TRUE(std::regex_match(result.out, std::regex(expected)))
        << binary << " printed: " << result.out;
  }
}

// An abstract datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  NotifySocket() {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    name_ = absl::StrCat("@hawiya-notify-test-", getpid());
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name_.data(), name_.size());
    address.sun_path[0] = '\0';
    bound_ = bind(fd_, reinterpret_cast<const sockaddr*>(&address),
                  offsetof(sockaddr_un, sun_path) + name_.size()) == 0;
    timeval timeout{60, 0};  // a hung server fails the test, not CI
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~NotifySocket() { close(fd_); }

  bool bound() const { return bound_; }
  const std::string& name() const { return name_; }

  // The next datagram; empty after the receive timeout.
  std::string Receive() {
    char buffer[4096];
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, n) : std::string();
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
  std::string name_;
};

TEST(SystemdNotifyTest, ReadyOnceServingThenStopping) {
  NotifySocket notify;
  ASSERT_TRUE(notify.bound());
  ASSERT_EQ(setenv("NOTIFY_SOCKET", notify.name().c_str(), 1), 0);
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(HAWIYA_SERVER_PATH,
                                    testing::NewTempDir("notify"));
  unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(server.ok()) << server.status();
  // Start returns once the server printed "serving": READY was sent by then
  // (it follows that line), and nothing before it.
  const std::string ready = notify.Receive();
  EXPECT_EQ(ready, "READY=1\nSTATUS=serving");
  EXPECT_EQ((*server)->Terminate(), 0);
  EXPECT_THAT(notify.Receive(), HasSubstr("STOPPING=1"));
}

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(testing::ReadFileBytes(path), '\n', absl::SkipEmpty());
}

// Sends bytes that are no TLS handshake to 127.0.0.1:port.
void SendGarbage(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address),
              sizeof(address)) == 0) {
    const char garbage[] = "GET / HTTP/1.0\r\n\r\n";
    (void)!write(fd, garbage, sizeof(garbage) - 1);
    char buffer[256];
    (void)!read(fd, buffer, sizeof(buffer));  // until the server hangs up
  }
  close(fd);
}

TEST(LogFormatTest, JsonLogHoldsTheServersAndGrpcCoresLines) {
  const std::string dir = testing::NewTempDir("json-log");
  const std::string log = dir + "/stderr";
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::StartTls(HAWIYA_SERVER_PATH, dir + "/data",
                                       {"--log_format=json"}, log);
  ASSERT_TRUE(server.ok()) << server.status();
  // A failed TLS handshake is logged by gRPC core itself.
  SendGarbage((*server)->port());
  for (int i = 0; i < 600 && !absl::StrContains(testing::ReadFileBytes(log),
                                                "\"component\":\"grpc\"");
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ((*server)->Terminate(), 0);
  bool grpc_line = false;
  const std::vector<std::string> lines = Lines(log);
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    google::protobuf::Struct parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok())
        << "not JSON: " << line;
    for (const char* field : {"time", "level", "component", "message"}) {
      EXPECT_TRUE(parsed.fields().count(field)) << field << " in " << line;
    }
    if (parsed.fields().at("component").string_value() == "grpc") {
      grpc_line = true;
      EXPECT_THAT(parsed.fields().at("message").string_value(),
                  HasSubstr("Handshake failed"));
    }
  }
  EXPECT_TRUE(grpc_line);
}

TEST(LogFormatTest, LogLevelDropsLowerLevels) {
  const std::string dir = testing::NewTempDir("log-level");
  const std::string log = dir + "/stderr";
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(HAWIYA_SERVER_PATH, dir + "/data",
                                    {"--log_level=warning"}, log);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->Terminate(), 0);
  const std::vector<std::string> lines = Lines(log);
  // The plaintext warning stays; the INFO lines (serving, stopped) go.
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return absl::StrContains(l, " WARNING plaintext");
  }));
  for (const std::string& line : lines) {
    EXPECT_THAT(line, Not(HasSubstr(" INFO "))) << line;
  }
  // A level that does not exist is a usage error.
  EXPECT_EQ(testing::RunCommand(absl::StrCat(HAWIYA_SERVER_PATH,
                                             " --log_level=loud 2>/dev/null"))
                .exit_code,
            2);
}

// A start that cannot succeed on retry (here: a key file others may read)
// exits 2, which the systemd unit does not restart.
TEST(StartFailureTest, WrongKeyFileExitsTwo) {
  const std::string dir = testing::NewTempDir("bad-key");
  const std::string key = dir + "/kek.key";
  {
    std::ofstream out(key);
    out << std::string(32, 'k');
  }
  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  {
    std::ofstream config(dir + "/hawiya.textproto");
    config << "key_file: \"" << key << "\"\n";
  }
  const testing::CommandResult result = testing::RunCommand(absl::StrCat(
      HAWIYA_SERVER_PATH, " --insecure --listen=127.0.0.1:0 --data_dir=", dir,
      "/data --config=", dir, "/hawiya.textproto 2>&1"));
  EXPECT_EQ(result.exit_code, 2) << result.out;
  EXPECT_THAT(result.out, HasSubstr("wider than"));
}

// Usage errors exit 2 with one line, not Abseil's exit 1 and its dump.
TEST(StartFailureTest, ServerUsageErrorsExitTwo) {
  for (const char* args : {"--bogus", "--snapshot_interval=soon",
                           "--snapshot_min_changes", "--insecure=maybe"}) {
    const testing::CommandResult result = testing::RunCommand(
        absl::StrCat(HAWIYA_SERVER_PATH, " ", args, " 2>&1"));
    EXPECT_EQ(result.exit_code, 2) << args << ": " << result.out;
    EXPECT_THAT(result.out, HasSubstr("(see 'hawiya-server --help')")) << args;
    EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1)
        << args << ": " << result.out;
  }
}

// A loopback port nothing listens on now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

// The first sample's value of an instant query, "" if there is none yet.
std::string QueryPrometheus(int port, const std::string& query) {
  httplib::Client client("127.0.0.1", port);
  httplib::Result result =
      client.Get("/api/v1/query", {{"query", query}}, httplib::Headers());
  if (!result || result->status != 200) return "";
  google::protobuf::Struct body;
  if (!google::protobuf::util::JsonStringToMessage(result->body, &body).ok()) {
    return "";
  }
  const auto& data = body.fields().at("data").struct_value().fields();
  const auto& samples = data.at("result").list_value().values();
  if (samples.empty()) return "";
  return samples[0]
      .struct_value()
      .fields()
      .at("value")
      .list_value()
      .values(1)
      .string_value();
}

// The server's metrics pass promtool's lint, and a real Prometheus (the
// Debian package) scrapes them: a call made here is a counter it can query.
TEST(MetricsProcessTest, PromtoolAcceptsThemAndPrometheusScrapesThem) {
  const std::string dir = testing::NewTempDir("metrics");
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
      testing::ServerProcess::Start(HAWIYA_SERVER_PATH, dir + "/data",
                                    {"--metrics_listen=127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const int metrics_port = (*server)->metrics_port();
  ASSERT_GT(metrics_port, 0);
  auto admin = v1::AdminService::NewStub((*server)->NewChannel());
  v1::GetStatsResponse stats;
  ASSERT_TRUE(
      admin->GetStats(testing::Ctx().get(), v1::GetStatsRequest(), &stats)
          .ok());

  httplib::Client client("127.0.0.1", metrics_port);
  httplib::Result scrape = client.Get("/metrics");
  ASSERT_TRUE(scrape);
  EXPECT_EQ(scrape->status, 200);
  EXPECT_THAT(scrape->body,
              HasSubstr("hawiya_rpc_calls_total{method=\"/hawiya.v1."
                        "AdminService/GetStats\",code=\"OK\"} 1\n"));
  EXPECT_THAT(scrape->body, HasSubstr("hawiya_serving 1\n"));
  EXPECT_THAT(scrape->body,
              HasSubstr("hawiya_gallery_templates{modality=\"FACE\""));
  EXPECT_EQ(client.Get("/other")->status, 404);
  {
    std::ofstream out(dir + "/scrape.txt");
    out << scrape->body;
  }
  const testing::CommandResult lint = testing::RunCommand(
      absl::StrCat("promtool check metrics < ", dir, "/scrape.txt 2>&1"));
  EXPECT_EQ(lint.exit_code, 0) << lint.out;
  EXPECT_EQ(lint.out, "") << "promtool's lint findings";

  const int prometheus_port = FreePort();
  ASSERT_GT(prometheus_port, 0);
  {
    std::ofstream config(dir + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n"
           << "scrape_configs:\n  - job_name: hawiya\n"
           << "    static_configs:\n      - targets: ['127.0.0.1:"
           << metrics_port << "']\n";
  }
  const pid_t prometheus = fork();
  if (prometheus == 0) {
    const std::string config = "--config.file=" + dir + "/prometheus.yml";
    const std::string storage = "--storage.tsdb.path=" + dir + "/tsdb";
    const std::string listen =
        absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port);
    const std::string log = dir + "/prometheus.log";
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execlp("prometheus", "prometheus", config.c_str(), storage.c_str(),
           listen.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(prometheus, 0);
  // Bounded: the scrape interval is 1 s; a minute covers a loaded machine.
  std::string value;
  const std::string query =
      "hawiya_rpc_calls_total{method=\"/hawiya.v1.AdminService/GetStats\","
      "code=\"OK\"}";
  for (int i = 0; i < 600 && value.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    value = QueryPrometheus(prometheus_port, query);
  }
  kill(prometheus, SIGTERM);
  int status = 0;
  waitpid(prometheus, &status, 0);
  EXPECT_EQ(value, "1") << testing::ReadFileBytes(dir + "/prometheus.log");
}

}  // namespace
}  // namespace hawiya
