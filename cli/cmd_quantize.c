/* cli/cmd_quantize.c — `edgetune quantize` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_quantize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'quantize' is not implemented yet\n");
    return ET_EUSAGE;
}
