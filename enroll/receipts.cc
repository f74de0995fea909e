#include "enroll/receipts.h"

#include <openssl/evp.h>

#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace hawiya::enroll {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string Sha256(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(),
             nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

int64_t Micros(const google::protobuf::Timestamp& time) {
  return time.seconds() * 1000000 + time.nanos() / 1000;
}

}  // namespace

absl::StatusOr<Ed25519KeyPair> GenerateEd25519Key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (key == nullptr) return absl::InternalError("ed25519: keygen failed");
  Ed25519KeyPair pair;
  pair.public_key.resize(kEd25519KeyBytes);
  pair.private_key.resize(kEd25519KeyBytes);
  size_t public_length = pair.public_key.size();
  size_t private_length = pair.private_key.size();
  if (EVP_PKEY_get_raw_public_key(
          key.get(), reinterpret_cast<unsigned char*>(pair.public_key.data()),
          &public_length) != 1 ||
      EVP_PKEY_get_raw_private_key(
          key.get(), reinterpret_cast<unsigned char*>(pair.private_key.data()),
          &private_length) != 1 ||
      public_length != kEd25519KeyBytes || private_length != kEd25519KeyBytes) {
    return absl::InternalError("ed25519: cannot read the new key");
  }
  return pair;
}

std::string SigningKeyId(absl::string_view public_key) {
  return absl::StrCat("ed25519:",
                      absl::BytesToHexString(Sha256(public_key).substr(0, 8)));
}

std::string RequestDigest(const v1::VerifyCivilStatusRequest& request) {
  v1::VerifyCivilStatusRequest copy = request;
  copy.DiscardUnknownFields();  // recursively
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    copy.SerializeToCodedStream(&coded);
  }
  return Sha256(bytes);
}

std::string ReceiptSignedBytes(absl::string_view payload) {
  std::string bytes(kReceiptFormat);
  bytes.push_back('\0');
  bytes.append(payload.data(), payload.size());
  return bytes;
}

absl::StatusOr<v1::Receipt> SignReceipt(v1::ReceiptPayload payload,
                                        absl::string_view key_id,
                                        absl::string_view private_key) {
  if (private_key.size() != kEd25519KeyBytes) {
    return absl::InvalidArgumentError(
        "private_key: an Ed25519 private key is 32 bytes");
  }
  payload.set_format(std::string(kReceiptFormat));
  payload.set_key_id(std::string(key_id));
  v1::Receipt receipt;
  receipt.set_key_id(std::string(key_id));
  if (!payload.SerializeToString(receipt.mutable_payload())) {
    return absl::InternalError("receipt: cannot serialise the payload");
  }
  PkeyPtr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, Bytes(private_key), private_key.size()));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (key == nullptr || ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) !=
          1) {
    return absl::InternalError("ed25519: cannot load the signing key");
  }
  const std::string signed_bytes = ReceiptSignedBytes(receipt.payload());
  std::string signature(kEd25519SignatureBytes, '\0');
  size_t length = signature.size();
  if (EVP_DigestSign(ctx.get(),
                     reinterpret_cast<unsigned char*>(signature.data()),
                     &length, Bytes(signed_bytes), signed_bytes.size()) != 1 ||
      length != kEd25519SignatureBytes) {
    return absl::InternalError("ed25519: signing failed");
  }
  receipt.set_signature(std::move(signature));
  return receipt;
}

absl::StatusOr<v1::ReceiptPayload> VerifyReceipt(
    const v1::Receipt& receipt, const v1::GetSigningKeysResponse& keys) {
  const v1::SigningKey* key = nullptr;
  for (const v1::SigningKey& candidate : keys.keys()) {
    if (candidate.key_id() == receipt.key_id()) key = &candidate;
  }
  if (key == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("key_id: no published signing key ", receipt.key_id()));
  }
  // The published id must be the public key's: a keys file whose entry was
  // edited to another key does not vouch for anything.
  if (key->public_key().size() != kEd25519KeyBytes ||
      SigningKeyId(key->public_key()) != key->key_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key_id: the published key ", key->key_id(),
                     " is not a 32-byte Ed25519 public key with that id"));
  }
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                           Bytes(key->public_key()),
                                           key->public_key().size()));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (pkey == nullptr || ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) !=
          1) {
    return absl::InternalError("ed25519: cannot load the public key");
  }
  const std::string signed_bytes = ReceiptSignedBytes(receipt.payload());
  if (receipt.signature().size() != kEd25519SignatureBytes ||
      EVP_DigestVerify(ctx.get(), Bytes(receipt.signature()),
                       receipt.signature().size(), Bytes(signed_bytes),
                       signed_bytes.size()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signature: does not verify under ", receipt.key_id(),
        " (the receipt was changed, or not signed with that key)"));
  }
  v1::ReceiptPayload payload;
  if (!payload.ParseFromString(receipt.payload())) {
    return absl::InvalidArgumentError("payload: not a ReceiptPayload");
  }
  if (payload.format() != kReceiptFormat) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload.format: '", payload.format(), "', expected ", kReceiptFormat));
  }
  if (payload.key_id() != receipt.key_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload.key_id: ", payload.key_id(),
                     " differs from the receipt's ", receipt.key_id()));
  }
  const int64_t time = Micros(payload.time());
  if ((key->has_valid_from() && time < Micros(key->valid_from())) ||
      (key->has_valid_until() && time >= Micros(key->valid_until()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload.time: outside the validity of key ", key->key_id()));
  }
  return payload;
}

}  // namespace hawiya::enroll
