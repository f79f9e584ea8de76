/* A long deterministic computation for checkpoint/migration tests: state in linear memory,
 * deep call stacks, input read as it goes, output written as it goes, safe points inside
 * the recursion.
 *
 * stdin: "ROUNDS MIB DEPTH" then any number of integers (64 are read per round; missing
 * ones count as 0). It fills MIB MiB with a pseudo-random walk, then for each round recurses
 * DEPTH levels deep, mixing memory at every level and calling edge_safepoint() at each
 * leaf, and prints one line per round and a final digest. The output depends on nothing
 * but the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "edgenode.h"

static uint64_t *mem;
static size_t words;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Each level keeps live locals across the recursive call and the safe point, so the
 * unwound stack is real state, not just a return address. */
static uint64_t walk(int depth, uint64_t acc, size_t at) {
    uint64_t here = mix(acc ^ (uint64_t)depth);
    size_t slot = (size_t)(here % words);
    mem[slot] ^= here;
    if (depth == 0) {
        edge_safepoint();
        return here ^ mem[(at + 1) % words];
    }
    uint64_t left = walk(depth - 1, here + mem[at % words], slot);
    uint64_t right = walk(depth - 1, left ^ here, (slot + at) % words);
    mem[at % words] += left * 3 + right;
    return mix(left + right + here);
}

int main(void) {
    unsigned rounds = 0, mib = 0, depth = 0;
    if (scanf("%u %u %u", &rounds, &mib, &depth) != 3 || mib == 0 || depth > 24) {
        fprintf(stderr, "usage: stdin 'ROUNDS MIB DEPTH' (MIB >= 1, DEPTH <= 24) then integers\n");
        return 2;
    }
    words = (size_t)mib * (1u << 20) / sizeof(uint64_t);
    mem = malloc(words * sizeof(uint64_t));
    if (mem == NULL) {
        fprintf(stderr, "out of memory\n");
        return 3;
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < words; i++) {
        x = mix(x + i);
        mem[i] = x;
        if ((i & 0xffff) == 0) edge_safepoint();
    }
    uint64_t digest = 0;
    for (unsigned r = 0; r < rounds; r++) {
        long extra = 0, v = 0;
        for (int k = 0; k < 64 && scanf("%ld", &v) == 1; k++) extra = extra * 31 + v;
        digest = walk((int)depth, digest ^ (uint64_t)extra, (size_t)r);
        printf("round %u %016llx\n", r, (unsigned long long)digest);
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < words; i++) sum = mix(sum ^ mem[i]);
    printf("digest %016llx %016llx\n", (unsigned long long)digest, (unsigned long long)sum);
    return 0;
}
