// DataDirLock: one process at a time on a data folder. A server and its
// registry keep the store, the gallery snapshots, the key file and the
// development PKI in one folder; two processes writing them would each keep
// galleries the other's writes never reach. Like LevelDB's LOCK file, the
// lock is an flock(2) on DATA_DIR/LOCK, taken without waiting before
// anything else in the folder is opened and held until the holder closes
// it (or dies: the kernel releases it, so a crash leaves no stale lock).
//
// flock conflicts between any two opens of the file, in one process too, so
// a second Registry::Open of a folder in the same process is refused as
// well. Network file systems may not honour it: keep data folders local.
#ifndef HAWIYA_ENROLL_DATA_DIR_LOCK_H_
#define HAWIYA_ENROLL_DATA_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace hawiya::enroll {

class DataDirLock {
 public:
  // The lock file's name inside the data folder.
  static constexpr const char kFileName[] = "LOCK";

  // Creates `data_dir` if absent and DATA_DIR/LOCK (0600) if absent, takes
  // an exclusive flock on it and writes this process's id into it.
  // FAILED_PRECONDITION if another open holds it, naming the folder and the
  // holder's process id: "data_dir D is in use by process P (lock D/LOCK)".
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(
      const std::string& data_dir);

  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  // Empties the file (no process id is left naming a holder that is gone)
  // and releases the lock.
  ~DataDirLock();

  const std::string& data_dir() const { return data_dir_; }
  // DATA_DIR/LOCK.
  const std::string& path() const { return path_; }

 private:
  DataDirLock(std::string data_dir, std::string path, int fd)
      : data_dir_(std::move(data_dir)), path_(std::move(path)), fd_(fd) {}

  const std::string data_dir_;
  const std::string path_;
  const int fd_;
};

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_DATA_DIR_LOCK_H_
