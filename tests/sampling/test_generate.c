/* Generation and chat sessions on the kit model (tiny-bitnet, I2_S GGUF):
 * greedy output against the reference, every stop condition, streamed text,
 * and that a chat session's cache equals the whole conversation evaluated at
 * once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitnet.h"

#define KIT BITNET_SHARED_DIR "/conformance/tiny-bitnet"
#define EOT 4093 /* <|eot_id|> in the kit vocabulary */

static bitnet_model *model;
static const bitnet_tokenizer *tok;

static int setup(void **state) {
    (void)state;
    bitnet_error err;
    if (bitnet_model_load(KIT "/gguf/tiny-bitnet-i2_s.gguf", NULL, &model, &err) != BITNET_OK) {
        fprintf(stderr, "cannot load the kit model: %s\n", err.message);
        return -1;
    }
    tok = bitnet_model_tokenizer(model);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    bitnet_model_free(model);
    return 0;
}

static bitnet_context *new_ctx(int n_ctx) {
    bitnet_context_params cp;
    bitnet_context_params_default(&cp);
    cp.n_ctx = n_ctx;
    cp.n_threads = 2;
    cp.device = "cpu";
    bitnet_context *ctx = NULL;
    bitnet_error err;
    assert_int_equal(bitnet_context_create(model, &cp, &ctx, &err), BITNET_OK);
    return ctx;
}

static bitnet_sampler *greedy(void) {
    bitnet_sampler_params p;
    bitnet_sampler_params_default(&p);
    p.temperature = 0;
    bitnet_sampler *s = NULL;
    assert_int_equal(bitnet_sampler_new(&p, &s, NULL), BITNET_OK);
    return s;
}

/* Collects the ids and text a run streams; optionally stops after stop_after
 * tokens, or copies the logits current at the first token. */
typedef struct sink {
    int32_t ids[2048];
    int n;
    char text[16384];
    size_t len;
    int stop_after;
    bitnet_context *ctx;
    float *first_logits;
    int first_n_past; /* the cache length when the first token was sampled */
    int calls;
} sink;

static int collect(const char *piece, size_t len, int32_t token, void *user) {
    sink *s = user;
    s->calls++;
    if (token >= 0) {
        if (s->n == 0 && s->ctx) { /* the logits this token was sampled from */
            memcpy(s->first_logits, bitnet_get_logits(s->ctx, -1), 4096 * sizeof(float));
            s->first_n_past = bitnet_context_n_past(s->ctx);
        }
        s->ids[s->n++] = token;
    }
    assert_true(s->len + len < sizeof s->text);
    memcpy(s->text + s->len, piece, len);
    s->len += len;
    s->text[s->len] = '\0';
    return s->stop_after && s->n >= s->stop_after;
}

static int tokenize(const char *text, int add_bos, int32_t *ids, int cap) {
    int n = 0;
    bitnet_error err;
    assert_int_equal(bitnet_tokenize(tok, text, strlen(text), add_bos, 1, ids, cap, &n, &err), BITNET_OK);
    return n;
}

static bitnet_status gen(bitnet_context *ctx, bitnet_sampler *smp, const int32_t *ids, int n, int n_predict,
                         int ignore_eog, sink *s, bitnet_generate_stats *st) {
    bitnet_generate_params p;
    bitnet_generate_params_default(&p);
    p.n_predict = n_predict;
    p.ignore_eog = ignore_eog;
    p.on_piece = collect;
    p.user = s;
    return bitnet_generate(ctx, tok, smp, ids, n, &p, st, NULL);
}

static cJSON *load_reference(void) {
    FILE *f = fopen(KIT "/reference/reference.json", "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    assert_non_null(j);
    return j;
}

/* Greedy generation reproduces the reference up to the first near-tie. */
static void test_greedy_matches_reference(void **state) {
    (void)state;
    cJSON *ref = load_reference();
    cJSON *c;
    int compared = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(ref, "cases")) {
        int32_t ids[256];
        int n = tokenize(cJSON_GetObjectItem(c, "prompt")->valuestring, -1, ids, 256);
        cJSON *pids = cJSON_GetObjectItem(c, "prompt_ids"), *want = cJSON_GetObjectItem(c, "greedy_new_ids");
        cJSON *margin = cJSON_GetObjectItem(c, "top2_margin");
        assert_int_equal(n, cJSON_GetArraySize(pids));
        bitnet_context *ctx = new_ctx(256);
        bitnet_sampler *smp = greedy();
        sink s = {0};
        bitnet_generate_stats st;
        assert_int_equal(gen(ctx, smp, ids, n, 40, 1, &s, &st), BITNET_OK);
        assert_int_equal(st.stop, BITNET_STOP_LENGTH);
        assert_int_equal(s.n, 40);
        for (int i = 0; i < 40 && cJSON_GetArrayItem(margin, n - 1 + i)->valuedouble >= 0.5; i++, compared++)
            assert_int_equal(s.ids[i], cJSON_GetArrayItem(want, i)->valueint);
        bitnet_sampler_free(smp);
        bitnet_context_free(ctx);
    }
    assert_true(compared > 40);
    cJSON_Delete(ref);
}

static void test_stop_length(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(64);
    bitnet_sampler *smp = greedy();
    int32_t ids[32];
    int n = tokenize("Once upon a time", -1, ids, 32);
    sink s = {0};
    bitnet_generate_stats st;
    assert_int_equal(gen(ctx, smp, ids, n, 3, 0, &s, &st), BITNET_OK);
    assert_int_equal(st.stop, BITNET_STOP_LENGTH);
    assert_int_equal(st.n_prompt, n);
    assert_int_equal(st.n_generated, 3);
    assert_int_equal(s.n, 3);
    assert_int_equal(st.last_token, s.ids[2]);
    assert_int_equal(bitnet_context_n_past(ctx), n + 2); /* the last token is not evaluated */
    assert_true(st.prompt_tok_s > 0 && st.generate_tok_s > 0);
    /* n_predict 0 evaluates the prompt and generates nothing. */
    bitnet_kv_truncate(ctx, 0, NULL);
    memset(&s, 0, sizeof s);
    assert_int_equal(gen(ctx, smp, ids, n, 0, 0, &s, &st), BITNET_OK);
    assert_int_equal(st.stop, BITNET_STOP_LENGTH);
    assert_int_equal(st.n_generated, 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(st.last_token, -1);
    assert_int_equal(bitnet_context_n_past(ctx), n);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

static void test_stop_context_full(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(12);
    bitnet_sampler *smp = greedy();
    int32_t ids[32];
    int n = tokenize("Once upon a time", -1, ids, 32);
    sink s = {0};
    bitnet_generate_stats st;
    assert_int_equal(gen(ctx, smp, ids, n, -1, 1, &s, &st), BITNET_OK);
    assert_int_equal(st.stop, BITNET_STOP_CONTEXT_FULL);
    assert_int_equal(st.n_generated, 12 - n + 1); /* the last one is sampled from the full cache */
    assert_int_equal(bitnet_context_n_past(ctx), 12);
    /* Nothing more fits: a new prompt fails cleanly and changes nothing. */
    bitnet_error err;
    bitnet_generate_params p;
    bitnet_generate_params_default(&p);
    assert_int_equal(bitnet_generate(ctx, tok, smp, ids, 1, &p, &st, &err), BITNET_E_CONTEXT_FULL);
    assert_non_null(strstr(err.message, "does not fit"));
    assert_int_equal(st.n_prompt, 0);
    assert_int_equal(bitnet_context_n_past(ctx), 12);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

static void test_prompt_too_long(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(8);
    bitnet_sampler *smp = greedy();
    int32_t ids[64];
    int n = tokenize("Once upon a time, there was a little girl named Lily.", -1, ids, 64);
    assert_true(n > 8);
    sink s = {0};
    bitnet_generate_stats st;
    assert_int_equal(gen(ctx, smp, ids, n, 5, 0, &s, &st), BITNET_E_CONTEXT_FULL);
    assert_int_equal(bitnet_context_n_past(ctx), 0);
    assert_int_equal(s.calls, 0);
    assert_int_equal(gen(ctx, smp, ids, 0, 5, 0, &s, &st), BITNET_E_INVALID_ARG);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

static void test_cancel(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(64);
    bitnet_sampler *smp = greedy();
    int32_t ids[32];
    int n = tokenize("Once upon a time", -1, ids, 32);
    sink s = {0};
    s.stop_after = 2;
    bitnet_generate_stats st;
    assert_int_equal(gen(ctx, smp, ids, n, 20, 0, &s, &st), BITNET_E_CANCELLED);
    assert_int_equal(st.stop, BITNET_STOP_CANCELLED);
    assert_int_equal(st.n_generated, 2);
    assert_int_equal(s.n, 2);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

/* An end-of-turn token ends generation and is neither counted nor shown. */
static void test_stop_eog(void **state) {
    (void)state;
    int32_t eogs[2] = {EOT, bitnet_tokenizer_eos(tok)};
    assert_true(bitnet_tokenizer_is_eog(tok, EOT) && bitnet_tokenizer_is_eog(tok, eogs[1]));
    for (int k = 0; k < 2; k++) {
        bitnet_logit_bias bias = {eogs[k], 1000.0f};
        bitnet_sampler_params p;
        bitnet_sampler_params_default(&p);
        p.temperature = 0;
        p.logit_bias = &bias;
        p.n_logit_bias = 1;
        bitnet_sampler *smp = NULL;
        assert_int_equal(bitnet_sampler_new(&p, &smp, NULL), BITNET_OK);
        bitnet_context *ctx = new_ctx(64);
        int32_t ids[32];
        int n = tokenize("Once upon a time", -1, ids, 32);
        sink s = {0};
        bitnet_generate_stats st;
        assert_int_equal(gen(ctx, smp, ids, n, 10, 0, &s, &st), BITNET_OK);
        assert_int_equal(st.stop, BITNET_STOP_EOG);
        assert_int_equal(st.n_generated, 0);
        assert_int_equal(st.last_token, eogs[k]);
        assert_int_equal(s.calls, 0);
        /* ignore_eog goes through them */
        bitnet_kv_truncate(ctx, 0, NULL);
        assert_int_equal(gen(ctx, smp, ids, n, 3, 1, &s, &st), BITNET_OK);
        assert_int_equal(st.n_generated, 3);
        bitnet_sampler_free(smp);
        bitnet_context_free(ctx);
    }
}

/* The streamed pieces add up to the detokenized ids, and generate_text gives
 * the same text. */
static void test_streamed_text(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(128);
    bitnet_sampler *smp = greedy();
    int32_t ids[32];
    int n = tokenize("Once upon a time", -1, ids, 32);
    sink s = {0};
    bitnet_generate_stats st;
    assert_int_equal(gen(ctx, smp, ids, n, 30, 0, &s, &st), BITNET_OK);
    assert_true(s.len > 20);
    char whole[16384];
    int64_t len = bitnet_detokenize(tok, s.ids, s.n, 0, whole, sizeof whole);
    assert_int_equal(len, (int64_t)s.len);
    assert_string_equal(whole, s.text);
    bitnet_kv_truncate(ctx, 0, NULL);
    bitnet_sampler_reset(smp);
    char *text = NULL;
    assert_int_equal(bitnet_generate_text(ctx, tok, smp, "Once upon a time", 30, &text, NULL), BITNET_OK);
    assert_string_equal(text, s.text);
    bitnet_text_free(text);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

/* Sends a turn; returns the reply's ids in s. */
static void send(bitnet_chat *chat, const char *text, int n_predict, sink *s, bitnet_generate_stats *st) {
    bitnet_error err;
    bitnet_status rc = bitnet_chat_send(chat, text, n_predict, collect, s, st, &err);
    if (rc) fprintf(stderr, "chat_send: %s\n", err.message);
    assert_int_equal(rc, BITNET_OK);
}

/* After two turns the session's cache must hold exactly the 2B4T rendering of
 * the whole conversation: same length, same logits as one batch of it. */
static void test_chat_session_cache(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(512);
    bitnet_sampler *smp = greedy();
    bitnet_chat *chat = NULL;
    assert_int_equal(bitnet_chat_new(model, ctx, smp, BITNET_CHAT_AUTO, "Tell short stories.", &chat, NULL), BITNET_OK);
    assert_int_equal(bitnet_chat_get_format(chat), BITNET_CHAT_BITNET);
    sink r1 = {0};
    bitnet_generate_stats st;
    send(chat, "Tell me about a cat.", 6, &r1, &st); /* stops at the length: one token pending */
    assert_int_equal(st.stop, BITNET_STOP_LENGTH);
    assert_int_equal(r1.n, 6);
    float *session_logits = malloc(4096 * sizeof(float));
    sink r2 = {0};
    r2.ctx = ctx;
    r2.first_logits = session_logits;
    send(chat, "And then?", 4, &r2, &st);
    assert_true(r2.n >= 1);
    int session_len = r2.first_n_past; /* the cache before reply 2 */

    /* The same conversation rendered whole (the reply as its ids, since
     * re-tokenizing generated text need not give the same ids). */
    bitnet_chat_message head[2] = {{"system", "Tell short stories."}, {"user", "Tell me about a cat."}};
    bitnet_chat_message tail[1] = {{"user", "And then?"}};
    char text[1024];
    int32_t all[512];
    assert_true(bitnet_chat_apply(BITNET_CHAT_BITNET, head, 2, 1, text, sizeof text) > 0);
    int n = tokenize(text, 0, all, 512);
    memcpy(all + n, r1.ids, (size_t)r1.n * sizeof *all);
    n += r1.n;
    char rest[256];
    int skip = (int)strlen("<|begin_of_text|>"); /* apply renders the BOS; mid-conversation has none */
    assert_true(bitnet_chat_apply(BITNET_CHAT_BITNET, tail, 1, 1, rest, sizeof rest) > skip);
    char closing[300];
    snprintf(closing, sizeof closing, "<|eot_id|>%s", rest + skip);
    n += tokenize(closing, 0, all + n, 512 - n);
    assert_int_equal(session_len, n);

    bitnet_context *ref = new_ctx(512);
    assert_int_equal(bitnet_eval(ref, all, n, BITNET_LOGITS_LAST, NULL), BITNET_OK);
    const float *want = bitnet_get_logits(ref, -1);
    float max_diff = 0, max_abs = 0;
    int best_a = 0, best_b = 0;
    for (int i = 0; i < 4096; i++) {
        max_diff = fmaxf(max_diff, fabsf(want[i] - session_logits[i]));
        max_abs = fmaxf(max_abs, fabsf(want[i]));
        if (want[i] > want[best_a]) best_a = i;
        if (session_logits[i] > session_logits[best_b]) best_b = i;
    }
    assert_true(max_diff <= 1e-2f * max_abs);
    assert_int_equal(best_a, best_b);
    assert_int_equal(r2.ids[0], best_a);

    /* reset empties the cache; the same first turn gives the same reply */
    assert_int_equal(bitnet_chat_reset(chat, NULL), BITNET_OK);
    assert_int_equal(bitnet_context_n_past(ctx), 0);
    sink again = {0};
    send(chat, "Tell me about a cat.", 6, &again, &st);
    assert_memory_equal(again.ids, r1.ids, 6 * sizeof(int32_t));
    free(session_logits);
    bitnet_context_free(ref);
    bitnet_chat_free(chat);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

/* A turn that does not fit fails with CONTEXT_FULL and leaves the cache as it was. */
static void test_chat_context_full(void **state) {
    (void)state;
    bitnet_context *ctx = new_ctx(40);
    bitnet_sampler *smp = greedy();
    bitnet_chat *chat = NULL;
    assert_int_equal(bitnet_chat_new(model, ctx, smp, BITNET_CHAT_AUTO, NULL, &chat, NULL), BITNET_OK);
    sink s = {0};
    bitnet_generate_stats st;
    send(chat, "Hello there.", 5, &s, &st);
    int used = bitnet_context_n_past(ctx);
    bitnet_error err;
    const char *big = "Tell me a long story about a dog, a cat, a bird and a fish who lived in a big house.";
    assert_int_equal(bitnet_chat_send(chat, big, 5, collect, &s, &st, &err), BITNET_E_CONTEXT_FULL);
    assert_int_equal(st.n_prompt, 0);
    assert_int_equal(bitnet_context_n_past(ctx), used);
    assert_int_equal(bitnet_chat_reset(chat, NULL), BITNET_OK);
    send(chat, "Hello there.", -1, &s, &st); /* runs until end of turn or the context end */
    assert_true(st.stop == BITNET_STOP_EOG || st.stop == BITNET_STOP_CONTEXT_FULL);
    bitnet_chat_free(chat);
    bitnet_sampler_free(smp);
    bitnet_context_free(ctx);
}

/* One run of 24 tokens (end-of-generation ignored) with pick_on_device set or
 * not; *logits_after says whether the context kept logits. */
static void run_pick(bitnet_sampler *smp, int on_device, sink *s, int *n_past, int *logits_after) {
    bitnet_context *ctx = new_ctx(128);
    int32_t ids[32];
    int n = tokenize("Once upon a time, there was a little", -1, ids, 32);
    bitnet_generate_params p;
    bitnet_generate_params_default(&p);
    p.n_predict = 24;
    p.ignore_eog = 1;
    p.on_piece = collect;
    p.user = s;
    p.pick_on_device = on_device;
    bitnet_generate_stats st;
    assert_int_equal(bitnet_generate(ctx, tok, smp, ids, n, &p, &st, NULL), BITNET_OK);
    assert_int_equal(st.stop, BITNET_STOP_LENGTH);
    assert_int_equal(st.n_generated, 24);
    assert_int_equal(st.last_token, s->ids[23]);
    *n_past = bitnet_context_n_past(ctx);
    *logits_after = bitnet_get_logits(ctx, -1) != NULL;
    bitnet_context_free(ctx);
}

/* pick_on_device: a greedy sampler's tokens come from the evals' own picks
 * (no logits kept) and equal the sampled ones; any other sampler still
 * samples the logits, unchanged. */
static void test_pick_on_device(void **state) {
    (void)state;
    static sink a, b;
    int na, nb, la, lb;
    bitnet_sampler *g = greedy();
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    run_pick(g, 0, &a, &na, &la);
    run_pick(g, 1, &b, &nb, &lb);
    assert_int_equal(a.n, 24);
    assert_memory_equal(a.ids, b.ids, 24 * sizeof a.ids[0]);
    assert_string_equal(a.text, b.text);
    assert_int_equal(na, nb); /* the last token is still not evaluated */
    assert_true(la && !lb);   /* the picks kept no logits */
    bitnet_sampler_free(g);

    bitnet_sampler_params sp;
    bitnet_sampler_params_default(&sp);
    sp.seed = 1234;
    sp.temperature = 1.5f; /* far from greedy: the runs would differ if one were */
    bitnet_sampler *r = NULL;
    assert_int_equal(bitnet_sampler_new(&sp, &r, NULL), BITNET_OK);
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    run_pick(r, 0, &a, &na, &la);
    bitnet_sampler_free(r);
    assert_int_equal(bitnet_sampler_new(&sp, &r, NULL), BITNET_OK);
    run_pick(r, 1, &b, &nb, &lb);
    bitnet_sampler_free(r);
    assert_memory_equal(a.ids, b.ids, 24 * sizeof a.ids[0]);
    assert_true(la && lb);
    static sink c;
    memset(&c, 0, sizeof c);
    g = greedy();
    run_pick(g, 1, &c, &nb, &lb);
    bitnet_sampler_free(g);
    assert_true(memcmp(a.ids, c.ids, 24 * sizeof a.ids[0]) != 0); /* the sampled run is not the greedy one */
}

/* A chat session with pick_on_device gives the same replies and the same
 * cache as one without, and keeps no logits. */
static void test_chat_pick_on_device(void **state) {
    (void)state;
    static sink r[2][2];
    int n_past[2], logits[2];
    memset(r, 0, sizeof r);
    for (int on = 0; on < 2; on++) {
        bitnet_context *ctx = new_ctx(256);
        bitnet_sampler *smp = greedy();
        bitnet_chat *chat = NULL;
        assert_int_equal(bitnet_chat_new(model, ctx, smp, BITNET_CHAT_AUTO, "Tell short stories.", &chat, NULL),
                         BITNET_OK);
        bitnet_chat_set_pick_on_device(chat, on);
        bitnet_generate_stats st;
        send(chat, "Tell me about a cat.", 12, &r[on][0], &st);
        send(chat, "And then?", 12, &r[on][1], &st);
        n_past[on] = bitnet_context_n_past(ctx);
        logits[on] = bitnet_get_logits(ctx, -1) != NULL;
        bitnet_chat_free(chat);
        bitnet_sampler_free(smp);
        bitnet_context_free(ctx);
    }
    for (int t = 0; t < 2; t++) {
        assert_true(r[0][t].n > 0);
        assert_int_equal(r[0][t].n, r[1][t].n);
        assert_memory_equal(r[0][t].ids, r[1][t].ids, (size_t)r[0][t].n * sizeof(int32_t));
    }
    assert_int_equal(n_past[0], n_past[1]);
    assert_true(logits[0] && !logits[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_stop_length),
        cmocka_unit_test(test_stop_context_full),
        cmocka_unit_test(test_prompt_too_long),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_stop_eog),
        cmocka_unit_test(test_streamed_text),
        cmocka_unit_test(test_chat_session_cache),
        cmocka_unit_test(test_chat_context_full),
        cmocka_unit_test(test_pick_on_device),
        cmocka_unit_test(test_chat_pick_on_device),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
