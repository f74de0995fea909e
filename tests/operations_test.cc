// What an operator's tooling relies on: --version names the build, and
// under systemd (Type=notify) the server reports READY only once it serves
// and STOPPING when told to stop.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

}  // namespace
}  // namespace hawiya
