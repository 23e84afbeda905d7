/* structure.h: structured control flow for a lowered function.
 *
 * kl_structure() turns the CFG of a lowered function into a tree of nested
 * statements in the shape SPIR-V (and WebAssembly) want: sequences,
 * two-armed ifs, blocks that can be left early and loops that can be
 * restarted, with branches only to the labels of enclosing blocks and
 * loops.  Every reachable IR block appears exactly once (its code is never
 * duplicated), and a block's code is nested inside the code of its
 * immediate dominator, so SSA values stay available where they are used.
 * The algorithm follows the dominator-tree translation of reducible flow
 * graphs: a block with several forward predecessors becomes the
 * continuation of a labelled block opened by its immediate dominator, a
 * loop header opens a loop, and blocks leaving the loop from its header
 * follow the loop (so `for` loops get their exit as break target).  Tail
 * branches that only fall through are removed and blocks left without a
 * branch to them are dissolved, so plain if/else needs no block at all.
 *
 * Requires a function whose every reachable block ends in a terminator;
 * irreducible flow (a loop entered other than through its header) is a
 * compile error.  Returns, raises and `unreachable` end a path anywhere.
 */
#ifndef KILN_STRUCTURE_H
#define KILN_STRUCTURE_H

#include "../ir/ir.h"

/* What a structure node is. */
typedef enum KlSKind {
    KL_S_CODE,      /* the instructions of IR block `block` except its
                       terminator (its params are read first) */
    KL_S_ARGS,      /* store the operands of jump `inst` into the params of
                       its target block (a `go` follows) */
    KL_S_IF,        /* IR block `block` ends in a branch: list `body` when
                       its condition is true, list `els` when false; after
                       either falls off its end, what follows the if runs */
    KL_S_BLOCK,     /* list `body`; `br label` leaves it, continuing with
                       what follows the block */
    KL_S_LOOP,      /* loop whose header is IR block `block`: list `body`,
                       restarted by `br label`, left by falling off the end
                       of the body or by `br label2` (when label2 >= 0) */
    KL_S_BR,        /* go to `label`: restart its loop or leave its block */
    KL_S_EXIT,      /* IR block `block`'s ret, raise or unreachable */
} KlSKind;

/* One statement of the tree; lists are chained through `next`. */
typedef struct KlSNode {
    KlSKind kind;   /* what it is */
    int32_t block;  /* CODE, IF, EXIT, LOOP: the IR block */
    int32_t inst;   /* ARGS: the jump instruction */
    int32_t label;  /* BLOCK, LOOP: its label; BR: the target label */
    int32_t label2; /* LOOP: label that leaves it, or -1 */
    int32_t body;   /* BLOCK, LOOP: first node of the body; IF: then-list */
    int32_t els;    /* IF: first node of the else-list */
    int32_t next;   /* next node in its list, -1 at the end */
} KlSNode;

/* The structured form of one function (memory in the module's arena). */
typedef struct KlStructure {
    KlSNode *nodes;     /* node table */
    int32_t nnodes;
    int32_t root;       /* first node of the function's list */
    int32_t nlabels;    /* labels are 0 .. nlabels-1 */
} KlStructure;

/* Computes the structured form of lowered function f into s.  0, or -1
 * with d filled (irreducible flow: compile error; out of memory). */
int kl_structure(KlFunc *f, KlStructure *s, KlDiag *d);

/* Indented text of the tree, for tests and debugging; malloc'ed, caller
 * frees; NULL when out of memory. */
char *kl_structure_print(const KlFunc *f, const KlStructure *s);

#endif /* KILN_STRUCTURE_H */
