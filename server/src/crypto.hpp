// The few cryptographic primitives the server needs, over OpenSSL: SHA-256,
// PBKDF2-HMAC-SHA256, a CSPRNG and a constant-time comparison. Byte strings are
// std::string holding raw bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fieldsync::server {

// SHA-256 of `data`, 32 raw bytes.
std::string sha256(std::string_view data);
// Lower-case hex of raw bytes.
std::string to_hex(std::string_view bytes);
// `n` bytes from OpenSSL's CSPRNG. Throws std::runtime_error if the CSPRNG fails
// (the request then fails as a 500): going on would issue guessable tokens.
std::string random_bytes(std::size_t n);
// Base64url without padding (RFC 4648 section 5).
std::string base64url(std::string_view bytes);
// PBKDF2-HMAC-SHA256 of `password` with `salt`, `length` raw bytes.
std::string pbkdf2_sha256(std::string_view password, std::string_view salt, std::int64_t iterations,
                          std::size_t length = 32);
// True when a and b are equal, in time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace fieldsync::server
