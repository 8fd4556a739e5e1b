/* cli/cmd_data.c — `edgetune data` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_data(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'data' is not implemented yet\n");
    return ET_EUSAGE;
}
