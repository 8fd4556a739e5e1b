/* cli/cmd_run.c — `edgetune run` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'run' is not implemented yet\n");
    return ET_EUSAGE;
}
