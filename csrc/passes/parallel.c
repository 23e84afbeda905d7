/* parallel.c: outlines each outermost prange loop into a body function
 * that the thread pool runs in chunks.
 *
 * Works on typed Python-level IR (after infer and bounds, before lower).
 * For a loop `for i in prange(start, stop, step)` in F:
 *   - the loop's blocks move into a new function B(chunk, lo, hi,
 *     captured...) that runs iterations k in [lo, hi) with
 *     i = start + k * step, and stores each reduction's partial into
 *     partials[chunk];
 *   - F computes the iteration count, the chunking (a function of the count
 *     and of the code only, so results never depend on the thread count),
 *     runs `pfor`, and combines the partials in chunk order before leaving
 *     the loop;
 *   - where a chunk can prove its accesses a[i + c] with one guard, B holds
 *     a second, unchecked copy of the loop that the guard selects.
 * A value carried from one iteration to the next must be a reduction: it
 * is only ever combined with other values by one operator family (+ and -,
 * *, &, |, ^, min, max), possibly under conditions.  Anything else, and
 * break or return out of the loop, is a CompileError.  Nested prange loops
 * inside the outlined one run serially.
 */
#include "../compile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KL_MAX_CHUNKS 256
#define KL_MIN_FLAT_CHUNK 16384  /* see min_chunk */
/* The Vulkan target (KlOptions.target 1) runs each chunk as one GPU
 * invocation: loops without reductions get chunk size 1 up to this many
 * chunks, loops with reductions at most KL_VK_RED_CHUNKS chunks.  Their
 * partials live in device memory (runtime/vkexec.c), where a fixed-shape
 * tree combines them; the device leaves the combined value in F's
 * partials array, which then has exactly one element (the runtime writes
 * element 0 only), and F combines it with the value the loop started
 * from.  The body's partials params are marked in its param_reduce
 * (vk_reduce_op) so that the backend knows how to combine them. */
#define KL_VK_MAX_CHUNKS ((int64_t)1 << 30)
#define KL_VK_RED_CHUNKS ((int64_t)1 << 18)

/* Operator families a reduction may use. */
typedef enum Family {
    FAM_NONE, FAM_ADD, FAM_MUL, FAM_AND, FAM_OR, FAM_XOR, FAM_MIN, FAM_MAX
} Family;

/* One loop-carried value of the header. */
typedef struct Carried {
    int32_t param;      /* header bparam */
    int32_t init;       /* value entering from the preheader */
    Family fam;         /* reduction family; FAM_NONE: invariant */
    int32_t acc;        /* B: accumulator param of B's header */
    int32_t part;       /* F: partials array (scratch) */
    int32_t slot;       /* index of the partials array among captured */
    int32_t bpart;      /* B: the partials array param */
    int32_t ident;      /* B: the family's identity (a constant) */
} Carried;

/* An access a[x + c] along one axis that the fast copy's guard proves for
 * a whole chunk.  x is the prange counter i (start and stop -1): every
 * index of the chunk lies in [0, extent) when the last one does; or x is
 * the counter of an inner `for x in range(start, stop, step)` with a
 * positive step and start and stop defined before the prange loop: every
 * index lies in [start + c, stop + c); or there is no x (start and stop
 * KL_SPLIT_CONST): the index is the constant c >= 0. */
typedef struct Split {
    int32_t array;      /* F value of the array (defined before the loop) */
    int32_t axis;       /* which index */
    int64_t c;          /* constant offset from the counter */
    int32_t start;      /* inner counter: F values of its bounds, else -1 */
    int32_t stop;
} Split;

#define KL_SPLIT_CONST (-2)

typedef struct Par {
    KlFunc *f;          /* function holding the loop */
    KlDiag *d;
    int32_t loop;       /* the loop */
    int32_t header, exit, first;    /* blocks: test, exit, body entry */
    int32_t pre;        /* the preheader's jump into the header */
    int32_t nblocks;    /* F's blocks before the rewrite */
    int32_t counter;    /* header param: the range counter */
    int32_t start, stop, step;      /* loop bounds (values of F) */
    char *inloop;       /* block -> moves into B */
    Carried *car;       /* header params other than the counter */
    int32_t ncar;
    KlVec captured;     /* F values passed into B (after chunk, lo, hi) */
    KlFunc *b;          /* the body function */
    int32_t *vmap;      /* F value -> B value, -1 */
    int32_t *bmap;      /* F block -> B block, -1 */
    int32_t bheader;    /* B's loop header (of the copy being built) */
    int32_t k;          /* B: iteration number (header param) */
    int32_t params[3];  /* B: chunk, lo, hi */
    int32_t done;       /* B: block storing the partials */
    int32_t ninsts;     /* F's instructions before the rewrite */
    int32_t *base_vmap; /* vmap after the frame, the start of each copy */
    int64_t *proves;    /* F access -> axes the fast copy may prove */
    Split *splits;      /* the checks the fast copy's guard makes */
    int32_t nsplits;
    int fast;           /* the copy being built is the fast one */
} Par;

static int
fail_compile(Par *P, int line, const char *msg)
{
    return kl_compile_error(P->d, line, "%s", msg);
}

/* The instruction that ends block b. */
static KlInst *
term_of(KlFunc *f, int32_t b)
{
    int32_t t = kl_block_term(f, b);
    return t < 0 ? NULL : &f->insts[t];
}

/* Marks the blocks that move into B: those of the loop (but the header),
 * plus raising blocks they reach that lie outside it. */
static int
mark_blocks(Par *P)
{
    KlFunc *f = P->f;
    P->inloop = calloc((size_t)f->nblocks, 1);
    if (P->inloop == NULL) {
        return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        if (b != P->header && f->blocks[b].loop >= 0
            && kl_loop_within(f, f->blocks[b].loop, P->loop)) {
            P->inloop[b] = 1;
        }
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        KlInst *t = P->inloop[b] ? term_of(f, b) : NULL;
        int32_t succ[2] = {-1, -1};
        if (t != NULL && t->op == KL_OP_jump) {
            succ[0] = (int32_t)t->imm.i;
        }
        else if (t != NULL && t->op == KL_OP_branch) {
            succ[0] = (int32_t)t->imm.i;
            succ[1] = t->aux;
        }
        else if (t != NULL && t->op == KL_OP_ret) {
            return fail_compile(P, t->line, "return (or a break that ends "
                                "the function) inside a prange loop is not "
                                "supported");
        }
        for (int i = 0; i < 2; i++) {
            int32_t s = succ[i];
            if (s < 0 || s == P->header || P->inloop[s]) {
                continue;
            }
            KlInst *st = term_of(f, s);
            if (st != NULL && st->op == KL_OP_raise
                && f->blocks[s].nparams == 0) {
                P->inloop[s] = 1;   /* a raise outside the loop's blocks */
                continue;
            }
            return fail_compile(P, t->line, "break inside a prange loop is "
                                "not supported");
        }
    }
    return 0;
}

/* Finds the header's range test, the preheader edge and the counter. */
static int
find_shape(Par *P)
{
    KlFunc *f = P->f;
    KlInst *br = term_of(f, P->header);
    if (br == NULL || br->op != KL_OP_branch) {
        return kl_internal_error(P->d, "parallel: loop header without a test");
    }
    KlInst *test = &f->insts[br->args[0]];
    if (test->op != KL_OP_py_range_test || test->block != P->header) {
        return kl_internal_error(P->d, "parallel: prange header is not a "
                                 "range test");
    }
    P->first = (int32_t)br->imm.i;
    P->exit = br->aux;
    P->counter = test->args[0];
    P->stop = test->args[1];
    P->step = test->args[2];
    P->pre = -1;
    for (int32_t b = 0; b < f->nblocks; b++) {
        KlInst *t = term_of(f, b);
        if (b == P->header || P->inloop[b] || t == NULL
            || t->op != KL_OP_jump || t->imm.i != P->header) {
            continue;
        }
        if (P->pre >= 0) {
            return kl_internal_error(P->d, "parallel: two loop entries");
        }
        P->pre = kl_block_term(f, b);
    }
    if (P->pre < 0 || f->insts[P->counter].op != KL_OP_bparam
        || f->insts[P->counter].block != P->header) {
        return kl_internal_error(P->d, "parallel: unexpected loop shape");
    }
    return 0;
}

/* Value of header param p on entry, or v itself if v is no header param. */
static int32_t
entry_value(Par *P, int32_t v)
{
    KlFunc *f = P->f;
    if (f->insts[v].op != KL_OP_bparam || f->insts[v].block != P->header) {
        return v;
    }
    return f->insts[P->pre].args[f->insts[v].imm.i];
}

static Family
family_of(const KlInst *in, int *commutes)
{
    *commutes = 1;
    if (in->op == KL_OP_py_binop && in->imm.i == 0) {
        switch (in->aux) {
        case KL_BIN_ADD:
            return FAM_ADD;
        case KL_BIN_SUB:
            *commutes = 0;
            return FAM_ADD;
        case KL_BIN_MUL:
            return FAM_MUL;
        case KL_BIN_AND:
            return FAM_AND;
        case KL_BIN_OR:
            return FAM_OR;
        case KL_BIN_XOR:
            return FAM_XOR;
        default:
            return FAM_NONE;
        }
    }
    if (in->op == KL_OP_py_builtin && in->nargs == 2) {
        return in->aux == KL_BI_min ? FAM_MIN
               : in->aux == KL_BI_max ? FAM_MAX : FAM_NONE;
    }
    return FAM_NONE;
}

static const char not_reduction[] =
    "a variable carried from one prange iteration to the next must be a "
    "reduction (s += x, s *= x, s = min(s, x), s = max(s, x), &=, |=, ^=)";

/* Classifies header param c->param: follows every use of it inside the
 * loop; each must combine it (on the left, or either side for commuting
 * operators) with a value not derived from it by one family, or pass it
 * along a jump.  Returns 0 and sets c->fam (FAM_NONE: never changes). */
static int
classify(Par *P, Carried *c)
{
    KlFunc *f = P->f;
    char *in_set = calloc((size_t)f->ninsts, 1);
    int32_t *work = malloc(sizeof(int32_t) * (size_t)(f->ninsts + 1));
    if (in_set == NULL || work == NULL) {
        free(in_set);
        free(work);
        return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    int32_t nwork = 0, rc = 0;
    Family fam = FAM_NONE;
    int32_t pos = (int32_t)f->insts[c->param].imm.i;
    int changes = 0;
    for (int32_t b = 0; b < f->nblocks; b++) {
        KlInst *t = P->inloop[b] ? term_of(f, b) : NULL;
        if (t != NULL && t->op == KL_OP_jump && t->imm.i == P->header) {
            changes |= t->args[pos] != c->param;
        }
    }
    if (!changes) {
        nwork = 0;      /* an unchanging value: plain reads are fine */
    }
    else {
        in_set[c->param] = 1;
        work[nwork++] = c->param;
    }
    while (nwork > 0 && rc == 0) {
        int32_t v = work[--nwork];
        for (int32_t b = 0; b < f->nblocks && rc == 0; b++) {
            if (!P->inloop[b]) {
                continue;
            }
            KlVec *insts = &f->blocks[b].insts;
            for (int32_t p = 0; p < insts->len && rc == 0; p++) {
                KlInst *u = &f->insts[insts->items[p]];
                int32_t uid = insts->items[p];
                for (int32_t j = 0; j < u->nargs && rc == 0; j++) {
                    if (u->args[j] != v) {
                        continue;
                    }
                    if (u->op == KL_OP_jump) {
                        int32_t t = (int32_t)u->imm.i;
                        int32_t dest = f->blocks[t].insts.items[j];
                        if (t == P->header && dest != c->param) {
                            rc = fail_compile(P, u->line, not_reduction);
                        }
                        else if (t != P->header && !in_set[dest]) {
                            in_set[dest] = 1;
                            work[nwork++] = dest;
                        }
                        continue;
                    }
                    int commutes;
                    Family uf = family_of(u, &commutes);
                    int other = u->nargs == 2 ? u->args[1 - j] : -1;
                    if (uf == FAM_NONE || (fam != FAM_NONE && uf != fam)
                        || (j == 1 && !commutes) || other < 0
                        || in_set[other]) {
                        rc = fail_compile(P, u->line, not_reduction);
                        break;
                    }
                    if ((uf == FAM_MIN || uf == FAM_MAX) && j == 1
                        && f->insts[c->param].type->kind != KL_T_INT
                        && f->insts[c->param].type->kind != KL_T_BOOL) {
                        /* min(x, s) keeps the later of equal values and
                         * restarts after a NaN: not splittable */
                        rc = fail_compile(P, u->line, "in a prange loop, "
                                          "write the reduction as s = min(s, "
                                          "x) / max(s, x): with floats, "
                                          "min(x, s) cannot be split into "
                                          "chunks");
                        break;
                    }
                    fam = uf;
                    if ((uf == FAM_ADD || uf == FAM_MUL)
                        && u->type->kind == KL_T_FLOAT) {
                        u->imm.i = 2;   /* reassociable within a chunk */
                    }
                    if (!in_set[uid]) {
                        in_set[uid] = 1;
                        work[nwork++] = uid;
                    }
                }
            }
        }
    }
    /* every latch must hand back a value of the set */
    for (int32_t b = 0; b < f->nblocks && rc == 0 && changes; b++) {
        KlInst *t = P->inloop[b] ? term_of(f, b) : NULL;
        if (t != NULL && t->op == KL_OP_jump && t->imm.i == P->header
            && !in_set[t->args[pos]]) {
            rc = fail_compile(P, t->line, not_reduction);
        }
    }
    free(in_set);
    free(work);
    c->fam = fam;
    return rc;
}

static int
classify_all(Par *P)
{
    KlFunc *f = P->f;
    KlBlock *h = &f->blocks[P->header];
    P->car = calloc((size_t)h->nparams + 1, sizeof(Carried));
    if (P->car == NULL) {
        return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    for (int32_t i = 0; i < h->nparams; i++) {
        int32_t p = h->insts.items[i];
        if (p == P->counter) {
            continue;
        }
        Carried *c = &P->car[P->ncar++];
        c->param = p;
        c->init = f->insts[P->pre].args[i];
        c->part = c->acc = c->slot = -1;
        if (classify(P, c) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- building B ------------------------------------------------------- */

static int32_t
capture(Par *P, int32_t v)
{
    for (int32_t i = 0; i < P->captured.len; i++) {
        if (P->captured.items[i] == v) {
            return i;
        }
    }
    if (kl_vec_push(&P->f->mod->arena, &P->captured, v) < 0) {
        return -1;
    }
    return P->captured.len - 1;
}

/* Collects the F values the moved blocks use from outside them. */
static int
collect_captures(Par *P)
{
    KlFunc *f = P->f;
    /* start and step: constants are rebuilt in B (a constant step keeps
     * the body's accesses unit-stride for the vectoriser) */
    int32_t bounds[2] = {entry_value(P, P->counter), entry_value(P, P->step)};
    for (int i = 0; i < 2; i++) {
        if (f->insts[bounds[i]].op != KL_OP_const
            && capture(P, bounds[i]) < 0) {
            return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
        }
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        if (!P->inloop[b]) {
            continue;
        }
        KlVec *insts = &f->blocks[b].insts;
        for (int32_t p = 0; p < insts->len; p++) {
            KlInst *u = &f->insts[insts->items[p]];
            for (int32_t j = 0; j < u->nargs; j++) {
                int32_t v = u->args[j];
                KlInst *def = &f->insts[v];
                if (P->inloop[def->block] || v == P->counter
                    || def->op == KL_OP_const) {
                    continue;
                }
                int32_t e = entry_value(P, v);
                if (e != v) {
                    /* a header param: reductions map to accumulators;
                     * an unchanging one to its entry value */
                    int reduction = 0;
                    for (int32_t c = 0; c < P->ncar; c++) {
                        reduction |= P->car[c].param == v
                                     && P->car[c].fam != FAM_NONE;
                    }
                    if (reduction) {
                        continue;
                    }
                }
                if (f->insts[e].type != NULL
                    && f->insts[e].type->kind == KL_T_SHAPE) {
                    return fail_compile(P, u->line, "a.shape kept in a "
                                        "variable cannot be used inside a "
                                        "prange loop; index a.shape there");
                }
                if (capture(P, e) < 0) {
                    return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
                }
            }
        }
    }
    return 0;
}

static int32_t
emit_in(KlFunc *g, int32_t b, KlOp op, const KlType *t, int line, int aux,
        int32_t n, const int32_t *args)
{
    int32_t id = kl_emit(g, b, op, t, line, n, args);
    if (id >= 0) {
        g->insts[id].aux = aux;
    }
    return id;
}

static int32_t
binop(KlFunc *g, int32_t b, KlBinop op, const KlType *t, int line, int32_t x,
      int32_t y)
{
    int32_t args[2] = {x, y};
    return emit_in(g, b, KL_OP_py_binop, t, line, op, 2, args);
}

/* Identity of a reduction family for accumulator type t. */
static int32_t
identity(KlFunc *g, int32_t b, Family fam, const KlType *t, int line)
{
    int32_t id = kl_emit(g, b, KL_OP_const, t, line, 0, NULL);
    if (id < 0) {
        return -1;
    }
    KlInst *c = &g->insts[id];
    int is_int = t->kind == KL_T_INT || t->kind == KL_T_BOOL;
    int64_t imax = t->kind != KL_T_INT ? 1
                   : t->is_signed ? (int64_t)(UINT64_MAX >> (65 - t->bits))
                   : (int64_t)(UINT64_MAX >> (64 - t->bits));
    int64_t imin = t->kind == KL_T_INT && t->is_signed ? -imax - 1 : 0;
    double f;
    switch (fam) {
    case FAM_ADD:
    case FAM_OR:
    case FAM_XOR:
        c->imm.i = 0;
        f = fam == FAM_ADD ? -0.0 : 0.0;
        break;
    case FAM_MUL:
        c->imm.i = 1;
        f = 1.0;
        break;
    case FAM_AND:
        c->imm.i = t->kind == KL_T_BOOL ? 1 : -1;
        f = 0.0;
        break;
    case FAM_MIN:
        c->imm.i = imax;
        f = INFINITY;
        break;
    default:
        c->imm.i = imin;
        f = -INFINITY;
        break;
    }
    if (t->kind == KL_T_FLOAT) {
        c->imm.f = f;
    }
    else if (t->kind == KL_T_COMPLEX) {
        c->imm.c.re = f;
        c->imm.c.im = fam == FAM_MUL ? 0.0 : f;
    }
    else if (!is_int) {
        return kl_internal_error(NULL, "");
    }
    if (t->kind == KL_T_INT && !t->is_signed && fam == FAM_AND) {
        c->imm.i = imax;
    }
    return id;
}

/* Combines accumulator s with x by family fam (a Python-level op). */
static int32_t
combine(KlFunc *g, int32_t b, Family fam, const KlType *t, int line,
        int32_t s, int32_t x)
{
    static const KlBinop ops[] = {
        [FAM_ADD] = KL_BIN_ADD, [FAM_MUL] = KL_BIN_MUL,
        [FAM_AND] = KL_BIN_AND, [FAM_OR] = KL_BIN_OR, [FAM_XOR] = KL_BIN_XOR,
    };
    if (fam == FAM_MIN || fam == FAM_MAX) {
        int32_t args[2] = {s, x};
        return emit_in(g, b, KL_OP_py_builtin, t, line,
                       fam == FAM_MIN ? KL_BI_min : KL_BI_max, 2, args);
    }
    return binop(g, b, ops[fam], t, line, s, x);
}

/* Copies one instruction of F into B block nb, operands remapped. */
static int32_t
copy_inst(Par *P, int32_t nb, int32_t old)
{
    KlFunc *f = P->f, *g = P->b;
    const KlInst *in = &f->insts[old];
    int32_t *args = malloc(sizeof(int32_t) * (size_t)(in->nargs + 1));
    if (args == NULL) {
        return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    for (int32_t j = 0; j < in->nargs; j++) {
        args[j] = P->vmap[in->args[j]];
        if (args[j] < 0) {
            free(args);
            return kl_internal_error(P->d, "parallel: %%%d used before "
                                     "mapped", in->args[j]);
        }
    }
    int32_t id = kl_emit(g, nb, in->op, in->type, in->line, in->nargs, args);
    free(args);
    if (id < 0) {
        return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    g->insts[id].aux = in->aux;
    g->insts[id].imm = in->imm;
    if (P->fast && P->proves != NULL && old < P->ninsts) {
        g->insts[id].imm.i |= P->proves[old];
    }
    if (in->op == KL_OP_branch) {
        g->insts[id].imm.i = P->bmap[in->imm.i];
        g->insts[id].aux = P->bmap[in->aux];
    }
    else if (in->op == KL_OP_jump) {
        g->insts[id].imm.i = P->bmap[in->imm.i];
    }
    P->vmap[old] = id;
    return id;
}

/* A latch: `jump header(args)` becomes `jump bheader(k + 1, accs...)`. */
static int
copy_latch(Par *P, int32_t nb, const KlInst *in)
{
    KlFunc *g = P->b;
    int32_t one = kl_const_int(g, nb, kl_pyint, 1, in->line);
    int32_t *args = malloc(sizeof(int32_t) * (size_t)(P->ncar + 2));
    if (one < 0 || args == NULL) {
        free(args);
        return kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    int32_t n = 0;
    args[n++] = binop(g, nb, KL_BIN_ADD, kl_pyint, in->line, P->k, one);
    for (int32_t c = 0; c < P->ncar; c++) {
        if (P->car[c].fam != FAM_NONE) {
            int32_t pos = (int32_t)P->f->insts[P->car[c].param].imm.i;
            args[n++] = P->vmap[in->args[pos]];
        }
    }
    int32_t id = kl_jump(g, nb, P->bheader, n, args, in->line);
    free(args);
    return id < 0 ? kl_error(P->d, KL_DIAG_NOMEM, 0, "out of memory") : 0;
}

/* Copies into B's entry block the constants the moved blocks use. */
static int
copy_consts(Par *P)
{
    KlFunc *f = P->f;
    for (int32_t b = 0; b < P->nblocks; b++) {
        KlVec *insts = &f->blocks[b].insts;
        for (int32_t p = 0; P->inloop[b] && p < insts->len; p++) {
            KlInst *u = &f->insts[insts->items[p]];
            for (int32_t j = 0; j < u->nargs; j++) {
                int32_t v = u->args[j];
                if (f->insts[v].op == KL_OP_const && P->vmap[v] < 0
                    && copy_inst(P, 0, v) < 0) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* Vulkan: how the device combines the partials of a reduction of family
 * fam (KlFunc.param_reduce of the body, read by the SPIR-V backend). */
static uint8_t
vk_reduce_op(Family fam)
{
    static const uint8_t ops[] = {
        [FAM_NONE] = KL_RED_NONE, [FAM_ADD] = KL_RED_ADD,
        [FAM_MUL] = KL_RED_MUL, [FAM_AND] = KL_RED_AND,
        [FAM_OR] = KL_RED_OR, [FAM_XOR] = KL_RED_XOR,
        [FAM_MIN] = KL_RED_MIN, [FAM_MAX] = KL_RED_MAX,
    };
    return ops[fam];
}

static int copy_loops(Par *P);
static int copy_blocks(Par *P);

/* Creates B's params, the constants its blocks use, the reductions'
 * identities, and the `done` block storing the partials (reached with the
 * accumulators as its params). */
static int
build_frame(Par *P, int line)
{
    KlFunc *f = P->f, *g = P->b;
    int32_t ncap = P->captured.len;
    g->nparams = 3 + ncap;
    g->param_types = kl_arena_alloc(&f->mod->arena,
                                    sizeof(KlType *) * (size_t)g->nparams);
    g->param_names = kl_arena_alloc(&f->mod->arena,
                                    sizeof(char *) * (size_t)g->nparams);
    if (g->param_types == NULL || g->param_names == NULL) {
        return -1;
    }
    if (f->mod->options.target == 1) {
        g->param_reduce = kl_arena_alloc(&f->mod->arena, (size_t)g->nparams);
        if (g->param_reduce == NULL) {
            return -1;
        }
    }
    static const char *names[3] = {"chunk", "lo", "hi"};
    for (int32_t i = 0; i < g->nparams; i++) {
        Carried *part = NULL;
        for (int32_t c = 0; c < P->ncar; c++) {
            if (P->car[c].fam != FAM_NONE && P->car[c].slot == i - 3) {
                part = &P->car[c];
            }
        }
        const KlType *t = i < 3 ? kl_pyint
                          : part ? kl_type_array(f->insts[part->param].type,
                                                 1, KL_LAYOUT_C, 0)
                          : f->insts[P->captured.items[i - 3]].type;
        g->param_types[i] = t;
        g->param_names[i] = i < 3 ? names[i]
                            : part ? "partials" : "captured";
        if (part != NULL && g->param_reduce != NULL) {
            g->param_reduce[i] = vk_reduce_op(part->fam);
        }
        int32_t a = t ? kl_emit(g, 0, KL_OP_arg, t, line, 0, NULL) : -1;
        if (a < 0) {
            return -1;
        }
        g->insts[a].imm.i = i;
        if (i < 3) {
            P->params[i] = a;
        }
        else if (part != NULL) {
            part->bpart = a;
        }
        else {
            P->vmap[P->captured.items[i - 3]] = a;
        }
    }
    if (copy_consts(P) < 0) {
        return -1;
    }
    int32_t bounds[2] = {entry_value(P, P->counter), entry_value(P, P->step)};
    for (int i = 0; i < 2; i++) {
        if (P->vmap[bounds[i]] < 0 && copy_inst(P, 0, bounds[i]) < 0) {
            return -1;
        }
    }
    g->ret_type = kl_none;
    g->callees = f->callees;
    g->ncallees = f->ncallees;
    /* done(accs...): partials[chunk] = acc, for each reduction */
    if ((P->done = kl_block_new(g)) < 0) {
        return -1;
    }
    for (int32_t c = 0; c < P->ncar; c++) {
        Carried *cr = &P->car[c];
        if (cr->fam == FAM_NONE) {
            continue;
        }
        const KlType *t = f->insts[cr->param].type;
        cr->ident = identity(g, 0, cr->fam, t, line);
        int32_t acc = kl_bparam_add(g, P->done, t);
        int32_t st[3] = {cr->bpart, acc, P->params[0]};
        int32_t s = acc < 0 || cr->ident < 0 ? -1
                    : emit_in(g, P->done, KL_OP_py_setitem, kl_void, line, 0,
                              3, st);
        if (s < 0) {
            return -1;
        }
        g->insts[s].imm.i = 1;  /* chunk < nchunks <= partials' size */
    }
    return kl_emit(g, P->done, KL_OP_ret, kl_void, line, 0, NULL) < 0 ? -1
                                                                       : 0;
}

/* Emits one copy of the loop over k in [lo, hi) into B: a fresh block per
 * moved F block, its own header, and an exit into `done`.  With `fast`,
 * the accesses found by find_splits get their proof bits.  Returns the
 * block that enters the copy, or -1. */
static int32_t
build_loop(Par *P, int line, int fast)
{
    KlFunc *f = P->f, *g = P->b;
    memcpy(P->vmap, P->base_vmap, sizeof(int32_t) * (size_t)P->ninsts);
    for (int32_t b = 0; b < P->nblocks; b++) {
        if (P->inloop[b] && (P->bmap[b] = kl_block_new(g)) < 0) {
            return -1;
        }
    }
    int32_t pre = kl_block_new(g), head = kl_block_new(g);
    int32_t body = kl_block_new(g), exit = kl_block_new(g);
    if (pre < 0 || head < 0 || body < 0 || exit < 0) {
        return -1;
    }
    P->bheader = head;
    P->k = kl_bparam_add(g, head, kl_pyint);
    int32_t *init = malloc(sizeof(int32_t) * (size_t)(P->ncar + 2));
    int32_t *accs = malloc(sizeof(int32_t) * (size_t)(P->ncar + 2));
    if (init == NULL || accs == NULL || P->k < 0) {
        free(init);
        free(accs);
        return -1;
    }
    int32_t n = 0;
    init[n++] = P->params[1];
    for (int32_t c = 0; c < P->ncar; c++) {
        Carried *cr = &P->car[c];
        if (cr->fam != FAM_NONE) {
            cr->acc = kl_bparam_add(g, head, f->insts[cr->param].type);
            P->vmap[cr->param] = cr->acc;
            accs[n - 1] = cr->acc;
            init[n++] = cr->ident;
        }
    }
    int rc = kl_jump(g, pre, head, n, init, line) < 0
             || kl_jump(g, exit, P->done, n - 1, accs, line) < 0 ? -1 : 0;
    free(init);
    free(accs);
    /* header: k < hi ? body : exit */
    int32_t lt[2] = {P->k, P->params[2]};
    int32_t test = emit_in(g, head, KL_OP_py_cmp, kl_bool, line, KL_CMP_LT, 2,
                           lt);
    if (rc < 0 || test < 0 || kl_branch(g, head, test, body, exit, line) < 0) {
        return -1;
    }
    /* body: i = start + k * step, then the loop's first block */
    const KlType *it = f->insts[P->counter].type;
    int32_t start = P->vmap[entry_value(P, P->counter)];
    int32_t step = P->vmap[entry_value(P, P->step)];
    int32_t i = binop(g, body, KL_BIN_ADD, it, line, start,
                      binop(g, body, KL_BIN_MUL, it, line, P->k, step));
    if (i < 0 || kl_jump(g, body, P->bmap[P->first], 0, NULL, line) < 0) {
        return -1;
    }
    P->vmap[P->counter] = i;
    int32_t lp = kl_loop_new(g, head, body, exit, -1, 0);
    if (lp < 0) {
        return -1;
    }
    g->blocks[head].loop = g->blocks[body].loop = lp;
    g->loops[lp].checked = !fast && P->nsplits > 0;
    P->fast = fast;
    if (copy_loops(P) < 0 || copy_blocks(P) < 0) {
        return -1;
    }
    return pre;
}

/* Copies the loops nested in the outlined one, serial from now on. */
static int
copy_loops(Par *P)
{
    KlFunc *f = P->f, *g = P->b;
    int32_t outer = g->nloops - 1;
    int32_t *lmap = malloc(sizeof(int32_t) * (size_t)(f->nloops + 1));
    if (lmap == NULL) {
        return -1;
    }
    for (int32_t l = 0; l < f->nloops; l++) {
        lmap[l] = -1;
        KlLoop *lp = &f->loops[l];
        if (l == P->loop || !kl_loop_within(f, l, P->loop) || lp->header < 0) {
            continue;
        }
        int32_t parent = lp->parent == P->loop ? outer : lmap[lp->parent];
        lmap[l] = kl_loop_new(g, P->bmap[lp->header],
                              lp->body >= 0 ? P->bmap[lp->body] : -1,
                              lp->exit >= 0 && P->inloop[lp->exit]
                              ? P->bmap[lp->exit] : -1, parent, 0);
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        if (P->inloop[b]) {
            int32_t l = f->blocks[b].loop;
            g->blocks[P->bmap[b]].loop = l == P->loop || l < 0 ? outer
                                                             : lmap[l];
        }
    }
    free(lmap);
    return 0;
}

/* Copies the moved blocks of F into B, in an order where every value is
 * copied before its uses (reverse postorder from the loop's first block;
 * params of all blocks first, since jumps may reach back). */
static int
copy_blocks(Par *P)
{
    KlFunc *f = P->f, *g = P->b;
    for (int32_t b = 0; b < f->nblocks; b++) {
        if (!P->inloop[b]) {
            continue;
        }
        KlBlock *blk = &f->blocks[b];
        for (int32_t p = 0; p < blk->nparams; p++) {
            int32_t old = blk->insts.items[p];
            int32_t id = kl_bparam_add(g, P->bmap[b], f->insts[old].type);
            if (id < 0) {
                return -1;
            }
            g->insts[id].line = f->insts[old].line;
            P->vmap[old] = id;
        }
    }
    /* blocks in reverse postorder of F's CFG restricted to moved blocks */
    int32_t *order = malloc(sizeof(int32_t) * (size_t)(f->nblocks + 1));
    int32_t *stack = malloc(sizeof(int32_t) * (size_t)(2 * f->nblocks + 2));
    char *seen = calloc((size_t)f->nblocks, 1);
    int32_t norder = 0, nstack = 0, rc = 0;
    if (order == NULL || stack == NULL || seen == NULL) {
        rc = -1;
        goto out;
    }
    stack[nstack++] = P->first;
    seen[P->first] = 1;
    while (nstack > 0) {
        /* iterative DFS: push (block, state) as two ints */
        int32_t b = stack[nstack - 1];
        KlInst *t = term_of(f, b);
        int32_t succ[2] = {-1, -1};
        if (t->op == KL_OP_jump) {
            succ[0] = (int32_t)t->imm.i;
        }
        else if (t->op == KL_OP_branch) {
            succ[0] = t->aux;
            succ[1] = (int32_t)t->imm.i;
        }
        int pushed = 0;
        for (int i = 0; i < 2 && !pushed; i++) {
            int32_t s = succ[i];
            if (s >= 0 && P->inloop[s] && !seen[s]) {
                seen[s] = 1;
                stack[nstack++] = s;
                pushed = 1;
            }
        }
        if (!pushed) {
            order[norder++] = b;
            nstack--;
        }
    }
    for (int32_t i = norder - 1; i >= 0 && rc == 0; i--) {
        int32_t b = order[i];
        KlBlock *blk = &f->blocks[b];
        for (int32_t p = blk->nparams; p < blk->insts.len && rc == 0; p++) {
            int32_t old = blk->insts.items[p];
            KlInst *in = &f->insts[old];
            if (in->op == KL_OP_const) {
                continue;
            }
            if (in->op == KL_OP_jump && in->imm.i == P->header) {
                rc = copy_latch(P, P->bmap[b], in);
            }
            else {
                rc = copy_inst(P, P->bmap[b], old) < 0 ? -1 : 0;
            }
        }
    }
    /* moved blocks the walk never reached (dead code): end them */
    for (int32_t b = 0; b < f->nblocks && rc == 0; b++) {
        if (P->inloop[b] && !seen[b]
            && kl_emit(g, P->bmap[b], KL_OP_unreachable, kl_void, 0, 0,
                       NULL) < 0) {
            rc = -1;
        }
    }
out:
    free(order);
    free(stack);
    free(seen);
    return rc;
}

/* ---- rewriting F ------------------------------------------------------ */

static int32_t
prim(KlFunc *f, int32_t at, KlOp op, const KlType *t, int line, int aux,
     int32_t n, int32_t x, int32_t y, int32_t z)
{
    int32_t args[3] = {x, y, z};
    return emit_in(f, at, op, t, line, aux, n, args);
}

/* The iteration count of range(start, stop, step) (step != 0, checked
 * before the loop), computed with primitive ops on uint64 so that no
 * difference wraps: for step > 0, (stop - start - 1) // step + 1 when
 * start < stop, else 0; mirrored for step < 0.  Counts past 2**63 - 1
 * (which no loop runs to the end) saturate. */
static int32_t
iteration_count(KlFunc *f, int32_t at, int line, int32_t start, int32_t stop,
                int32_t step)
{
    const KlType *i64 = kl_i64, *u64 = kl_u64;
    int32_t s = prim(f, at, KL_OP_cast, i64, line, 0, 1, start, -1, -1);
    int32_t e = prim(f, at, KL_OP_cast, i64, line, 0, 1, stop, -1, -1);
    int32_t st = prim(f, at, KL_OP_cast, i64, line, 0, 1, step, -1, -1);
    int32_t zero = kl_const_int(f, at, i64, 0, line);
    int32_t uzero = kl_const_int(f, at, u64, 0, line);
    int32_t uone = kl_const_int(f, at, u64, 1, line);
    int32_t up = prim(f, at, KL_OP_cmp, kl_bool, line, KL_CMP_GT, 2, st, zero,
                      -1);
    int32_t lo = prim(f, at, KL_OP_select, i64, line, 0, 3, up, s, e);
    int32_t hi = prim(f, at, KL_OP_select, i64, line, 0, 3, up, e, s);
    int32_t some = prim(f, at, KL_OP_cmp, kl_bool, line, KL_CMP_LT, 2, lo, hi,
                        -1);
    int32_t ulo = prim(f, at, KL_OP_cast, u64, line, 0, 1, lo, -1, -1);
    int32_t uhi = prim(f, at, KL_OP_cast, u64, line, 0, 1, hi, -1, -1);
    int32_t ust = prim(f, at, KL_OP_cast, u64, line, 0, 1, st, -1, -1);
    int32_t neg = prim(f, at, KL_OP_sub, u64, line, 0, 2, uzero, ust, -1);
    int32_t mag = prim(f, at, KL_OP_select, u64, line, 0, 3, up, ust, neg);
    /* on an empty range, divide 0 instead of a wrapped difference */
    int32_t span = prim(f, at, KL_OP_select, u64, line, 0, 3, some,
                        prim(f, at, KL_OP_sub, u64, line, 0, 2, uhi, ulo, -1),
                        uone);
    int32_t q = prim(f, at, KL_OP_div, u64, line, 0, 2,
                     prim(f, at, KL_OP_sub, u64, line, 0, 2, span, uone, -1),
                     mag, -1);
    int32_t cnt = prim(f, at, KL_OP_add, u64, line, 0, 2, q, uone, -1);
    int32_t umax = kl_const_int(f, at, u64, INT64_MAX, line);
    int32_t big = prim(f, at, KL_OP_cmp, kl_bool, line, KL_CMP_GT, 2, cnt,
                       umax, -1);
    cnt = prim(f, at, KL_OP_select, u64, line, 0, 3, big, umax, cnt);
    cnt = prim(f, at, KL_OP_select, u64, line, 0, 3, some, cnt, uzero);
    return prim(f, at, KL_OP_cast, kl_pyint, line, 0, 1, cnt, -1, -1);
}

/* The most chunks a pfor of P may run (the partials' size): a function
 * of the target and of whether the loop has reductions. */
static int64_t
max_chunks(const Par *P)
{
    if (P->f->mod->options.target != 1) {
        return KL_MAX_CHUNKS;
    }
    for (int32_t i = 0; i < P->ncar; i++) {
        if (P->car[i].fam != FAM_NONE) {
            return KL_VK_RED_CHUNKS;
        }
    }
    return KL_VK_MAX_CHUNKS;
}

/* The fewest iterations a CPU chunk gets: a body without inner loops or
 * calls costs a few nanoseconds, and chunks of a few iterations would
 * spend their time on the shared chunk counter.  Other bodies, and the
 * GPU, take chunks of one iteration upwards. */
static int64_t
min_chunk(const Par *P)
{
    const KlFunc *f = P->f;
    if (f->mod->options.target == 1) {
        return 1;
    }
    for (int32_t l = 0; l < f->nloops; l++) {
        if (l != P->loop && kl_loop_within(f, l, P->loop)) {
            return 1;
        }
    }
    for (int32_t b = 0; b < P->nblocks; b++) {
        const KlVec *insts = &f->blocks[b].insts;
        for (int32_t p = 0; P->inloop[b] && p < insts->len; p++) {
            if (f->insts[insts->items[p]].op == KL_OP_py_call) {
                return 1;
            }
        }
    }
    return KL_MIN_FLAT_CHUNK;
}

/* What CPU chunk sizes should be a multiple of: passes/jam.c runs groups
 * of KL_JAM iterations of a body with inner loops and no reduction. */
static int64_t
chunk_multiple(const Par *P)
{
    const KlFunc *f = P->f;
    int inner = 0;
    for (int32_t l = 0; l < f->nloops; l++) {
        inner |= l != P->loop && kl_loop_within(f, l, P->loop);
    }
    for (int32_t i = 0; i < P->ncar; i++) {
        inner &= P->car[i].fam == FAM_NONE;
    }
    return f->mod->options.target == 0 && inner ? KL_JAM : 1;
}

/* Emits in F block `at`: niters, chunk size and chunk count. */
static int
emit_chunking(Par *P, int32_t at, int line, int32_t out[3])
{
    KlFunc *f = P->f;
    int32_t start = entry_value(P, P->counter);
    int32_t stop = entry_value(P, P->stop);
    int32_t step = entry_value(P, P->step);
    int32_t n = iteration_count(f, at, line, start, stop, step);
    int32_t one = kl_const_int(f, at, kl_pyint, 1, line);
    int32_t most = kl_const_int(f, at, kl_pyint, max_chunks(P), line);
    /* cs = max(least, ceil(n / most)), nch = ceil(n / cs) <= most, as
     * (n - 1) // d + 1 (which cannot wrap; 0 for n == 0) */
    int32_t least = kl_const_int(f, at, kl_pyint, min_chunk(P), line);
    int32_t n1 = binop(f, at, KL_BIN_SUB, kl_pyint, line, n, one);
    int32_t cs0 = binop(f, at, KL_BIN_ADD, kl_pyint, line,
                        binop(f, at, KL_BIN_FLOORDIV, kl_pyint, line, n1,
                              most), one);
    int32_t mc[2] = {cs0, least};
    int32_t cs = emit_in(f, at, KL_OP_py_builtin, kl_pyint, line, KL_BI_max, 2,
                         mc);
    int64_t g = chunk_multiple(P);
    if (g > 1) {
        /* cs = max(cs, min(cs rounded up to a multiple of g, n // 16)):
         * whole groups, while keeping about 16 chunks or more */
        int32_t gm1 = kl_const_int(f, at, kl_pyint, g - 1, line);
        int32_t gc = kl_const_int(f, at, kl_pyint, g, line);
        int32_t up = binop(f, at, KL_BIN_MUL, kl_pyint, line,
                           binop(f, at, KL_BIN_FLOORDIV, kl_pyint, line,
                                 binop(f, at, KL_BIN_ADD, kl_pyint, line, cs,
                                       gm1), gc), gc);
        int32_t few[2] = {up, binop(f, at, KL_BIN_FLOORDIV, kl_pyint, line, n,
                                    kl_const_int(f, at, kl_pyint, 16, line))};
        int32_t m2[2] = {cs, emit_in(f, at, KL_OP_py_builtin, kl_pyint, line,
                                     KL_BI_min, 2, few)};
        cs = emit_in(f, at, KL_OP_py_builtin, kl_pyint, line, KL_BI_max, 2,
                     m2);
    }
    int32_t nch = binop(f, at, KL_BIN_ADD, kl_pyint, line,
                        binop(f, at, KL_BIN_FLOORDIV, kl_pyint, line, n1, cs),
                        one);
    out[0] = nch;
    out[1] = cs;
    out[2] = n;
    return nch < 0 ? -1 : 0;
}

/* Ends block `at` with the jump into the (now test-free) header: the
 * counter gets its start value, carried values acc[i] (NULL: their entry
 * values). */
static int
enter_header(Par *P, int32_t at, int line, const int32_t *acc)
{
    KlFunc *f = P->f;
    KlBlock *h = &f->blocks[P->header];
    int32_t *args = malloc(sizeof(int32_t) * (size_t)(h->nparams + 1));
    if (args == NULL) {
        return -1;
    }
    for (int32_t i = 0, j = 0; i < h->nparams; i++, j++) {
        int32_t p = h->insts.items[i];
        if (p == P->counter) {
            args[i] = entry_value(P, P->counter);
            j--;
        }
        else {
            args[i] = acc ? acc[j] : P->car[j].init;
        }
    }
    int rc = kl_jump(f, at, P->header, h->nparams, args, line) < 0 ? -1 : 0;
    free(args);
    return rc;
}

/* The combine loop: for c in range(nch): s = s op partials[c]; then the
 * jump into the (now test-free) header with the combined values. */
static int
emit_combine(Par *P, int32_t at, int line, int32_t nch)
{
    KlFunc *f = P->f;
    int any = 0;
    for (int32_t i = 0; i < P->ncar; i++) {
        any |= P->car[i].fam != FAM_NONE;
    }
    if (!any) {
        return enter_header(P, at, line, NULL);
    }
    int32_t head = kl_block_new(f), body = kl_block_new(f);
    int32_t done = kl_block_new(f);
    if (head < 0 || body < 0 || done < 0) {
        return -1;
    }
    int32_t parent = f->loops[P->loop].parent;
    int32_t lp = kl_loop_new(f, head, body, done, parent, 0);
    if (lp < 0) {
        return -1;
    }
    f->blocks[head].loop = f->blocks[body].loop = lp;
    f->blocks[done].loop = parent;
    int32_t n = P->ncar + 1;
    int32_t *init = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)n);
    if (init == NULL || next == NULL || acc == NULL) {
        free(init);
        free(next);
        free(acc);
        return -1;
    }
    int32_t c = kl_bparam_add(f, head, kl_pyint);
    init[0] = kl_const_int(f, at, kl_pyint, 0, line);
    for (int32_t i = 0; i < P->ncar; i++) {
        acc[i] = P->car[i].fam == FAM_NONE ? P->car[i].init
                 : kl_bparam_add(f, head, f->insts[P->car[i].param].type);
    }
    int32_t k = 1;
    for (int32_t i = 0; i < P->ncar; i++) {
        if (P->car[i].fam != FAM_NONE) {
            init[k++] = P->car[i].init;
        }
    }
    int rc = kl_jump(f, at, head, k, init, line) < 0 ? -1 : 0;
    int32_t lt[2] = {c, nch};
    int32_t test = emit_in(f, head, KL_OP_py_cmp, kl_bool, line, KL_CMP_LT, 2,
                           lt);
    if (rc < 0 || test < 0 || kl_branch(f, head, test, body, done, line) < 0) {
        rc = -1;
    }
    int32_t one = kl_const_int(f, body, kl_pyint, 1, line);
    next[0] = binop(f, body, KL_BIN_ADD, kl_pyint, line, c, one);
    k = 1;
    for (int32_t i = 0; i < P->ncar && rc == 0; i++) {
        Carried *cr = &P->car[i];
        if (cr->fam == FAM_NONE) {
            continue;
        }
        const KlType *t = f->insts[cr->param].type;
        int32_t ga[2] = {cr->part, c};
        int32_t v = emit_in(f, body, KL_OP_py_getitem,
                            kl_type_strong(t), line, 0, 2, ga);
        if (v < 0) {
            rc = -1;
            break;
        }
        f->insts[v].imm.i = 1;      /* c < nch <= partials' size */
        /* subtraction partials are sums of negated terms: add them */
        next[k++] = combine(f, body, cr->fam, t, line, acc[i], v);
    }
    if (rc == 0 && kl_jump(f, body, head, k, next, line) < 0) {
        rc = -1;
    }
    if (rc == 0) {
        rc = enter_header(P, done, line, acc);
    }
    free(init);
    free(next);
    free(acc);
    return rc;
}

/* Replaces the loop in F: preheader -> chunking, scratch, pfor, combine ->
 * header (now a plain jump to the exit); the moved blocks end in
 * `unreachable`. */
static int
rewrite_parent(Par *P, int32_t bindex, int line)
{
    KlFunc *f = P->f;
    int32_t at = kl_block_new(f);
    if (at < 0) {
        return -1;
    }
    f->blocks[at].loop = f->loops[P->loop].parent;
    KlInst *pre = &f->insts[P->pre];
    pre->nargs = 0;
    pre->imm.i = at;
    int32_t ch[3];
    if (emit_chunking(P, at, line, ch) < 0) {
        return -1;
    }
    for (int32_t i = 0; i < P->ncar; i++) {
        Carried *cr = &P->car[i];
        if (cr->fam == FAM_NONE) {
            continue;
        }
        const KlType *t = kl_type_array(f->insts[cr->param].type, 1,
                                        KL_LAYOUT_C, 0);
        cr->part = t ? kl_emit(f, at, KL_OP_scratch, t, line, 0, NULL) : -1;
        if (cr->part < 0) {
            return -1;
        }
        /* Vulkan: one element, the device's combination (vkexec.c) */
        f->insts[cr->part].imm.i = f->mod->options.target == 1
                                   ? 1 : max_chunks(P);
        P->captured.items[cr->slot] = cr->part;
    }
    int32_t n = 3 + P->captured.len;
    int32_t *args = malloc(sizeof(int32_t) * (size_t)n);
    if (args == NULL) {
        return -1;
    }
    memcpy(args, ch, sizeof(ch));
    memcpy(args + 3, P->captured.items, sizeof(int32_t) * P->captured.len);
    int32_t pf = kl_emit(f, at, KL_OP_pfor, kl_void, line, n, args);
    free(args);
    if (pf < 0) {
        return -1;
    }
    f->insts[pf].imm.i = bindex;
    int32_t ncomb = ch[0];
    if (f->mod->options.target == 1) {
        /* Vulkan: the device combined the chunks' partials into element 0 */
        int32_t mc[2] = {ch[0], kl_const_int(f, at, kl_pyint, 1, line)};
        ncomb = mc[1] < 0 ? -1
                : emit_in(f, at, KL_OP_py_builtin, kl_pyint, line, KL_BI_min,
                          2, mc);
    }
    if (ncomb < 0 || emit_combine(P, at, line, ncomb) < 0) {
        return -1;
    }
    /* the header now only leads to the exit */
    KlInst *br = term_of(f, P->header);
    br->op = KL_OP_jump;
    br->nargs = 0;
    br->imm.i = P->exit;
    br->aux = 0;
    f->blocks[P->header].loop = f->loops[P->loop].parent;
    for (int32_t b = 0; b < P->nblocks; b++) {
        if (P->inloop[b]) {
            KlBlock *blk = &f->blocks[b];
            blk->insts.len = 0;
            blk->nparams = 0;
            blk->loop = -1;
            if (kl_emit(f, b, KL_OP_unreachable, kl_void, 0, 0, NULL) < 0) {
                return -1;
            }
        }
    }
    for (int32_t l = 0; l < f->nloops; l++) {
        if (kl_loop_within(f, l, P->loop) && l != P->loop) {
            f->loops[l].header = -1;
        }
    }
    f->loops[P->loop].header = -1;
    return 0;
}

static int
is_i64(const KlType *t)
{
    return t != NULL && t->kind == KL_T_INT && t->bits == 64 && t->is_signed;
}

/* v, or the one other value block parameter v always receives (loops
 * pass their unchanging values around as parameters). */
static int32_t
same_value(KlFunc *f, int32_t v)
{
    for (int depth = 0; depth < 8 && f->insts[v].op == KL_OP_bparam;
         depth++) {
        int32_t h = f->insts[v].block, only = -1;
        for (int32_t b = 0; b < f->nblocks; b++) {
            KlInst *t = term_of(f, b);
            if (t == NULL || t->op != KL_OP_jump || t->imm.i != h) {
                continue;
            }
            int32_t x = t->args[f->insts[v].imm.i];
            if (x != v && only >= 0 && x != only) {
                return v;
            }
            only = x != v ? x : only;
        }
        if (only < 0) {
            return v;
        }
        v = only;
    }
    return v;
}

/* If v is an extent (`a.shape[k]` for a constant k, `len(a)`) of an
 * array captured from before the loop, sets *arr (its F value) and
 * *axis. */
static int
captured_extent(Par *P, int32_t v, int32_t *arr, int32_t *axis)
{
    KlFunc *f = P->f;
    KlInst *in = &f->insts[v];
    int32_t a;
    int64_t k = 0;
    if (in->op == KL_OP_py_builtin && in->aux == KL_BI_len
        && in->nargs == 1) {
        a = in->args[0];
    }
    else if (in->op == KL_OP_py_getitem && in->nargs == 2) {
        KlInst *sh = &f->insts[same_value(f, in->args[0])];
        KlInst *c = &f->insts[same_value(f, in->args[1])];
        if (sh->op != KL_OP_py_getattr || sh->aux != KL_ATTR_SHAPE
            || c->op != KL_OP_const || !is_i64(c->type)) {
            return 0;
        }
        a = sh->args[0];
        k = c->imm.i;
    }
    else {
        return 0;
    }
    a = entry_value(P, same_value(f, a));
    const KlType *t = f->insts[a].type;
    if (t == NULL || t->kind != KL_T_ARRAY || t->ndim < 1 || k < -t->ndim
        || k >= t->ndim) {
        return 0;
    }
    for (int32_t i = 0; i < P->captured.len; i++) {
        if (P->captured.items[i] == a) {
            *arr = a;
            *axis = (int32_t)(k < 0 ? k + t->ndim : k);
            return 1;
        }
    }
    return 0;
}

/* The value of range() argument v as a value B can use before its loop:
 * a constant, a captured F value defined before the prange loop, or an
 * extent of a captured array (through int() conversions and unchanging
 * block parameters); -1 when there is none. */
static int32_t
invariant_arg(Par *P, int32_t v)
{
    KlFunc *f = P->f;
    for (int depth = 0; depth < 8; depth++) {
        v = same_value(f, v);
        KlInst *in = &f->insts[v];
        if (!is_i64(in->type)) {
            return -1;
        }
        int32_t arr, axis;
        if (in->op == KL_OP_const || captured_extent(P, v, &arr, &axis)) {
            return v;
        }
        if (!P->inloop[in->block] && in->block != P->header) {
            for (int32_t i = 0; i < P->captured.len; i++) {
                if (P->captured.items[i] == v) {
                    return v;
                }
            }
            return -1;
        }
        if (in->op != KL_OP_py_builtin || in->aux != KL_BI_int
            || in->imm.i != 1 || in->nargs != 1) {
            return -1;
        }
        v = in->args[0];
    }
    return -1;
}

/* Is v the (saturating) advance x + step of a range counter x? */
static int
is_advance(KlFunc *f, int32_t v, int32_t x, int32_t step)
{
    KlInst *in = &f->insts[v];
    return in->op == KL_OP_py_binop && in->aux == KL_BIN_ADD && in->imm.i == 1
           && same_value(f, in->args[0]) == x
           && same_value(f, in->args[1]) == same_value(f, step);
}

/* Whether x, a parameter of an inner loop's header, is that loop's range
 * counter with a positive step, taking only its start value from outside
 * the loop and its advances from inside, and whether block blk lies in
 * that loop's body (where x < stop).  Fills sp->start and sp->stop. */
static int
inner_counter(Par *P, int32_t x, int32_t blk, Split *sp)
{
    KlFunc *f = P->f;
    int32_t h = f->insts[x].block;
    int32_t l = f->blocks[h].loop;
    KlInst *br = term_of(f, h);
    if (f->insts[x].op != KL_OP_bparam || !P->inloop[h] || l < 0
        || f->loops[l].header != h || blk == h
        || !kl_loop_within(f, f->blocks[blk].loop, l) || br == NULL
        || br->op != KL_OP_branch) {
        return 0;
    }
    KlInst *test = &f->insts[br->args[0]];
    if (test->op != KL_OP_py_range_test) {
        return 0;
    }
    KlInst *step = &f->insts[same_value(f, test->args[2])];
    int32_t out = f->blocks[br->aux].loop;
    if (same_value(f, test->args[0]) != x
        || step->op != KL_OP_const || step->imm.i <= 0
        || (out >= 0 && kl_loop_within(f, out, l))) {
        return 0;
    }
    int32_t start = -1;
    for (int32_t b = 0; b < f->nblocks; b++) {
        KlInst *t = term_of(f, b);
        if (t == NULL || t->op != KL_OP_jump || t->imm.i != h) {
            continue;
        }
        int32_t a = t->args[f->insts[x].imm.i];
        int inside = kl_loop_within(f, f->blocks[b].loop, l);
        if (inside && !is_advance(f, a, x, test->args[2])) {
            return 0;
        }
        if (!inside && ((a = invariant_arg(P, a)) < 0
                        || (start >= 0 && a != start))) {
            return 0;
        }
        start = inside ? start : a;
    }
    sp->start = start;
    sp->stop = invariant_arg(P, test->args[1]);
    return start >= 0 && sp->stop >= 0;
}

/* The split of index idx of an access in block blk, if it has one. */
static int
find_split(Par *P, int32_t blk, int32_t idx, int counter_ok, Split *sp)
{
    KlFunc *f = P->f;
    KlInst *in = &f->insts[same_value(f, idx)];
    int32_t x = idx;
    sp->c = 0;
    sp->start = sp->stop = -1;
    if (in->op == KL_OP_const && is_i64(in->type) && in->imm.i >= 0
        && in->imm.i < INT32_MAX) {
        sp->c = in->imm.i;
        sp->start = sp->stop = KL_SPLIT_CONST;
        return 1;
    }
    in = &f->insts[idx];
    if (in->op == KL_OP_py_binop && in->imm.i == 0 && is_i64(in->type)
        && (in->aux == KL_BIN_ADD || in->aux == KL_BIN_SUB)) {
        for (int j = 0; j < 2; j++) {
            KlInst *k = &f->insts[same_value(f, in->args[1 - j])];
            if (k->op == KL_OP_const && is_i64(k->type)
                && k->imm.i > -INT32_MAX && k->imm.i < INT32_MAX
                && (j == 0 || in->aux == KL_BIN_ADD)) {
                x = in->args[j];
                sp->c = in->aux == KL_BIN_SUB ? -k->imm.i : k->imm.i;
                break;
            }
        }
        if (x == idx) {
            return 0;
        }
    }
    if (x == P->counter) {
        return counter_ok && sp->c >= 0;
    }
    return inner_counter(P, same_value(f, x), blk, sp);
}

/* Whether the guard already makes split sp's test. */
static int
seen_split(const Par *P, const Split *sp)
{
    for (int32_t i = 0; i < P->nsplits; i++) {
        const Split *o = &P->splits[i];
        if (o->array == sp->array && o->axis == sp->axis && o->c == sp->c
            && o->start == sp->start && o->stop == sp->stop) {
            return 1;
        }
    }
    return 0;
}

/* Finds the checked accesses a[x + c] (see Split; a defined before the
 * loop) that a chunk can prove at once.  B then holds two copies of the
 * loop: one without those checks, taken when the guard holds, and the
 * checked one, which raises where CPython would. */
static int
find_splits(Par *P)
{
    KlFunc *f = P->f;
    KlInst *start = &f->insts[entry_value(P, P->counter)];
    KlInst *step = &f->insts[entry_value(P, P->step)];
    int counter_ok = start->op == KL_OP_const && start->imm.i >= 0
                     && step->op == KL_OP_const && step->imm.i > 0;
    P->proves = calloc((size_t)f->ninsts + 1, sizeof(int64_t));
    P->splits = malloc(sizeof(Split) * 32);
    if (P->proves == NULL || P->splits == NULL) {
        return -1;
    }
    for (int32_t b = 0; b < P->nblocks; b++) {
        KlVec *insts = &f->blocks[b].insts;
        for (int32_t p = 0; P->inloop[b] && p < insts->len; p++) {
            int32_t id = insts->items[p];
            KlInst *u = &f->insts[id];
            int first = u->op == KL_OP_py_getitem ? 1
                        : u->op == KL_OP_py_setitem ? 2 : 0;
            if (first == 0 || P->inloop[f->insts[u->args[0]].block]
                || f->insts[u->args[0]].type->kind != KL_T_ARRAY) {
                continue;
            }
            for (int32_t j = first; j < u->nargs && P->nsplits < 32; j++) {
                int axis = j - first;
                Split *sp = &P->splits[P->nsplits];
                if ((u->imm.i >> axis & 1)
                    || !find_split(P, b, u->args[j], counter_ok, sp)) {
                    continue;
                }
                P->proves[id] |= (int64_t)1 << axis;
                sp->array = entry_value(P, u->args[0]);
                sp->axis = axis;
                P->nsplits += !seen_split(P, sp);
            }
        }
    }
    return 0;
}

/* B's extent of captured F array arr along axis, for the guard. */
static int32_t
guard_dim(Par *P, int32_t arr, int32_t axis, int line)
{
    KlFunc *g = P->b;
    int32_t a = P->vmap[arr];
    int32_t shape = emit_in(g, 0, KL_OP_py_getattr,
                            kl_type_shape(P->f->insts[arr].type->ndim), line,
                            KL_ATTR_SHAPE, 1, &a);
    int32_t ax[2] = {shape, kl_const_int(g, 0, kl_pyint, axis, line)};
    return a < 0 || shape < 0 || ax[1] < 0 ? -1
           : emit_in(g, 0, KL_OP_py_getitem, kl_pyint, line, 0, 2, ax);
}

/* B's value of F value v (see invariant_arg) for the guard. */
static int32_t
guard_value(Par *P, int32_t v, int line)
{
    KlInst *in = &P->f->insts[v];
    int32_t arr, axis;
    if (in->op == KL_OP_const) {
        return kl_const_int(P->b, 0, kl_pyint, in->imm.i, line);
    }
    return captured_extent(P, v, &arr, &axis) ? guard_dim(P, arr, axis, line)
                                               : P->vmap[v];
}

/* The guard's test of an inner counter's split, of extent dim: the loop
 * runs no iteration, or every index x + c lies in [0, dim). */
static int32_t
inner_guard(Par *P, const Split *sp, int32_t dim, int line)
{
    KlFunc *g = P->b;
    int32_t start = guard_value(P, sp->start, line);
    int32_t stop = guard_value(P, sp->stop, line);
    int32_t empty[2] = {stop, start};
    int32_t low[2] = {start, kl_const_int(g, 0, kl_pyint, -sp->c, line)};
    int32_t high[2] = {stop, binop(g, 0, KL_BIN_SUB, kl_pyint, line, dim,
                                   kl_const_int(g, 0, kl_pyint, sp->c,
                                                line))};
    if (start < 0 || stop < 0 || low[1] < 0 || high[1] < 0) {
        return -1;
    }
    int32_t in = binop(g, 0, KL_BIN_AND, kl_bool, line,
                       emit_in(g, 0, KL_OP_py_cmp, kl_bool, line, KL_CMP_GE,
                               2, low),
                       emit_in(g, 0, KL_OP_py_cmp, kl_bool, line, KL_CMP_LE,
                               2, high));
    return binop(g, 0, KL_BIN_OR, kl_bool, line,
                 emit_in(g, 0, KL_OP_py_cmp, kl_bool, line, KL_CMP_LE, 2,
                         empty),
                 in);
}

/* The guard's test of a split of the prange counter: the chunk's last
 * index `last` plus c lies in [0, dim). */
static int32_t
counter_guard(Par *P, const Split *sp, int32_t last, int32_t dim, int line)
{
    KlFunc *g = P->b;
    int32_t idx = binop(g, 0, KL_BIN_ADD, kl_pyint, line, last,
                        kl_const_int(g, 0, kl_pyint, sp->c, line));
    int32_t lt[2] = {idx, dim};
    /* idx wraps below zero only past 2**63: then take the checked copy */
    int32_t ge[2] = {idx, kl_const_int(g, 0, kl_pyint, 0, line)};
    return binop(g, 0, KL_BIN_AND, kl_bool, line,
                 emit_in(g, 0, KL_OP_py_cmp, kl_bool, line, KL_CMP_LT, 2, lt),
                 emit_in(g, 0, KL_OP_py_cmp, kl_bool, line, KL_CMP_GE, 2,
                         ge));
}

/* B's guard: each split's indices lie in [0, extent) (see Split). */
static int32_t
emit_guard(Par *P, int line)
{
    KlFunc *g = P->b;
    int32_t one = kl_const_int(g, 0, kl_pyint, 1, line);
    const KlType *it = P->f->insts[P->counter].type;
    int32_t last = binop(g, 0, KL_BIN_ADD, it, line,
                         P->vmap[entry_value(P, P->counter)],
                         binop(g, 0, KL_BIN_MUL, it, line,
                               binop(g, 0, KL_BIN_SUB, kl_pyint, line,
                                     P->params[2], one),
                               P->vmap[entry_value(P, P->step)]));
    int32_t ok = -1;
    for (int32_t i = 0; i < P->nsplits; i++) {
        const Split *sp = &P->splits[i];
        int32_t dim = guard_dim(P, sp->array, sp->axis, line);
        int32_t c[2] = {kl_const_int(g, 0, kl_pyint, sp->c, line), dim};
        int32_t in = dim < 0 ? -1
                     : sp->start == KL_SPLIT_CONST
                     ? emit_in(g, 0, KL_OP_py_cmp, kl_bool, line, KL_CMP_LT,
                               2, c)
                     : sp->start >= 0 ? inner_guard(P, sp, dim, line)
                     : counter_guard(P, sp, last, dim, line);
        ok = ok < 0 ? in : binop(g, 0, KL_BIN_AND, kl_bool, line, ok, in);
        if (in < 0 || ok < 0) {
            return -1;
        }
    }
    return ok;
}

/* B's loop: one copy, or the fast and the checked copy behind a guard. */
static int
build_body(Par *P, int line)
{
    KlFunc *g = P->b;
    memcpy(P->base_vmap, P->vmap, sizeof(int32_t) * (size_t)P->ninsts);
    if (P->nsplits == 0) {
        int32_t pre = build_loop(P, line, 0);
        return pre < 0 || kl_jump(g, 0, pre, 0, NULL, line) < 0 ? -1 : 0;
    }
    int32_t guard = emit_guard(P, line);
    int32_t fast = guard < 0 ? -1 : build_loop(P, line, 1);
    int32_t slow = fast < 0 ? -1 : build_loop(P, line, 0);
    if (slow < 0 || kl_branch(g, 0, guard, fast, slow, line) < 0) {
        return -1;
    }
    return 0;
}

/* Outlines loop l of f. */
static int
outline(KlFunc *f, int32_t l, KlDiag *d)
{
    Par P = {0};
    P.f = f;
    P.d = d;
    P.loop = l;
    P.header = f->loops[l].header;
    P.nblocks = f->nblocks;
    int line = f->insts[kl_block_term(f, P.header)].line;
    int rc = -1;
    if (mark_blocks(&P) < 0 || find_shape(&P) < 0 || classify_all(&P) < 0
        || collect_captures(&P) < 0) {
        goto out;
    }
    /* each reduction's partials array is captured too: a slot that
     * rewrite_parent fills with the scratch array */
    for (int32_t i = 0; i < P.ncar; i++) {
        if (P.car[i].fam != FAM_NONE) {
            P.car[i].slot = P.captured.len;
            if (kl_vec_push(&f->mod->arena, &P.captured, -1) < 0) {
                goto out;
            }
        }
    }
    char *name = kl_arena_printf(&f->mod->arena, "%s.prange%d", f->name, line);
    P.b = name ? kl_func_new(f->mod, name) : NULL;
    P.vmap = malloc(sizeof(int32_t) * (size_t)(f->ninsts + 1));
    P.bmap = malloc(sizeof(int32_t) * (size_t)(P.nblocks + 1));
    if (P.b == NULL || P.vmap == NULL || P.bmap == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto out;
    }
    P.b->filename = f->filename;
    P.b->firstline = line;
    memset(P.vmap, 0xff, sizeof(int32_t) * (size_t)(f->ninsts + 1));
    memset(P.bmap, 0xff, sizeof(int32_t) * (size_t)(P.nblocks + 1));
    int32_t bindex = f->mod->nfuncs - 1;
    P.ninsts = f->ninsts;
    P.base_vmap = malloc(sizeof(int32_t) * (size_t)(f->ninsts + 1));
    if (P.base_vmap == NULL || find_splits(&P) < 0 || build_frame(&P, line) < 0
        || build_body(&P, line) < 0) {
        if (d->kind == KL_DIAG_NONE) {
            kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        }
        goto out;
    }
    if (rewrite_parent(&P, bindex, line) < 0) {
        if (d->kind == KL_DIAG_NONE) {
            kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        }
        goto out;
    }
    rc = 0;
out:
    free(P.inloop);
    free(P.car);
    free(P.vmap);
    free(P.bmap);
    free(P.base_vmap);
    free(P.proves);
    free(P.splits);
    return rc;
}

int
kl_parallel(KlFunc *f, KlDiag *d)
{
    for (int32_t l = 0; l < f->nloops; l++) {
        KlLoop *lp = &f->loops[l];
        if (!lp->parallel || lp->header < 0) {
            continue;
        }
        int nested = 0;
        for (int32_t p = lp->parent; p >= 0; p = f->loops[p].parent) {
            nested |= f->loops[p].parallel;
        }
        if (nested) {
            continue;
        }
        if (outline(f, l, d) < 0) {
            return -1;
        }
    }
    return 0;
}
