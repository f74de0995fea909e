#include "matcher/snapshot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
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
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "matcher/xxh64.h"

namespace hawiya::matcher {

// A streaming AES-256-GCM context, one per file.
struct SnapshotCipher {
  SnapshotCipher() : ctx(EVP_CIPHER_CTX_new()) {}
  ~SnapshotCipher() { EVP_CIPHER_CTX_free(ctx); }
  SnapshotCipher(const SnapshotCipher&) = delete;
  SnapshotCipher& operator=(const SnapshotCipher&) = delete;
  EVP_CIPHER_CTX* ctx;
};

namespace {

constexpr char kMagic[8] = {'H', 'A', 'W', 'I', 'Y', 'A', 'S', 'N'};
constexpr char kEndMagic[8] = {'H', 'A', 'W', 'I', 'Y', 'E', 'N', 'D'};
constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kKeyCheckBytes = 8;
// magic + version + key version + key check + nonce: also the GCM AAD.
constexpr uint64_t kHeadBytes = sizeof(kMagic) + sizeof(uint32_t) +
                                sizeof(uint64_t) + kKeyCheckBytes + kNonceBytes;
constexpr size_t kKeyCheckOffset = 20;
// tag + length + end magic + checksum.
constexpr uint64_t kTrailerBytes = kTagBytes + 8 + sizeof(kEndMagic) + 8;
// GCM encrypts at most 2^39 - 256 bits under one nonce.
constexpr uint64_t kMaxPayloadBytes = (uint64_t{1} << 36) - 32;
// Large enough that syscalls and hash calls are amortised, small enough to
// stay in L2 between hashing a chunk and copying it to the page cache.
constexpr size_t kChunkBytes = 1 << 20;

// The file's nonce, in hex: random per file, and authenticated with the
// payload (it is part of the AAD).
std::string FileIdOf(const char* head) {
  return absl::BytesToHexString(
      absl::string_view(head + kHeadBytes - kNonceBytes, kNonceBytes));
}

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

// Names the key without revealing it: the first bytes of a SHA-256 of it.
// Tells a file sealed under another key (another store's data key of the
// same version) apart from a damaged one, before any decryption.
absl::Status KeyCheck(const std::string& key, char out[kKeyCheckBytes]) {
  const std::string input = "hawiya.snapshot.key-check.v1:" + key;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &size, EVP_sha256(),
                 nullptr) != 1 ||
      size < kKeyCheckBytes) {
    return absl::InternalError("snapshot: SHA-256 failed");
  }
  std::memcpy(out, digest, kKeyCheckBytes);
  return absl::OkStatus();
}

// Starts encryption (decrypt false) or decryption of a payload under `key`
// with the head as AAD.
absl::Status StartCipher(SnapshotCipher* cipher, bool decrypt,
                         const std::string& key, const char* head,
                         const std::string& path) {
  if (key.size() != kKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot ", path,
                                                   ": a key is ", kKeyBytes,
                                                   " bytes, not ", key.size()));
  }
  const auto* k = reinterpret_cast<const unsigned char*>(key.data());
  const auto* h = reinterpret_cast<const unsigned char*>(head);
  const unsigned char* nonce = h + kHeadBytes - kNonceBytes;
  int len = 0;
  const bool ok =
      cipher->ctx != nullptr &&
      (decrypt ? EVP_DecryptInit_ex(cipher->ctx, EVP_aes_256_gcm(), nullptr, k,
                                    nonce) == 1 &&
                     EVP_DecryptUpdate(cipher->ctx, nullptr, &len, h,
                                       static_cast<int>(kHeadBytes)) == 1
               : EVP_EncryptInit_ex(cipher->ctx, EVP_aes_256_gcm(), nullptr, k,
                                    nonce) == 1 &&
                     EVP_EncryptUpdate(cipher->ctx, nullptr, &len, h,
                                       static_cast<int>(kHeadBytes)) == 1);
  if (!ok) {
    return absl::InternalError(
        absl::StrCat("snapshot ", path, ": cannot start AES-256-GCM"));
  }
  return absl::OkStatus();
}

// En- or decrypts n bytes from `in` to `out` (which may be the same).
absl::Status Crypt(SnapshotCipher* cipher, bool decrypt, const char* in,
                   char* out, size_t n, const std::string& path) {
  while (n > 0) {
    // EVP lengths are ints.
    const int chunk = static_cast<int>(std::min<size_t>(n, 1 << 30));
    int len = 0;
    auto* o = reinterpret_cast<unsigned char*>(out);
    const auto* i = reinterpret_cast<const unsigned char*>(in);
    const int rc = decrypt ? EVP_DecryptUpdate(cipher->ctx, o, &len, i, chunk)
                           : EVP_EncryptUpdate(cipher->ctx, o, &len, i, chunk);
    if (rc != 1 || len != chunk) {
      return absl::InternalError(
          absl::StrCat("snapshot ", path, ": AES-256-GCM failed"));
    }
    in += chunk;
    out += chunk;
    n -= static_cast<size_t>(chunk);
  }
  return absl::OkStatus();
}

}  // namespace

bool IsPlaintextSnapshot(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char head[sizeof(kMagic) + sizeof(uint32_t)];
  const bool read = PreadAll(fd, head, sizeof(head), 0, path).ok();
  ::close(fd);
  uint32_t version = 0;
  std::memcpy(&version, head + sizeof(kMagic), sizeof(version));
  return read && std::memcmp(head, kMagic, sizeof(kMagic)) == 0 && version == 1;
}

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
  if (options.key.size() != kKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot ", path, ": a ", kKeyBytes,
                     "-byte key is required (snapshots are encrypted)"));
  }
  char head[kHeadBytes];
  std::memcpy(head, kMagic, sizeof(kMagic));
  const uint32_t version = kSnapshotFormatVersion;
  std::memcpy(head + 8, &version, sizeof(version));
  std::memcpy(head + 12, &options.key_version, sizeof(options.key_version));
  if (absl::Status s = KeyCheck(options.key, head + kKeyCheckOffset); !s.ok()) {
    return s;
  }
  // A fresh nonce per file: a key seals many snapshots.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(head + kKeyCheckOffset +
                                                  kKeyCheckBytes),
                 kNonceBytes) != 1) {
    return absl::InternalError("snapshot: RAND_bytes failed");
  }
  auto cipher = std::make_unique<SnapshotCipher>();
  if (absl::Status s =
          StartCipher(cipher.get(), /*decrypt=*/false, options.key, head, path);
      !s.ok()) {
    return s;
  }
  const std::string temp_path = TemporaryPath(path);
  // 0600 as well: the galleries' shape and labels are not for everyone.
  const int fd =
      ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("create", temp_path, errno);
  std::unique_ptr<SnapshotFileWriter> writer(
      new SnapshotFileWriter(path, temp_path, fd, std::move(options)));
  writer->file_id_ = FileIdOf(head);
  writer->cipher_ = std::move(cipher);
  writer->bytes_ += kHeadBytes;
  if (absl::Status s = writer->WriteFile(head, kHeadBytes); !s.ok()) {
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
  if (bytes_ - kHeadBytes + n > kMaxPayloadBytes) {
    status_ = absl::ResourceExhaustedError(
        absl::StrCat("snapshot ", path_, ": payload over ", kMaxPayloadBytes,
                     " bytes, more than one GCM nonce may seal"));
    return status_;
  }
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
  ciphertext_.resize(std::min(n, kChunkBytes));
  while (n > 0) {
    const size_t chunk = std::min(n, kChunkBytes);
    status_ = Crypt(cipher_.get(), /*decrypt=*/false, data, ciphertext_.data(),
                    chunk, temp_path_);
    if (!status_.ok()) return status_;
    if (absl::Status s = WriteFile(ciphertext_.data(), chunk); !s.ok()) {
      return s;
    }
    data += chunk;
    n -= chunk;
  }
  return absl::OkStatus();
}

absl::Status SnapshotFileWriter::WriteFile(const char* data, size_t n) {
  hash_.Update(data, n);
  status_ = WriteAll(fd_, data, n, temp_path_);
  if (!status_.ok()) return status_;
  written_ += n;
  if (options_.on_write) options_.on_write(written_);
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
  if (absl::Status s = Flush(); !s.ok()) return s;
  // The tag, then the length, which counts every byte before it, and the
  // checksum of every byte before it, the length and end magic included.
  char trailer[kTrailerBytes];
  int len = 0;
  unsigned char final_block[16];
  if (EVP_EncryptFinal_ex(cipher_->ctx, final_block, &len) != 1 || len != 0 ||
      EVP_CIPHER_CTX_ctrl(cipher_->ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes,
                          trailer) != 1) {
    status_ = absl::InternalError(
        absl::StrCat("snapshot ", path_, ": AES-256-GCM tag failed"));
    return status_;
  }
  const uint64_t length = bytes_ + kTagBytes;
  std::memcpy(trailer + kTagBytes, &length, sizeof(length));
  std::memcpy(trailer + kTagBytes + 8, kEndMagic, sizeof(kEndMagic));
  const size_t hashed = kTrailerBytes - sizeof(uint64_t);
  if (absl::Status s = WriteFile(trailer, hashed); !s.ok()) return s;
  const uint64_t checksum = hash_.Digest();
  if (absl::Status s =
          WriteFile(reinterpret_cast<const char*>(&checksum), sizeof(checksum));
      !s.ok()) {
    return s;
  }
  bytes_ += kTrailerBytes;
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
                                       uint64_t checksum, uint64_t key_version,
                                       std::unique_ptr<SnapshotCipher> cipher)
    : path_(std::move(path)),
      fd_(fd),
      file_size_(file_size),
      payload_end_(payload_end),
      checksum_(checksum),
      key_version_(key_version),
      cipher_(std::move(cipher)),
      position_(kHeadBytes) {
  buffer_.resize(kChunkBytes);
}

SnapshotFileReader::~SnapshotFileReader() { ::close(fd_); }

absl::StatusOr<std::unique_ptr<SnapshotFileReader>> SnapshotFileReader::Open(
    const std::string& path, const Options& options) {
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
  std::memcpy(&length, trailer + kTagBytes, sizeof(length));
  const uint64_t before_length = size - (kTrailerBytes - kTagBytes);
  if (length != before_length) {
    return refuse(absl::DataLossError(absl::StrCat(
        "snapshot ", path, ": truncated or extended: the trailer says ", length,
        " bytes precede it, the file has ", before_length)));
  }
  if (std::memcmp(trailer + kTagBytes + 8, kEndMagic, sizeof(kEndMagic)) != 0) {
    return refuse(absl::DataLossError(
        absl::StrCat("snapshot ", path, ": bad end magic")));
  }
  uint64_t checksum;
  std::memcpy(&checksum, trailer + kTagBytes + 8 + sizeof(kEndMagic),
              sizeof(checksum));
  uint64_t key_version;
  std::memcpy(&key_version, head + 12, sizeof(key_version));
  if (!options.key) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("snapshot ", path, ": no key given to open it with")));
  }
  absl::StatusOr<std::string> key = options.key(key_version);
  if (!key.ok()) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("snapshot ", path, ": encrypted under data key version ",
                     key_version, ": ", key.status().message())));
  }
  char check[kKeyCheckBytes];
  if (absl::Status s = KeyCheck(*key, check); !s.ok()) return refuse(s);
  if (std::memcmp(check, head + kKeyCheckOffset, kKeyCheckBytes) != 0) {
    return refuse(absl::FailedPreconditionError(absl::StrCat(
        "snapshot ", path,
        ": encrypted under another key than data key "
        "version ",
        key_version,
        " of this store: made from another store, or under a key since "
        "replaced")));
  }
  auto cipher = std::make_unique<SnapshotCipher>();
  if (absl::Status s =
          StartCipher(cipher.get(), /*decrypt=*/true, *key, head, path);
      !s.ok()) {
    return refuse(s);
  }
  if (EVP_CIPHER_CTX_ctrl(cipher->ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes,
                          trailer) != 1) {
    return refuse(absl::InternalError(
        absl::StrCat("snapshot ", path, ": cannot set the GCM tag")));
  }
  // Read front to back, once or twice (Verify, then the payload).
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<SnapshotFileReader> reader(
      new SnapshotFileReader(path, fd, size, size - kTrailerBytes, checksum,
                             key_version, std::move(cipher)));
  reader->file_id_ = FileIdOf(head);
  return reader;
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
  if (absl::Status s = Crypt(cipher_.get(), /*decrypt=*/true, buffer_.data(),
                             buffer_.data(), n, path_);
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
        if (absl::Status s =
                Crypt(cipher_.get(), /*decrypt=*/true, out, out, n, path_);
            !s.ok()) {
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

absl::Status SnapshotFileReader::CheckAtEnd() {
  if (position_ != payload_end_) {
    return absl::DataLossError(absl::StrCat("snapshot ", path_, ": ",
                                            payload_end_ - position_,
                                            " payload bytes left unread"));
  }
  unsigned char final_block[16];
  int len = 0;
  if (EVP_DecryptFinal_ex(cipher_->ctx, final_block, &len) != 1) {
    return absl::DataLossError(absl::StrCat(
        "snapshot ", path_,
        ": authentication failed (changed bytes, or another key)"));
  }
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
