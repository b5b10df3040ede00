#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r')) c->s++;
}

static int hex4(cursor *c, unsigned *v) {
    if (c->end - c->s < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = *c->s++;
        *v <<= 4;
        if (h >= '0' && h <= '9') *v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f') *v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') *v |= (unsigned)(h - 'A' + 10);
        else return -1;
    }
    return 0;
}

static size_t put_utf8(char *p, unsigned cp) {
    if (cp < 0x80) { p[0] = (char)cp; return 1; }
    if (cp < 0x800) { p[0] = (char)(0xC0 | cp >> 6); p[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        p[0] = (char)(0xE0 | cp >> 12); p[1] = (char)(0x80 | (cp >> 6 & 0x3F)); p[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | cp >> 18); p[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    p[2] = (char)(0x80 | (cp >> 6 & 0x3F)); p[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Parses the string at the cursor (which is on its opening quote). When `out`
// is not NULL it receives the decoded bytes (the caller sized it: the decoded
// form is never longer than the raw one).
static int string(cursor *c, char *out, size_t *out_len) {
    size_t n = 0;
    c->s++; // opening quote
    while (c->s < c->end && *c->s != '"') {
        char ch = *c->s++;
        if ((unsigned char)ch < 0x20) return -1;
        if (ch != '\\') { if (out) out[n] = ch; n++; continue; }
        if (c->s >= c->end) return -1;
        char e = *c->s++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            if (out) out[n] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            n++;
        } else if (e == 'u') {
            unsigned cp, lo;
            if (hex4(c, &cp)) return -1;
            if (cp >= 0xD800 && cp < 0xDC00) { // a surrogate pair
                if (c->end - c->s < 6 || c->s[0] != '\\' || c->s[1] != 'u') return -1;
                c->s += 2;
                if (hex4(c, &lo) || lo < 0xDC00 || lo > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            char buf[4];
            size_t k = put_utf8(buf, cp);
            if (out) memcpy(out + n, buf, k);
            n += k;
        } else {
            return -1;
        }
    }
    if (c->s >= c->end) return -1;
    c->s++; // closing quote
    if (out_len) *out_len = n;
    return 0;
}

// Skips any JSON value; `depth` bounds nesting.
static int skip_value(cursor *c, int depth) {
    skip_ws(c);
    if (c->s >= c->end || depth > 64) return -1;
    char open = *c->s;
    if (open == '"') return string(c, NULL, NULL);
    if (open == '{' || open == '[') {
        char close = open == '{' ? '}' : ']';
        c->s++;
        skip_ws(c);
        if (c->s < c->end && *c->s == close) { c->s++; return 0; }
        for (;;) {
            if (open == '{') {
                skip_ws(c);
                if (c->s >= c->end || *c->s != '"' || string(c, NULL, NULL)) return -1;
                skip_ws(c);
                if (c->s >= c->end || *c->s++ != ':') return -1;
            }
            if (skip_value(c, depth + 1)) return -1;
            skip_ws(c);
            if (c->s >= c->end) return -1;
            char sep = *c->s++;
            if (sep == close) return 0;
            if (sep != ',') return -1;
        }
    }
    // A number or a literal: its characters up to a delimiter.
    const char *start = c->s;
    while (c->s < c->end && strchr(",}] \t\r\n", *c->s) == NULL) c->s++;
    return c->s > start ? 0 : -1;
}

int json_get_string(const char *json, size_t len, const char *key, char **out, size_t *out_len) {
    cursor c = {json, json + len};
    skip_ws(&c);
    if (c.s >= c.end || *c.s != '{') return -1;
    c.s++;
    skip_ws(&c);
    if (c.s < c.end && *c.s == '}') return -2;
    size_t key_len = strlen(key);
    for (;;) {
        skip_ws(&c);
        if (c.s >= c.end || *c.s != '"') return -1;
        // Compare the raw member name: fine for plain ASCII keys.
        const char *name = c.s + 1;
        if (string(&c, NULL, NULL)) return -1;
        int match = (size_t)(c.s - 1 - name) == key_len && memcmp(name, key, key_len) == 0;
        skip_ws(&c);
        if (c.s >= c.end || *c.s++ != ':') return -1;
        skip_ws(&c);
        if (match) {
            if (c.s >= c.end || *c.s != '"') return skip_value(&c, 0) ? -1 : -3;
            char *buf = malloc((size_t)(c.end - c.s) + 1);
            if (!buf) return -1;
            if (string(&c, buf, out_len)) { free(buf); return -1; }
            *out = buf;
            return 0;
        }
        if (skip_value(&c, 0)) return -1;
        skip_ws(&c);
        if (c.s >= c.end) return -1;
        char sep = *c.s++;
        if (sep == '}') return -2;
        if (sep != ',') return -1;
    }
}

int json_quote(const char *s, size_t len, char **out, size_t *out_len) {
    char *buf = malloc(len * 6 + 3); // every byte as \u00XX at worst
    if (!buf) return -1;
    size_t n = 0;
    buf[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *simple = ch ? strchr("\"\\\b\f\n\r\t", ch) : NULL;
        if (simple) {
            buf[n++] = '\\';
            buf[n++] = "\"\\bfnrt"[simple - "\"\\\b\f\n\r\t"];
        } else if (ch < 0x20) {
            n += (size_t)sprintf(buf + n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    buf[n++] = '"';
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return 0;
}
