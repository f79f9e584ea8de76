/* edgenode.h: the host API of an edgenode task (wasm32-wasi).
 *
 * A task is a WASI command: it reads its input on stdin, writes its result on stdout,
 * sees argv/env from its spec, and may read /data only if its spec grants a directory.
 * Besides WASI it may import these functions from the host module "edgenode".
 * Build: clang --target=wasm32-wasi --sysroot=/usr -O2 -Iinclude -o task.wasm task.c
 * Full ABI: docs/task-abi.md
 */
#ifndef EDGENODE_H
#define EDGENODE_H

#include <stdint.h>

#define EDGE_IMPORT(name) __attribute__((import_module("edgenode"), import_name(name)))

/* Error codes returned (negative) by edge_infer. */
#define EDGE_ERR_NO_MODEL (-1)        /* slot not granted by the task spec */
#define EDGE_ERR_INPUT (-2)           /* input bytes do not fit the model's input */
#define EDGE_ERR_OUTPUT_TOO_SMALL (-3) /* out_cap is smaller than the output; nothing written */
#define EDGE_ERR_FAILED (-4)          /* the model failed to run */
#define EDGE_ERR_BOUNDS (-5)          /* a pointer/length lies outside linear memory */

/* Number of model slots the task spec grants (slot i = the i-th model of the spec). */
EDGE_IMPORT("model_count") int32_t edge_model_count(void);

/* Run the model in `slot` on the raw little-endian bytes of its single input tensor
 * (a dynamic batch dimension is inferred from in_len). Writes the raw bytes of the
 * model's first output to out (capacity out_cap) and returns their count, or a
 * negative EDGE_ERR_* code. */
EDGE_IMPORT("infer")
int32_t edge_infer(int32_t slot, const void *in, int32_t in_len, void *out, int32_t out_cap);

/* Safe points (docs/task-abi.md, "Checkpoints and migration"). A task that calls
 * edge_safepoint() in its main loop can be checkpointed there, moved to another node (of
 * any CPU architecture) and resumed. A module that imports "safepoint" is rewritten by the
 * node with binaryen's Asyncify, which stores the call stack in `buf` (in the task's own
 * linear memory) while it unwinds; EDGE_SAFEPOINT_BYTES bounds the stack depth that fits
 * (an unwind that needs more traps the task). The first 16 bytes of `buf` are the host's:
 * bytes 8..11 count down the safe points the task may pass without calling the host (the
 * host sets the count so that it is called about once a millisecond of work), so a safe
 * point costs a load, a compare and a store. edge_safepoint() returns 0, or 1 on the first
 * call after the task was resumed from a checkpoint. Call it often (every microsecond of
 * work is fine) and from anywhere: a safe point may sit deep in recursion. */
EDGE_IMPORT("safepoint") int32_t edge__safepoint(void *buf, int32_t len);

#ifndef EDGE_SAFEPOINT_BYTES
#define EDGE_SAFEPOINT_BYTES 65536
#endif

#ifdef EDGE_NO_SAFEPOINTS
/* Build without the import: the task runs as any other (no rewrite, no checkpoints). */
static inline int32_t edge_safepoint(void) { return 0; }
#else
static inline int32_t edge_safepoint(void) {
    static _Alignas(16) unsigned char edge__unwind_buf[EDGE_SAFEPOINT_BYTES];
    volatile int32_t *countdown = (volatile int32_t *)(edge__unwind_buf + 8);
    if (*countdown > 0) {
        *countdown -= 1;
        return 0;
    }
    return edge__safepoint(edge__unwind_buf, (int32_t)sizeof edge__unwind_buf);
}
#endif

#endif
