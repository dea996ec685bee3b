/* UTF-8 helpers and the GPT-2 byte <-> unicode map (FORMATS.md §4.1): bytes
 * 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for the code point of the same
 * value; the other 68 bytes, in increasing order, for U+0100, U+0101, ... */
#include "tokenizer/tok_internal.h"

int bn_utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 1; /* continuation byte or a byte that never starts a character */
}

int bn_utf8_valid_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    int len = bn_utf8_len(s[0]);
    if (len == 1) return s[0] < 0x80 ? 1 : 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    /* Reject overlong forms, surrogates and code points above U+10FFFF. */
    if (s[0] == 0xE0 && s[1] < 0xA0) return 0;
    if (s[0] == 0xED && s[1] > 0x9F) return 0;
    if (s[0] == 0xF0 && s[1] < 0x90) return 0;
    if (s[0] == 0xF4 && s[1] > 0x8F) return 0;
    return len;
}

int bn_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Bytes that keep their own code point ("printable" in GPT-2's table). */
static int keeps_value(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t bn_bytemap_cp(uint8_t byte) {
    if (keeps_value(byte)) return byte;
    /* The n-th byte (in increasing order) that does not keep its value maps to
     * 256 + n. Counting is cheap enough: the table is built once per load. */
    uint32_t n = 0;
    for (unsigned b = 0; b < byte; b++)
        if (!keeps_value(b)) n++;
    return 256 + n;
}

int bn_bytemap_byte(uint32_t cp) {
    if (cp < 256) return keeps_value(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!keeps_value(b) && n-- == 0) return (int)b;
    return -1;
}
