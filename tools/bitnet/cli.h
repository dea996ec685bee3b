/* The `bitnet` command-line tool: one file per subcommand, each exporting
 * `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand name) that
 * returns the process exit status. Subcommands use only include/bitnet.h. */
#ifndef BITNET_CLI_H
#define BITNET_CLI_H

#include "bitnet.h"

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);

/* Shared helpers (cli_common.c). */

/* Prints "bitnet NAME: message" to stderr and returns exit status 1 (so callers
 * can `return cli_error(...)`). */
int cli_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Parses a comma- or space-separated list of non-negative integers into a
 * malloc'd array (*out, caller frees). Returns the count or -1 on bad input. */
int cli_parse_ids(const char *s, int32_t **out);

/* Reads a whole file (or stdin for "-") into a malloc'd NUL-terminated buffer. */
char *cli_read_file(const char *path, size_t *len);

/* Default model path when -m is not given (the bundled model), or NULL. */
const char *cli_default_model(void);

#endif
