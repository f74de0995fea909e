// The request-id scheme the integration tests and benchmarks share, over
// services/synthetic_requests.h (persons and templates from the synthetic
// model of matcher/synthetic.h).
#ifndef HAWIYA_TESTS_TESTING_FIXTURES_H_
#define HAWIYA_TESTS_TESTING_FIXTURES_H_

#include <cstdint>

#include "hawiya/v1/enrollment.pb.h"
#include "matcher/synthetic.h"

namespace hawiya::testing {

// services::SyntheticEnrollRequest(model, n) with request id "enroll-<n>":
// person n, one face capture (capture 0) of identity n.
v1::EnrollRequest MakeEnrollRequest(const matcher::SyntheticModel& model,
                                    uint64_t n);

// MakeEnrollRequest(model, 1) with `faces` face templates (captures 0, 1...
// of identity 1, about 2 KiB each) instead of one: a request of a chosen
// size.
v1::EnrollRequest EnrollRequestWithFaces(const matcher::SyntheticModel& model,
                                         int faces);

}  // namespace hawiya::testing

#endif  // HAWIYA_TESTS_TESTING_FIXTURES_H_
