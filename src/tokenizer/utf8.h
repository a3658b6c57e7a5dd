// UTF-8 and byte-level helpers for the tokenizer: code point iteration,
// strict validation, lossy decoding the way Rust's from_utf8_lossy does it
// (the reference tokenizers are Rust), and GPT-2's byte <-> character table.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace streamq::tok {

// Bytes in the UTF-8 sequence led by `lead` (1 for stray continuation bytes,
// so loops over already validated text always advance).
size_t utf8_len(unsigned char lead);
// Decodes the code point at s[i] (s must be valid UTF-8) and advances i past it.
char32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(char32_t cp);
// Byte offset of the first ill-formed sequence, or npos when s is valid UTF-8.
size_t utf8_invalid_at(std::string_view s);
// Replaces each maximal ill-formed subpart with U+FFFD, like Rust's
// String::from_utf8_lossy, so decoded text matches the reference exactly.
std::string utf8_lossy(std::string_view bytes);

// Unicode White_Space, which is what Rust's char::is_whitespace and the
// reference's `\s` test (a fixed list of 25 code points, not a table).
bool is_unicode_whitespace(char32_t cp);

// GPT-2's bytes_to_unicode(): every byte mapped to a printable character.
// byte_level_char(b) is that character as UTF-8; byte_level_byte(cp) the
// inverse, -1 for characters outside the table.
const std::string& byte_level_char(unsigned char b);
int byte_level_byte(char32_t cp);
// Every byte of `text` replaced by its byte-level character.
std::string byte_level_encode(std::string_view text);

}  // namespace streamq::tok
