#include "enroll/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace hawiya::enroll {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// Fetched once: given EVP_aes_256_gcm(), OpenSSL 3 looks the provider's
// implementation up again (an implicit fetch, under a lock) on every init,
// that is for every template sealed or opened. Never freed: it lives as
// long as the process.
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* const cipher = [] {
    const EVP_CIPHER* fetched =
        EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    return fetched != nullptr ? fetched : EVP_aes_256_gcm();
  }();
  return cipher;
}

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::Status FileError(const std::string& path, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("key_file ", path, ": ", what));
}

}  // namespace

absl::StatusOr<AeadKey> AeadKey::Random() {
  std::string bytes(kAeadKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()),
                 static_cast<int>(bytes.size())) != 1) {
    return absl::InternalError("crypto: RAND_bytes failed");
  }
  return AeadKey(std::move(bytes));
}

absl::StatusOr<AeadKey> AeadKey::FromBytes(absl::string_view bytes) {
  if (bytes.size() != kAeadKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "crypto: a key is ", kAeadKeyBytes, " bytes, not ", bytes.size()));
  }
  return AeadKey(std::string(bytes));
}

AeadKey& AeadKey::operator=(const AeadKey& other) {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
  }
  return *this;
}

AeadKey::AeadKey(AeadKey&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.Wipe();
}

AeadKey& AeadKey::operator=(AeadKey&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.Wipe();
  }
  return *this;
}

AeadKey::~AeadKey() { Wipe(); }

void AeadKey::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
}

absl::StatusOr<std::string> AeadKey::Seal(absl::string_view aad,
                                          absl::string_view plaintext) const {
  std::string out(kAeadNonceBytes + plaintext.size() + kAeadTagBytes, '\0');
  unsigned char* nonce = reinterpret_cast<unsigned char*>(out.data());
  unsigned char* cipher = nonce + kAeadNonceBytes;
  if (RAND_bytes(nonce, kAeadNonceBytes) != 1) {
    return absl::InternalError("crypto: RAND_bytes failed");
  }
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  // The default GCM IV length is 12 bytes, so no EVP_CTRL_GCM_SET_IVLEN.
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, U(bytes_), nonce) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), cipher, &len, U(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), cipher + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAeadTagBytes,
                          cipher + plaintext.size()) != 1) {
    return absl::InternalError("crypto: AES-256-GCM encryption failed");
  }
  return out;
}

absl::StatusOr<std::string> AeadKey::Open(absl::string_view aad,
                                          absl::string_view sealed) const {
  if (sealed.size() < kAeadOverheadBytes) {
    return absl::DataLossError(absl::StrCat(
        "crypto: sealed value of ", sealed.size(), " bytes is too short"));
  }
  const size_t n = sealed.size() - kAeadOverheadBytes;
  std::string out(n, '\0');
  const unsigned char* nonce = U(sealed);
  const unsigned char* cipher = nonce + kAeadNonceBytes;
  // The tag control takes a non-const pointer; GCM only reads it.
  unsigned char tag[kAeadTagBytes];
  std::memcpy(tag, cipher + n, kAeadTagBytes);
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, U(bytes_), nonce) !=
          1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()),
                        &len, cipher, static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAeadTagBytes,
                          tag) != 1) {
    return absl::InternalError("crypto: AES-256-GCM decryption failed");
  }
  // Final checks the tag: the plaintext is released only if it matches.
  if (EVP_DecryptFinal_ex(ctx.get(),
                          reinterpret_cast<unsigned char*>(out.data()) + len,
                          &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return absl::DataLossError(
        "crypto: authentication failed (another key, another record, or "
        "changed bytes)");
  }
  return out;
}

std::string KeyCheckValue(const AeadKey& key) {
  static constexpr absl::string_view kLabel = "hawiya.key-check.v1";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_bytes = 0;
  if (HMAC(EVP_sha256(), key.bytes().data(),
           static_cast<int>(key.bytes().size()), U(kLabel), kLabel.size(), mac,
           &mac_bytes) == nullptr ||
      mac_bytes < 8) {
    // Only on an OpenSSL failure; compares unequal to any real value.
    return "unknown";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), 8));
}

absl::StatusOr<AeadKey> LoadKeyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return FileError(path,
                     errno == ENOENT ? "no such file" : std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return FileError(path, std::strerror(error));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return FileError(path, "not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return FileError(path, absl::StrFormat("permissions %04o are wider than "
                                           "0600 (chmod 600 it)",
                                           st.st_mode & 07777));
  }
  if (st.st_size != static_cast<off_t>(kAeadKeyBytes)) {
    ::close(fd);
    return FileError(path, absl::StrCat(st.st_size, " bytes; a key file is ",
                                        kAeadKeyBytes, " raw bytes"));
  }
  std::string bytes(kAeadKeyBytes, '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      OPENSSL_cleanse(bytes.data(), bytes.size());
      return FileError(path, "short read");
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  absl::StatusOr<AeadKey> key = AeadKey::FromBytes(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

absl::Status CreateKeyFile(const std::string& path) {
  namespace fs = std::filesystem;
  std::string folder = fs::path(path).parent_path().string();
  if (folder.empty()) folder = ".";
  std::error_code error;
  if (!fs::exists(folder, error)) {
    fs::create_directories(folder, error);
    if (error) return FileError(path, error.message());
    fs::permissions(folder, fs::perms::owner_all, error);
  }
  if (fs::exists(path, error)) {
    return absl::AlreadyExistsError(
        absl::StrCat("key_file ", path, ": already exists"));
  }
  absl::StatusOr<AeadKey> key = AeadKey::Random();
  if (!key.ok()) return key.status();
  // Written under a temporary name and linked into place, so that no reader
  // ever sees a partial key, and link (unlike rename) never replaces one.
  const std::string temp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return FileError(temp, std::strerror(errno));
  const std::string& bytes = key->bytes();
  const bool written = ::write(fd, bytes.data(), bytes.size()) ==
                           static_cast<ssize_t>(bytes.size()) &&
                       ::fsync(fd) == 0;
  const int write_error = errno;
  ::close(fd);
  if (!written) {
    ::unlink(temp.c_str());
    return FileError(temp, std::strerror(write_error));
  }
  const int linked = ::link(temp.c_str(), path.c_str());
  const int link_error = errno;
  ::unlink(temp.c_str());
  if (linked != 0) {
    if (link_error == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("key_file ", path, ": already exists"));
    }
    return FileError(path, std::strerror(link_error));
  }
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return absl::OkStatus();
}

}  // namespace hawiya::enroll
