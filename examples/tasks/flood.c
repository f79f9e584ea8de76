/* Hostile: writes to stdout forever, ignoring write errors. Stopped by the output cap. */
#include <stdio.h>

int main(void) {
    for (;;) puts("flood flood flood flood flood flood flood flood flood flood flood flood");
}
