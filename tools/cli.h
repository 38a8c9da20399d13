/* cli.h - shared helpers of the rsmoe command-line tool's sub-commands. */
#ifndef RSMOE_CLI_H
#define RSMOE_CLI_H
#include "rsmoe.h"

/* Each sub-command: int cmd_NAME(int argc, char **argv) with argv[0] = "NAME";
 * returns the process exit code (0 ok, 1 runtime failure, 2 usage error).
 * Register it in the table in tools/rsmoe.c. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

/* Prints "rsmoe: <what>: <last error>" to stderr and returns 1. */
int cli_fail(const char *what, rsmoe_status st);
#endif
