// Requests built from the DESIGN.md synthetic model, shared by the
// integration tests and the benchmarks.
#ifndef HAWIYA_TESTS_TESTING_FIXTURES_H_
#define HAWIYA_TESTS_TESTING_FIXTURES_H_

#include <cstdint>
#include <string>

#include "hawiya/v1/enrollment.pb.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/synthetic.h"

namespace hawiya::testing {

// A valid person whose national id is derived from `n` ("KWT", "N<n>").
v1::Person MakePerson(uint64_t n);

// A FACE template: capture `capture` of `identity` in `model`.
v1::Template FaceTemplate(const matcher::SyntheticModel& model,
                          uint64_t identity, uint64_t capture);

// An Enroll request for person n with one face capture (capture 0) of
// identity n, request id "enroll-<n>".
v1::EnrollRequest MakeEnrollRequest(const matcher::SyntheticModel& model,
                                    uint64_t n);

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_FIXTURES_H_
