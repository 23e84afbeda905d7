/* jam.c: unroll-and-jam of prange chunk loops (CPU target).
 *
 * A pfor body (passes/parallel.c) runs the iterations k in [lo, hi) of a
 * prange loop, whose iterations the language declares independent.  When
 * an inner loop of the body reads an element that does not depend on k
 * (b[p, j] in a row-by-row matmul, pos[j, 0] in an n-body step), a group
 * of KL_JAM iterations runs side by side ("members" 0 .. KL_JAM - 1, with
 * counters k .. k + KL_JAM - 1): the control flow runs once for the
 * group, and each instruction that depends on the member is repeated per
 * member, in member order, where the original had it.  One load then
 * serves the whole group (LLVM merges the members' adjacent loads of one
 * address), and the members' arithmetic forms vectors (LLVM's SLP
 * vectoriser), while each member keeps its own order of operations.
 *
 * A chunk loop qualifies when
 *   - its header holds only the counter k, the test k < hi with hi defined
 *     outside the loop, and the branch; one jump enters it, and every
 *     jump back passes k + 1;
 *   - the group's blocks (those reached from the body without entering a
 *     cold block, see KlBlock.cold) leave the loop only by those jumps
 *     back (and call no function that may raise, which would return at
 *     once), and every branch among them that tests a value depending on
 *     the member (on k, on memory, on a call) has one cold side;
 *   - an inner loop loads from an address that does not depend on k.
 * Values that depend on the member get one copy per member; kiln's own
 * one-element scratch cells (defer's failure flags) get one cell per
 * member.  The group loop runs while k < hi - (KL_JAM - 1); the original
 * loop then finishes the chunk, or the chunk loop's checked copy
 * (KlLoop.checked) when the body has one: that copy, run otherwise only by
 * chunks that may fail a bounds check, is left as it is.
 *
 * Cold sides are where a check failed.  A group whose member would go
 * there leaves, at the group's first iteration, for the loop that
 * finishes chunks, which runs those iterations again one by one and
 * raises exactly as
 * CPython would.  That is only sound when running an iteration again
 * computes what it computed before ("fallback" groups): the arguments do
 * not overlap (KlOptions.noalias), the body reads no array it writes, and
 * it calls nothing.  Without that, a body with cold sides is not jammed.
 * Otherwise the members' stores are the only effects, and independent
 * iterations may interleave them.
 */
#include "../compile.h"

#include <stdlib.h>

#define KL_JAM_MAX_INSTS 600    /* larger bodies would grow too much */
#define KL_JAM_CELLS 8          /* scratch cells a body may use */

typedef struct Jam {
    KlFunc *f;
    const KlModule *m;
    int32_t *const *arrays;     /* kl_array_params of m */
    int32_t fi;                 /* f's index in m */
    const uint8_t *raising;     /* per function of m: it may raise */
    int32_t loop, header, counter, hi, body, entry_jump;
    int32_t finish;             /* header of the loop that finishes chunks */
    int32_t nblocks, ninsts;    /* before the rewrite */
    uint8_t *inside;            /* per block: in the loop, not its header */
    uint8_t *group;             /* per block: runs in the group loop */
    uint8_t *dep;               /* per value: differs between members */
    int fallback;               /* groups may leave for J->finish */
    int32_t fb;                 /* the block doing so */
    int32_t *vmap;              /* [u * ninsts + v]: member u's value v */
    int32_t *bmap;              /* block -> its copy in the group loop */
    int32_t *lmap;              /* loop -> its copy */
    int32_t ncells;             /* scratch cells used in the loop */
    int32_t cells[KL_JAM_CELLS];
    int32_t cell_copy[KL_JAM_CELLS][KL_JAM];
} Jam;

static const KlInst *
term_of(const Jam *J, int32_t b)
{
    int32_t t = kl_block_term(J->f, b);
    return t < 0 ? NULL : &J->f->insts[t];
}

static int
is_cold(const Jam *J, int32_t b)
{
    const KlInst *t = term_of(J, b);
    return J->f->blocks[b].cold || (t != NULL && t->op == KL_OP_raise);
}

/* Is v `k + 1`? */
static int
is_advance(const Jam *J, int32_t v)
{
    const KlInst *in = &J->f->insts[v];
    if (in->op != KL_OP_add) {
        return 0;
    }
    for (int j = 0; j < 2; j++) {
        const KlInst *c = &J->f->insts[in->args[1 - j]];
        if (in->args[j] == J->counter && c->op == KL_OP_const
            && c->imm.i == 1) {
            return 1;
        }
    }
    return 0;
}

/* The header's shape and the single entry (see the file comment). */
static int
header_ok(Jam *J)
{
    KlFunc *f = J->f;
    const KlBlock *h = &f->blocks[J->header];
    if (h->nparams != 1 || h->insts.len != 3) {
        return 0;
    }
    J->counter = h->insts.items[0];
    const KlInst *test = &f->insts[h->insts.items[1]];
    const KlInst *br = &f->insts[h->insts.items[2]];
    if (test->op != KL_OP_cmp || test->aux != KL_CMP_LT
        || test->args[0] != J->counter || br->op != KL_OP_branch
        || br->args[0] != h->insts.items[1]) {
        return 0;
    }
    J->hi = test->args[1];
    J->body = (int32_t)br->imm.i;
    int32_t hb = f->insts[J->hi].block;
    if (!J->inside[J->body] || J->inside[br->aux] || br->aux == J->header
        || J->inside[hb] || hb == J->header) {
        return 0;
    }
    J->entry_jump = -1;
    for (int32_t b = 0; b < J->nblocks; b++) {
        const KlInst *in = term_of(J, b);
        if (in == NULL || in->op != KL_OP_jump || in->imm.i != J->header) {
            continue;
        }
        if (J->inside[b]) {
            if (!is_advance(J, in->args[0])) {
                return 0;
            }
        }
        else if (J->entry_jump >= 0) {
            return 0;
        }
        else {
            J->entry_jump = kl_block_term(f, b);
        }
    }
    return J->entry_jump >= 0;
}

/* Marks the values that differ between members: k, memory reads and
 * writes, calls, and everything computed from them (to a fixed point
 * over block parameters). */
static void
mark_dep(Jam *J)
{
    KlFunc *f = J->f;
    J->dep[J->counter] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t b = 0; b < J->nblocks; b++) {
            const KlVec *v = &f->blocks[b].insts;
            for (int32_t p = 0; J->inside[b] && p < v->len; p++) {
                const KlInst *in = &f->insts[v->items[p]];
                int term = kl_op_flags(in->op) & KL_TERM;
                int d = !term && !(kl_op_flags(in->op) & KL_PURE);
                for (int32_t j = 0; j < in->nargs && !d; j++) {
                    d = J->dep[in->args[j]];
                }
                if (in->op == KL_OP_jump) {
                    /* the target's params receiving dep values */
                    const KlBlock *t = &f->blocks[in->imm.i];
                    for (int32_t j = 0; j < in->nargs; j++) {
                        int32_t q = t->insts.items[j];
                        if (J->dep[in->args[j]] && !J->dep[q]) {
                            J->dep[q] = 1;
                            changed = 1;
                        }
                    }
                }
                else if (d && !term && !J->dep[v->items[p]]) {
                    J->dep[v->items[p]] = 1;
                    changed = 1;
                }
            }
        }
    }
}

/* The array value address `a` points into, or -1. */
static int32_t
base_of(const KlFunc *f, int32_t a)
{
    for (int depth = 0; depth < 8; depth++) {
        const KlInst *in = &f->insts[a];
        if (in->op == KL_OP_elemptr) {
            return in->args[0];
        }
        if (in->op != KL_OP_ptroff && in->op != KL_OP_alignptr) {
            return -1;
        }
        a = in->args[0];
    }
    return -1;
}

/* Records address a of a scratch array as a cell: it must be an elemptr
 * of a 1-d scratch array, both made in the entry block (as defer.c does).
 * 0 when it is not. */
static int
add_cell(Jam *J, int32_t a)
{
    const KlFunc *f = J->f;
    const KlInst *in = &f->insts[a];
    if (in->op != KL_OP_elemptr || in->nargs != 2 || in->block != 0
        || f->insts[in->args[0]].block != 0) {
        return 0;
    }
    for (int32_t c = 0; c < J->ncells; c++) {
        if (J->cells[c] == a) {
            return 1;
        }
    }
    if (J->ncells == KL_JAM_CELLS) {
        return 0;
    }
    J->cells[J->ncells++] = a;
    return 1;
}

/* Sorts out the memory the loop touches: finds the scratch cells, and
 * sets J->fallback when no array it reads is written in it (nor called
 * into) and the arguments do not overlap.  0 when the loop touches
 * scratch memory other than cells. */
static int
scan_memory(Jam *J)
{
    const KlFunc *f = J->f;
    uint64_t read = 0, written = 0;
    int known = J->m->options.noalias;
    for (int32_t b = 0; b < J->nblocks; b++) {
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = 0; J->inside[b] && p < v->len; p++) {
            const KlInst *in = &f->insts[v->items[p]];
            if (in->op == KL_OP_call || in->op == KL_OP_pfor
                || in->op == KL_OP_scratch) {
                known = 0;
            }
            if (in->op != KL_OP_load && in->op != KL_OP_store) {
                continue;
            }
            int32_t base = base_of(f, in->args[0]);
            int32_t e = base < 0 ? KL_ARRAY_UNKNOWN
                        : kl_array_of(J->m, J->arrays, J->fi, base);
            if (e == KL_ARRAY_SCRATCH) {
                if (!add_cell(J, in->args[0])) {
                    return 0;
                }
            }
            else if (e < 0 || e >= 64) {
                known = 0;
            }
            else if (in->op == KL_OP_load) {
                read |= (uint64_t)1 << e;
            }
            else {
                written |= (uint64_t)1 << e;
            }
        }
    }
    J->fallback = known && (read & written) == 0;
    return 1;
}

/* Marks the group's blocks (see the file comment); 0 when the loop does
 * not qualify. */
static int
find_group(Jam *J)
{
    int32_t *stack = malloc(sizeof(int32_t) * ((size_t)J->nblocks + 1));
    int32_t depth = 0;
    int ok = stack != NULL;
    if (ok) {
        stack[depth++] = J->body;
        J->group[J->body] = 1;
    }
    while (ok && depth > 0) {
        const KlInst *t = term_of(J, stack[--depth]);
        int32_t succ[2] = {-1, -1};
        if (t != NULL && t->op == KL_OP_jump && t->imm.i != J->header) {
            succ[0] = (int32_t)t->imm.i;
        }
        else if (t != NULL && t->op == KL_OP_branch) {
            int cold_t = is_cold(J, (int32_t)t->imm.i);
            int cold_f = is_cold(J, t->aux);
            ok = !(cold_t && cold_f)
                 && (J->fallback || !(cold_t || cold_f))
                 && (!J->dep[t->args[0]] || cold_t || cold_f);
            succ[0] = cold_t ? -1 : (int32_t)t->imm.i;
            succ[1] = cold_f ? -1 : t->aux;
        }
        else {
            ok = t != NULL && t->op == KL_OP_jump;
        }
        for (int j = 0; j < 2 && ok; j++) {
            int32_t s = succ[j];
            if (s >= 0 && !J->group[s]) {
                ok = J->inside[s];
                J->group[s] = 1;
                stack[depth++] = s;
            }
        }
    }
    free(stack);
    return ok;
}

/* Body checks on the group's blocks: only the counter used from the
 * header, a load worth sharing, a bounded size. */
static int
body_ok(const Jam *J)
{
    const KlFunc *f = J->f;
    int32_t count = 0;
    int reuse = 0;
    for (int32_t b = 0; b < J->nblocks; b++) {
        const KlVec *v = &f->blocks[b].insts;
        if (!J->group[b]) {
            continue;
        }
        count += v->len;
        for (int32_t p = 0; p < v->len; p++) {
            const KlInst *in = &f->insts[v->items[p]];
            for (int32_t j = 0; j < in->nargs; j++) {
                int32_t ab = f->insts[in->args[j]].block;
                if (ab == J->header && in->args[j] != J->counter) {
                    return 0;
                }
            }
            if (in->op == KL_OP_call && J->raising[in->imm.i]) {
                return 0;
            }
            reuse |= in->op == KL_OP_load && f->blocks[b].loop != J->loop
                     && !J->dep[in->args[0]];
        }
    }
    return reuse && count <= KL_JAM_MAX_INSTS;
}

/* Member u's value of v. */
static int32_t
member(const Jam *J, int u, int32_t v)
{
    if (v >= J->ninsts) {
        return v;
    }
    if (!J->inside[J->f->insts[v].block] && v != J->counter) {
        for (int32_t c = 0; c < J->ncells; c++) {
            if (J->cells[c] == v) {
                return J->cell_copy[c][u];
            }
        }
        return v;
    }
    return J->vmap[(size_t)u * (size_t)J->ninsts + (size_t)v];
}

static void
set_member(Jam *J, int u, int32_t v, int32_t x)
{
    J->vmap[(size_t)u * (size_t)J->ninsts + (size_t)v] = x;
}

/* A scratch array and cell per member but the first, per cell, in the
 * entry block. */
static int
copy_cells(Jam *J)
{
    KlFunc *f = J->f;
    if (J->ncells == 0) {
        return 0;
    }
    int32_t t = kl_block_reopen(f, 0);
    for (int32_t c = 0; c < J->ncells; c++) {
        KlInst cell = f->insts[J->cells[c]];
        KlInst arr = f->insts[cell.args[0]];
        J->cell_copy[c][0] = J->cells[c];
        for (int u = 1; u < KL_JAM; u++) {
            int32_t a = kl_emit(f, 0, arr.op, arr.type, arr.line, arr.nargs,
                                arr.args);
            if (a < 0) {
                return -1;
            }
            f->insts[a].aux = arr.aux;
            f->insts[a].imm = arr.imm;
            int32_t args[2] = {a, cell.args[1]};
            int32_t e = kl_emit(f, 0, cell.op, cell.type, cell.line, 2, args);
            if (e < 0) {
                return -1;
            }
            J->cell_copy[c][u] = e;
        }
    }
    return kl_vec_push(&f->mod->arena, &f->blocks[0].insts, t) < 0 ? -1 : 0;
}

/* Copies of the group's blocks (with their params) and inner loops. */
static int
copy_blocks(Jam *J, int32_t group)
{
    KlFunc *f = J->f;
    int32_t nloops = f->nloops;
    for (int32_t l = 0; l < nloops; l++) {
        int32_t h = f->loops[l].header;
        J->lmap[l] = l == J->loop ? group : -1;
        if (l != J->loop && h >= 0 && J->group[h]
            && (J->lmap[l] = kl_loop_new(f, -1, -1, -1, -1, 0)) < 0) {
            return -1;
        }
    }
    for (int32_t b = 0; b < J->nblocks; b++) {
        if (!J->group[b]) {
            continue;
        }
        int32_t c = kl_block_new(f);
        if (c < 0) {
            return -1;
        }
        J->bmap[b] = c;
        f->blocks[c].loop = J->lmap[f->blocks[b].loop];
        for (int32_t k = 0; k < f->blocks[b].nparams; k++) {
            int32_t p = f->blocks[b].insts.items[k];
            for (int u = 0; u < KL_JAM; u++) {
                int32_t q = u == 0 || J->dep[p]
                            ? kl_bparam_add(f, c, f->insts[p].type)
                            : member(J, 0, p);
                if (q < 0) {
                    return -1;
                }
                set_member(J, u, p, q);
            }
        }
    }
    for (int32_t l = 0; l < nloops; l++) {
        if (J->lmap[l] >= 0 && l != J->loop) {
            KlLoop *c = &f->loops[J->lmap[l]];
            const KlLoop *o = &f->loops[l];
            c->parent = J->lmap[o->parent];
            c->header = J->bmap[o->header];
            c->body = J->group[o->body] ? J->bmap[o->body] : J->fb;
            c->exit = J->group[o->exit] ? J->bmap[o->exit] : J->fb;
        }
    }
    return 0;
}

/* Copies of the group's instructions but terminators: per member when
 * dep, else one; owner[new - from] is the member.  Operands are
 * remapped afterwards (remap), as a use may come before its definition
 * in block order. */
static int
copy_insts(Jam *J, int32_t *owner, int32_t from)
{
    KlFunc *f = J->f;
    for (int32_t b = 0; b < J->nblocks; b++) {
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = f->blocks[b].nparams; J->group[b] && p < v->len - 1;
             p++) {
            int32_t old = v->items[p];
            int n = J->dep[old] ? KL_JAM : 1;
            for (int u = 0; u < n; u++) {
                KlInst in = f->insts[old];
                int32_t id = kl_emit(f, J->bmap[b], in.op, in.type, in.line,
                                     in.nargs, in.args);
                if (id < 0) {
                    return -1;
                }
                f->insts[id].aux = in.aux;
                f->insts[id].imm = in.imm;
                owner[id - from] = u;
                for (int w = u; w < (n == 1 ? KL_JAM : u + 1); w++) {
                    set_member(J, w, old, id);
                }
            }
        }
    }
    return 0;
}

static void
remap(Jam *J, const int32_t *owner, int32_t from)
{
    KlFunc *f = J->f;
    for (int32_t id = from; id < f->ninsts; id++) {
        KlInst *in = &f->insts[id];
        for (int32_t k = 0; in->op != KL_OP_bparam && k < in->nargs; k++) {
            in->args[k] = member(J, owner[id - from], in->args[k]);
        }
    }
}

/* The copy of a branch: a test depending on the member leaves the group
 * unless every member takes the side that is not cold. */
static int
copy_branch(Jam *J, int32_t c, KlInst t)
{
    KlFunc *f = J->f;
    int cold_t = is_cold(J, (int32_t)t.imm.i);
    int32_t yes = cold_t ? J->fb : J->bmap[t.imm.i];
    int32_t no = is_cold(J, t.aux) ? J->fb : J->bmap[t.aux];
    int32_t cond = member(J, 0, t.args[0]);
    for (int u = 1; J->dep[t.args[0]] && u < KL_JAM && cond >= 0; u++) {
        int32_t args[2] = {cond, member(J, u, t.args[0])};
        cond = kl_emit(f, c, cold_t ? KL_OP_or : KL_OP_and, kl_bool, t.line,
                       2, args);
    }
    return cond < 0 || kl_branch(f, c, cond, yes, no, t.line) < 0 ? -1 : 0;
}

/* The copy of block b's terminator. */
static int
copy_term(Jam *J, int32_t b, int32_t head)
{
    KlFunc *f = J->f;
    const KlInst t = f->insts[kl_block_term(f, b)];
    int32_t c = J->bmap[b], line = t.line;
    if (t.op == KL_OP_branch) {
        return copy_branch(J, c, t);
    }
    if (t.imm.i == J->header) {
        const KlType *it = f->insts[J->counter].type;
        int32_t step = kl_const_int(f, c, it, KL_JAM, line);
        int32_t args[2] = {member(J, 0, J->counter), step};
        int32_t next = step < 0 ? -1
                       : kl_emit(f, c, KL_OP_add, it, line, 2, args);
        return next < 0 || kl_jump(f, c, head, 1, &next, line) < 0 ? -1 : 0;
    }
    int32_t target = (int32_t)t.imm.i;
    int32_t *args = malloc(sizeof(int32_t) * (size_t)(KL_JAM * t.nargs + 1));
    int32_t n = 0;
    if (args == NULL) {
        return -1;
    }
    for (int32_t j = 0; j < t.nargs; j++) {
        int32_t p = f->blocks[target].insts.items[j];
        for (int u = 0; u < (J->dep[p] ? KL_JAM : 1); u++) {
            args[n++] = member(J, u, t.args[j]);
        }
    }
    int rc = kl_jump(f, c, J->bmap[target], n, args, line) < 0 ? -1 : 0;
    free(args);
    return rc;
}

/* The group loop: its header, the members' counters, the exits into
 * J->finish (when done, and when leaving a group), and the copy of the
 * group's blocks. */
static int
rewrite(Jam *J)
{
    KlFunc *f = J->f;
    const KlType *it = f->insts[J->counter].type;
    int line = f->insts[J->entry_jump].line;
    int32_t parent = f->loops[J->loop].parent;
    int32_t head = kl_block_new(f), enter = kl_block_new(f);
    int32_t out = kl_block_new(f);
    J->fb = kl_block_new(f);
    int32_t group = head < 0 || enter < 0 || out < 0 || J->fb < 0 ? -1
                    : kl_loop_new(f, head, enter, out, parent, 0);
    int32_t k = group < 0 ? -1 : kl_bparam_add(f, head, it);
    if (k < 0 || copy_cells(J) < 0) {
        return -1;
    }
    f->blocks[head].loop = f->blocks[enter].loop = group;
    f->blocks[out].loop = f->blocks[J->fb].loop = parent;
    for (int u = 0; u < KL_JAM; u++) {
        int32_t ku = k;
        if (u > 0) {
            int32_t args[2] = {k, kl_const_int(f, enter, it, u, line)};
            ku = kl_emit(f, enter, KL_OP_add, it, line, 2, args);
        }
        if (ku < 0) {
            return -1;
        }
        set_member(J, u, J->counter, ku);
    }
    int32_t from = f->ninsts;
    int32_t *owner = calloc((size_t)KL_JAM * (size_t)J->ninsts + 1,
                            sizeof(int32_t));
    if (owner == NULL || copy_blocks(J, group) < 0
        || copy_insts(J, owner, from) < 0) {
        free(owner);
        return -1;
    }
    remap(J, owner, from);
    free(owner);
    /* head: k < hi - (KL_JAM - 1) ? enter : out */
    int32_t last[2] = {J->hi, kl_const_int(f, head, it, KL_JAM - 1, line)};
    int32_t lim = kl_emit(f, head, KL_OP_sub, it, line, 2, last);
    int32_t lt[2] = {k, lim};
    int32_t test = lim < 0 ? -1 : kl_emit(f, head, KL_OP_cmp, kl_bool, line,
                                          2, lt);
    if (test < 0 || kl_branch(f, head, test, enter, out, line) < 0
        || kl_jump(f, out, J->finish, 1, &k, line) < 0
        || kl_jump(f, J->fb, J->finish, 1, &k, line) < 0
        || kl_jump(f, enter, J->bmap[J->body], 0, NULL, line) < 0) {
        return -1;
    }
    f->insts[test].aux = KL_CMP_LT;
    for (int32_t b = 0; b < J->nblocks; b++) {
        if (J->group[b] && copy_term(J, b, head) < 0) {
            return -1;
        }
    }
    f->insts[J->entry_jump].imm.i = head;
    return 0;
}

/* Where a group's chunk continues one iteration at a time: the checked
 * copy of the chunk loop when the body has one (the same iterations, with
 * checks that pass wherever the fast copy runs; the fast copy is then
 * left unused, which LLVM deletes), else the loop itself. */
static int32_t
finish_header(const Jam *J)
{
    const KlFunc *f = J->f;
    for (int32_t l = 0; l < f->nloops; l++) {
        const KlLoop *lp = &f->loops[l];
        if (!lp->checked || lp->parent >= 0 || lp->header < 0) {
            continue;
        }
        const KlBlock *h = &f->blocks[lp->header];
        const KlInst *test = h->nparams == 1 && h->insts.len == 3
                             ? &f->insts[h->insts.items[1]] : NULL;
        if (test != NULL && test->op == KL_OP_cmp && test->aux == KL_CMP_LT
            && test->args[0] == h->insts.items[0] && test->args[1] == J->hi) {
            return lp->header;
        }
    }
    return J->header;
}

/* Jams chunk loop l of J->f when it qualifies: 1 if it did, 0 if not, -1
 * when out of memory. */
static int
jam_loop(Jam *J, int32_t l)
{
    KlFunc *f = J->f;
    J->loop = l;
    J->header = f->loops[l].header;
    J->nblocks = f->nblocks;
    J->ninsts = f->ninsts;
    J->ncells = 0;
    int rc = -1;
    J->inside = calloc((size_t)f->nblocks + 1, 1);
    J->group = calloc((size_t)f->nblocks + 1, 1);
    J->dep = calloc((size_t)f->ninsts + 1, 1);
    J->vmap = malloc(sizeof(int32_t) * ((size_t)KL_JAM * (size_t)f->ninsts
                                       + 1));
    J->bmap = malloc(sizeof(int32_t) * ((size_t)f->nblocks + 1));
    J->lmap = malloc(sizeof(int32_t) * ((size_t)f->nloops + 1));
    if (J->inside == NULL || J->group == NULL || J->dep == NULL
        || J->vmap == NULL || J->bmap == NULL || J->lmap == NULL) {
        goto done;
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        J->inside[b] = b != J->header
                       && kl_loop_within(f, f->blocks[b].loop, l);
    }
    rc = 0;
    if (header_ok(J) && scan_memory(J)) {
        mark_dep(J);
        if (find_group(J) && body_ok(J)) {
            J->finish = finish_header(J);
            rc = rewrite(J) < 0 ? -1 : 1;
        }
    }
done:
    free(J->inside);
    free(J->group);
    free(J->dep);
    free(J->vmap);
    free(J->bmap);
    free(J->lmap);
    return rc;
}

/* Per function of m: whether it may raise (a raise, a pfor, or a call of
 * a function that may); malloc'ed, NULL when out of memory. */
static uint8_t *
raising_funcs(const KlModule *m)
{
    uint8_t *r = calloc((size_t)m->nfuncs + 1, 1);
    for (int changed = r != NULL; changed;) {
        changed = 0;
        for (int32_t fi = 0; fi < m->nfuncs; fi++) {
            const KlFunc *f = m->funcs[fi];
            for (int32_t i = 0; i < f->ninsts && !r[fi]; i++) {
                const KlInst *in = &f->insts[i];
                r[fi] = in->op == KL_OP_raise || in->op == KL_OP_pfor
                        || (in->op == KL_OP_call && r[in->imm.i]);
                changed |= r[fi];
            }
        }
    }
    return r;
}

/* Jams the chunk loops of pfor body fi (its outermost loops). */
static int
jam_body(const KlModule *m, int32_t *const *arrays, const uint8_t *raising,
         int32_t fi, KlDiag *d)
{
    KlFunc *f = m->funcs[fi];
    int32_t nloops = f->nloops;
    int any = 0;
    for (int32_t l = 0; l < nloops; l++) {
        if (f->loops[l].parent >= 0 || f->loops[l].header < 0
            || f->loops[l].checked) {
            continue;
        }
        Jam J = {.f = f, .m = m, .arrays = arrays, .fi = fi,
                 .raising = raising};
        int r = jam_loop(&J, l);
        if (r < 0) {
            return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        }
        any |= r;
    }
    return any ? kl_verify(f, 1, d) : 0;
}

int
kl_jam(KlModule *m, int32_t *const *map, KlDiag *d)
{
    uint8_t *body = calloc((size_t)m->nfuncs + 1, 1);
    uint8_t *raising = raising_funcs(m);
    int rc = 0;
    if (body == NULL || raising == NULL) {
        rc = kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    for (int32_t fi = 0; rc == 0 && fi < m->nfuncs; fi++) {
        const KlFunc *f = m->funcs[fi];
        for (int32_t i = 0; i < f->ninsts; i++) {
            const KlInst *in = &f->insts[i];
            if (in->op == KL_OP_pfor && in->imm.i >= 0
                && in->imm.i < m->nfuncs) {
                body[in->imm.i] = 1;
            }
        }
    }
    for (int32_t fi = 0; rc == 0 && fi < m->nfuncs; fi++) {
        if (body[fi]) {
            rc = jam_body(m, map, raising, fi, d);
        }
    }
    free(body);
    free(raising);
    return rc;
}
