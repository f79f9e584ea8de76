/* Classify one 8x8 digit with the model in slot 0 (host call edge_infer).
 * stdin: 64 whitespace-separated pixel values 0..16 (scikit-learn's load_digits form).
 * stdout: "digit <d> p=<probability>"; exit 2 on bad input, 3 if the host call fails. */
#include <stdio.h>
#include "edgenode.h"

int main(void) {
    float x[64], probs[10];
    for (int i = 0; i < 64; i++) {
        float v;
        if (scanf("%f", &v) != 1) { fprintf(stderr, "need 64 pixel values\n"); return 2; }
        x[i] = v / 16.0f;
    }
    int32_t n = edge_infer(0, x, (int32_t)sizeof x, probs, (int32_t)sizeof probs);
    if (n != (int32_t)sizeof probs) { fprintf(stderr, "infer failed: %d\n", n); return 3; }
    int best = 0;
    for (int i = 1; i < 10; i++) if (probs[i] > probs[best]) best = i;
    printf("digit %d p=%.4f\n", best, probs[best]);
    return 0;
}
