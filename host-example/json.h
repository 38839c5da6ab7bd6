/* The example host's minimal JSON reader (json.c). Pointers point into the text being read. */
#ifndef BP_HOST_JSON_H
#define BP_HOST_JSON_H

#include <stddef.h>

const char *skip_ws(const char *p);
/* End of the JSON string literal at p (just past its closing quote), or NULL when p is not a
 * complete string literal. */
const char *string_end(const char *p);
/* End of the JSON value starting at p (string, number, literal, object or array). */
const char *value_end(const char *p);
/* The value of `key` among the direct members of the object at obj, or NULL. */
const char *member(const char *obj, const char *key);
/* Decodes the JSON string at p into out (UTF-8, NUL-terminated), returning the length written. */
size_t read_string(const char *p, char *out, size_t cap);
/* The number at p, or 0 for NULL. */
double number(const char *p);
/* Appends s to out as a JSON string literal. */
void json_string(char *out, size_t cap, const char *s);

#endif
