/* bounds.c: proves array indices in range on the typed Python-level IR.
 *
 * kl_bounds() runs between infer and lower.  For each py_getitem /
 * py_setitem on an array it tries to prove, axis by axis, that the index
 * lies in [0, extent) and then sets bit k of the instruction's imm.i, so
 * lower emits neither the negative-index wrap nor the bounds check there.
 *
 * What is proven (and nothing else; a wrong proof is a memory-safety bug):
 * an index `i + c` (c a small constant, possibly 0 or negative) where i is
 * the counter of a `for i in range(start, stop, step)` loop, the access is
 * dominated by that loop's body, step is a positive constant, start is
 * known to be >= -c, and stop is bounded by the extent of the same array
 * along the same axis minus at least c.  Extents are `len(a)` (axis 0),
 * `a.shape[k]` for a constant k, `a.size` of a 1-d array, `E - d` / `E + d`
 * for such an extent E and constant d, and min(...) of such bounds, seen
 * through variables, range-argument conversions and block parameters that
 * always carry one value.  Extents of distinct arrays are never assumed
 * equal.
 */
#include "../compile.h"

#include <string.h>

/* Largest constant offset considered; keeps all arithmetic far from int64
 * overflow. */
#define MAX_OFFSET ((int64_t)1 << 31)
/* Recursion limit when chasing values. */
#define MAX_DEPTH 8
/* Most extent facts kept for one stop value. */
#define MAX_FACTS 8

/* `value + d <= extent of array arr along axis`. */
typedef struct Fact {
    int32_t arr;            /* the array's (resolved) value id */
    int32_t axis;           /* its axis */
    int64_t d;              /* offset the bound allows */
} Fact;

typedef struct Bounds {
    KlFunc *f;
    KlDiag *d;
    KlArena *a;
    KlVec *preds;           /* per block: predecessor blocks */
    int32_t *idom;          /* per block: immediate dominator, -1 if none */
    int32_t *rpo_index;     /* per block: reverse postorder number, -1 */
    int32_t *res;           /* per value: what resolve() found, -1 */
} Bounds;

/* ---- CFG and dominators ---------------------------------------------- */

static int
build_preds(Bounds *B)
{
    KlFunc *f = B->f;
    B->preds = kl_arena_alloc(B->a, sizeof(KlVec) * (size_t)f->nblocks);
    if (B->preds == NULL) {
        return -1;
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        int32_t s[2];
        int n = kl_block_succs(f, b, s);
        for (int k = 0; k < n; k++) {
            if (s[k] < 0 || s[k] >= f->nblocks
                || kl_vec_push(B->a, &B->preds[s[k]], b) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Nearest common dominator of a and b in the partially built tree. */
static int32_t
intersect(const Bounds *B, int32_t a, int32_t b)
{
    while (a != b) {
        while (B->rpo_index[a] > B->rpo_index[b]) {
            a = B->idom[a];
        }
        while (B->rpo_index[b] > B->rpo_index[a]) {
            b = B->idom[b];
        }
    }
    return a;
}

/* Immediate dominators of all blocks reachable from the entry (iterative
 * algorithm over reverse postorder); unreachable blocks get -1. */
static int
build_dominators(Bounds *B)
{
    KlFunc *f = B->f;
    int32_t n = f->nblocks;
    int32_t *order = kl_arena_alloc(B->a, sizeof(int32_t) * (size_t)n);
    int32_t *stack = kl_arena_alloc(B->a, sizeof(int32_t) * (size_t)n);
    uint8_t *next = kl_arena_alloc(B->a, (size_t)n);
    B->idom = kl_arena_alloc(B->a, sizeof(int32_t) * (size_t)n);
    B->rpo_index = kl_arena_alloc(B->a, sizeof(int32_t) * (size_t)n);
    if (!order || !stack || !next || !B->idom || !B->rpo_index) {
        return -1;
    }
    /* depth-first postorder; next[b] counts the successors visited + 1 */
    int32_t depth = 0, npost = 0;
    stack[depth++] = 0;
    next[0] = 1;
    while (depth > 0) {
        int32_t b = stack[depth - 1], s[2];
        int ns = kl_block_succs(f, b, s);
        if (next[b] <= ns) {
            int32_t t = s[next[b]++ - 1];
            if (next[t] == 0) {
                next[t] = 1;
                stack[depth++] = t;
            }
            continue;
        }
        order[npost++] = b;
        depth--;
    }
    for (int32_t b = 0; b < n; b++) {
        B->idom[b] = -1;
        B->rpo_index[b] = -1;
    }
    for (int32_t k = 0; k < npost; k++) {
        B->rpo_index[order[npost - 1 - k]] = k;
    }
    B->idom[0] = 0;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t k = npost - 2; k >= 0; k--) {
            int32_t b = order[k], nd = -1;
            const KlVec *p = &B->preds[b];
            for (int32_t j = 0; j < p->len; j++) {
                int32_t q = p->items[j];
                if (B->idom[q] < 0) {
                    continue;
                }
                nd = nd < 0 ? q : intersect(B, q, nd);
            }
            if (nd != B->idom[b]) {
                B->idom[b] = nd;
                changed = 1;
            }
        }
    }
    return 0;
}

/* Whether block a dominates block b (b reachable). */
static int
dominates(const Bounds *B, int32_t a, int32_t b)
{
    if (B->idom[b] < 0 || B->idom[a] < 0) {
        return 0;
    }
    while (b != a && b != 0) {
        b = B->idom[b];
    }
    return b == a;
}

/* ---- values ----------------------------------------------------------- */

static int32_t resolve_param(const Bounds *B, int32_t v, int depth);

static int
is_i64(const KlType *t)
{
    return t != NULL && t->kind == KL_T_INT && t->bits == 64 && t->is_signed;
}

/* The value v stands for: through block parameters whose every incoming
 * value is one other value (or the parameter itself).  Results are
 * remembered; a parameter met again while being resolved stands for
 * itself, which is always true, so every answer is sound. */
static int32_t
resolve(const Bounds *B, int32_t v, int depth)
{
    const KlFunc *f = B->f;
    const KlInst *in = &f->insts[v];
    if (in->op != KL_OP_bparam || depth > MAX_DEPTH) {
        return v;
    }
    if (B->res[v] >= 0) {
        return B->res[v];
    }
    B->res[v] = v;
    int32_t r = resolve_param(B, v, depth);
    B->res[v] = r;
    return r;
}

/* resolve() of block parameter v, not yet remembered. */
static int32_t
resolve_param(const Bounds *B, int32_t v, int depth)
{
    const KlFunc *f = B->f;
    const KlInst *in = &f->insts[v];
    int32_t b = in->block, only = -1;
    const KlVec *p = &B->preds[b];
    for (int32_t j = 0; j < p->len; j++) {
        int32_t t = kl_block_term(f, p->items[j]);
        const KlInst *jt = &f->insts[t];
        if (jt->op != KL_OP_jump || jt->imm.i != b
            || in->imm.i >= jt->nargs) {
            return v;
        }
        int32_t x = jt->args[in->imm.i];
        if (x == v) {
            continue;
        }
        x = resolve(B, x, depth + 1);
        if (x == v) {
            continue;
        }
        if (only >= 0 && x != only) {
            return v;
        }
        only = x;
    }
    return only >= 0 ? only : v;
}

/* A constant int64-ish integer value: 1 with *k set, else 0. */
static int
const_int(const Bounds *B, int32_t v, int64_t *k)
{
    const KlInst *in = &B->f->insts[resolve(B, v, 0)];
    if (in->op != KL_OP_const || in->type == NULL
        || in->type->kind != KL_T_INT
        || !(in->type->is_signed || in->type->bits < 64)) {
        return 0;
    }
    *k = in->imm.i;
    return 1;
}

/* Looks through the int() conversion of a range() argument. */
static int32_t
strip_range_conv(const Bounds *B, int32_t v)
{
    for (int n = 0; n < MAX_DEPTH; n++) {
        v = resolve(B, v, 0);
        const KlInst *in = &B->f->insts[v];
        if (in->op != KL_OP_py_builtin || in->aux != KL_BI_int
            || in->imm.i != 1 || in->nargs != 1 || !is_i64(in->type)
            || !is_i64(B->f->insts[in->args[0]].type)) {
            return v;
        }
        v = in->args[0];
    }
    return v;
}

/* If v is an array extent, sets (*arr, *axis) and returns 1. */
static int
extent_of(const Bounds *B, int32_t v, int32_t *arr, int32_t *axis)
{
    const KlFunc *f = B->f;
    v = strip_range_conv(B, v);
    const KlInst *in = &f->insts[v];
    if (!is_i64(in->type)) {
        return 0;
    }
    if (in->op == KL_OP_py_builtin && in->aux == KL_BI_len
        && in->nargs == 1) {
        const KlType *t = f->insts[in->args[0]].type;
        if (t != NULL && t->kind == KL_T_ARRAY && t->ndim >= 1) {
            *arr = resolve(B, in->args[0], 0);
            *axis = 0;
            return 1;
        }
        return 0;
    }
    if (in->op == KL_OP_py_getattr && in->aux == KL_ATTR_SIZE) {
        const KlType *t = f->insts[in->args[0]].type;
        if (t != NULL && t->kind == KL_T_ARRAY && t->ndim == 1) {
            *arr = resolve(B, in->args[0], 0);
            *axis = 0;
            return 1;
        }
        return 0;
    }
    int64_t k;
    if (in->op == KL_OP_py_getitem && in->nargs == 2
        && const_int(B, in->args[1], &k)) {
        const KlInst *s = &f->insts[resolve(B, in->args[0], 0)];
        if (s->type == NULL || s->type->kind != KL_T_SHAPE
            || s->op != KL_OP_py_getattr || s->aux != KL_ATTR_SHAPE) {
            return 0;
        }
        const KlType *t = f->insts[s->args[0]].type;
        int nd = s->type->ndim;
        if (t == NULL || t->kind != KL_T_ARRAY || k < -nd || k >= nd) {
            return 0;
        }
        *arr = resolve(B, s->args[0], 0);
        *axis = (int32_t)(k < 0 ? k + nd : k);
        return 1;
    }
    return 0;
}

/* If v is `x + c`, `c + x` or `x - c` (py_binop on int64, c a small
 * constant), sets *x and *c and returns 1; otherwise *x = v, *c = 0 and
 * returns 0. */
static int
split_offset(const Bounds *B, int32_t v, int32_t *x, int64_t *c)
{
    const KlInst *in = &B->f->insts[v];
    *x = v;
    *c = 0;
    if (in->op != KL_OP_py_binop || !is_i64(in->type)
        || (in->aux != KL_BIN_ADD && in->aux != KL_BIN_SUB)) {
        return 0;
    }
    int64_t k;
    int32_t other;
    if (const_int(B, in->args[1], &k)) {
        other = in->args[0];
        k = in->aux == KL_BIN_SUB ? -k : k;
    }
    else if (in->aux == KL_BIN_ADD && const_int(B, in->args[0], &k)) {
        other = in->args[1];
    }
    else {
        return 0;
    }
    if (k <= -MAX_OFFSET || k >= MAX_OFFSET
        || !is_i64(B->f->insts[other].type)) {
        return 0;
    }
    *x = resolve(B, other, 0);
    *c = k;
    return 1;
}

/* Facts `v + d <= extent` known of stop value v; their count (<= max). */
static int
stop_facts(const Bounds *B, int32_t v, Fact *out, int max, int depth)
{
    if (depth > MAX_DEPTH || max <= 0) {
        return 0;
    }
    v = strip_range_conv(B, v);
    const KlInst *in = &B->f->insts[v];
    if (!is_i64(in->type)) {
        return 0;
    }
    Fact fa;
    if (extent_of(B, v, &fa.arr, &fa.axis)) {
        fa.d = 0;
        out[0] = fa;
        return 1;
    }
    if (in->op == KL_OP_py_builtin && in->aux == KL_BI_min) {
        /* min(...) <= each argument: every argument's facts hold */
        int n = 0;
        for (int32_t j = 0; j < in->nargs && n < max; j++) {
            n += stop_facts(B, in->args[j], out + n, max - n, depth + 1);
        }
        return n;
    }
    /* E - c with E an extent (>= 0): for c >= 0 no wrap, v + c == E; for
     * c < 0 a wrap makes v negative and the loop (start >= 0) empty. */
    int32_t x;
    int64_t c;
    if (split_offset(B, v, &x, &c)
        && extent_of(B, x, &fa.arr, &fa.axis)) {
        fa.d = -c;
        out[0] = fa;
        return 1;
    }
    return 0;
}

/* ---- range loops ------------------------------------------------------ */

/* A `for` counter: a header block parameter tested by py_range_test. */
typedef struct Counter {
    int32_t test;           /* the py_range_test */
    int32_t body;           /* block entered when the test holds */
    int64_t step;           /* positive constant step */
} Counter;

/* If v is the counter of a range loop with a positive constant step whose
 * body block is entered only from the test, fills *c and returns 1. */
static int
counter_of(const Bounds *B, int32_t v, Counter *c)
{
    const KlFunc *f = B->f;
    const KlInst *in = &f->insts[v];
    if (in->op != KL_OP_bparam || !is_i64(in->type)) {
        return 0;
    }
    int32_t h = in->block;
    int32_t t = kl_block_term(f, h);
    if (t < 0 || f->insts[t].op != KL_OP_branch) {
        return 0;
    }
    const KlInst *br = &f->insts[t];
    const KlInst *test = &f->insts[br->args[0]];
    if (test->op != KL_OP_py_range_test || test->block != h
        || resolve(B, test->args[0], 0) != v
        || !const_int(B, test->args[2], &c->step) || c->step <= 0) {
        return 0;
    }
    c->test = br->args[0];
    c->body = (int32_t)br->imm.i;
    if (c->body == br->aux || B->preds[c->body].len != 1
        || B->preds[c->body].items[0] != h) {
        return 0;
    }
    return 1;
}

static int lower_bound(const Bounds *B, int32_t v, int64_t *lb, int depth);

/* Lower bound of every value counter v (see counter_of) takes: the least
 * bound of its values entering from outside, as advances by the positive
 * step never decrease it (they saturate instead of wrapping). */
static int
counter_lower_bound(const Bounds *B, int32_t v, int64_t *lb, int depth)
{
    const KlFunc *f = B->f;
    const KlInst *in = &f->insts[v];
    const KlVec *p = &B->preds[in->block];
    int any = 0;
    for (int32_t j = 0; j < p->len; j++) {
        const KlInst *jt = &f->insts[kl_block_term(f, p->items[j])];
        if (jt->op != KL_OP_jump || in->imm.i >= jt->nargs) {
            return 0;
        }
        int32_t x = resolve(B, jt->args[in->imm.i], 0);
        const KlInst *xi = &f->insts[x];
        int64_t step;
        if (x == v
            || (xi->op == KL_OP_py_binop && xi->aux == KL_BIN_ADD
                && xi->imm.i == 1 && resolve(B, xi->args[0], 0) == v
                && const_int(B, xi->args[1], &step) && step > 0)) {
            continue;       /* the counter itself, or its advance */
        }
        int64_t b;
        if (!lower_bound(B, x, &b, depth + 1)) {
            return 0;
        }
        *lb = any ? (b < *lb ? b : *lb) : b;
        any = 1;
    }
    return any;
}

/* A lower bound of int64 value v, if one is known: 1 with *lb set. */
static int
lower_bound(const Bounds *B, int32_t v, int64_t *lb, int depth)
{
    if (depth > MAX_DEPTH) {
        return 0;
    }
    v = strip_range_conv(B, v);
    const KlInst *in = &B->f->insts[v];
    int32_t arr, axis;
    Counter c;
    if (const_int(B, v, lb)) {
        return 1;
    }
    if (!is_i64(in->type)) {
        return 0;
    }
    if (extent_of(B, v, &arr, &axis)) {
        *lb = 0;
        return 1;
    }
    if (counter_of(B, v, &c)) {
        return counter_lower_bound(B, v, lb, depth);
    }
    if (in->op == KL_OP_py_builtin && in->aux == KL_BI_max) {
        /* max(...) >= each argument: the best argument bound holds */
        int any = 0;
        for (int32_t j = 0; j < in->nargs; j++) {
            int64_t b;
            if (lower_bound(B, in->args[j], &b, depth + 1)
                && (!any || b > *lb)) {
                *lb = b;
                any = 1;
            }
        }
        return any;
    }
    /* x + c with x a range counter in whose body v is computed: there
     * x < stop, and a stop fact `stop + d <= E` gives x + d < E, so
     * x + c cannot wrap when c <= d + 1. */
    int32_t x;
    int64_t k, xlb;
    if (split_offset(B, v, &x, &k) && counter_of(B, x, &c)
        && dominates(B, c.body, in->block)
        && counter_lower_bound(B, x, &xlb, depth)) {
        if (k <= 0) {
            *lb = xlb + k;  /* x >= xlb > -2^62: no wrap either */
            return xlb > -MAX_OFFSET;
        }
        Fact facts[MAX_FACTS];
        int n = stop_facts(B, B->f->insts[c.test].args[1], facts,
                           MAX_FACTS, 0);
        for (int j = 0; j < n; j++) {
            if (k <= facts[j].d + 1) {
                *lb = xlb + k;
                return xlb < MAX_OFFSET;
            }
        }
    }
    return 0;
}

/* ---- accesses --------------------------------------------------------- */

/* Whether index value idx of an access in block `blk` to array `arr`
 * (resolved) along `axis` provably lies in [0, extent). */
static int
index_proven(const Bounds *B, int32_t blk, int32_t arr, int32_t axis,
             int32_t idx)
{
    if (!is_i64(B->f->insts[idx].type)) {
        return 0;
    }
    int32_t x;
    int64_t c, lb;
    split_offset(B, resolve(B, idx, 0), &x, &c);
    x = resolve(B, x, 0);
    Counter ctr;
    if (!counter_of(B, x, &ctr) || !dominates(B, ctr.body, blk)
        || !counter_lower_bound(B, x, &lb, 0)
        || lb <= -MAX_OFFSET || lb + c < 0) {
        return 0;
    }
    Fact facts[MAX_FACTS];
    int n = stop_facts(B, B->f->insts[ctr.test].args[1], facts, MAX_FACTS,
                       0);
    for (int j = 0; j < n; j++) {
        /* x < stop and stop + d <= E: x + c < E when c <= d */
        if (facts[j].arr == arr && facts[j].axis == axis && c <= facts[j].d) {
            return 1;
        }
    }
    return 0;
}

/* Sets the proof bits of one py_getitem / py_setitem on an array. */
static void
prove_access(const Bounds *B, KlInst *in)
{
    int first = in->op == KL_OP_py_getitem ? 1 : 2;
    const KlType *t = B->f->insts[in->args[0]].type;
    if (t == NULL || t->kind != KL_T_ARRAY || in->nargs - first != t->ndim) {
        return;
    }
    int32_t arr = resolve(B, in->args[0], 0);
    for (int32_t k = 0; k < t->ndim; k++) {
        if (index_proven(B, in->block, arr, k, in->args[first + k])) {
            in->imm.i |= (int64_t)1 << k;
        }
    }
}

int
kl_bounds(KlFunc *f, KlDiag *d)
{
    /* scratch memory lives in the module's arena with the IR */
    Bounds B = {f, d, &f->mod->arena, NULL, NULL, NULL, NULL};
    int any = 0;
    for (int32_t i = 0; i < f->ninsts && !any; i++) {
        any = f->insts[i].op == KL_OP_py_getitem
              || f->insts[i].op == KL_OP_py_setitem;
    }
    if (!any || f->nblocks == 0) {
        return 0;
    }
    B.res = kl_arena_alloc(B.a, sizeof(int32_t) * (size_t)f->ninsts);
    if (B.res == NULL || build_preds(&B) < 0 || build_dominators(&B) < 0) {
        return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    memset(B.res, 0xff, sizeof(int32_t) * (size_t)f->ninsts);
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = 0; p < v->len; p++) {
            KlInst *in = &f->insts[v->items[p]];
            if (in->op == KL_OP_py_getitem || in->op == KL_OP_py_setitem) {
                prove_access(&B, in);
            }
        }
    }
    return 0;
}
