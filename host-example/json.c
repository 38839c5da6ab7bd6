/*
 * A minimal JSON reader for the example host: enough to pick members out of the plugin's JSON
 * and the serve protocol's lines without a JSON library (so a C user needs nothing beyond libc
 * to build the example). It walks NUL-terminated text in place and never allocates; malformed
 * input ends a walk early, never past the NUL: tests/c/json_fuzz.c checks that under ASan and
 * UBSan with mutated protocol lines, in the default test command.
 */
#include "json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

const char *string_end(const char *p) {
    if (!p || *p != '"') return NULL;
    for (p++; *p; p++) {
        if (*p == '\\') {
            if (!p[1]) return NULL;
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

const char *value_end(const char *p) {
    p = skip_ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) if (*p == '\\' && p[1]) p++;
        return *p ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '"') { p = value_end(p) - 1; continue; }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') { if (--depth == 0) return p + 1; }
        }
        return p;
    }
    while (*p && *p != ',' && *p != '}' && *p != ']') p++;
    return p;
}

const char *member(const char *obj, const char *key) {
    const char *p = skip_ws(obj);
    if (*p != '{') return NULL;
    p = skip_ws(p + 1);
    size_t klen = strlen(key);
    while (*p == '"') {
        const char *kend = value_end(p);
        int match = (size_t)(kend - p - 2) == klen && strncmp(p + 1, key, klen) == 0;
        p = skip_ws(kend);
        if (*p != ':') return NULL;
        p = skip_ws(p + 1);
        if (match) return p;
        p = skip_ws(value_end(p));
        if (*p == ',') p = skip_ws(p + 1);
    }
    return NULL;
}

/* Four hex digits at p (stops at the first that is not one, so never reads past a NUL). */
static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
        if (d == 16u) return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *out, size_t n, unsigned cp) {
    if (cp < 0x80) out[n++] = (char)cp;
    else if (cp < 0x800) { out[n++] = (char)(0xC0 | cp >> 6); out[n++] = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { out[n++] = (char)(0xE0 | cp >> 12); out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[n++] = (char)(0x80 | (cp & 0x3F)); }
    else { out[n++] = (char)(0xF0 | cp >> 18); out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F)); out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[n++] = (char)(0x80 | (cp & 0x3F)); }
    return n;
}

size_t read_string(const char *p, char *out, size_t cap) {
    size_t n = 0;
    if (!cap) return 0;
    if (!p || *p != '"') { out[0] = 0; return 0; }
    for (p++; *p && *p != '"' && n + 4 < cap; p++) {
        if (*p != '\\') { out[n++] = *p; continue; }
        if (!p[1]) break; /* a backslash right before the end of the text */
        p++;
        switch (*p) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(p + 1, &cp)) { out[n++] = '?'; break; } /* not four hex digits: nothing skipped */
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u' && hex4(p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* a lone surrogate */
            }
            n = put_utf8(out, n, cp);
            break;
        }
        default: out[n++] = *p; break;
        }
    }
    out[n] = 0;
    return n;
}

double number(const char *p) { return p ? strtod(p, NULL) : 0; }

void json_string(char *out, size_t cap, const char *s) {
    size_t n = strlen(out);
    if (n + 3 > cap) return; /* no room for even "" */
    out[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { out[n++] = '\\'; out[n++] = (char)ch; }
        else if (ch < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        else out[n++] = (char)ch;
    }
    out[n++] = '"';
    out[n] = 0;
}

