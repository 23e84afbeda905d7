/* steps.h: the Vulkan target's split of an entry function at its `pfor`s,
 * so that its serial code runs on the device, between the loops.
 *
 * kl_steps() turns the entry F = funcs[0] with pfors P_1 .. P_K into K + 1
 * step functions: S_0 runs F from its start, S_k from just after P_k.  A
 * step runs until F would return or raise, or until it reaches a pfor P_j,
 * where it *suspends*: it stores P_j's operands and j into the step state
 * and returns.  The host then runs P_j's loop (one GPU dispatch of its
 * body) and continues with S_j.  Every value that lives across a pfor is
 * kept in the state: stored after its definition and loaded before its
 * uses, in every step, so each step is ordinary single-entry SSA code
 * (F's blocks that a step cannot reach are copied but never emitted).
 *
 * Step function params: F's params, then one 1-d C-contiguous array per
 * state type (its cells), then one array per `scratch` of F (the partials
 * of reductions, which must outlive a step).  State array 0 has type
 * int64; its cell 0 receives j when a step suspends at P_j and is left
 * alone when the step returns (the host zeroes it before each step).
 */
#ifndef KILN_STEPS_H
#define KILN_STEPS_H

#include "../ir/ir.h"

/* Where the host finds one operand of a suspended pfor. */
typedef enum KlStepSrc {
    KL_STEP_NONE,       /* None: no value */
    KL_STEP_CELL,       /* cell `slot` of state array `index` */
    KL_STEP_PARAM,      /* array parameter `index` of F */
    KL_STEP_SCRATCH,    /* scratch array `index` */
} KlStepSrc;

typedef struct KlStepOperand {
    uint8_t src;        /* KlStepSrc */
    int32_t index;
    int32_t slot;
} KlStepOperand;

/* One pfor of F: its body and its operands (nchunks, cs, niters, then the
 * captured values, as ops.h describes `pfor`). */
typedef struct KlStepPfor {
    int32_t body;           /* module function of the loop body */
    int32_t nops;
    KlStepOperand *ops;
} KlStepPfor;

/* The split (memory in the module's arena). */
typedef struct KlSteps {
    int32_t first;          /* S_k is m->funcs[first + k] */
    int32_t npfors;         /* K */
    KlStepPfor *pfors;      /* P_j at [j - 1] */
    const KlType **state;   /* element type of each state array */
    int32_t *ncells;        /* its number of cells */
    int32_t nstate;
    const KlType **scratch; /* array type of each scratch array */
    int64_t *scratch_len;   /* its number of elements */
    int32_t nscratch;
} KlSteps;

/* Splits lowered module m's entry into steps appended to m->funcs, after
 * inlining into it every call of a function that runs a pfor (directly
 * or through its own calls), so that the entry holds all its pfors.  1
 * with *out filled; 0 when the entry runs no pfor; -1 with d filled: a
 * compile error for a value crossing a pfor that the state cannot hold
 * (an array other than a parameter), out of memory. */
int kl_steps(KlModule *m, KlSteps *out, KlDiag *d);

#endif /* KILN_STEPS_H */
