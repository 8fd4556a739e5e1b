/* cli/cmd_lora.c — `edgetune lora` (not implemented yet). */
#include <stdio.h>

#include "cli.h"

int cmd_lora(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgetune: 'lora' is not implemented yet\n");
    return ET_EUSAGE;
}
