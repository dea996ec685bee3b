/* Tokenizer building blocks on small synthetic vocabularies (built in memory
 * as tokenizer.json text), so each rule is checked in isolation: the GPT-2
 * byte map, UTF-8 helpers, merge order (rank, leftmost ties), special and
 * user-defined tokens, SentencePiece spaces and byte fallback, the streaming
 * detokenizer with characters split across byte tokens, invalid UTF-8, and
 * argument errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ----------------------------------------------------------------- helpers -- */

static bitnet_tokenizer *load_json(const char *json) {
    bitnet_tokenizer *t = NULL;
    bitnet_error err = {0};
    if (bn_tok_load_hf_json(&t, json, strlen(json), NULL, NULL, NULL, &err)) fail_msg("load: %s", err.message);
    return t;
}

/* Tokenizes text and compares with the expected ids (terminated by -1). */
static void check_ids(const bitnet_tokenizer *t, const char *text, size_t len, int add_bos, int special,
                      const int32_t *want) {
    int32_t got[256];
    int n = 0, n_want = 0;
    bitnet_error err = {0};
    while (want[n_want] >= 0) n_want++;
    if (bitnet_tokenize(t, text, len, add_bos, special, got, 256, &n, &err)) fail_msg("tokenize: %s", err.message);
    if (n != n_want) fail_msg("'%s': %d ids, want %d", text, n, n_want);
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("'%s': id %d is %d, want %d", text, i, got[i], want[i]);
}
#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})
#define NONE ((const int32_t[]){-1})

/* A byte-level BPE: a..c, ab, bc, abc, aa, <, x, >, y, Ġ, Ġa; specials <x>
 * (control), <x>y (control, longer), @@ (user-defined); GPT-2 regex. */
static char *byte_level_json(const char *merges) {
    static const char fmt[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,\"aa\":6,"
        "\"<\":7,\"x\":8,\">\":9,\"y\":10,\"\\u0120\":11,\"\\u0120a\":12},\"merges\":[%s]},"
        "\"added_tokens\":[{\"id\":13,\"content\":\"<x>\",\"special\":true},"
        "{\"id\":14,\"content\":\"<x>y\",\"special\":true},{\"id\":15,\"content\":\"@@\",\"special\":false}],"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\"}},"
        "{\"Sequence\":{\"id\":\"A\"}}]},\"decoder\":{\"type\":\"ByteLevel\"}}";
    static char buf[2048];
    snprintf(buf, sizeof buf, fmt, merges);
    return buf;
}

/* A SentencePiece-style BPE with byte fallback: <unk> <s> </s>, <0x00>..<0xFF>
 * (ids 3..258), then ▁ a b ▁a ab ▁ab; Prepend/Replace normalizer. */
static char *spm_json(void) {
    static char buf[16384];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,"
                                                 "\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2");
    for (int b = 0; b < 256; b++) n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"<0x%02X>\":%d", b, 3 + b);
    snprintf(buf + n, sizeof buf - n,
             ",\"\\u2581\":259,\"a\":260,\"b\":261,\"\\u2581a\":262,\"ab\":263,\"\\u2581ab\":264},"
             "\"merges\":[\"\\u2581 a\",\"a b\",\"\\u2581a b\"]},"
             "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
             "{\"id\":1,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
             "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
             "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
             "{\"Sequence\":{\"id\":\"A\"}}]}}");
    return buf;
}

/* ------------------------------------------------------------------ tests -- */

static void test_byte_map(void **state) {
    (void)state;
    assert_int_equal(bn_bytemap_cp(' '), 0x120);  /* 'Ġ' */
    assert_int_equal(bn_bytemap_cp('\n'), 0x10A); /* 'Ċ' */
    assert_int_equal(bn_bytemap_cp(0x00), 0x100);
    assert_int_equal(bn_bytemap_cp('!'), '!');
    assert_int_equal(bn_bytemap_cp(0xAD), 0x143); /* the last remapped byte */
    assert_int_equal(bn_bytemap_cp(0xFF), 0xFF);
    int moved = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bn_bytemap_cp((uint8_t)b);
        moved += cp != (uint32_t)b;
        assert_int_equal(bn_bytemap_byte(cp), b);
    }
    assert_int_equal(moved, 68);
    assert_int_equal(bn_bytemap_byte(0x144), -1);
    assert_int_equal(bn_bytemap_byte(' '), -1);
}

static void test_utf8(void **state) {
    (void)state;
    char buf[4];
    assert_int_equal(bn_utf8_encode(0x2581, buf), 3);
    assert_memory_equal(buf, "\xE2\x96\x81", 3);
    assert_int_equal(bn_utf8_encode(0x1F600, buf), 4);
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\xF0\x9F\x98\x80", 4), 4);
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\xF0\x9F\x98", 3), 0);  /* truncated */
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\xC0\xAF", 2), 0);      /* overlong */
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\xE0\x80\x80", 3), 0);  /* overlong */
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\xED\xA0\x80", 3), 0);  /* surrogate */
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\xF4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    assert_int_equal(bn_utf8_valid_len((const uint8_t *)"\x80", 1), 0);
    assert_int_equal(bn_utf8_len(0x80), 1);
}

/* Lowest rank merges first: the same vocabulary splits "abc" differently
 * under two merge orders. */
static void test_merge_rank_order(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(byte_level_json("\"b c\",\"a b\",\"a bc\""));
    check_ids(t, "abc", 3, 0, 1, IDS(5));  /* b+c, then a+bc */
    check_ids(t, "cab", 3, 0, 1, IDS(2, 3));
    assert_int_equal(t->n_merges, 3);
    bitnet_tokenizer_free(t);
    t = load_json(byte_level_json("\"a b\",\"b c\",\"a bc\""));
    check_ids(t, "abc", 3, 0, 1, IDS(3, 2)); /* a+b first; "ab c" is not a merge */
    bitnet_tokenizer_free(t);
    /* Ties go to the leftmost pair: aaa -> aa a. Pairs listed in both the
     * "a b" and [a, b] forms are accepted. */
    t = load_json(byte_level_json("[\"a\",\"a\"],\"\\u0120 a\""));
    check_ids(t, "aaa", 3, 0, 1, IDS(6, 0));
    check_ids(t, "a a", 3, 0, 1, IDS(0, 12)); /* GPT-2 regex keeps the space with the word */
    bitnet_tokenizer_free(t);
}

static void test_special_tokens(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(byte_level_json("\"a b\""));
    check_ids(t, "<x>y", 4, 0, 1, IDS(14));        /* the longest special wins */
    check_ids(t, "<x>a<x>", 7, 0, 1, IDS(13, 0, 13));
    check_ids(t, "<x>y", 4, 0, 0, IDS(7, 8, 9, 10)); /* switched off: plain text */
    check_ids(t, "a@@b", 4, 0, 0, IDS(0, 15, 1));    /* user-defined: always */
    check_ids(t, "ab", 2, -1, 1, IDS(13, 3));        /* BOS from the post-processor template */
    check_ids(t, "ab", 2, 1, 1, IDS(13, 3));
    check_ids(t, "ab", 2, 0, 1, IDS(3));
    check_ids(t, "", 0, -1, 1, IDS(13));
    check_ids(t, "", 0, 0, 1, NONE);
    assert_int_equal(bitnet_tokenizer_bos(t), 13);
    assert_int_equal(bitnet_tokenizer_find(t, "<x>y"), 14);
    assert_int_equal(bitnet_tokenizer_find(t, "zzz"), -1);
    char buf[16];
    assert_int_equal(bitnet_token_to_bytes(t, 13, 0, buf, sizeof buf), 0); /* hidden unless asked */
    assert_int_equal(bitnet_token_to_bytes(t, 13, 1, buf, sizeof buf), 3);
    assert_memory_equal(buf, "<x>", 3);
    assert_int_equal(bitnet_token_to_bytes(t, 15, 0, buf, sizeof buf), 2); /* user-defined: always text */
    assert_int_equal(bitnet_token_to_bytes(t, 12, 0, buf, sizeof buf), 2);
    assert_memory_equal(buf, " a", 2);
    assert_int_equal(bitnet_token_to_bytes(t, 16, 0, buf, sizeof buf), -1);
    bitnet_tokenizer_free(t);
}

static void test_spm_byte_fallback(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(spm_json());
    assert_int_equal(t->kind, BN_TOK_SPM);
    check_ids(t, "ab", 2, 0, 1, IDS(264));               /* ▁ab */
    check_ids(t, "ab", 2, -1, 1, IDS(1, 264));           /* <s> */
    check_ids(t, "a b", 3, 0, 1, IDS(262, 259, 261));    /* ▁a ▁ b */
    check_ids(t, "\xC3\xA9", 2, 0, 1, IDS(259, 3 + 0xC3, 3 + 0xA9)); /* é: byte fallback */
    check_ids(t, "<s>", 3, 0, 1, IDS(259, 3 + '<', 3 + 's', 3 + '>')); /* control tokens are not matched */
    check_ids(t, "", 0, 0, 1, NONE);
    check_ids(t, "\xFF", 1, 0, 1, IDS(259, 3 + 0xFF));   /* invalid UTF-8: bytes */
    char text[32];
    const int32_t ids[] = {1, 262, 259, 3 + 0xC3, 3 + 0xA9};
    assert_int_equal(bitnet_detokenize(t, ids, 5, BITNET_DETOK_STRIP_SPACE, text, sizeof text), 4);
    assert_string_equal(text, "a \xC3\xA9");
    assert_int_equal(bitnet_detokenize(t, ids, 5, 0, text, sizeof text), 5);
    assert_string_equal(text, " a \xC3\xA9");
    assert_int_equal(bitnet_detokenize(t, ids, 5, BITNET_DETOK_SPECIAL, text, sizeof text), 8);
    assert_string_equal(text, "<s> a \xC3\xA9");
    assert_int_equal(bitnet_detokenize(t, ids, 5, 0, text, 3), 5); /* truncated but NUL-terminated */
    assert_string_equal(text, " a");
    bitnet_tokenizer_free(t);
}

/* Feeds ids one at a time; checks the text returned after each. */
static void feed_expect(bitnet_detok *d, int32_t id, const char *want, size_t want_len) {
    const char *s;
    size_t len;
    bitnet_error err = {0};
    if (bitnet_detok_feed(d, id, &s, &len, &err)) fail_msg("feed %d: %s", id, err.message);
    if (len != want_len || memcmp(s, want, len)) fail_msg("feed %d: got %zu bytes, want %zu", id, len, want_len);
}

static void test_streaming_detok(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(spm_json());
    bitnet_detok *d;
    assert_int_equal(bitnet_detok_new(t, BITNET_DETOK_STRIP_SPACE, &d, NULL), BITNET_OK);
    feed_expect(d, 1, "", 0);                  /* <s>: hidden */
    feed_expect(d, 259, "", 0);                /* the prefix space: stripped */
    feed_expect(d, 3 + 0xE2, "", 0);           /* € = E2 82 AC, split over three tokens */
    feed_expect(d, 3 + 0x82, "", 0);
    feed_expect(d, 3 + 0xAC, "\xE2\x82\xAC", 3);
    feed_expect(d, 3 + 0xF0, "", 0);           /* 😀 = F0 9F 98 80 */
    feed_expect(d, 3 + 0x9F, "", 0);
    feed_expect(d, 3 + 0x98, "", 0);
    feed_expect(d, 3 + 0x80, "\xF0\x9F\x98\x80", 4);
    feed_expect(d, 262, " a", 2);              /* not the first text: the space stays */
    feed_expect(d, 3 + 0xC3, "", 0);           /* an unfinished character ... */
    feed_expect(d, 260, "\xC3" "a", 2);        /* ... that can no longer finish passes through */
    feed_expect(d, 3 + 0xFF, "\xFF", 1);       /* never valid: at once */
    feed_expect(d, 3 + 0xE0, "", 0);
    feed_expect(d, 3 + 0x80, "\xE0\x80", 2);   /* overlong prefix: passes through */
    feed_expect(d, 3 + 0xE4, "", 0);
    const char *s;
    size_t len;
    bitnet_detok_flush(d, &s, &len);           /* the end: held bytes come out raw */
    assert_int_equal(len, 1);
    assert_int_equal((uint8_t)s[0], 0xE4);
    feed_expect(d, 262, "a", 1);               /* after a flush, a new text: strip again */
    bitnet_detok_flush(d, &s, &len);
    assert_int_equal(len, 0);
    bitnet_error err = {0};
    assert_int_equal(bitnet_detok_feed(d, 265, &s, &len, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(bitnet_detok_feed(d, -1, &s, &len, &err), BITNET_E_INVALID_ARG);
    bitnet_detok_free(d);
    assert_int_equal(bitnet_detok_new(t, BITNET_DETOK_SPECIAL, &d, NULL), BITNET_OK);
    feed_expect(d, 1, "<s>", 3);
    feed_expect(d, 262, " a", 2);
    bitnet_detok_free(d);
    bitnet_detok_free(NULL);
    bitnet_tokenizer_free(t);
}

static void test_invalid_utf8_byte_level(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(byte_level_json("\"a b\""));
    /* Bytes with no token of their own are dropped, never a crash; a, b and
     * the <x> pieces survive in order. */
    static const char text[] = "\xFF" "ab\xC3" "a\xE2\x82" "<x>\xF0";
    int32_t ids[64];
    int n = 0;
    assert_int_equal(bitnet_tokenize(t, text, sizeof text - 1, 0, 1, ids, 64, &n, NULL), BITNET_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 13);
    bitnet_tokenizer_free(t);
}

static void test_errors(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(byte_level_json("\"a b\""));
    int32_t ids[2];
    int n = -1;
    bitnet_error err = {0};
    assert_int_equal(bitnet_tokenize(t, "abcabc", 6, 0, 1, ids, 1, &n, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(n, 4); /* the full count (ab c ab c), for a retry */
    assert_int_equal(ids[0], 3);
    assert_int_equal(bitnet_tokenize(t, "abcabc", 6, 0, 1, NULL, 0, &n, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(n, 4);
    assert_int_equal(bitnet_tokenize(NULL, "a", 1, 0, 1, ids, 2, &n, &err), BITNET_E_INVALID_ARG);
    assert_int_equal(bitnet_detokenize(t, (const int32_t[]){99}, 1, 0, NULL, 0), -1);
    assert_int_equal(bitnet_tokenizer_n_vocab(t), 16);
    assert_int_equal(bitnet_tokenizer_n_vocab(NULL), 0);
    bitnet_tokenizer_free(t);
    bitnet_tokenizer_free(NULL);

    bitnet_tokenizer *bad = NULL;
    const char *broken[] = {"{", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}",
                            "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}",
                            "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                            "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        assert_int_not_equal(bn_tok_load_hf_json(&bad, broken[i], strlen(broken[i]), NULL, NULL, NULL, &err), BITNET_OK);
        assert_null(bad);
        assert_true(strlen(err.message) > 0);
    }
    assert_int_equal(bitnet_tokenizer_load("/nonexistent/tokenizer.json", &bad, &err), BITNET_E_IO);
    assert_null(bad);
}

static void test_describe(void **state) {
    (void)state;
    bitnet_tokenizer *t = load_json(byte_level_json("\"a b\""));
    char buf[256];
    int n = bitnet_tokenizer_describe(t, buf, sizeof buf);
    assert_true(n > 0 && n < (int)sizeof buf);
    assert_non_null(strstr(buf, "byte-level BPE"));
    assert_non_null(strstr(buf, "16 tokens"));
    bn_tokenizer_summary s;
    bn_tokenizer_summarize(t, &s);
    assert_string_equal(s.model, "gpt2");
    assert_string_equal(s.pre, "gpt2");
    assert_int_equal(s.n_merges, 1);
    assert_int_equal(s.n_special, 3);
    bitnet_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_map),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_merge_rank_order),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_spm_byte_fallback),
        cmocka_unit_test(test_streaming_detok),
        cmocka_unit_test(test_invalid_utf8_byte_level),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
