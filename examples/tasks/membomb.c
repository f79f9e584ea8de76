/* Hostile: allocates and touches memory until refused, then aborts. Stopped by the memory cap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *volatile keep[1 << 16];

int main(void) {
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        char *p = malloc(1 << 20);
        if (!p) { fprintf(stderr, "refused after %zu MiB\n", i); abort(); }
        memset(p, (int)i, 1 << 20);
        keep[i] = p;
    }
    return 0;
}
