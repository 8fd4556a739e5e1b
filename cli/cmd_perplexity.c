/* cli/cmd_perplexity.c — `edgetune perplexity` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_perplexity(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'perplexity' is not implemented yet\n");
    return ET_EUSAGE;
}
