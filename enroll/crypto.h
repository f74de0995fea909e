// Template encryption at rest: AES-256-GCM (OpenSSL 3 EVP) and the
// key-encryption key (KEK) file.
//
// Envelope encryption. Template vectors are sealed with a data key (DEK);
// each DEK is stored in the store wrapped (sealed) by the KEK, which lives
// only in a key file outside the database. Whoever holds the database and
// its snapshots without the key file holds no template.
//
// Sealed format: nonce (12 random bytes) | ciphertext | tag (16 bytes). The
// associated data (AAD) names what was sealed, so a sealed value moved to
// another record, or read under another key version, fails to open.
#ifndef HAWIYA_ENROLL_CRYPTO_H_
#define HAWIYA_ENROLL_CRYPTO_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hawiya::enroll {

inline constexpr size_t kAeadKeyBytes = 32;
inline constexpr size_t kAeadNonceBytes = 12;
inline constexpr size_t kAeadTagBytes = 16;
// Bytes Seal adds to its plaintext.
inline constexpr size_t kAeadOverheadBytes = kAeadNonceBytes + kAeadTagBytes;

// An AES-256 key. The bytes are wiped when it is destroyed; they are never
// logged or put in a status message.
class AeadKey {
 public:
  // 32 bytes from the OS's CSPRNG (RAND_bytes).
  static absl::StatusOr<AeadKey> Random();
  // INVALID_ARGUMENT unless `bytes` is 32 bytes.
  static absl::StatusOr<AeadKey> FromBytes(absl::string_view bytes);

  AeadKey(const AeadKey& other) = default;
  AeadKey& operator=(const AeadKey& other);
  AeadKey(AeadKey&& other) noexcept;
  AeadKey& operator=(AeadKey&& other) noexcept;
  ~AeadKey();

  // AES-256-GCM under a fresh random nonce: nonce | ciphertext | tag.
  absl::StatusOr<std::string> Seal(absl::string_view aad,
                                   absl::string_view plaintext) const;
  // The plaintext of a Seal output made under this key with this AAD;
  // DATA_LOSS if it was not (another key, another AAD, a changed byte).
  absl::StatusOr<std::string> Open(absl::string_view aad,
                                   absl::string_view sealed) const;

  // The raw key, for a streaming cipher (snapshot files). Never log it.
  const std::string& bytes() const { return bytes_; }

 private:
  explicit AeadKey(std::string bytes) : bytes_(std::move(bytes)) {}
  void Wipe();

  std::string bytes_;
};

// A key check value: names a key without revealing anything usable about
// it: the first 8 bytes of HMAC-SHA256(key, "hawiya.key-check.v1") as 16
// lower-case hex digits. The store records its key-encryption key's, so
// that a start with another key file can say which key is expected.
std::string KeyCheckValue(const AeadKey& key);

// The key-encryption key file: exactly 32 raw bytes (e.g. from
// `hawiya admin gen-key --out FILE` or `openssl rand 32`), a regular file
// with no permission for group or others (0600 or 0400).

// Reads the KEK. FAILED_PRECONDITION naming the file and what is wrong:
// missing, not a regular file, group/other permissions, or not 32 bytes.
absl::StatusOr<AeadKey> LoadKeyFile(const std::string& path);

// Creates `path` (mode 0600; its folder, mode 0700, if absent) with 32
// random bytes, atomically: the name appears only once the key is on disk,
// and ALREADY_EXISTS if it exists (it is never overwritten).
absl::Status CreateKeyFile(const std::string& path);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_CRYPTO_H_
