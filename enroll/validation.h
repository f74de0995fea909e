// Validation of client input, exactly as docs/API.md lists it. Every error is
// INVALID_ARGUMENT with a message that starts with the field path, e.g.
// "person.date_of_birth: month 13 out of range".
#ifndef HAWIYA_ENROLL_VALIDATION_H_
#define HAWIYA_ENROLL_VALIDATION_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/timestamp.pb.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/matcher.h"

namespace hawiya::enroll {

// What one person may hold (ServerConfig.limits): Enroll, BatchEnroll,
// UpdatePerson and ReplaceTemplates refuse more.
struct InputLimits {
  size_t max_documents = 16;
  // Faces all sit at position 0: one, and four more captures.
  size_t max_faces = 5;
  // At most one per finger and one per eye whatever these say.
  size_t max_fingerprints = 10;
  size_t max_irises = 2;
};

// The most bytes of an id a client names for a lookup (subject_id, case_id,
// duplicate_of, gallery entries): a server-made id is 32-37 characters.
inline constexpr size_t kMaxIdBytes = 64;
// The most bytes of a page_token (the server's are under 100).
inline constexpr size_t kMaxPageTokenBytes = 256;
// The most bytes of a client's value an error message or a refused call's
// audit record quotes.
inline constexpr size_t kMaxQuotedBytes = 64;

// `value` for an error message: at most kMaxQuotedBytes of it, cut on a
// UTF-8 boundary, in single quotes; control characters, invalid UTF-8,
// backslashes and quotes escaped (\n, \x1b, \u0085, \\, \'); and if
// cut, "... (N bytes)" after the closing quote. Safe to log.
std::string Quote(absl::string_view value);

// `value` cut to at most `max_bytes` on a UTF-8 boundary, control characters
// and invalid UTF-8 escaped as in Quote (backslashes kept as they are): for
// audit records, which also hold what refused calls sent.
std::string AuditText(absl::string_view value, size_t max_bytes);

// Free text a client sends that reaches audit records, receipts or logs
// (place_of_birth, Template.algorithm, purpose_text, request_id, comment,
// reason): at most `max_bytes` of valid UTF-8, with no control character
// (Unicode Cc: U+0000-U+001F, U+007F-U+009F, so no NUL, ESC, CR or LF) and
// no line or paragraph separator (U+2028, U+2029). Empty is valid (callers
// say whether a field is required).
absl::Status ValidateFreeText(absl::string_view field, absl::string_view text,
                              size_t max_bytes);

// An id the client names for a lookup: at most kMaxIdBytes of printable
// ASCII. Checked before any lookup, so no long or control-laden id reaches
// the store or an error message. Empty is valid (callers say whether a
// field is required).
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// GetPerson and Verify name a person by subject_id or by national_id with
// issuing_country, never both (which one would be used, and which audited?).
absl::Status ValidatePersonRef(absl::string_view subject_id,
                               absl::string_view national_id,
                               absl::string_view issuing_country);

// A google.protobuf.Timestamp as its specification bounds it: from
// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos in
// 0..999999999.
absl::Status ValidateTimestamp(absl::string_view field,
                               const google::protobuf::Timestamp& time);

// national_id: 1-32 of [0-9A-Za-z-].
absl::Status ValidateNationalId(absl::string_view field,
                                absl::string_view national_id);
// Three upper-case ASCII letters.
absl::Status ValidateCountryCode(absl::string_view field,
                                 absl::string_view code);
// A real calendar date, not after `today`, not before 1900-01-01.
absl::Status ValidateDate(absl::string_view field, const hawiya::v1::Date& date,
                          absl::Time now);

// The client-settable fields of a person (output-only fields are ignored):
// national_id, issuing_country, a given and a family name in at least one
// script (valid UTF-8, <= 128 bytes each part, Arabic names in Arabic
// script), date_of_birth (required), nationality if set, enums in range,
// documents (number, issuing_country, type, expiry_date real if set).
// place_of_birth free text (ValidateFreeText, <= 128 bytes); at most
// limits.max_documents documents.
absl::Status ValidatePerson(absl::string_view field,
                            const hawiya::v1::Person& person, absl::Time now,
                            const InputLimits& limits = InputLimits());

// Claimed names (PartnerService): each part given is checked as
// ValidatePerson checks a recorded one (valid UTF-8, <= 128 bytes, name_ar
// in Arabic script, name_latin in Latin script), but no part is required.
absl::Status ValidateArabicName(absl::string_view field,
                                const hawiya::v1::PersonName& name);
absl::Status ValidateLatinName(absl::string_view field,
                               const hawiya::v1::PersonName& name);

// Templates: modality configured in `matcher`, dimension equal to the
// configured one, every component finite, norm > 0, quality 0-100.
// algorithm free text (ValidateFreeText, <= 128 bytes). Errors name
// "<field>[i].<sub-field>". Probes are checked with this alone.
absl::Status ValidateTemplates(absl::string_view field,
                               absl::Span<const hawiya::v1::Template> templates,
                               const matcher::Matcher& matcher);

// The templates one person is to hold (Enroll, ReplaceTemplates), each
// already valid (ValidateTemplates): at most one per finger and per eye
// ("templates[3]: a second FINGERPRINT at position 3, after templates[1]"),
// and at most `limits`' number of each modality.
absl::Status ValidateTemplateSet(
    absl::string_view field, absl::Span<const hawiya::v1::Template> templates,
    const InputLimits& limits);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_VALIDATION_H_
