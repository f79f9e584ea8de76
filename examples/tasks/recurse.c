/* Hostile: unbounded recursion with a stack frame that cannot be optimised away. */
#include <stdio.h>

static int deep(volatile int n) {
    volatile char frame[256];
    frame[n & 255] = (char)n;
    return deep(n + 1) + frame[(n + 1) & 255];
}

int main(void) {
    printf("%d\n", deep(0));
    return 0;
}
