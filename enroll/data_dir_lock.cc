#include "enroll/data_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hawiya::enroll {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path,
                        int error) {
  return absl::FailedPreconditionError(absl::StrCat(
      "data_dir lock: ", what, " ", path, ": ", std::strerror(error)));
}

// The process id the holder wrote, or 0 if there is none (yet).
long HolderOf(int fd) {
  char buffer[32] = {};
  const ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
  long pid = 0;
  if (n <= 0 || !absl::SimpleAtoi(absl::StripAsciiWhitespace(buffer), &pid)) {
    return 0;
  }
  return pid;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(
    const std::string& data_dir) {
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir ", data_dir, ": ", error.message()));
  }
  const std::string path =
      (std::filesystem::path(data_dir) / kFileName).string();
  // Never truncated on open: a refused opener must leave the holder's id.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("open", path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int flock_error = errno;
    const long holder = flock_error == EWOULDBLOCK ? HolderOf(fd) : 0;
    ::close(fd);
    if (flock_error != EWOULDBLOCK) {
      return ErrnoError("flock", path, flock_error);
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "data_dir ", data_dir, " is in use by ",
        holder > 0 ? absl::StrCat("process ", holder) : "another process",
        " (lock ", path, "): one server at a time per data folder"));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) !=
                                     static_cast<ssize_t>(pid.size())) {
    const int write_error = errno;
    ::close(fd);  // releases the lock
    return ErrnoError("write", path, write_error);
  }
  return std::unique_ptr<DataDirLock>(new DataDirLock(data_dir, path, fd));
}

DataDirLock::~DataDirLock() {
  // Best effort: a process id left behind only names a holder that is gone.
  const int truncated = ::ftruncate(fd_, 0);
  (void)truncated;
  ::close(fd_);  // releases the lock
}

}  // namespace hawiya::enroll
