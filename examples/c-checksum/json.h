// Just enough JSON for a plugin: find a top-level string member of an
// object, and write a string.
#ifndef JSON_H
#define JSON_H
#include <stddef.h>

// Looks up `key` in the JSON object `json` (`len` bytes) and, when it is a
// string, stores its decoded UTF-8 bytes in a malloc'd `*out` (`*out_len`
// bytes; free it). Returns 0 on success, -1 when `json` is not an object or
// is malformed, -2 when the member is absent, -3 when it is not a string.
int json_get_string(const char *json, size_t len, const char *key, char **out, size_t *out_len);

// Writes `s` (`len` bytes of UTF-8) as a JSON string, quotes included, into
// a malloc'd, NUL-terminated buffer: `*out`, `*out_len` bytes before the NUL
// (free it). Returns 0, or -1 when out of memory.
int json_quote(const char *s, size_t len, char **out, size_t *out_len);

#endif
