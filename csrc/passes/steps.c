/* steps.c: splits the entry function of a Vulkan module at its pfors into
 * step functions whose state crosses the pfors in memory (steps.h).
 *
 * Liveness (backward, to a fixed point) gives the values live just after
 * each pfor.  Of those, parameters and scratch arrays are parameters of
 * every step; constants, undefs, Nones and the extents of array
 * parameters are recomputed where used; every other scalar gets a state
 * cell.  Each step is then a copy of F whose entry jumps to F's start or
 * to the code after one pfor, with each pfor replaced by a suspend.
 */
#include <stdlib.h>
#include <string.h>

#include "steps.h"

/* How a value of F reaches its uses in the steps. */
enum { KEEP, STORE, REMAT };

#define MAX_STATE 16

typedef struct St {
    KlModule *m;
    KlFunc *f;                  /* the entry F */
    KlDiag *d;
    KlSteps *out;
    int32_t words;              /* uint64 words of a value set */
    uint64_t *live;             /* live-in set of each block of F */
    uint8_t *how;               /* per value of F: KEEP, STORE, REMAT */
    int32_t *state_of, *slot_of;    /* per STORE value: its cell */
    int32_t *scratch_of;        /* per scratch of F: its number, else -1 */
    int32_t *pfor_of;           /* per pfor of F: j - 1, else -1 */
    int32_t npfors;
    /* the step being built */
    KlFunc *g;
    int32_t *map;               /* value of F -> value of g */
    int32_t *nb;                /* block of F -> block of g */
    int32_t *seg;               /* pfor j - 1 -> block of g after it */
    int32_t state_arg[MAX_STATE];   /* state array -> arg of g */
    int32_t *avail_blk, *avail_val; /* STORE/REMAT value available in a
                                       block of g, and as which value */
    int32_t *argbuf;            /* operands of one instruction */
    int32_t *order;             /* F's blocks reachable from its entry, in
                                   reverse postorder, after -1s */
} St;

static int
nomem(St *s)
{
    return kl_error(s->d, KL_DIAG_NOMEM, 0, "out of memory");
}

static void *
alloc(St *s, size_t n, size_t size)
{
    return kl_arena_alloc(&s->m->arena, (n + 1) * size);
}

/* ---- liveness ----------------------------------------------------------- */

#define HAS(set, i) (((set)[(i) >> 6] >> ((i) & 63)) & 1)
#define ADD(set, i) ((set)[(i) >> 6] |= (uint64_t)1 << ((i) & 63))
#define DEL(set, i) ((set)[(i) >> 6] &= ~((uint64_t)1 << ((i) & 63)))

/* set = the values live at the end of block b. */
static void
live_out(const St *s, int32_t b, uint64_t *set)
{
    int32_t succ[2];
    int n = kl_block_succs(s->f, b, succ);
    memset(set, 0, sizeof(uint64_t) * (size_t)s->words);
    for (int i = 0; i < n; i++) {
        const uint64_t *in = &s->live[(size_t)succ[i] * (size_t)s->words];
        for (int32_t w = 0; w < s->words; w++) {
            set[w] |= in[w];
        }
    }
}

/* Given set = the values live after block b's last instruction, leaves
 * the values live before its instruction at position `from`. */
static void
scan_back(const KlFunc *f, int32_t b, int32_t from, uint64_t *set)
{
    const KlBlock *blk = &f->blocks[b];
    for (int32_t k = blk->insts.len - 1; k >= from; k--) {
        const KlInst *in = &f->insts[blk->insts.items[k]];
        DEL(set, blk->insts.items[k]);
        for (int32_t a = 0; a < in->nargs; a++) {
            ADD(set, in->args[a]);
        }
    }
}

static int
liveness(St *s)
{
    const KlFunc *f = s->f;
    s->words = (f->ninsts + 63) / 64;
    s->live = alloc(s, (size_t)f->nblocks * (size_t)s->words,
                    sizeof(uint64_t));
    uint64_t *tmp = alloc(s, (size_t)s->words, sizeof(uint64_t));
    if (s->live == NULL || tmp == NULL) {
        return nomem(s);
    }
    size_t bytes = sizeof(uint64_t) * (size_t)s->words;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t b = f->nblocks - 1; b >= 0; b--) {
            uint64_t *in = &s->live[(size_t)b * (size_t)s->words];
            live_out(s, b, tmp);
            scan_back(f, b, 0, tmp);
            if (memcmp(tmp, in, bytes) != 0) {
                memcpy(in, tmp, bytes);
                changed = 1;
            }
        }
    }
    return 0;
}

/* ---- what crosses the pfors ------------------------------------------- */

/* The element type of the cells holding scalars of type t: bool and
 * integers narrower than 32 bits widen to int32 (so the steps need no
 * 8- or 16-bit storage; their low bytes, little-endian, are the value as
 * the host reads it), others are t itself. */
static const KlType *
cell_type(const KlType *t)
{
    if (t->kind == KL_T_BOOL || (t->kind == KL_T_INT && t->bits < 32)) {
        return kl_i32;
    }
    return kl_type_strong(t);
}

/* A new cell for scalars of type t: *state and *slot.  -1 when the state
 * has too many types (cannot happen with kiln's scalar types). */
static int
new_cell(St *s, const KlType *t, int32_t *state, int32_t *slot)
{
    KlSteps *o = s->out;
    t = cell_type(t);
    int32_t i = 0;
    while (i < o->nstate && o->state[i] != t) {
        i++;
    }
    if (i == o->nstate) {
        if (o->nstate == MAX_STATE) {
            return kl_internal_error(s->d, "steps: too many state types");
        }
        o->state[o->nstate++] = t;
    }
    *state = i;
    *slot = o->ncells[i]++;
    return 0;
}

/* The compile error for value v of F, which the state cannot hold. */
static int
cannot_keep(St *s, int32_t v)
{
    const KlInst *in = &s->f->insts[v];
    return kl_compile_error(s->d, in->line, "the Vulkan target cannot keep "
                            "a value of type %s across a prange loop (only "
                            "scalars, and arrays that are parameters)",
                            in->type->name);
}

/* Decides how value v, live after a pfor, reaches the steps.  0, or -1
 * with s->d filled (a value the state cannot hold). */
static int
classify(St *s, int32_t v)
{
    const KlInst *in = &s->f->insts[v];
    if (s->how[v] != KEEP || in->op == KL_OP_arg
        || in->op == KL_OP_scratch) {
        return 0;
    }
    if (in->op == KL_OP_const || in->op == KL_OP_undef
        || in->type->kind == KL_T_NONE
        || (in->op == KL_OP_dim
            && s->f->insts[in->args[0]].op == KL_OP_arg)) {
        s->how[v] = REMAT;
        return 0;
    }
    if (!kl_type_is_scalar(in->type)) {
        return cannot_keep(s, v);
    }
    s->how[v] = STORE;
    return new_cell(s, in->type, &s->state_of[v], &s->slot_of[v]);
}

/* Records where the host finds the operands of pfor instruction p (its
 * j - 1 is s->pfor_of[p]).  0, or -1 with s->d filled. */
static int
pfor_operands(St *s, int32_t p)
{
    const KlInst *in = &s->f->insts[p];
    KlStepPfor *sp = &s->out->pfors[s->pfor_of[p]];
    sp->body = (int32_t)in->imm.i;
    sp->nops = in->nargs;
    sp->ops = alloc(s, (size_t)in->nargs, sizeof(KlStepOperand));
    if (sp->ops == NULL) {
        return nomem(s);
    }
    for (int32_t k = 0; k < in->nargs; k++) {
        const KlInst *x = &s->f->insts[in->args[k]];
        KlStepOperand *op = &sp->ops[k];
        if (x->type->kind == KL_T_NONE) {
            op->src = KL_STEP_NONE;
        }
        else if (x->op == KL_OP_arg && x->type->kind == KL_T_ARRAY) {
            op->src = KL_STEP_PARAM;
            op->index = (int32_t)x->imm.i;
        }
        else if (x->op == KL_OP_scratch) {
            op->src = KL_STEP_SCRATCH;
            op->index = s->scratch_of[in->args[k]];
        }
        else if (kl_type_is_scalar(x->type)) {
            op->src = KL_STEP_CELL;
            if (new_cell(s, x->type, &op->index, &op->slot) < 0) {
                return -1;
            }
        }
        else {
            return cannot_keep(s, in->args[k]);
        }
    }
    return 0;
}

/* ---- inlining the calls that reach a pfor ------------------------------ */

/* Calls inlined into one entry at most (a bound on nesting depth times
 * call sites, far above real kernels). */
#define MAX_INLINED 256

/* 1 when module function fi, or a function it calls, runs a pfor.  memo:
 * per function 0 unknown, 1 yes, 2 no, 3 being visited (a cycle, which
 * the backend refuses anyway, counts as no). */
static int
reaches_pfor(const KlModule *m, int64_t fi, uint8_t *memo)
{
    if (fi < 0 || fi >= m->nfuncs) {
        return 0;
    }
    if (memo[fi] != 0) {
        return memo[fi] == 1;
    }
    memo[fi] = 3;
    const KlFunc *g = m->funcs[fi];
    int yes = 0;
    for (int32_t b = 0; b < g->nblocks && !yes; b++) {
        const KlVec *v = &g->blocks[b].insts;
        for (int32_t k = 0; k < v->len && !yes; k++) {
            const KlInst *in = &g->insts[v->items[k]];
            yes = in->op == KL_OP_pfor
                  || (in->op == KL_OP_call
                      && reaches_pfor(m, in->imm.i, memo));
        }
    }
    memo[fi] = yes ? 1 : 2;
    return yes;
}

/* Splits F's block b before position pos: the instructions from pos + 1
 * on move to a new block, returned, which takes one param of type t (the
 * value of the instruction at pos) unless t has no value (*r then
 * becomes a None constant, or -1 for void).  The instruction at pos
 * leaves the block; b is left without a terminator. */
static int32_t
split_block(St *s, int32_t b, int32_t pos, const KlType *t, int32_t *r)
{
    KlFunc *f = s->f;
    int32_t after = kl_block_new(f);
    if (after < 0) {
        return nomem(s);
    }
    *r = t->kind == KL_T_VOID ? -1
         : t->kind == KL_T_NONE ? kl_emit(f, after, KL_OP_const, t, 0, 0, NULL)
         : kl_bparam_add(f, after, t);
    if (t->kind != KL_T_VOID && *r < 0) {
        return nomem(s);
    }
    KlVec *from = &f->blocks[b].insts;
    for (int32_t k = pos + 1; k < from->len; k++) {
        int32_t x = from->items[k];
        if (kl_vec_push(&s->m->arena, &f->blocks[after].insts, x) < 0) {
            return nomem(s);
        }
        f->insts[x].block = after;
    }
    from->len = pos;
    f->blocks[after].loop = f->blocks[b].loop;
    return after;
}

/* Replaces the call at position pos of F's block b by a copy of the
 * callee's blocks: its params become the call's operands, its returns
 * jumps to the code after the call. */
static int
inline_call(St *s, int32_t b, int32_t pos)
{
    KlFunc *f = s->f;
    const KlInst call = f->insts[f->blocks[b].insts.items[pos]];
    int32_t c = f->blocks[b].insts.items[pos];
    const KlFunc *g = s->m->funcs[call.imm.i];
    int32_t r = -1;
    int32_t after = split_block(s, b, pos, call.type, &r);
    int32_t *nb = alloc(s, (size_t)g->nblocks, sizeof(int32_t));
    int32_t *vmap = alloc(s, (size_t)g->ninsts, sizeof(int32_t));
    if (after < 0 || nb == NULL || vmap == NULL) {
        return after < 0 ? -1 : nomem(s);
    }
    for (int32_t gb = 0; gb < g->nblocks; gb++) {
        if ((nb[gb] = kl_block_new(f)) < 0) {
            return nomem(s);
        }
    }
    int32_t first = f->ninsts;      /* copies name g's values until patched */
    int value = call.type->kind != KL_T_VOID && call.type->kind != KL_T_NONE;
    for (int32_t gb = 0; gb < g->nblocks; gb++) {
        const KlVec *v = &g->blocks[gb].insts;
        for (int32_t k = 0; k < v->len; k++) {
            int32_t x = v->items[k];
            const KlInst *in = &g->insts[x];
            int32_t id;
            if (in->op == KL_OP_arg) {
                vmap[x] = call.args[in->imm.i];
                continue;
            }
            if (in->op == KL_OP_bparam) {
                id = kl_bparam_add(f, nb[gb], in->type);
            }
            else if (in->op == KL_OP_ret) {
                id = kl_jump(f, nb[gb], after, value, in->args, in->line);
            }
            else {
                id = kl_emit(f, nb[gb], in->op, in->type, in->line, in->nargs,
                             in->args);
                if (id >= 0) {
                    KlInst *out = &f->insts[id];
                    out->aux = in->op == KL_OP_branch ? nb[in->aux] : in->aux;
                    out->imm = in->imm;
                    if (in->op == KL_OP_jump || in->op == KL_OP_branch) {
                        out->imm.i = nb[in->imm.i];
                    }
                }
            }
            if (id < 0) {
                return nomem(s);
            }
            vmap[x] = id;
        }
    }
    for (int32_t i = first; i < f->ninsts; i++) {
        KlInst *in = &f->insts[i];
        for (int32_t a = 0; a < in->nargs; a++) {
            in->args[a] = vmap[in->args[a]];
        }
    }
    for (int32_t i = 0; i < first; i++) {
        KlInst *in = &f->insts[i];
        for (int32_t a = 0; a < in->nargs; a++) {
            if (in->args[a] == c) {
                in->args[a] = r;
            }
        }
    }
    return kl_jump(f, b, nb[0], 0, NULL, call.line) < 0 ? nomem(s) : 0;
}

/* Inlines into F every call that reaches a pfor, so that F holds all of
 * its pfors. */
static int
inline_pfor_calls(St *s)
{
    uint8_t *memo = alloc(s, (size_t)s->m->nfuncs, 1);
    if (memo == NULL) {
        return nomem(s);
    }
    for (int inlined = 0;;) {
        KlFunc *f = s->f;
        int32_t b = 0, pos = -1;
        for (; b < f->nblocks && pos < 0; b++) {
            const KlVec *v = &f->blocks[b].insts;
            for (int32_t k = 0; k < v->len && pos < 0; k++) {
                const KlInst *in = &f->insts[v->items[k]];
                if (in->op == KL_OP_call
                    && reaches_pfor(s->m, in->imm.i, memo)) {
                    pos = k;
                }
            }
        }
        if (pos < 0) {
            return 0;
        }
        if (++inlined > MAX_INLINED) {
            return kl_compile_error(s->d, f->insts[f->blocks[b - 1]
                                    .insts.items[pos]].line,
                                    "too many calls of functions with "
                                    "prange for the Vulkan target");
        }
        if (inline_call(s, b - 1, pos) < 0) {
            return -1;
        }
    }
}

/* Numbers F's scratches and pfors, finds what crosses the pfors and how
 * to pass the pfors' operands.  0, or -1 with s->d filled. */
static int
plan(St *s)
{
    KlFunc *f = s->f;
    KlSteps *o = s->out;
    int32_t n = f->ninsts;
    s->how = alloc(s, (size_t)n, 1);
    s->state_of = alloc(s, (size_t)n, sizeof(int32_t));
    s->slot_of = alloc(s, (size_t)n, sizeof(int32_t));
    s->scratch_of = alloc(s, (size_t)n, sizeof(int32_t));
    s->pfor_of = alloc(s, (size_t)n, sizeof(int32_t));
    o->state = alloc(s, MAX_STATE, sizeof(KlType *));
    o->ncells = alloc(s, MAX_STATE, sizeof(int32_t));
    if (s->how == NULL || s->state_of == NULL || s->slot_of == NULL
        || s->scratch_of == NULL || s->pfor_of == NULL || o->state == NULL
        || o->ncells == NULL) {
        return nomem(s);
    }
    o->state[0] = kl_i64;       /* cell 0: the pfor a step suspended at */
    o->ncells[0] = 1;
    o->nstate = 1;
    for (int32_t i = 0; i < n; i++) {
        const KlInst *in = &f->insts[i];
        s->scratch_of[i] = in->op == KL_OP_scratch ? o->nscratch++ : -1;
        s->pfor_of[i] = in->op == KL_OP_pfor ? s->npfors++ : -1;
    }
    o->npfors = s->npfors;
    o->pfors = alloc(s, (size_t)s->npfors, sizeof(KlStepPfor));
    o->scratch = alloc(s, (size_t)o->nscratch, sizeof(KlType *));
    o->scratch_len = alloc(s, (size_t)o->nscratch, sizeof(int64_t));
    if (o->pfors == NULL || o->scratch == NULL || o->scratch_len == NULL) {
        return nomem(s);
    }
    for (int32_t i = 0; i < n; i++) {
        if (s->scratch_of[i] >= 0) {
            o->scratch[s->scratch_of[i]] = f->insts[i].type;
            o->scratch_len[s->scratch_of[i]] = f->insts[i].imm.i;
        }
    }
    if (liveness(s) < 0) {
        return -1;
    }
    uint64_t *set = alloc(s, (size_t)s->words, sizeof(uint64_t));
    if (set == NULL) {
        return nomem(s);
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlBlock *blk = &f->blocks[b];
        for (int32_t k = 0; k < blk->insts.len; k++) {
            int32_t p = blk->insts.items[k];
            if (s->pfor_of[p] < 0) {
                continue;
            }
            if (pfor_operands(s, p) < 0) {
                return -1;
            }
            live_out(s, b, set);
            scan_back(f, b, k + 1, set);
            for (int32_t v = 0; v < n; v++) {
                if (HAS(set, v) && classify(s, v) < 0) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* ---- building one step ----------------------------------------------- */

/* Fills s->order, so that every block is copied after its dominators
 * (definitions before uses). */
static int
block_order(St *s)
{
    const KlFunc *f = s->f;
    int32_t n = f->nblocks;
    uint8_t *seen = alloc(s, (size_t)n, 1);
    int32_t *stack = alloc(s, (size_t)n, sizeof(int32_t));
    int32_t *next = alloc(s, (size_t)n, sizeof(int32_t));
    s->order = alloc(s, (size_t)n, sizeof(int32_t));
    if (seen == NULL || stack == NULL || next == NULL || s->order == NULL) {
        return nomem(s);
    }
    int32_t top = 0, at = n;
    stack[top++] = 0;
    seen[0] = 1;
    while (top > 0) {
        int32_t b = stack[top - 1], succ[2];
        int ns = kl_block_succs(f, b, succ);
        if (next[b] < ns) {
            int32_t c = succ[next[b]++];
            if (!seen[c]) {
                seen[c] = 1;
                stack[top++] = c;
            }
            continue;
        }
        s->order[--at] = b;     /* postorder, filled from the end */
        top--;
    }
    while (at > 0) {
        s->order[--at] = -1;
    }
    return 0;
}

static int32_t
emit(St *s, int32_t b, KlOp op, const KlType *t, int line, int32_t nargs,
     const int32_t *args)
{
    int32_t id = kl_emit(s->g, b, op, t, line, nargs, args);
    if (id < 0) {
        nomem(s);
    }
    return id;
}

/* The address of cell `slot` of state array `state`, emitted in block b
 * of the step. */
static int32_t
cell_ptr(St *s, int32_t b, int32_t state, int32_t slot, int line)
{
    const KlType *pt = kl_type_ptr(s->out->state[state]);
    int32_t args[2] = {s->state_arg[state],
                       kl_const_int(s->g, b, kl_i64, slot, line)};
    if (pt == NULL || args[1] < 0) {
        return nomem(s);
    }
    return emit(s, b, KL_OP_elemptr, pt, line, 2, args);
}

/* Emits in block b the store of step value v into a cell. */
static int
store_cell(St *s, int32_t b, int32_t state, int32_t slot, int32_t v,
           int line)
{
    const KlType *t = s->out->state[state];
    if (cell_type(s->g->insts[v].type) != kl_type_strong(s->g->insts[v].type)
        && (v = emit(s, b, KL_OP_cast, t, line, 1, &v)) < 0) {
        return -1;
    }
    int32_t args[2] = {cell_ptr(s, b, state, slot, line), v};
    if (args[0] < 0 || emit(s, b, KL_OP_store, kl_void, line, 2, args) < 0) {
        return -1;
    }
    return 0;
}

/* Copies instruction x of F into block b of the step, operands mapped
 * (their loads emitted first); returns the copy.  Jump and branch targets
 * are F's until the caller maps them. */
static int32_t use(St *s, int32_t b, int32_t x, int line);

static int32_t
copy_inst(St *s, int32_t b, int32_t x)
{
    const KlInst *in = &s->f->insts[x];
    int32_t *args = s->argbuf;
    for (int32_t a = 0; a < in->nargs; a++) {
        int32_t v = use(s, b, in->args[a], in->line);
        if (v < 0) {
            return -1;
        }
        args[a] = v;
    }
    int32_t id = emit(s, b, in->op, in->type, in->line, in->nargs, args);
    if (id >= 0) {
        s->g->insts[id].aux = in->aux;
        s->g->insts[id].imm = in->imm;
    }
    return id;
}

/* The step value standing for F's value x in block b (loading it from its
 * cell, or recomputing it, when needed there). */
static int32_t
use(St *s, int32_t b, int32_t x, int line)
{
    if (s->how[x] == KEEP) {
        if (s->map[x] < 0) {
            return kl_internal_error(s->d, "steps: %%%d used before its "
                                     "definition", x);
        }
        return s->map[x];
    }
    if (s->avail_blk[x] == b) {
        return s->avail_val[x];
    }
    int32_t v;
    if (s->how[x] == REMAT) {
        /* a constant, undef or None anew, or the extent of a parameter */
        const KlInst *in = &s->f->insts[x];
        int none = in->type->kind == KL_T_NONE;
        int32_t nargs = none ? 0 : in->nargs;
        int32_t arg = nargs > 0 ? use(s, b, in->args[0], line) : 0;
        v = arg < 0 ? -1 : emit(s, b, none ? KL_OP_const : in->op, in->type,
                                in->line, nargs, &arg);
        if (v >= 0 && !none) {
            s->g->insts[v].aux = in->aux;
            s->g->insts[v].imm = in->imm;
        }
    }
    else {
        const KlType *t = s->f->insts[x].type;
        const KlType *ct = s->out->state[s->state_of[x]];
        int32_t p = cell_ptr(s, b, s->state_of[x], s->slot_of[x], line);
        v = p < 0 ? -1 : emit(s, b, KL_OP_load, ct, line, 1, &p);
        if (v >= 0 && ct != kl_type_strong(t)) {
            v = emit(s, b, KL_OP_cast, t, line, 1, &v);
        }
    }
    if (v >= 0) {
        s->avail_blk[x] = b;
        s->avail_val[x] = v;
    }
    return v;
}

/* Records the step value v defined for F's value x in block b, storing it
 * into its cell when x crosses a pfor. */
static int
define(St *s, int32_t b, int32_t x, int32_t v)
{
    s->map[x] = v;
    if (s->how[x] == KEEP) {
        return 0;
    }
    s->avail_blk[x] = b;
    s->avail_val[x] = v;
    if (s->how[x] == STORE) {
        return store_cell(s, b, s->state_of[x], s->slot_of[x], v,
                          s->f->insts[x].line);
    }
    return 0;
}

/* Ends block b with the suspend at pfor p: its operands and number into
 * the state, then a return. */
static int
suspend(St *s, int32_t b, int32_t p)
{
    const KlInst *in = &s->f->insts[p];
    const KlStepPfor *sp = &s->out->pfors[s->pfor_of[p]];
    for (int32_t k = 0; k < in->nargs; k++) {
        const KlStepOperand *op = &sp->ops[k];
        if (op->src != KL_STEP_CELL) {
            continue;
        }
        int32_t v = use(s, b, in->args[k], in->line);
        if (v < 0 || store_cell(s, b, op->index, op->slot, v, in->line) < 0) {
            return -1;
        }
    }
    int32_t j = kl_const_int(s->g, b, kl_i64, s->pfor_of[p] + 1, in->line);
    if (j < 0 || store_cell(s, b, 0, 0, j, in->line) < 0) {
        return -1;
    }
    const KlType *rt = s->f->ret_type;
    if (rt->kind == KL_T_NONE || rt->kind == KL_T_VOID) {
        return emit(s, b, KL_OP_ret, kl_void, in->line, 0, NULL) < 0 ? -1 : 0;
    }
    int32_t u = emit(s, b, KL_OP_undef, rt, in->line, 0, NULL);
    if (u < 0 || emit(s, b, KL_OP_ret, kl_void, in->line, 1, &u) < 0) {
        return -1;
    }
    return 0;
}

/* Copies F's block fb into the step (block s->nb[fb], continuing into
 * s->seg[j] after each pfor). */
static int
copy_block(St *s, int32_t fb)
{
    const KlBlock *blk = &s->f->blocks[fb];
    int32_t b = s->nb[fb];
    for (int32_t k = 0; k < blk->nparams; k++) {
        int32_t x = blk->insts.items[k];
        int32_t v = kl_bparam_add(s->g, b, s->f->insts[x].type);
        if (v < 0) {
            return nomem(s);
        }
        s->map[x] = v;
    }
    for (int32_t k = 0; k < blk->nparams; k++) {
        int32_t x = blk->insts.items[k];
        if (define(s, b, x, s->map[x]) < 0) {
            return -1;
        }
    }
    for (int32_t k = blk->nparams; k < blk->insts.len; k++) {
        int32_t x = blk->insts.items[k];
        const KlInst *in = &s->f->insts[x];
        if (in->op == KL_OP_arg || in->op == KL_OP_scratch) {
            continue;           /* parameters of the step */
        }
        if (in->op == KL_OP_pfor) {
            if (suspend(s, b, x) < 0) {
                return -1;
            }
            b = s->seg[s->pfor_of[x]];
            continue;
        }
        int32_t v = copy_inst(s, b, x);
        if (v < 0) {
            return -1;
        }
        KlInst *out = &s->g->insts[v];
        if (in->op == KL_OP_jump || in->op == KL_OP_branch) {
            out->imm.i = s->nb[in->imm.i];
        }
        if (in->op == KL_OP_branch) {
            out->aux = s->nb[in->aux];
        }
        if (define(s, b, x, v) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The parameters of every step: F's, the state arrays, the scratches. */
static int
step_params(St *s, KlFunc *g)
{
    const KlFunc *f = s->f;
    const KlSteps *o = s->out;
    g->nparams = f->nparams + o->nstate + o->nscratch;
    g->param_types = alloc(s, (size_t)g->nparams, sizeof(KlType *));
    g->param_names = alloc(s, (size_t)g->nparams, sizeof(char *));
    if (g->param_types == NULL || g->param_names == NULL) {
        return nomem(s);
    }
    for (int32_t i = 0; i < g->nparams; i++) {
        int32_t h = i - f->nparams;
        if (h < 0) {
            g->param_types[i] = f->param_types[i];
            g->param_names[i] = f->param_names[i];
            continue;
        }
        g->param_types[i] = h < o->nstate
            ? kl_type_array(o->state[h], 1, KL_LAYOUT_C, 0)
            : o->scratch[h - o->nstate];
        g->param_names[i] = h < o->nstate ? "state" : "partials";
        if (g->param_types[i] == NULL) {
            return nomem(s);
        }
    }
    return 0;
}

/* Appends step S_k to the module. */
static int
build_step(St *s, int32_t k)
{
    const KlFunc *f = s->f;
    KlFunc *g = kl_func_new(s->m, f->name);
    if (g == NULL) {
        return nomem(s);
    }
    s->g = g;
    g->filename = f->filename;
    g->firstline = f->firstline;
    g->ret_type = f->ret_type;
    if (step_params(s, g) < 0) {
        return -1;
    }
    int line = f->firstline;
    int32_t *param = alloc(s, (size_t)g->nparams, sizeof(int32_t));
    if (param == NULL) {
        return nomem(s);
    }
    for (int32_t i = 0; i < g->nparams; i++) {
        param[i] = emit(s, 0, KL_OP_arg, g->param_types[i], line, 0, NULL);
        if (param[i] < 0) {
            return -1;
        }
        g->insts[param[i]].imm.i = i;
    }
    for (int32_t i = 0; i < s->out->nstate; i++) {
        s->state_arg[i] = param[f->nparams + i];
    }
    for (int32_t x = 0; x < f->ninsts; x++) {
        const KlInst *in = &f->insts[x];
        s->map[x] = in->op == KL_OP_arg ? param[in->imm.i]
                    : in->op == KL_OP_scratch
                    ? param[f->nparams + s->out->nstate + s->scratch_of[x]]
                    : -1;
        s->avail_blk[x] = -1;
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        if ((s->nb[b] = kl_block_new(g)) < 0) {
            return nomem(s);
        }
    }
    for (int32_t j = 0; j < s->npfors; j++) {
        if ((s->seg[j] = kl_block_new(g)) < 0) {
            return nomem(s);
        }
    }
    int32_t start = k == 0 ? s->nb[0] : s->seg[k - 1];
    if (kl_jump(g, 0, start, 0, NULL, line) < 0) {
        return nomem(s);
    }
    for (int32_t i = 0; i < f->nblocks; i++) {
        if (s->order[i] >= 0 && copy_block(s, s->order[i]) < 0) {
            return -1;
        }
    }
    for (int32_t b = 0; b < g->nblocks; b++) {
        if (g->blocks[b].insts.len == 0    /* unreachable in F */
            && emit(s, b, KL_OP_unreachable, kl_void, line, 0, NULL) < 0) {
            return -1;
        }
    }
    return kl_verify(g, 1, s->d);
}

int
kl_steps(KlModule *m, KlSteps *out, KlDiag *d)
{
    memset(out, 0, sizeof(*out));
    St s;
    memset(&s, 0, sizeof(s));
    s.m = m;
    s.f = m->funcs[0];
    s.d = d;
    s.out = out;
    if (inline_pfor_calls(&s) < 0 || plan(&s) < 0) {
        return -1;
    }
    if (s.npfors == 0) {
        return 0;
    }
    int32_t n = s.f->ninsts, maxargs = 2;
    for (int32_t i = 0; i < n; i++) {
        if (s.f->insts[i].nargs > maxargs) {
            maxargs = s.f->insts[i].nargs;
        }
    }
    s.map = alloc(&s, (size_t)n, sizeof(int32_t));
    s.avail_blk = alloc(&s, (size_t)n, sizeof(int32_t));
    s.avail_val = alloc(&s, (size_t)n, sizeof(int32_t));
    s.nb = alloc(&s, (size_t)s.f->nblocks, sizeof(int32_t));
    s.seg = alloc(&s, (size_t)s.npfors, sizeof(int32_t));
    s.argbuf = alloc(&s, (size_t)maxargs, sizeof(int32_t));
    if (s.map == NULL || s.avail_blk == NULL || s.avail_val == NULL
        || s.nb == NULL || s.seg == NULL || s.argbuf == NULL) {
        return nomem(&s);
    }
    if (block_order(&s) < 0) {
        return -1;
    }
    out->first = m->nfuncs;
    for (int32_t k = 0; k <= s.npfors; k++) {
        if (build_step(&s, k) < 0) {
            return -1;
        }
    }
    return 1;
}
