#define _POSIX_C_SOURCE 200809L
#include "cli_progress.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

void cli_progress_init(cli_progress *p, int quiet) {
    p->quiet = quiet;
    p->tty = isatty(STDERR_FILENO);
    p->last_index = -1;
    interrupted = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

int cli_progress_cb(void *user, const char *tensor, int index, int count, uint64_t done, uint64_t total) {
    cli_progress *p = user;
    if (interrupted) return 1;
    if (p->quiet) return 0;
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (index >= count) {
        if (p->tty) fprintf(stderr, "\r[%d/%d] 100.0%%%-48s\n", count, count, "");
        return 0;
    }
    /* On a terminal every call refreshes the line; in a log, one line per tensor. */
    if (!p->tty && index == p->last_index) return 0;
    p->last_index = index;
    fprintf(stderr, p->tty ? "\r[%d/%d] %5.1f%%  %-40.40s" : "[%d/%d] %5.1f%%  %s\n", index + 1, count, pct, tensor);
    fflush(stderr);
    return 0;
}

void cli_progress_done(cli_progress *p, int ok) {
    if (p->tty && !p->quiet && !ok && p->last_index >= 0) fputc('\n', stderr);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (interrupted) fprintf(stderr, "bitnet: interrupted\n");
}
