/* cli/edgerun.c — the standalone runtime: C11 + libm + pthreads only.
 * (Engine lands with the engine issue.) */
#include <stdio.h>

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "edgerun: the engine is not built yet\n");
    return 1;
}
