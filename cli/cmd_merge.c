/* cli/cmd_merge.c — `edgetune merge` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_merge(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'merge' is not implemented yet\n");
    return ET_EUSAGE;
}
