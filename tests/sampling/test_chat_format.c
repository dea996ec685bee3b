/* Chat formats: exact prompt text of each format, snprintf-style output, and
 * how a format is chosen from architecture, template and vocabulary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitnet.h"

static const bitnet_chat_message conversation[] = {
    {"system", "You are kind."},
    {"user", "Hi"},
    {"assistant", "Hello!"},
    {"user", " How are you? "},
};

static char *render(bitnet_chat_format f, const bitnet_chat_message *m, int n, int gen) {
    int len = bitnet_chat_apply(f, m, n, gen, NULL, 0);
    assert_true(len > 0);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(bitnet_chat_apply(f, m, n, gen, buf, (size_t)len + 1), len);
    assert_int_equal(strlen(buf), len);
    return buf;
}

static void expect(bitnet_chat_format f, int gen, const char *want) {
    char *got = render(f, conversation, 4, gen);
    assert_string_equal(got, want);
    free(got);
}

/* 2B4T: what the kit's tokenizer_config.json template renders (no trimming). */
static void test_bitnet_format(void **state) {
    (void)state;
    expect(BITNET_CHAT_BITNET, 1,
           "<|begin_of_text|>System: You are kind.<|eot_id|>User: Hi<|eot_id|>Assistant: Hello!<|eot_id|>"
           "User:  How are you? <|eot_id|>Assistant: ");
    expect(BITNET_CHAT_BITNET, 0,
           "<|begin_of_text|>System: You are kind.<|eot_id|>User: Hi<|eot_id|>Assistant: Hello!<|eot_id|>"
           "User:  How are you? <|eot_id|>");
    /* The ik_llama / transformers example: one user message. */
    bitnet_chat_message one = {"user", "Hey, are you conscious? Can you talk to me?"};
    char *got = render(BITNET_CHAT_BITNET, &one, 1, 1);
    assert_string_equal(got, "<|begin_of_text|>User: Hey, are you conscious? Can you talk to me?<|eot_id|>Assistant: ");
    free(got);
}

/* Llama 3 instruct trims the content. */
static void test_llama3_format(void **state) {
    (void)state;
    expect(BITNET_CHAT_LLAMA3, 1,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_chatml_format(void **state) {
    (void)state;
    expect(BITNET_CHAT_CHATML, 1,
           "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n How are you? <|im_end|>\n"
           "<|im_start|>assistant\n");
}

static void test_apply_buffer_and_errors(void **state) {
    (void)state;
    char small[10];
    memset(small, 'x', sizeof small);
    int len = bitnet_chat_apply(BITNET_CHAT_CHATML, conversation, 1, 0, small, sizeof small);
    assert_int_equal(len, (int)strlen("<|im_start|>system\nYou are kind.<|im_end|>\n"));
    assert_string_equal(small, "<|im_star"); /* truncated, NUL-terminated */
    assert_int_equal(bitnet_chat_apply(BITNET_CHAT_AUTO, conversation, 1, 0, NULL, 0), -1);
    assert_int_equal(bitnet_chat_apply((bitnet_chat_format)42, conversation, 1, 0, NULL, 0), -1);
    assert_int_equal(bitnet_chat_apply(BITNET_CHAT_BITNET, NULL, 1, 0, NULL, 0), -1);
    bitnet_chat_message no_role = {NULL, "x"};
    assert_int_equal(bitnet_chat_apply(BITNET_CHAT_BITNET, &no_role, 1, 0, NULL, 0), -1);
    /* No messages: just the BOS text and the generation prompt. */
    char buf[64];
    assert_true(bitnet_chat_apply(BITNET_CHAT_BITNET, NULL, 0, 1, buf, sizeof buf) > 0);
    assert_string_equal(buf, "<|begin_of_text|>Assistant: ");
}

static void test_format_names(void **state) {
    (void)state;
    for (int f = BITNET_CHAT_AUTO; f <= BITNET_CHAT_CHATML; f++)
        assert_int_equal(bitnet_chat_format_from_name(bitnet_chat_format_name((bitnet_chat_format)f)), f);
    assert_int_equal(bitnet_chat_format_from_name("2b4t"), BITNET_CHAT_BITNET);
    assert_int_equal(bitnet_chat_format_from_name("jinja"), -1);
    assert_int_equal(bitnet_chat_format_from_name(NULL), -1);
}

static const char *kit_template =
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'system' "
    "%}{{ 'System: ' + message['content'] + '<|eot_id|>' }}{% elif message['role'] == 'user' %}{{ 'User: ' + "
    "message['content'] + '<|eot_id|>' }}{% else %}{{ 'Assistant: ' + message['content'] + '<|eot_id|>' }}{% endif "
    "%}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";
static const char *llama3_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}";
static const char *chatml_template =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}";
static const char *converter_template =
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}{{ "
    "'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% endif %}{% endfor %}";

static void test_detect_from_arch_and_template(void **state) {
    (void)state;
    /* The 2B4T architectures ignore the (wrong) embedded template. */
    assert_int_equal(bitnet_chat_format_detect("bitnet-b1.58", chatml_template, NULL), BITNET_CHAT_BITNET);
    assert_int_equal(bitnet_chat_format_detect("bitnet-25", llama3_template, NULL), BITNET_CHAT_BITNET);
    assert_int_equal(bitnet_chat_format_detect("llama", kit_template, NULL), BITNET_CHAT_BITNET);
    assert_int_equal(bitnet_chat_format_detect("llama", llama3_template, NULL), BITNET_CHAT_LLAMA3);
    assert_int_equal(bitnet_chat_format_detect("llama", chatml_template, NULL), BITNET_CHAT_CHATML);
    assert_int_equal(bitnet_chat_format_detect("bitnet", converter_template, NULL), BITNET_CHAT_BITNET);
    assert_int_equal(bitnet_chat_format_detect(NULL, NULL, NULL), BITNET_CHAT_BITNET);
}

static void test_detect_from_vocabulary(void **state) {
    (void)state;
    bitnet_tokenizer *tok = NULL;
    bitnet_error err;
    /* The kit's vocabulary has <|start_header_id|>: Llama 3 when nothing else says. */
    assert_int_equal(bitnet_tokenizer_load(BITNET_SHARED_DIR "/conformance/tiny-bitnet/tokenizer.json", &tok, &err),
                     BITNET_OK);
    assert_int_equal(bitnet_chat_format_detect("llama", NULL, tok), BITNET_CHAT_LLAMA3);
    assert_int_equal(bitnet_chat_format_detect("llama", "{{ messages }}", tok), BITNET_CHAT_LLAMA3);
    assert_int_equal(bitnet_chat_format_detect("llama", chatml_template, tok), BITNET_CHAT_CHATML);
    bitnet_tokenizer_free(tok);
    const char *llama2 = BITNET_SHARED_DIR "/data/tokenizers/llama2/tokenizer.model";
    if (access(llama2, R_OK) == 0) {
        assert_int_equal(bitnet_tokenizer_load(llama2, &tok, &err), BITNET_OK);
        assert_int_equal(bitnet_chat_format_detect("bitnet", NULL, tok), BITNET_CHAT_BITNET);
        bitnet_tokenizer_free(tok);
    }
}

/* The kit GGUFs carry the 2B4T template; both resolve to the 2B4T format (one
 * by architecture, the llama one by its template). */
static void test_model_template(void **state) {
    (void)state;
    const char *files[] = {BITNET_SHARED_DIR "/conformance/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf",
                           BITNET_SHARED_DIR "/conformance/tiny-llama-ternary/gguf/tiny-llama-ternary-tq2_0.gguf",
                           BITNET_SHARED_DIR "/conformance/tiny-bitnet"};
    for (int i = 0; i < 3; i++) {
        bitnet_model *m = NULL;
        bitnet_error err;
        assert_int_equal(bitnet_model_load(files[i], NULL, &m, &err), BITNET_OK);
        const char *t = bitnet_model_chat_template(m);
        if (i < 2) assert_non_null(strstr(t, "'User: '"));
        assert_int_equal(bitnet_model_chat_format(m), BITNET_CHAT_BITNET);
        bitnet_model_free(m);
    }
    assert_null(bitnet_model_chat_template(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bitnet_format),
        cmocka_unit_test(test_llama3_format),
        cmocka_unit_test(test_chatml_format),
        cmocka_unit_test(test_apply_buffer_and_errors),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_detect_from_arch_and_template),
        cmocka_unit_test(test_detect_from_vocabulary),
        cmocka_unit_test(test_model_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
