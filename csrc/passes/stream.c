/* stream.c: streaming stores for innermost loops that write an array the
 * kernel never reads (CPU target).
 *
 * A store that misses the caches first reads the line it writes ("read
 * for ownership"); a non-temporal store writes the line without reading
 * it and without keeping it in cache.  For a loop writing a large array
 * that nothing reads back soon, that saves a third to a half of its memory
 * traffic.  LLVM does not choose non-temporal stores itself, and makes
 * them only of vectors at known alignment, so this pass arranges both.
 *
 * Works on the whole lowered module, after defer.  An entry array
 * parameter A is write-only when no load of any function can read it:
 * every load's array is known (kl_array_params) and is another array or a
 * scratch array.  An innermost loop L streams A when
 *   - L has one entry jump, from block P, and leaves only by its header's
 *     test `branch (cmp lt %c, %stop)`, with %c a header param, %stop
 *     defined outside L, and every latch passing %c + 1 back;
 *   - no value of L is used after it;
 *   - L stores to a C-layout A through one elemptr, whose indices are
 *     invariant in L except the last, which is %c plus an invariant (so
 *     consecutive iterations write consecutive elements), or lower's wrap
 *     of such an index u for negative values, when u >= 0 on entry;
 *   - L is not too large to copy twice.
 * Then P enters L unchanged when L runs fewer than STREAM_MIN_BYTES of A
 * (or its unit index starts negative, or A's address is not a multiple
 * of its item size); otherwise it enters a copy L1 (the
 * peel), which runs while the element address is not a multiple of
 * STREAM_ALIGN bytes and leaves to block X.  X rounds that address (now
 * aligned) with `alignptr` and enters a second copy L2, which stores to A
 * at `ptroff` of it: addresses LLVM knows to be aligned, so its vector
 * stores are aligned too.  The LLVM backend (jit.c) makes those
 * vector stores non-temporal, and fences each function holding them
 * before it returns, so other threads see the data once the pool's job is
 * done.
 *
 * kl_stream only reports which arrays it would stream unless the module
 * is compiled with KlOptions.stream, which the dispatcher asks for when
 * such an array is large (dispatch.c).
 */
#include "../compile.h"

#include <stdlib.h>
#include <string.h>

#define STREAM_ALIGN 64             /* bytes: a cache line */
#define STREAM_MIN_BYTES 2048       /* shorter loops store as usual */
#define MAX_LOOP_INSTS 4000         /* larger loops are not copied */

typedef struct Stream {
    KlFunc *f;
    KlDiag *d;
    int32_t loop;           /* L */
    int32_t header, exit;   /* L's header and the block its test exits to */
    int32_t entry_jump;     /* the jump from P into the header */
    int32_t counter;        /* %c, a param of the header */
    int32_t stop;           /* %stop */
    int32_t addr;           /* the elemptr of the stores to A */
    int32_t unit;           /* its last index, or what it wraps */
    int32_t *bmap, *vmap;   /* kl_loop_copy's maps */
} Stream;

static int
nomem(KlDiag *d)
{
    return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
}

static int
in_loop(const Stream *S, int32_t b)
{
    return S->f->blocks[b].loop == S->loop;
}

static int
outside(const Stream *S, int32_t v)
{
    return !in_loop(S, S->f->insts[v].block);
}

static int
is_const(const KlFunc *f, int32_t v, int64_t value)
{
    const KlInst *in = &f->insts[v];
    return in->op == KL_OP_const && in->type->kind == KL_T_INT
           && in->imm.i == value;
}

#define MAX_DEPTH 8     /* of the expressions looked through */

/* May in be computed ahead of the loop's checks: it cannot trap, and
 * gives a defined value for any operands? */
static int
always_defined(const KlFunc *f, const KlInst *in)
{
    const KlType *from = in->nargs > 0 ? f->insts[in->args[0]].type : NULL;
    switch (in->op) {
    case KL_OP_cast:        /* between ints: truncates or extends */
        return from->kind == KL_T_INT || from->kind == KL_T_BOOL;
    case KL_OP_const:
    case KL_OP_dim:
    case KL_OP_add:
    case KL_OP_sub:
    case KL_OP_mul:
    case KL_OP_and:
    case KL_OP_or:
    case KL_OP_xor:
    case KL_OP_cmp:
    case KL_OP_select:
        return 1;
    default:
        return 0;
    }
}

/* Is v the same in every iteration of L: defined outside it, or an
 * operation of such values that is defined ahead of the loop's checks (a
 * constant, an extent, integer arithmetic; not a division, which lower
 * guards by a check inside L)?  Copies of such values are computed
 * before L runs. */
static int
invariant(const Stream *S, int32_t v, int depth)
{
    const KlInst *in = &S->f->insts[v];
    if (outside(S, v)) {
        return 1;
    }
    if (depth > MAX_DEPTH || !always_defined(S->f, in)
        || (in->type->kind != KL_T_INT && in->type->kind != KL_T_BOOL)) {
        return 0;
    }
    for (int32_t k = 0; k < in->nargs; k++) {
        if (!invariant(S, in->args[k], depth + 1)) {
            return 0;
        }
    }
    return 1;
}

/* Is v %c plus an invariant? */
static int
unit_index(const Stream *S, int32_t v, int depth)
{
    const KlFunc *f = S->f;
    const KlInst *in = &f->insts[v];
    if (v == S->counter) {
        return 1;
    }
    if (depth > MAX_DEPTH || in->type != kl_i64 || outside(S, v)) {
        return 0;
    }
    switch (in->op) {
    case KL_OP_add:
        return (unit_index(S, in->args[0], depth + 1)
                && invariant(S, in->args[1], depth + 1))
               || (unit_index(S, in->args[1], depth + 1)
                   && invariant(S, in->args[0], depth + 1));
    case KL_OP_sub:
        return unit_index(S, in->args[0], depth + 1)
               && invariant(S, in->args[1], depth + 1);
    case KL_OP_mul:
        return (unit_index(S, in->args[0], depth + 1)
                && is_const(f, in->args[1], 1))
               || (unit_index(S, in->args[1], depth + 1)
                   && is_const(f, in->args[0], 1));
    default:
        return 0;
    }
}

/* The unit index last index v is, or wraps as lower does a negative index
 * (`u < 0 ? u + extent : u`, which is u itself while u >= 0); -1 when v
 * is neither. */
static int32_t
unit_of(const Stream *S, int32_t v)
{
    const KlFunc *f = S->f;
    const KlInst *in = &f->insts[v];
    if (unit_index(S, v, 0)) {
        return v;
    }
    if (in->op != KL_OP_select) {
        return -1;
    }
    int32_t u = in->args[2];
    const KlInst *neg = &f->insts[in->args[0]];
    const KlInst *wrap = &f->insts[in->args[1]];
    int ok = neg->op == KL_OP_cmp && neg->aux == KL_CMP_LT
             && neg->args[0] == u && is_const(f, neg->args[1], 0)
             && wrap->op == KL_OP_add && wrap->args[0] == u
             && invariant(S, wrap->args[1], 1) && unit_index(S, u, 0);
    return ok ? u : -1;
}

/* A copy of v, a pure function of %c and invariants, at the end of block
 * b with %c replaced by c; -1 when out of memory. */
static int32_t
index_at(Stream *S, int32_t v, int32_t b, int32_t c)
{
    KlFunc *f = S->f;
    if (v == S->counter) {
        return c;
    }
    if (outside(S, v)) {
        return v;
    }
    KlInst in = f->insts[v];
    int32_t args[3];
    for (int32_t k = 0; k < in.nargs && k < 3; k++) {
        if ((args[k] = index_at(S, in.args[k], b, c)) < 0) {
            return -1;
        }
    }
    int32_t id = kl_emit(f, b, in.op, in.type, in.line, in.nargs, args);
    if (id >= 0) {
        f->insts[id].aux = in.aux;
        f->insts[id].imm = in.imm;
    }
    return id;
}

/* The counter: the header test is `branch (cmp lt %c, %stop)`, %c a
 * header param each latch passes back plus 1.  Sets S->counter and
 * S->stop; 0 when the test has another shape. */
static int
counted(Stream *S)
{
    const KlFunc *f = S->f;
    const KlInst *br = &f->insts[kl_block_term(f, S->header)];
    if (br->op != KL_OP_branch || in_loop(S, (int32_t)br->aux)
        || (int32_t)br->imm.i == S->exit) {
        return 0;
    }
    const KlInst *cmp = &f->insts[br->args[0]];
    if (cmp->op != KL_OP_cmp || cmp->aux != KL_CMP_LT
        || cmp->block != S->header) {
        return 0;
    }
    const KlInst *c = &f->insts[cmp->args[0]];
    if (c->op != KL_OP_bparam || c->block != S->header || c->type != kl_i64
        || !outside(S, cmp->args[1])) {
        return 0;
    }
    S->counter = cmp->args[0];
    S->stop = cmp->args[1];
    for (int32_t b = 0; b < f->nblocks; b++) {
        int32_t t = kl_block_term(f, b);
        if (!in_loop(S, b) || t < 0 || f->insts[t].op != KL_OP_jump
            || f->insts[t].imm.i != S->header) {
            continue;
        }
        const KlInst *next = &f->insts[f->insts[t].args[c->imm.i]];
        if (next->op != KL_OP_add
            || !((next->args[0] == S->counter && is_const(f, next->args[1], 1))
                 || (next->args[1] == S->counter
                     && is_const(f, next->args[0], 1)))) {
            return 0;
        }
    }
    return 1;
}

/* Is any value of L used outside it? */
static int
has_live_outs(const Stream *S)
{
    const KlFunc *f = S->f;
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlBlock *blk = &f->blocks[b];
        for (int32_t k = 0; !in_loop(S, b) && k < blk->insts.len; k++) {
            const KlInst *in = &f->insts[blk->insts.items[k]];
            for (int32_t a = 0; a < in->nargs; a++) {
                if (in_loop(S, f->insts[in->args[a]].block)) {
                    return 1;
                }
            }
        }
    }
    return 0;
}

/* The entry array L streams (S->addr set), or -1: the write-only array
 * (writable[k]) of L's first store that every store of L to that array
 * reaches through the same elemptr, with a unit last index. */
static int32_t
streamed_array(Stream *S, int32_t fi, int32_t *const *map,
               const uint8_t *writable)
{
    const KlFunc *f = S->f;
    const KlModule *m = f->mod;
    int32_t array = -1, ninsts = 0;
    S->addr = -1;
    for (int32_t b = 0; b < f->nblocks; b++) {
        if (!in_loop(S, b)) {
            continue;
        }
        const KlBlock *blk = &f->blocks[b];
        ninsts += blk->insts.len;
        for (int32_t k = 0; k < blk->insts.len; k++) {
            const KlInst *in = &f->insts[blk->insts.items[k]];
            if (in->op != KL_OP_store
                || f->insts[in->args[0]].op != KL_OP_elemptr) {
                continue;
            }
            const KlInst *ep = &f->insts[in->args[0]];
            int32_t e = kl_array_of(m, map, fi, ep->args[0]);
            if (e < 0 || !writable[e] || (array >= 0 && e != array)) {
                continue;
            }
            if (array >= 0 && in->args[0] != S->addr) {
                return -1;      /* A through two addresses */
            }
            array = e;
            S->addr = in->args[0];
        }
    }
    if (array < 0 || ninsts > MAX_LOOP_INSTS) {
        return -1;
    }
    const KlInst *ep = &f->insts[S->addr];
    if (f->insts[ep->args[0]].type->layout != KL_LAYOUT_C) {
        return -1;
    }
    for (int32_t k = 1; k < ep->nargs - 1; k++) {
        if (!invariant(S, ep->args[k], 0)) {
            return -1;
        }
    }
    S->unit = unit_of(S, ep->args[ep->nargs - 1]);
    return S->unit >= 0 ? array : -1;
}

/* Emits op with operands args[0..n) and immediate imm at the end of
 * block b; -1 when out of memory. */
static int32_t
emit(Stream *S, int32_t b, KlOp op, const KlType *t, int32_t n,
     const int32_t *args, int64_t imm)
{
    int32_t id = kl_emit(S->f, b, op, t, S->f->insts[S->addr].line, n, args);
    if (id >= 0) {
        S->f->insts[id].imm.i = imm;
    }
    return id;
}

static int32_t
emit1(Stream *S, int32_t b, KlOp op, const KlType *t, int32_t x, int64_t imm)
{
    return x < 0 ? -1 : emit(S, b, op, t, 1, &x, imm);
}

static int32_t
emit2(Stream *S, int32_t b, KlOp op, const KlType *t, int32_t x, int32_t y)
{
    int32_t args[2] = {x, y};
    return x < 0 || y < 0 ? -1 : emit(S, b, op, t, 2, args, 0);
}

static int32_t
emit_cmp(Stream *S, int32_t b, KlCmp how, int32_t x, int32_t y)
{
    int32_t id = emit2(S, b, KL_OP_cmp, kl_bool, x, y);
    if (id >= 0) {
        S->f->insts[id].aux = how;
    }
    return id;
}

/* cond ? x : false, in block b.  A select, not an `and`: x may be
 * computed from an address outside A when cond is false. */
static int32_t
emit_guarded(Stream *S, int32_t b, int32_t cond, int32_t x)
{
    int32_t no = kl_const_int(S->f, b, kl_bool, 0, S->f->insts[S->addr].line);
    int32_t args[3] = {cond, x, no};
    return cond < 0 || x < 0 || no < 0 ? -1
           : emit(S, b, KL_OP_select, kl_bool, 3, args, 0);
}

/* A copy of the elemptr of the stores at the end of block b, for counter
 * value c. */
static int32_t
addr_at(Stream *S, int32_t b, int32_t c)
{
    KlFunc *f = S->f;
    KlInst ep = f->insts[S->addr];
    int32_t *args = malloc(sizeof(int32_t) * (size_t)ep.nargs);
    if (args == NULL) {
        return -1;
    }
    int32_t id = 0;
    args[0] = ep.args[0];
    for (int32_t k = 1; k < ep.nargs && id >= 0; k++) {
        id = args[k] = index_at(S, ep.args[k], b, c);
    }
    id = id < 0 ? -1 : emit(S, b, KL_OP_elemptr, ep.type, ep.nargs, args, 0);
    free(args);
    return id;
}

/* A new block outside L (in its parent loop). */
static int32_t
new_block(Stream *S)
{
    int32_t b = kl_block_new(S->f);
    if (b >= 0) {
        S->f->blocks[b].loop = S->f->loops[S->loop].parent;
    }
    return b;
}

/* Ends P: to the peel (header h1) when L runs, runs at least
 * STREAM_MIN_BYTES of A, its unit index is not negative (so the last index
 * stays that unit index), and A's first element address is a multiple of
 * the item size (NumPy aligns complex128 to 8 bytes only), so that the
 * peel reaches STREAM_ALIGN; else to L. */
static int
choose(Stream *S, int32_t h1)
{
    KlFunc *f = S->f;
    KlInst ej = f->insts[S->entry_jump];
    int32_t p = ej.block, c0 = ej.args[f->insts[S->counter].imm.i];
    int64_t size = kl_type_itemsize(f->insts[S->addr].type->elem);
    kl_block_reopen(f, p);
    int32_t zero = kl_const_int(f, p, kl_i64, 0, ej.line);
    int32_t able = emit_cmp(S, p, KL_CMP_EQ,
                            emit1(S, p, KL_OP_misalign, kl_i64,
                                  addr_at(S, p, c0), size), zero);
    int32_t trips = emit2(S, p, KL_OP_sub, kl_u64,
                          emit1(S, p, KL_OP_cast, kl_u64, S->stop, 0),
                          emit1(S, p, KL_OP_cast, kl_u64, c0, 0));
    int32_t lng = emit_cmp(S, p, KL_CMP_GE, trips,
                           kl_const_int(f, p, kl_u64,
                                        STREAM_MIN_BYTES / size, ej.line));
    int32_t nonneg = emit_cmp(S, p, KL_CMP_GE, index_at(S, S->unit, p, c0),
                              zero);
    int32_t ok = emit_guarded(S, p, emit_cmp(S, p, KL_CMP_LT, c0, S->stop),
                              emit2(S, p, KL_OP_and, kl_bool, nonneg,
                                    emit2(S, p, KL_OP_and, kl_bool, able,
                                          lng)));
    int32_t yes = new_block(S), no = new_block(S);
    if (ok < 0 || yes < 0 || no < 0
        || kl_branch(f, p, ok, yes, no, ej.line) < 0
        || kl_jump(f, yes, h1, ej.nargs, ej.args, ej.line) < 0
        || kl_jump(f, no, S->header, ej.nargs, ej.args, ej.line) < 0) {
        return nomem(S->d);
    }
    return 0;
}

/* The peel L1 (header h1, counter c1) also leaves, to block x, when A's
 * element address is aligned; x rounds that address (then aligned, or
 * unused as L2 does not run): *base. */
static int
peel(Stream *S, int32_t h1, int32_t c1, int32_t x, int32_t *base)
{
    KlFunc *f = S->f;
    KlInst br = f->insts[kl_block_reopen(f, h1)];
    int32_t a1 = addr_at(S, h1, c1);
    int32_t mis = emit1(S, h1, KL_OP_misalign, kl_i64, a1, STREAM_ALIGN);
    int32_t off = emit_cmp(S, h1, KL_CMP_NE, mis,
                           kl_const_int(f, h1, kl_i64, 0, br.line));
    int32_t go = emit_guarded(S, h1, br.args[0], off);
    *base = a1 < 0 ? -1 : emit1(S, x, KL_OP_alignptr, f->insts[a1].type, a1,
                                STREAM_ALIGN);
    if (go < 0 || *base < 0
        || kl_branch(f, h1, go, (int32_t)br.imm.i, x, br.line) < 0) {
        return nomem(S->d);
    }
    return 0;
}

/* In L2 (its header h2 made from L's by kl_loop_copy, S->vmap its value
 * map), every store to A writes at base + (%c2 - c1). */
static int
rebase(Stream *S, int32_t h2, int32_t base, int32_t c1)
{
    KlFunc *f = S->f;
    KlInst br = f->insts[kl_block_reopen(f, h2)];
    int32_t q = emit2(S, h2, KL_OP_ptroff, f->insts[base].type, base,
                      emit2(S, h2, KL_OP_sub, kl_i64,
                            S->vmap[S->counter], c1));
    if (q < 0 || kl_branch(f, h2, br.args[0], (int32_t)br.imm.i, br.aux,
                           br.line) < 0) {
        return nomem(S->d);
    }
    int32_t addr2 = S->vmap[S->addr];
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlBlock *blk = &f->blocks[b];
        for (int32_t k = 0; blk->loop == f->blocks[h2].loop
                            && k < blk->insts.len; k++) {
            KlInst *in = &f->insts[blk->insts.items[k]];
            if (in->op == KL_OP_store && in->args[0] == addr2) {
                in->args[0] = q;
            }
        }
    }
    return 0;
}

/* Streams A in L (which qualifies): P chooses L or the peel L1, which
 * leaves to x, which enters the streaming copy L2. */
static int
transform(Stream *S)
{
    KlFunc *f = S->f;
    size_t nb = (size_t)f->nblocks, ni = (size_t)f->ninsts;
    S->bmap = malloc(sizeof(int32_t) * (nb + 1));
    S->vmap = malloc(sizeof(int32_t) * (ni + 1));
    int32_t x = new_block(S);
    int rc = -1;
    if (S->bmap == NULL || S->vmap == NULL || x < 0) {
        nomem(S->d);
        goto done;
    }
    memset(S->bmap, 0xff, sizeof(int32_t) * nb);
    memset(S->vmap, 0xff, sizeof(int32_t) * ni);
    if (kl_loop_copy(f, S->loop, x, S->bmap, S->vmap) < 0) {
        nomem(S->d);
        goto done;
    }
    int32_t h1 = S->bmap[S->header], c1 = S->vmap[S->counter], base;
    if (choose(S, h1) < 0 || peel(S, h1, c1, x, &base) < 0) {
        goto done;
    }
    memset(S->bmap, 0xff, sizeof(int32_t) * nb);
    memset(S->vmap, 0xff, sizeof(int32_t) * ni);
    if (kl_loop_copy(f, S->loop, S->exit, S->bmap, S->vmap) < 0) {
        nomem(S->d);
        goto done;
    }
    int32_t h2 = S->bmap[S->header];
    const KlBlock *hb = &f->blocks[h1];
    if (kl_jump(f, x, h2, hb->nparams, hb->insts.items,
                f->insts[S->addr].line) < 0) {
        nomem(S->d);
        goto done;
    }
    rc = rebase(S, h2, base, c1);
done:
    free(S->bmap);
    free(S->vmap);
    return rc;
}

/* Which entry arrays no load of the module can read: writable[k] set for
 * a C-layout array parameter k no known load reads, all clear when some
 * load's array is unknown. */
static void
write_only(const KlModule *m, int32_t *const *map, uint8_t *writable)
{
    const KlFunc *f0 = m->funcs[0];
    for (int32_t k = 0; k < f0->nparams; k++) {
        const KlType *t = f0->param_types[k];
        writable[k] = t->kind == KL_T_ARRAY && t->layout == KL_LAYOUT_C
                      && !t->readonly;
    }
    for (int32_t fi = 0; fi < m->nfuncs; fi++) {
        const KlFunc *f = m->funcs[fi];
        for (int32_t i = 0; i < f->ninsts; i++) {
            const KlInst *in = &f->insts[i];
            if (in->op != KL_OP_load) {
                continue;
            }
            const KlInst *ep = &f->insts[in->args[0]];
            int32_t e = ep->op != KL_OP_elemptr ? KL_ARRAY_UNKNOWN
                        : kl_array_of(m, map, fi, ep->args[0]);
            if (e == KL_ARRAY_UNKNOWN || e == KL_ARRAY_UNSET) {
                memset(writable, 0, (size_t)f0->nparams);
                return;
            }
            if (e >= 0) {
                writable[e] = 0;
            }
        }
    }
}

/* Does loop l of f qualify (see the file comment)?  Fills S. */
static int32_t
qualifying(Stream *S, KlFunc *f, int32_t fi, int32_t l,
           int32_t *const *map, const uint8_t *writable)
{
    const KlLoop lp = f->loops[l];
    *S = (Stream){.f = f, .loop = l, .header = lp.header, .exit = lp.exit,
                  .entry_jump = -1, .counter = -1, .stop = -1, .addr = -1};
    if (lp.header < 0 || lp.exit < 0) {
        return -1;
    }
    for (int32_t j = 0; j < f->nloops; j++) {
        if (f->loops[j].parent == l) {
            return -1;
        }
    }
    S->entry_jump = kl_loop_entry(f, l);
    if (S->entry_jump < 0 || !counted(S) || has_live_outs(S)) {
        return -1;
    }
    return streamed_array(S, fi, map, writable);
}

int
kl_stream(KlModule *m, int32_t *const *map, uint64_t *streamed, KlDiag *d)
{
    *streamed = 0;
    const KlFunc *f0 = m->funcs[0];
    uint8_t *writable = malloc((size_t)f0->nparams + 1);
    int rc = -1;
    if (writable == NULL) {
        nomem(d);
        goto done;
    }
    write_only(m, map, writable);
    for (int32_t fi = 0; fi < m->nfuncs; fi++) {
        KlFunc *f = m->funcs[fi];
        int32_t nloops = f->nloops;
        for (int32_t l = 0; l < nloops; l++) {
            Stream S;
            int32_t e = qualifying(&S, f, fi, l, map, writable);
            if (e < 0 || e >= 64) {
                continue;
            }
            *streamed |= (uint64_t)1 << e;
            S.d = d;
            if (m->options.stream && (transform(&S) < 0
                                      || kl_verify(f, 1, d) < 0)) {
                goto done;
            }
        }
    }
    rc = 0;
done:
    free(writable);
    return rc;
}
