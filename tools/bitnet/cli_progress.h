/* Progress lines on stderr for long-running file writers (convert, gen-model),
 * and Ctrl-C / SIGTERM turned into a clean cancel: the callback asks the
 * library to stop, which then deletes its temporary output. */
#ifndef BITNET_CLI_PROGRESS_H
#define BITNET_CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    int quiet;
    int tty;        /* stderr is a terminal: rewrite one line */
    int last_index; /* last tensor printed */
} cli_progress;

/* Installs the SIGINT/SIGTERM handlers. */
void cli_progress_init(cli_progress *p, int quiet);

/* A bitnet_progress_fn; user = cli_progress*. Returns 1 after a signal. */
int cli_progress_cb(void *user, const char *tensor, int index, int count, uint64_t done, uint64_t total);

/* Ends the progress line and restores the default signal handlers. */
void cli_progress_done(cli_progress *p, int ok);

#endif
