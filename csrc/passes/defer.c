/* defer.c: lets innermost loops whose only obstacle to vectorisation is a
 * float check (a zero divisor, a math domain or range error) run without
 * an early exit.
 *
 * Works on lowered, primitive IR of the CPU target, after lower.  A loop L
 * qualifies when it has no inner loop, no call, pfor or return, no store
 * (but see may_store_twice: in prange bodies it may store), a
 * single entry edge and a single exit (its header's test, which must not
 * depend on floats: a counted loop), and at least one branch into a
 * deferrable raise region: blocks of pure instructions that
 * end only in `raise` instructions marked deferrable (aux 1: the check
 * guards float arithmetic only, so the code after it stays well defined
 * when it fails).  Then:
 *   - L is copied into a checked loop C, exactly as it was;
 *   - in L, each branch into a deferrable region becomes `failed |= cond`
 *     on a one-element scratch cell, and every other raise becomes a jump
 *     to C (bounds checks stay exits, so no access leaves its array);
 *   - L's exit tests the cell: clear, the loop's values are final; set,
 *     C runs the loop again from its entry values and raises the first
 *     failing check exactly where CPython would.
 * Re-running is sound because L writes no memory it reads: C sees what L
 * saw.  The values leaving the loop (header values used after it) come
 * from L or C through a merge block.
 */
#include "../compile.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LOOP_INSTS 4000     /* larger loops are not copied */
#define FLAG_TYPE kl_u8         /* the type of the failed flag */

typedef struct Defer {
    KlFunc *f;
    KlDiag *d;
    int32_t loop;           /* L */
    int32_t header, exit;   /* L's header and the block its test exits to */
    int32_t entry_jump;     /* the jump from outside into the header */
    int32_t *bmap;          /* block of L -> block of C, -1 */
    int32_t *vmap;          /* value of L -> value of C, -1 */
    int32_t cell;           /* ptr(bool): the failed flag */
    int32_t rerun;          /* block entering C */
    int32_t merge;          /* block after both loops, with the live-outs */
} Defer;

static int
nomem(Defer *D)
{
    kl_error(D->d, KL_DIAG_NOMEM, 0, "out of memory");
    return -1;
}

static int
in_loop(const Defer *D, int32_t b)
{
    return D->f->blocks[b].loop == D->loop;
}

/* Puts terminator t back at the end of block b. */
static int
reclose(Defer *D, int32_t b, int32_t t)
{
    if (kl_vec_push(&D->f->mod->arena, &D->f->blocks[b].insts, t) < 0) {
        return nomem(D);
    }
    return 0;
}

static int32_t
emit(Defer *D, int32_t b, KlOp op, const KlType *t, int line, int32_t n,
     int32_t x, int32_t y)
{
    int32_t args[2] = {x, y};
    int32_t id = kl_emit(D->f, b, op, t, line, n, args);
    if (id < 0) {
        nomem(D);
    }
    return id;
}

/* A new block outside L and C (in L's parent loop). */
static int32_t
new_block(Defer *D)
{
    int32_t b = kl_block_new(D->f);
    if (b < 0) {
        return nomem(D);
    }
    D->f->blocks[b].loop = D->f->loops[D->loop].parent;
    return b;
}

/* ---- choosing loops --------------------------------------------------- */

/* Is block b (of L) a deferrable raise region: pure instructions ending in
 * a deferrable raise, or in a branch between two such regions?  depth
 * bounds the recursion. */
static int
deferrable_region(const Defer *D, int32_t b, int depth)
{
    const KlFunc *f = D->f;
    if (depth > 8 || !in_loop(D, b)) {
        return 0;
    }
    const KlBlock *blk = &f->blocks[b];
    if (blk->nparams > 0) {
        return 0;
    }
    for (int32_t k = 0; k + 1 < blk->insts.len; k++) {
        if (!(kl_op_flags(f->insts[blk->insts.items[k]].op) & KL_PURE)) {
            return 0;
        }
    }
    const KlInst *t = &f->insts[kl_block_term(f, b)];
    if (t->op == KL_OP_raise) {
        return t->aux == 1;
    }
    return t->op == KL_OP_branch
           && deferrable_region(D, (int32_t)t->imm.i, depth + 1)
           && deferrable_region(D, t->aux, depth + 1);
}

/* Is branch instruction `in` of L one into a deferrable region?  *to_region
 * receives 1 when its true target is the region, 0 when the false one. */
static int
deferrable_branch(const Defer *D, const KlInst *in, int *to_region)
{
    if (in->op != KL_OP_branch) {
        return 0;
    }
    int t = deferrable_region(D, (int32_t)in->imm.i, 0);
    int e = deferrable_region(D, in->aux, 0);
    if (t == e) {
        return 0;
    }
    *to_region = t;
    return 1;
}

static int
is_float_kind(const KlType *t)
{
    return t != NULL && (t->kind == KL_T_FLOAT || t->kind == KL_T_COMPLEX);
}

/* Does the header's test depend, within L, on no float value?  Then the
 * values a failed deferred check leaves behind (NaN, inf) cannot keep L
 * from ending: follows operands and, through the header's params, the
 * values every latch passes back. */
static int
counted_exit(const Defer *D)
{
    const KlFunc *f = D->f;
    const KlInst *br = &f->insts[kl_block_term(f, D->header)];
    if (br->op != KL_OP_branch) {
        return 0;
    }
    char *seen = calloc((size_t)f->ninsts + 1, 1);
    int32_t *work = malloc(sizeof(int32_t) * ((size_t)f->ninsts + 1));
    int32_t n = 0;
    int ok = seen != NULL && work != NULL;
    if (ok) {
        work[n++] = br->args[0];
        seen[br->args[0]] = 1;
    }
    while (ok && n > 0) {
        const KlInst *in = &f->insts[work[--n]];
        if (!in_loop(D, in->block)) {
            continue;
        }
        ok = !is_float_kind(in->type);
        for (int32_t k = 0; ok && k < in->nargs; k++) {
            int32_t a = in->args[k];
            ok = !is_float_kind(f->insts[a].type);
            if (ok && !seen[a]) {
                seen[a] = 1;
                work[n++] = a;
            }
        }
        if (!ok || in->op != KL_OP_bparam || in->block != D->header) {
            continue;
        }
        /* a header param: the values the latches pass for it */
        for (int32_t b = 0; b < f->nblocks; b++) {
            int32_t t = kl_block_term(f, b);
            if (t < 0 || !in_loop(D, b) || f->insts[t].op != KL_OP_jump
                || f->insts[t].imm.i != D->header) {
                continue;
            }
            int32_t a = f->insts[t].args[in->imm.i];
            if (!seen[a]) {
                seen[a] = 1;
                work[n++] = a;
            }
        }
    }
    free(seen);
    free(work);
    return ok;
}

/* The entry parameter whose array the elements at address `addr` of L
 * belong to, or -1 when unknown: addr must index a parameter of pfor body
 * D->f that its pfor, in the entry function, passes an entry parameter. */
static int64_t
entry_array(const Defer *D, const KlInst *pfor, int32_t addr)
{
    const KlFunc *f = D->f, *host = f->mod->funcs[0];
    const KlInst *ep = &f->insts[addr];
    if (ep->op != KL_OP_elemptr) {
        return -1;
    }
    const KlInst *arr = &f->insts[ep->args[0]];
    if (arr->op != KL_OP_arg || arr->imm.i < 3 || arr->imm.i >= pfor->nargs) {
        return -1;
    }
    const KlInst *cap = &host->insts[pfor->args[arr->imm.i]];
    return cap->op == KL_OP_arg ? cap->imm.i : -1;
}

/* The one `pfor` of the entry function that runs D->f, or NULL. */
static const KlInst *
pfor_of(const Defer *D)
{
    const KlModule *m = D->f->mod;
    const KlFunc *host = m->funcs[0];
    for (int32_t i = 0; i < host->ninsts; i++) {
        const KlInst *in = &host->insts[i];
        if (in->op == KL_OP_pfor && in->imm.i >= 0 && in->imm.i < m->nfuncs
            && m->funcs[in->imm.i] == D->f) {
            return in;
        }
    }
    return NULL;
}

/* May L store and still run twice?  Only in the body of a prange loop,
 * whose array contents are unspecified after a raise anyway (so L's
 * stores past the failing iteration may stay), when L reads no array it
 * writes -- with arguments that share no memory (noalias) when it reads
 * any: then C reads what L read and stores the same values up to the
 * raise.  Every access must be to an entry parameter's array, passed by
 * the pfor. */
static int
may_store_twice(const Defer *D)
{
    const KlFunc *f = D->f;
    const KlInst *pfor = pfor_of(D);
    if (pfor == NULL) {
        return 0;
    }
    const KlFunc *host = f->mod->funcs[0];
    char *role = calloc((size_t)host->nparams + 1, 1);   /* 1 read 2 write */
    int ok = role != NULL, reads = 0;
    for (int32_t b = 0; ok && b < f->nblocks; b++) {
        const KlBlock *blk = &f->blocks[b];
        for (int32_t k = 0; ok && in_loop(D, b) && k < blk->insts.len; k++) {
            const KlInst *in = &f->insts[blk->insts.items[k]];
            if (in->op != KL_OP_load && in->op != KL_OP_store) {
                continue;
            }
            int64_t e = entry_array(D, pfor, in->args[0]);
            ok = e >= 0 && e < host->nparams;
            if (ok) {
                role[e] |= in->op == KL_OP_load ? 1 : 2;
                reads |= in->op == KL_OP_load;
                ok = role[e] != 3;
            }
        }
    }
    free(role);
    return ok && (!reads || f->mod->options.noalias);
}

/* Does L's body qualify: no inner loop, no side effect but stores that
 * may_store_twice() accepts, not too large, and at least one branch into a
 * deferrable region? */
static int
body_qualifies(const Defer *D)
{
    const KlFunc *f = D->f;
    int ndefer = 0, ninsts = 0, may_store = -1;
    for (int32_t l = 0; l < f->nloops; l++) {
        if (f->loops[l].parent == D->loop) {
            return 0;
        }
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        if (!in_loop(D, b)) {
            continue;
        }
        const KlBlock *blk = &f->blocks[b];
        ninsts += blk->insts.len;
        for (int32_t k = 0; k < blk->insts.len; k++) {
            const KlInst *in = &f->insts[blk->insts.items[k]];
            int to_region;
            switch (in->op) {
            case KL_OP_store:
                if (may_store < 0) {
                    may_store = may_store_twice(D);
                }
                if (!may_store) {
                    return 0;
                }
                break;
            case KL_OP_call:
            case KL_OP_pfor:
            case KL_OP_ret:
            case KL_OP_scratch:
                return 0;
            case KL_OP_branch:
                ndefer += deferrable_branch(D, in, &to_region);
                break;
            default:
                break;
            }
        }
    }
    return ndefer > 0 && ninsts <= MAX_LOOP_INSTS;
}

/* Does L qualify (see the file comment)?  Sets D->entry_jump. */
static int
qualifies(Defer *D)
{
    if (!body_qualifies(D)) {
        return 0;
    }
    D->entry_jump = kl_loop_entry(D->f, D->loop);
    return D->entry_jump >= 0 && counted_exit(D);
}

/* ---- the checked copy ------------------------------------------------- */

/* Copies L's blocks into C (a new loop), whose exit goes to `exit_to`. */
static int
copy_loop(Defer *D, int32_t exit_to)
{
    if (kl_loop_copy(D->f, D->loop, exit_to, D->bmap, D->vmap) < 0) {
        return nomem(D);
    }
    return 0;
}

/* ---- rewriting L ------------------------------------------------------ */

/* The header's values used outside L: they leave through the merge block,
 * which gets one param per value; every use after the loop is redirected
 * there.  live[0..*n) receives them. */
static int
find_live_outs(Defer *D, int32_t **live, int32_t *n)
{
    KlFunc *f = D->f;
    const KlBlock *h = &f->blocks[D->header];
    *n = 0;
    *live = malloc(sizeof(int32_t) * ((size_t)h->insts.len + 1));
    if (*live == NULL) {
        return nomem(D);
    }
    char *used = calloc((size_t)f->ninsts + 1, 1);
    if (used == NULL) {
        return nomem(D);
    }
    for (int32_t i = 0; i < f->ninsts; i++) {
        const KlInst *in = &f->insts[i];
        if (in_loop(D, in->block)) {
            continue;
        }
        for (int32_t k = 0; k < in->nargs; k++) {
            used[in->args[k]] = 1;
        }
    }
    for (int32_t k = 0; k < h->insts.len; k++) {
        int32_t v = h->insts.items[k];
        if (used[v]) {
            (*live)[(*n)++] = v;
        }
    }
    free(used);
    return 0;
}

/* Redirects every use of live[i] outside L to param i of the merge block
 * (before anything else refers to live[i] outside L). */
static void
redirect_uses(Defer *D, const int32_t *live, const int32_t *params,
              int32_t n)
{
    KlFunc *f = D->f;
    for (int32_t i = 0; i < f->ninsts; i++) {
        KlInst *in = &f->insts[i];
        if (in_loop(D, in->block)) {
            continue;
        }
        for (int32_t k = 0; k < in->nargs; k++) {
            for (int32_t j = 0; j < n; j++) {
                if (in->args[k] == live[j]) {
                    in->args[k] = params[j];
                }
            }
        }
    }
}

/* Jump from block b to the merge block with the given values. */
static int
jump_merge(Defer *D, int32_t b, const int32_t *vals, int32_t n, int line)
{
    if (kl_jump(D->f, b, D->merge, n, vals, line) < 0) {
        return nomem(D);
    }
    return 0;
}

/* Replaces branch `br` ending block b of L, into a deferrable region, by
 * failed |= (the region's condition) and a jump to its other target.  The
 * flag is an integer (an `or` of integers is a reduction the vectoriser
 * knows; bool logic is turned into selects that it does not). */
static int
defer_branch(Defer *D, int32_t b, int32_t br, int to_region)
{
    KlFunc *f = D->f;
    KlInst in = f->insts[br];
    int32_t cont = to_region ? in.aux : (int32_t)in.imm.i;
    kl_block_reopen(f, b);
    int32_t cond = in.args[0];
    if (!to_region) {
        int32_t yes = kl_const_int(f, b, kl_bool, 1, in.line);
        cond = yes < 0 ? -1 : emit(D, b, KL_OP_xor, kl_bool, in.line, 2,
                                   cond, yes);
    }
    int32_t bit = cond < 0 ? -1 : emit(D, b, KL_OP_cast, FLAG_TYPE, in.line, 1,
                                       cond, 0);
    int32_t old = emit(D, b, KL_OP_load, FLAG_TYPE, in.line, 1, D->cell, 0);
    int32_t now = bit < 0 || old < 0 ? -1 : emit(D, b, KL_OP_or, FLAG_TYPE,
                                                  in.line, 2, old, bit);
    if (now < 0
        || emit(D, b, KL_OP_store, kl_void, in.line, 2, D->cell, now) < 0
        || kl_jump(f, b, cont, 0, NULL, in.line) < 0) {
        return nomem(D);
    }
    return 0;
}

/* Rewrites the blocks of L (the first nblocks): deferred branches, and
 * raises into jumps to C.  Decides every branch before changing any. */
static int
rewrite_body(Defer *D, int32_t nblocks)
{
    KlFunc *f = D->f;
    signed char *plan = malloc((size_t)nblocks + 1);
    if (plan == NULL) {
        return nomem(D);
    }
    for (int32_t b = 0; b < nblocks; b++) {
        int to_region;
        plan[b] = -1;
        if (in_loop(D, b)
            && deferrable_branch(D, &f->insts[kl_block_term(f, b)], &to_region)) {
            plan[b] = (signed char)to_region;
        }
    }
    for (int32_t b = 0; b < nblocks; b++) {
        if (!in_loop(D, b)) {
            continue;
        }
        int32_t t = kl_block_term(f, b);
        if (plan[b] >= 0) {
            if (defer_branch(D, b, t, plan[b]) < 0) {
                free(plan);
                return -1;
            }
        }
        else if (f->insts[t].op == KL_OP_raise) {
            int line = f->insts[t].line;
            kl_block_reopen(f, b);
            if (kl_jump(f, b, D->rerun, 0, NULL, line) < 0) {
                free(plan);
                return nomem(D);
            }
        }
    }
    free(plan);
    return 0;
}

/* The one-element flag array in the entry block, cleared on entry to L. */
static int
make_cell(Defer *D, int line)
{
    KlFunc *f = D->f;
    const KlType *at = kl_type_array(FLAG_TYPE, 1, KL_LAYOUT_C, 0);
    const KlType *pt = kl_type_ptr(FLAG_TYPE);
    if (at == NULL || pt == NULL) {
        return nomem(D);
    }
    int32_t t = kl_block_reopen(f, 0);
    int32_t arr = emit(D, 0, KL_OP_scratch, at, line, 0, 0, 0);
    int32_t zero = kl_const_int(f, 0, kl_i64, 0, line);
    if (arr < 0 || zero < 0) {
        return nomem(D);
    }
    f->insts[arr].imm.i = 1;
    D->cell = emit(D, 0, KL_OP_elemptr, pt, line, 2, arr, zero);
    if (D->cell < 0 || reclose(D, 0, t) < 0) {
        return -1;
    }
    int32_t pre = f->insts[D->entry_jump].block;
    t = kl_block_reopen(f, pre);
    int32_t no = kl_const_int(f, pre, FLAG_TYPE, 0, line);
    if (no < 0 || emit(D, pre, KL_OP_store, kl_void, line, 2, D->cell,
                       no) < 0) {
        return nomem(D);
    }
    return reclose(D, pre, t);
}

/* Creates the merge block (one param per live-out of L, then a jump to
 * L's exit) and redirects the live-outs' uses after the loop to it. */
static int
make_merge(Defer *D, const int32_t *live, int32_t nlive, int line)
{
    KlFunc *f = D->f;
    D->merge = new_block(D);
    int32_t *params = malloc(sizeof(int32_t) * ((size_t)nlive + 1));
    if (D->merge < 0 || params == NULL) {
        free(params);
        return nomem(D);
    }
    for (int32_t j = 0; j < nlive; j++) {
        params[j] = kl_bparam_add(f, D->merge, f->insts[live[j]].type);
        if (params[j] < 0) {
            free(params);
            return nomem(D);
        }
    }
    redirect_uses(D, live, params, nlive);
    free(params);
    if (kl_jump(f, D->merge, D->exit, 0, NULL, line) < 0) {
        return nomem(D);
    }
    return 0;
}

/* Wires the exits: L's test now leaves to a block testing the flag (set:
 * the rerun block entering C with L's entry values; clear: the merge with
 * L's live-outs); C's test leaves to the merge with C's live-outs. */
static int
wire_exits(Defer *D, const int32_t *live, int32_t nlive, int32_t done_c,
           int line)
{
    KlFunc *f = D->f;
    int32_t done_l = new_block(D), check = new_block(D);
    int32_t *cvals = malloc(sizeof(int32_t) * ((size_t)nlive + 1));
    if (done_l < 0 || check < 0 || cvals == NULL) {
        free(cvals);
        return nomem(D);
    }
    for (int32_t j = 0; j < nlive; j++) {
        cvals[j] = D->vmap[live[j]];
    }
    int bad = jump_merge(D, done_c, cvals, nlive, line) < 0
              || jump_merge(D, done_l, live, nlive, line) < 0;
    free(cvals);
    KlInst ej = f->insts[D->entry_jump];
    if (bad || kl_jump(f, D->rerun, D->bmap[D->header], ej.nargs, ej.args,
                       line) < 0) {
        return nomem(D);
    }
    int32_t flag = emit(D, check, KL_OP_load, FLAG_TYPE, line, 1, D->cell, 0);
    int32_t no = kl_const_int(f, check, FLAG_TYPE, 0, line);
    int32_t failed = flag < 0 || no < 0 ? -1 : emit(D, check, KL_OP_cmp,
                                                    kl_bool, line, 2, flag,
                                                    no);
    if (failed < 0) {
        return nomem(D);
    }
    f->insts[failed].aux = KL_CMP_NE;
    if (kl_branch(f, check, failed, D->rerun, done_l, line) < 0) {
        return nomem(D);
    }
    KlInst *hb = &f->insts[kl_block_term(f, D->header)];
    if ((int32_t)hb->imm.i == D->exit) {
        hb->imm.i = check;
    }
    else {
        hb->aux = check;
    }
    return 0;
}

/* Applies the transformation to L (which qualifies). */
static int
transform(Defer *D)
{
    KlFunc *f = D->f;
    int32_t nblocks = f->nblocks;
    int line = f->insts[kl_block_term(f, D->header)].line;
    int32_t *live = NULL, nlive = 0;
    int rc = -1;
    if (find_live_outs(D, &live, &nlive) < 0 || make_cell(D, line) < 0
        || make_merge(D, live, nlive, line) < 0) {
        goto done;
    }
    int32_t done_c = new_block(D);
    D->rerun = new_block(D);
    if (done_c < 0 || D->rerun < 0 || copy_loop(D, done_c) < 0
        || wire_exits(D, live, nlive, done_c, line) < 0) {
        goto done;
    }
    f->blocks[D->rerun].cold = 1;
    rc = rewrite_body(D, nblocks);
done:
    free(live);
    return rc;
}

int
kl_defer(KlFunc *f, KlDiag *d)
{
    int32_t nloops = f->nloops;
    for (int32_t l = 0; l < nloops; l++) {
        const KlLoop lp = f->loops[l];
        if (lp.header < 0 || lp.exit < 0) {
            continue;
        }
        Defer D = {.f = f, .d = d, .loop = l, .header = lp.header,
                   .exit = lp.exit, .entry_jump = -1, .cell = -1,
                   .rerun = -1, .merge = -1};
        if (!qualifies(&D)) {
            continue;
        }
        D.bmap = malloc(sizeof(int32_t) * ((size_t)f->nblocks + 1));
        D.vmap = malloc(sizeof(int32_t) * ((size_t)f->ninsts + 1));
        if (D.bmap == NULL || D.vmap == NULL) {
            free(D.bmap);
            free(D.vmap);
            kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
            return -1;
        }
        memset(D.bmap, 0xff, sizeof(int32_t) * (size_t)f->nblocks);
        memset(D.vmap, 0xff, sizeof(int32_t) * (size_t)f->ninsts);
        int rc = transform(&D);
        free(D.bmap);
        free(D.vmap);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}
