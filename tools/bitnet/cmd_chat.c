/* bitnet chat: an interactive conversation, one user message per input line.
 * The conversation stays in the KV cache, so each turn evaluates only its own
 * tokens. Works from a terminal ("> " prompt) and through a pipe (no prompt,
 * replies one per line). */
#define _POSIX_C_SOURCE 200809L /* getline; the CLI builds as strict C11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gen_opts.h"

#define CMD "chat"

static int usage(void) {
    printf("usage: bitnet chat [-m MODEL] [-s SYSTEM] [options]\n\n"
           "Reads one user message per line from stdin and streams each reply to stdout,\n"
           "followed by a newline. Commands: /reset forgets the conversation, /exit (or\n"
           "end of input, Ctrl-D) quits. When the context fills up, the conversation is\n"
           "reset (and said so on stderr).\n\n"
           "chat:\n"
           "  -s SYSTEM             system message\n"
           "  --chat-format F       auto | bitnet | llama3 | chatml (default auto: from the model)\n"
           "  -n N                  most tokens per reply; -1 = until the end of the turn (default)\n");
    gen_opts_usage(stdout);
    return 0;
}

typedef struct chat_opts {
    gen_opts g;
    const char *system;
    int format;
} chat_opts;

/* Returns 0 to go on, 1 for an error (printed), 2 when --help was shown. */
static int parse_args(chat_opts *o, int argc, char **argv) {
    gen_opts_init(&o->g, -1);
    o->format = BITNET_CHAT_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        int r = gen_opts_parse(&o->g, CMD, argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(), 2;
        else if (!strcmp(a, "-s") && more) o->system = argv[++i];
        else if (!strcmp(a, "--chat-format") && more) {
            if ((o->format = bitnet_chat_format_from_name(argv[++i])) < 0)
                return cli_error(CMD, "--chat-format: unknown format '%s' (auto, bitnet, llama3, chatml)", argv[i]);
        } else
            return cli_error(CMD, "unknown or incomplete option '%s' (see --help)", a);
    }
    return 0;
}

static int print_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    (void)user;
    if (len) fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return ferror(stdout) ? 1 : 0;
}

/* Strips the line ending and surrounding blanks in place. */
static char *trim_line(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

typedef struct chat_session {
    bitnet_chat *chat;
    bitnet_context *ctx;
    const chat_opts *o;
} chat_session;

static int reset(chat_session *s) {
    bitnet_error err;
    if (bitnet_chat_reset(s->chat, &err) != BITNET_OK) return cli_error(CMD, "%s", err.message);
    return 0;
}

/* One user turn. Returns 0 to go on, 1 for a fatal error (printed). */
static int turn(chat_session *s, const char *text) {
    bitnet_generate_stats st;
    bitnet_error err;
    bitnet_status rc = bitnet_chat_send(s->chat, text, s->o->g.n_predict, print_piece, NULL, &st, &err);
    if (rc == BITNET_E_CONTEXT_FULL && st.n_prompt == 0) {
        /* The turn did not fit after the earlier ones: start over with it. */
        fprintf(stderr, "bitnet chat: the %d-token context is full; starting a new conversation\n",
                bitnet_context_n_ctx(s->ctx));
        if (reset(s)) return 1;
        rc = bitnet_chat_send(s->chat, text, s->o->g.n_predict, print_piece, NULL, &st, &err);
        if (rc == BITNET_E_CONTEXT_FULL && st.n_prompt == 0) {
            fprintf(stderr, "bitnet chat: %s (use -c to enlarge the context)\n", err.message);
            return reset(s);
        }
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (rc == BITNET_E_CANCELLED && ferror(stdout)) return 1; /* stdout is gone */
    if (rc != BITNET_OK) return cli_error(CMD, "%s", err.message);
    if (s->o->g.verbose) gen_print_timing(&st);
    if (st.stop == BITNET_STOP_CONTEXT_FULL) {
        fprintf(stderr, "bitnet chat: the reply filled the %d-token context; starting a new conversation\n",
                bitnet_context_n_ctx(s->ctx));
        return reset(s);
    }
    return 0;
}

/* Reads lines until /exit or end of input. Returns the exit status. */
static int chat_loop(chat_session *s) {
    int interactive = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    int status = 0;
    for (;;) {
        if (interactive) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        if (getline(&line, &cap, stdin) < 0) {
            if (interactive) fputc('\n', stdout); /* Ctrl-D: end the prompt line */
            break;
        }
        char *text = trim_line(line);
        if (!*text) continue;
        if (!strcmp(text, "/exit") || !strcmp(text, "/quit")) break;
        if (!strcmp(text, "/reset")) {
            if ((status = reset(s))) break;
            fprintf(stderr, "bitnet chat: conversation cleared\n");
            continue;
        }
        if ((status = turn(s, text))) break;
    }
    free(line);
    return status;
}

int cmd_chat(int argc, char **argv) {
    chat_opts o;
    memset(&o, 0, sizeof o);
    int r = parse_args(&o, argc, argv);
    if (r) return r == 2 ? 0 : 1;
    bitnet_model *model;
    bitnet_context *ctx;
    bitnet_sampler *smp;
    if (gen_opts_open(&o.g, CMD, &model, &ctx, &smp)) return 1;
    bitnet_error err;
    chat_session s = {NULL, ctx, &o};
    int status;
    if (bitnet_chat_new(model, ctx, smp, (bitnet_chat_format)o.format, o.system, &s.chat, &err) != BITNET_OK) {
        status = cli_error(CMD, "%s", err.message);
    } else {
        bitnet_chat_set_pick_on_device(s.chat, 1); /* print_piece reads no logits */
        if (o.g.verbose)
            fprintf(stderr, "bitnet chat: format %s\n", bitnet_chat_format_name(bitnet_chat_get_format(s.chat)));
        status = chat_loop(&s);
    }
    bitnet_chat_free(s.chat);
    gen_opts_close(model, ctx, smp);
    return status;
}
