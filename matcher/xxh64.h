// XXH64 (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md),
// the checksum of snapshot files.
//
// Why not SHA-256: a snapshot of 1M 512-d templates is 2 GB, read at every
// start. OpenSSL's SHA-256 (with SHA-NI) hashes ~1 GB/s on the 2.25 GHz EPYC
// we measure on, 2 s of the 15 s cold-start budget; XXH64 hashes ~8 GB/s
// there (bench/cold_start_bench --hash_bench). The checksum guards against
// torn writes, truncation and bit rot, not against someone who can write
// DATA_DIR (who could rewrite the store itself): that needs a keyed MAC,
// which comes with template encryption (issue 4).
//
// Debian ships libxxhash0 but not its header, hence this small
// implementation; tests/snapshot_file_test.cc checks it against the
// reference library's outputs.
#ifndef HAWIYA_MATCHER_XXH64_H_
#define HAWIYA_MATCHER_XXH64_H_

#include <cstddef>
#include <cstdint>

namespace hawiya::matcher {

// Streaming XXH64: Update any number of times, then Digest (which does not
// change the state, so more Updates may follow).
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);

  void Update(const void* data, size_t n);
  uint64_t Digest() const;

 private:
  uint64_t total_ = 0;
  uint64_t acc_[4];
  // Bytes of a 32-byte stripe not yet consumed.
  unsigned char buffer_[32];
  size_t buffered_ = 0;
  uint64_t seed_;
};

// One-shot XXH64.
uint64_t Xxh64Hash(const void* data, size_t n, uint64_t seed = 0);

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_XXH64_H_
