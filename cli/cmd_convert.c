/* cli/cmd_convert.c — `edgetune convert` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_convert(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'convert' is not implemented yet\n");
    return ET_EUSAGE;
}
