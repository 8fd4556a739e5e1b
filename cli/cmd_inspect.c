/* cli/cmd_inspect.c — `edgetune inspect` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'inspect' is not implemented yet\n");
    return ET_EUSAGE;
}
