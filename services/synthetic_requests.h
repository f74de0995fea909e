// Synthetic enrollment requests (the model of matcher/synthetic.h) for
// `hawiya synth-persons`, the tests and the benchmarks: no real person or
// biometric ever ships.
#ifndef HAWIYA_SERVICES_SYNTHETIC_REQUESTS_H_
#define HAWIYA_SERVICES_SYNTHETIC_REQUESTS_H_

#include <cstdint>

#include "hawiya/v1/enrollment.pb.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/synthetic.h"

namespace hawiya::services {

// A valid person whose national id is derived from `n` ("KWT", "N<n>").
// Persons 0 .. DistinctSyntheticPersons() - 1 differ pairwise in name or
// date of birth, so the demographic dedup check holds none of them.
v1::Person SyntheticPerson(uint64_t n);
uint64_t DistinctSyntheticPersons();

// A FACE template: capture `capture` of `identity` in `model`.
v1::Template SyntheticFaceTemplate(const matcher::SyntheticModel& model,
                                   uint64_t identity, uint64_t capture);

// An Enroll request for person n with one face capture (capture 0) of
// identity n, and no request_id: callers choose their own scheme.
v1::EnrollRequest SyntheticEnrollRequest(const matcher::SyntheticModel& model,
                                         uint64_t n);

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_SYNTHETIC_REQUESTS_H_
