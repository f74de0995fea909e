// Signed receipts of PartnerService answers (proto/hawiya/v1/partner.proto,
// Receipt): Ed25519 (RFC 8032, OpenSSL 3 EVP) over a domain tag and the
// serialised ReceiptPayload, so a partner can later show what Hawiya
// answered, and anyone with the published public keys
// (AdminService.GetSigningKeys) can check it offline.
//
// Signed bytes: "hawiya.receipt.v1" | 0x00 | payload. The payload travels
// as bytes inside the Receipt and is verified exactly as received, never
// re-serialised, so no canonical protobuf encoding is needed to check one.
// The tag keeps a receipt signature from ever being valid for any other
// message the same key might sign.
//
// Key ids: "ed25519:" + hex of the first 8 bytes of SHA-256(public key).
//
// Plain functions, no state; thread-safe. Linked by the CLI (offline
// verification) as well as the server; no store dependency.
#ifndef HAWIYA_ENROLL_RECEIPTS_H_
#define HAWIYA_ENROLL_RECEIPTS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hawiya/v1/admin.pb.h"
#include "hawiya/v1/partner.pb.h"

namespace hawiya::enroll {

inline constexpr absl::string_view kReceiptFormat = "hawiya.receipt.v1";
inline constexpr size_t kEd25519KeyBytes = 32;
inline constexpr size_t kEd25519SignatureBytes = 64;

// Raw 32-byte halves of an Ed25519 key pair. Never log private_key.
struct Ed25519KeyPair {
  std::string public_key;
  std::string private_key;
};

// A fresh key pair from the OS's CSPRNG.
absl::StatusOr<Ed25519KeyPair> GenerateEd25519Key();

// "ed25519:" + hex(SHA-256(public_key)[0..8)).
std::string SigningKeyId(absl::string_view public_key);

// SHA-256 of the request's deterministic serialisation, unknown fields
// dropped (ReceiptPayload.request_digest).
std::string RequestDigest(const v1::VerifyCivilStatusRequest& request);

// What a receipt's signature covers: kReceiptFormat, a zero byte, payload.
std::string ReceiptSignedBytes(absl::string_view payload);

// Sets payload.format and payload.key_id, serialises it and signs it with
// the private key of `key_id`. INVALID_ARGUMENT if the key is not 32 bytes.
absl::StatusOr<v1::Receipt> SignReceipt(v1::ReceiptPayload payload,
                                        absl::string_view key_id,
                                        absl::string_view private_key);

// Checks a receipt against published keys and returns its payload:
// NOT_FOUND naming "key_id" if no key has that id; INVALID_ARGUMENT naming
// the field if the signature does not verify, the payload does not parse,
// its format or key_id differ from what the receipt says, or its time lies
// outside the key's validity.
absl::StatusOr<v1::ReceiptPayload> VerifyReceipt(
    const v1::Receipt& receipt, const v1::GetSigningKeysResponse& keys);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_RECEIPTS_H_
