/*
 * Fuzzes the example host's JSON reader (host-example/json.c) under ASan and UBSan: protocol
 * lines and plugin events, mutated (cut anywhere, bytes inserted from an alphabet heavy in
 * escapes, quotes and brackets, slices deleted or repeated), each in an allocation of exactly
 * its length + 1 so that a read one byte past the NUL is caught. Every reader function walks
 * every input; json_string writes into buffers of every small size.
 * usage: json_fuzz <iterations> <seed>; prints "N passed, 0 failed" (ASan aborts on a finding).
 */
#include "json.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SEEDS[] = {
    "{\"id\":\"r1\",\"model\":\"emulator.echo\",\"context\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}",
    "{\"cancel\":\"r1\"}",
    "{\"op\":\"status\"}",
    "{\"op\":\"st\\",
    "{\"op\":\"\\u",
    "{\"id\":\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\",\"x\":[1,2,{\"y\":null}]}",
    "{\"type\":\"text_delta\",\"contentIndex\":0,\"delta\":\"w0 \"}",
    "{\"type\":\"error\",\"reason\":\"error\",\"error\":{\"errorMessage\":\"Throttling error: slow\\n\"}}",
    "{\"models\":[{\"id\":\"global.x\",\"contextWindow\":200000,\"input\":[\"text\",\"image\"],\"reasoning\":true}]}",
    "{\"a\":\"\\ud800\",\"b\":\"\\udc00x\",\"c\":-1.5e3,\"d\":true}",
};

static const char ALPHABET[] = "\\\"{}[],:u0123456789abcdefABCDEF \t\n-.eE+tfn\xc3\xa9\x01\x7f";

static uint64_t state;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static char *mutate(const char *seed, size_t *len_out) {
    size_t cap = strlen(seed) * 2 + 64, len = strlen(seed);
    char *s = malloc(cap);
    if (!s) abort();
    memcpy(s, seed, len);
    int edits = 1 + (int)(next() % 4);
    for (int e = 0; e < edits; e++) {
        size_t at = len ? (size_t)(next() % (len + 1)) : 0;
        switch (next() % 4) {
        case 0: len = at; break; /* cut */
        case 1: /* insert */
            if (len + 1 < cap) {
                memmove(s + at + 1, s + at, len - at);
                s[at] = ALPHABET[next() % (sizeof ALPHABET - 1)];
                len++;
            }
            break;
        case 2: { /* delete a slice */
            size_t n = at < len ? (size_t)(next() % (len - at + 1)) : 0;
            memmove(s + at, s + at + n, len - at - n);
            len -= n;
            break;
        }
        default: { /* repeat a slice */
            size_t n = at < len ? (size_t)(next() % (len - at + 1)) : 0;
            if (len + n < cap) {
                memmove(s + at + n, s + at, len - at);
                len += n;
            }
        }
        }
    }
    char *exact = malloc(len + 1);
    if (!exact) abort();
    memcpy(exact, s, len);
    exact[len] = 0;
    free(s);
    *len_out = len;
    return exact;
}

static volatile size_t sink;

static void walk(const char *text) {
    static const char *const KEYS[] = {"id", "op", "cancel", "type", "model", "error", "errorMessage", "models", "x", "a"};
    char out[64];
    for (size_t k = 0; k < sizeof KEYS / sizeof *KEYS; k++) {
        const char *v = member(text, KEYS[k]);
        if (!v) continue;
        sink += (size_t)(value_end(v) - v);
        for (size_t cap = 0; cap <= sizeof out; cap += 1 + cap / 2) sink += read_string(v, out, cap);
        sink += (size_t)number(v);
        const char *inner = member(v, "errorMessage");
        if (inner) sink += read_string(inner, out, sizeof out);
    }
    sink += (size_t)(value_end(text) - text);
    for (const char *p = text; *p; p++) {
        if (*p == '"') sink += read_string(p, out, sizeof out);
    }
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 100000;
    state = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9E3779B97F4A7C15ull;
    if (!state) state = 1;
    long passed = 0;
    for (long i = 0; i < iterations; i++) {
        size_t len;
        char *text = mutate(SEEDS[next() % (sizeof SEEDS / sizeof *SEEDS)], &len);
        walk(text);
        /* json_string into every small buffer size, after a prefix of every length that fits. */
        for (size_t cap = 1; cap < 24; cap++) {
            char *buf = malloc(cap);
            if (!buf) abort();
            size_t prefix = (size_t)(next() % cap);
            memset(buf, 'p', prefix);
            buf[prefix] = 0;
            json_string(buf, cap, text);
            sink += strlen(buf);
            free(buf);
        }
        free(text);
        passed++;
    }
    printf("%ld passed, 0 failed\n", passed);
    return 0;
}
