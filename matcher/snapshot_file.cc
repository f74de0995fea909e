#include "matcher/snapshot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "matcher/xxh64.h"

namespace hawiya::matcher {
namespace {

constexpr char kMagic[8] = {'H', 'A', 'W', 'I', 'Y', 'A', 'S', 'N'};
constexpr char kEndMagic[8] = {'H', 'A', 'W', 'I', 'Y', 'E', 'N', 'D'};
constexpr uint64_t kHeadBytes = sizeof(kMagic) + sizeof(uint32_t);
// length + end magic + checksum.
constexpr uint64_t kTrailerBytes = 8 + sizeof(kEndMagic) + 8;
// Large enough that syscalls and hash calls are amortised, small enough to
// stay in L2 between hashing a chunk and copying it to the page cache.
constexpr size_t kChunkBytes = 1 << 20;

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int error) {
  const std::string message =
      absl::StrCat("snapshot ", path, ": ", what, ": ", std::strerror(error));
  return error == ENOENT ? absl::NotFoundError(message)
                         : absl::InternalError(message);
}

absl::Status WriteAll(int fd, const char* data, size_t n,
                      const std::string& path) {
  while (n > 0) {
    const ssize_t done = ::write(fd, data, n);
    if (done < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write", path, errno);
    }
    data += done;
    n -= static_cast<size_t>(done);
  }
  return absl::OkStatus();
}

// Reads exactly n bytes at offset; DATA_LOSS if the file ends first (it was
// truncated after Open looked at its size).
absl::Status PreadAll(int fd, char* data, size_t n, uint64_t offset,
                      const std::string& path) {
  while (n > 0) {
    const ssize_t done = ::pread(fd, data, n, static_cast<off_t>(offset));
    if (done < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read", path, errno);
    }
    if (done == 0) {
      return absl::DataLossError(
          absl::StrCat("snapshot ", path, ": ends early at byte ", offset));
    }
    data += done;
    n -= static_cast<size_t>(done);
    offset += static_cast<uint64_t>(done);
  }
  return absl::OkStatus();
}

// A rename is durable only once the folder holding the name is synced.
absl::Status SyncFolderOf(const std::string& path) {
  std::string folder = std::filesystem::path(path).parent_path().string();
  if (folder.empty()) folder = ".";
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open folder", folder, errno);
  absl::Status status;
  if (::fsync(fd) != 0) status = ErrnoError("fsync folder", folder, errno);
  ::close(fd);
  return status;
}

}  // namespace

std::string SnapshotFileWriter::TemporaryPath(const std::string& path) {
  return path + ".tmp";
}

SnapshotFileWriter::SnapshotFileWriter(std::string path, std::string temp_path,
                                       int fd, Options options)
    : path_(std::move(path)),
      temp_path_(std::move(temp_path)),
      fd_(fd),
      options_(std::move(options)) {
  buffer_.reserve(kChunkBytes);
}

absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::Create(
    const std::string& path, Options options) {
  const std::string temp_path = TemporaryPath(path);
  // 0600: the payload holds templates in plaintext (see the header).
  const int fd =
      ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("create", temp_path, errno);
  std::unique_ptr<SnapshotFileWriter> writer(
      new SnapshotFileWriter(path, temp_path, fd, std::move(options)));
  if (absl::Status s = writer->Write(kMagic, sizeof(kMagic)); !s.ok()) {
    return s;
  }
  if (absl::Status s = writer->WriteU32(kSnapshotFormatVersion); !s.ok()) {
    return s;
  }
  return writer;
}

SnapshotFileWriter::~SnapshotFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status SnapshotFileWriter::Write(const void* data, size_t n) {
  if (!status_.ok()) return status_;
  if (committed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", path_, ": write after commit"));
  }
  const char* bytes = static_cast<const char*>(data);
  bytes_ += n;
  if (buffer_.size() + n <= kChunkBytes) {
    buffer_.insert(buffer_.end(), bytes, bytes + n);
    return absl::OkStatus();
  }
  // Large writes (a gallery's vectors) skip the buffer.
  if (absl::Status s = Flush(); !s.ok()) return s;
  return WriteThrough(bytes, n);
}

absl::Status SnapshotFileWriter::WriteThrough(const char* data, size_t n) {
  while (n > 0) {
    const size_t chunk = std::min(n, kChunkBytes);
    hash_.Update(data, chunk);
    status_ = WriteAll(fd_, data, chunk, temp_path_);
    if (!status_.ok()) return status_;
    written_ += chunk;
    if (options_.on_write) options_.on_write(written_);
    data += chunk;
    n -= chunk;
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::Flush() {
  if (buffer_.empty()) return absl::OkStatus();
  absl::Status s = WriteThrough(buffer_.data(), buffer_.size());
  buffer_.clear();
  return s;
}

absl::Status SnapshotFileWriter::Commit() {
  if (!status_.ok()) return status_;
  if (committed_) return absl::OkStatus();
  // The length counts every byte before it; the checksum every byte before
  // it, the length and end magic included.
  const uint64_t length = bytes_;
  if (absl::Status s = WriteU64(length); !s.ok()) return s;
  if (absl::Status s = Write(kEndMagic, sizeof(kEndMagic)); !s.ok()) return s;
  if (absl::Status s = Flush(); !s.ok()) return s;
  const uint64_t checksum = hash_.Digest();
  status_ = WriteAll(fd_, reinterpret_cast<const char*>(&checksum),
                     sizeof(checksum), temp_path_);
  if (!status_.ok()) return status_;
  written_ += sizeof(checksum);
  bytes_ += sizeof(checksum);
  if (options_.on_write) options_.on_write(written_);
  // The data must be on disk before the name points at it, or a power loss
  // after the rename could leave `path` naming a hole.
  if (::fsync(fd_) != 0) {
    status_ = ErrnoError("fsync", temp_path_, errno);
    return status_;
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    status_ = ErrnoError("close", temp_path_, errno);
    return status_;
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    status_ = ErrnoError("rename", temp_path_, errno);
    return status_;
  }
  committed_ = true;
  return SyncFolderOf(path_);
}

SnapshotFileReader::SnapshotFileReader(std::string path, int fd,
                                       uint64_t file_size, uint64_t payload_end,
                                       uint64_t checksum)
    : path_(std::move(path)),
      fd_(fd),
      file_size_(file_size),
      payload_end_(payload_end),
      checksum_(checksum),
      position_(kHeadBytes) {
  buffer_.resize(kChunkBytes);
}

SnapshotFileReader::~SnapshotFileReader() { ::close(fd_); }

absl::StatusOr<std::unique_ptr<SnapshotFileReader>> SnapshotFileReader::Open(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return ErrnoError("stat", path, error);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto refuse = [&](absl::Status status) {
    ::close(fd);
    return status;
  };
  if (size < kHeadBytes + kTrailerBytes) {
    return refuse(absl::DataLossError(absl::StrCat(
        "snapshot ", path, ": ", size, " bytes, too short for a snapshot")));
  }
  char head[kHeadBytes];
  if (absl::Status s = PreadAll(fd, head, sizeof(head), 0, path); !s.ok()) {
    return refuse(s);
  }
  if (std::memcmp(head, kMagic, sizeof(kMagic)) != 0) {
    return refuse(absl::DataLossError(
        absl::StrCat("snapshot ", path, ": bad magic, not a snapshot")));
  }
  uint32_t version;
  std::memcpy(&version, head + sizeof(kMagic), sizeof(version));
  if (version != kSnapshotFormatVersion) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("snapshot ", path, ": format version ", version,
                     ", this build reads ", kSnapshotFormatVersion)));
  }
  char trailer[kTrailerBytes];
  if (absl::Status s =
          PreadAll(fd, trailer, sizeof(trailer), size - kTrailerBytes, path);
      !s.ok()) {
    return refuse(s);
  }
  uint64_t length;
  std::memcpy(&length, trailer, sizeof(length));
  if (length != size - kTrailerBytes) {
    return refuse(absl::DataLossError(absl::StrCat(
        "snapshot ", path, ": truncated or extended: the trailer says ", length,
        " bytes precede it, the file has ", size - kTrailerBytes)));
  }
  if (std::memcmp(trailer + 8, kEndMagic, sizeof(kEndMagic)) != 0) {
    return refuse(absl::DataLossError(
        absl::StrCat("snapshot ", path, ": bad end magic")));
  }
  uint64_t checksum;
  std::memcpy(&checksum, trailer + 8 + sizeof(kEndMagic), sizeof(checksum));
  // Read front to back, once or twice (Verify, then the payload).
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::unique_ptr<SnapshotFileReader>(
      new SnapshotFileReader(path, fd, size, length, checksum));
}

absl::Status SnapshotFileReader::Verify() {
  Xxh64 hash;
  std::vector<char> chunk(kChunkBytes);
  const uint64_t end = file_size_ - sizeof(uint64_t);
  for (uint64_t offset = 0; offset < end;) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(chunk.size(), end - offset));
    if (absl::Status s = PreadAll(fd_, chunk.data(), n, offset, path_);
        !s.ok()) {
      return s;
    }
    hash.Update(chunk.data(), n);
    offset += n;
  }
  if (hash.Digest() != checksum_) {
    return absl::DataLossError(
        absl::StrCat("snapshot ", path_, ": checksum mismatch"));
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileReader::Fill() {
  const size_t n = static_cast<size_t>(
      std::min<uint64_t>(buffer_.size(), payload_end_ - position_));
  if (absl::Status s = PreadAll(fd_, buffer_.data(), n, position_, path_);
      !s.ok()) {
    return s;
  }
  begin_ = 0;
  end_ = n;
  return absl::OkStatus();
}

absl::Status SnapshotFileReader::Read(void* data, size_t n) {
  if (n > payload_end_ - position_) {
    return absl::DataLossError(
        absl::StrCat("snapshot ", path_, ": ", n, " bytes wanted at offset ",
                     position_, ", the payload ends at ", payload_end_));
  }
  char* out = static_cast<char*>(data);
  while (n > 0) {
    if (begin_ == end_) {
      // Large reads (a gallery's vectors) go straight to their destination.
      if (n >= buffer_.size()) {
        if (absl::Status s = PreadAll(fd_, out, n, position_, path_); !s.ok()) {
          return s;
        }
        position_ += n;
        return absl::OkStatus();
      }
      if (absl::Status s = Fill(); !s.ok()) return s;
    }
    const size_t take = std::min(n, end_ - begin_);
    std::memcpy(out, buffer_.data() + begin_, take);
    begin_ += take;
    position_ += take;
    out += take;
    n -= take;
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileReader::CheckAtEnd() const {
  if (position_ != payload_end_) {
    return absl::DataLossError(absl::StrCat("snapshot ", path_, ": ",
                                            payload_end_ - position_,
                                            " payload bytes left unread"));
  }
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
