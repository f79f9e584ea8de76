/* Hostile: never ends. Stopped by fuel or by the deadline. */
int main(void) {
    volatile unsigned long n = 0;
    for (;;) n++;
}
