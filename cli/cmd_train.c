/* cli/cmd_train.c — `edgetune train` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'train' is not implemented yet\n");
    return ET_EUSAGE;
}
