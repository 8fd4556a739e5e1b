/* cli/cmd_tokenize.c — `edgetune tokenize` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'tokenize' is not implemented yet\n");
    return ET_EUSAGE;
}
