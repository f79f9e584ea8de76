/* Prints its arguments and the WHO variable, then exits with the code in argv[1] (default 0). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *who = getenv("WHO");
    for (int i = 1; i < argc; i++) printf("arg %s\n", argv[i]);
    printf("WHO=%s\n", who ? who : "-");
    FILE *f = fopen("/data/input.txt", "r");
    if (f) { char line[128]; if (fgets(line, sizeof line, f)) printf("data: %s", line); fclose(f); }
    else printf("no /data\n");
    FILE *g = fopen("/data/written.txt", "w");
    printf("write /data: %s\n", g ? "allowed" : "denied");
    return argc > 1 ? atoi(argv[1]) : 0;
}
