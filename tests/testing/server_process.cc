#include "tests/testing/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace hawiya::testing {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::string& data_dir,
    const std::vector<std::string>& extra_args,
    const std::string& stderr_path) {
  std::vector<std::string> args = {binary, "--insecure", "--listen=127.0.0.1:0",
                                   "--data_dir=" + data_dir};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return Launch(std::move(args), stderr_path);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartTls(
    const std::string& binary, const std::string& data_dir,
    const std::vector<std::string>& extra_args,
    const std::string& stderr_path) {
  std::vector<std::string> args = {binary, "--listen=127.0.0.1:0",
                                   "--data_dir=" + data_dir};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return Launch(std::move(args), stderr_path);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Launch(
    std::vector<std::string> args, const std::string& stderr_path) {
  const std::string binary = args[0];
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // A test or bench that dies must not leave its server behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    if (!stderr_path.empty()) {
      const int fd =
          open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        close(fd);
      }
    }
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::unique_ptr<ServerProcess> server(
      new ServerProcess(pid, fdopen(pipe_fds[0], "r")));
  char line[512];
  while (std::fgets(line, sizeof(line), server->out_) != nullptr) {
    absl::string_view text = absl::StripTrailingAsciiWhitespace(line);
    if (absl::StrContains(text, "listening on ")) {
      absl::string_view port = text.substr(text.rfind(':') + 1);
      if (!absl::SimpleAtoi(port, &server->port_)) {
        return absl::InternalError(absl::StrCat("bad line: ", text));
      }
    } else if (absl::StrContains(text, "metrics on ")) {
      absl::string_view port = text.substr(text.rfind(':') + 1);
      if (!absl::SimpleAtoi(port, &server->metrics_port_)) {
        return absl::InternalError(absl::StrCat("bad line: ", text));
      }
    } else if (absl::StrContains(text, "serving")) {
      return server;
    }
  }
  return absl::InternalError(
      absl::StrCat(binary, " exited before serving (see its stderr)"));
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill9();
  if (out_ != nullptr) std::fclose(out_);
}

std::string ServerProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::shared_ptr<grpc::Channel> ServerProcess::NewChannel() const {
  return grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
}

std::shared_ptr<grpc::Channel> ServerProcess::NewChannel(
    std::shared_ptr<grpc::ChannelCredentials> credentials) const {
  return grpc::CreateChannel(address(), std::move(credentials));
}

void ServerProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = 0;
}

int ServerProcess::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = 0;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string NewTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr ? base : "/tmp", "/", prefix, "-XXXXXX");
  char* made = mkdtemp(pattern.data());
  return made != nullptr ? std::string(made) : std::string();
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    result.out.append(buffer, n);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace hawiya::testing
