/* ir.c: opcode tables, IR construction, the verifier and the printer
 * (see ir.h).  The printed form is stable: golden tests and inspect_ir()
 * rely on it. */
#include "ir.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- opcode tables ---------------------------------------------------- */

static const struct {
    const char *name;
    int nargs;
    int flags;
} op_info[] = {
#define KL_OP(name, nargs, flags, doc) {#name, nargs, flags},
#include "ops.h"
#undef KL_OP
};

const char *
kl_op_name(KlOp op)
{
    return op_info[op].name;
}

int
kl_op_nargs(KlOp op)
{
    return op_info[op].nargs;
}

int
kl_op_flags(KlOp op)
{
    return op_info[op].flags;
}

static const struct {
    const char *name;
    int nargs;
} math_info[] = {
#define KL_X(name, nargs) {#name, nargs},
    KL_MATHFNS(KL_X)
#undef KL_X
};

const char *
kl_math_name(KlMathFn fn)
{
    return math_info[fn].name;
}

int
kl_math_nargs(KlMathFn fn)
{
    return math_info[fn].nargs;
}

static const char *builtin_pynames[] = {
#define KL_X(name, pyname) pyname,
    KL_BUILTINS(KL_X)
#undef KL_X
};

const char *
kl_builtin_pyname(KlBuiltin b)
{
    return builtin_pynames[b];
}

int
kl_builtin_lookup(const char *pyname)
{
    for (int i = 0; i < KL_BI__COUNT; i++) {
        if (strcmp(builtin_pynames[i], pyname) == 0) {
            return i;
        }
    }
    return -1;
}

int
kl_builtin_math(KlBuiltin b)
{
    switch (b) {
#define KL_SAME(name) case KL_BI_##name: return KL_MATH_##name;
    KL_SAME(sqrt) KL_SAME(sin) KL_SAME(cos) KL_SAME(tan) KL_SAME(asin)
    KL_SAME(acos) KL_SAME(atan) KL_SAME(atan2) KL_SAME(sinh) KL_SAME(cosh)
    KL_SAME(tanh) KL_SAME(asinh) KL_SAME(acosh) KL_SAME(atanh) KL_SAME(exp)
    KL_SAME(exp2) KL_SAME(expm1) KL_SAME(log) KL_SAME(log2) KL_SAME(log10)
    KL_SAME(log1p) KL_SAME(pow) KL_SAME(fabs) KL_SAME(hypot)
    KL_SAME(copysign) KL_SAME(fmod) KL_SAME(erf) KL_SAME(erfc)
    KL_SAME(lgamma) KL_SAME(floor) KL_SAME(ceil) KL_SAME(trunc)
#undef KL_SAME
    case KL_BI_gamma:
        return KL_MATH_tgamma;
    default:
        return -1;
    }
}

/* ---- construction ----------------------------------------------------- */

KlModule *
kl_module_new(KlOptions options)
{
    KlModule *m = calloc(1, sizeof(KlModule));
    if (m == NULL) {
        return NULL;
    }
    kl_arena_init(&m->arena);
    m->options = options;
    for (int i = 0; i < KL_MATH__COUNT; i++) {
        m->devmath[i] = -1;
    }
    return m;
}

void
kl_module_free(KlModule *m)
{
    if (m != NULL) {
        if (m->release != NULL) {
            m->release(m);
        }
        kl_arena_free(&m->arena);
        free(m);
    }
}

/* Makes room for one more element in an arena array; -1 when out of
 * memory. */
static int
reserve(KlArena *a, void **items, int32_t len, int32_t *cap, size_t elem)
{
    if (len < *cap) {
        return 0;
    }
    int32_t n = *cap ? *cap * 2 : 16;
    void *p = kl_arena_grow(a, *items, elem, (size_t)len, (size_t)n);
    if (p == NULL) {
        return -1;
    }
    *items = p;
    *cap = n;
    return 0;
}

KlFunc *
kl_func_new(KlModule *m, const char *name)
{
    KlFunc *f = kl_arena_alloc(&m->arena, sizeof(KlFunc));
    if (f == NULL
        || reserve(&m->arena, (void **)&m->funcs, m->nfuncs, &m->cap_funcs,
                   sizeof(KlFunc *)) < 0) {
        return NULL;
    }
    f->mod = m;
    f->name = kl_arena_strdup(&m->arena, name ? name : "?");
    f->filename = "?";
    if (f->name == NULL || kl_block_new(f) < 0) {
        return NULL;
    }
    m->funcs[m->nfuncs++] = f;
    return f;
}

int32_t
kl_raise_site(KlModule *m, KlExcKind kind, int line, void *exc_class,
              const char *msg)
{
    for (int32_t i = 0; i < m->nraises; i++) {
        KlRaiseSite *s = &m->raises[i];
        if (s->kind == kind && s->line == line && s->exc_class == exc_class
            && strcmp(s->msg, msg ? msg : "") == 0) {
            return i;
        }
    }
    if (reserve(&m->arena, (void **)&m->raises, m->nraises, &m->cap_raises,
                sizeof(KlRaiseSite)) < 0) {
        return -1;
    }
    const char *copy = kl_arena_strdup(&m->arena, msg ? msg : "");
    if (copy == NULL) {
        return -1;
    }
    m->raises[m->nraises] = (KlRaiseSite){kind, line, exc_class, copy};
    return m->nraises++;
}

int32_t
kl_block_new(KlFunc *f)
{
    if (reserve(&f->mod->arena, (void **)&f->blocks, f->nblocks,
                &f->cap_blocks, sizeof(KlBlock)) < 0) {
        return -1;
    }
    KlBlock *b = &f->blocks[f->nblocks];
    memset(b, 0, sizeof(*b));
    b->loop = -1;
    return f->nblocks++;
}

/* Creates an instruction not yet placed in any block. */
static int32_t
new_inst(KlFunc *f, int32_t b, KlOp op, const KlType *type, int line,
         int32_t nargs, const int32_t *args)
{
    KlArena *a = &f->mod->arena;
    if (reserve(a, (void **)&f->insts, f->ninsts, &f->cap_insts,
                sizeof(KlInst)) < 0) {
        return -1;
    }
    KlInst *in = &f->insts[f->ninsts];
    memset(in, 0, sizeof(*in));
    in->op = op;
    in->type = type;
    in->line = line;
    in->block = b;
    in->nargs = nargs;
    if (nargs > 0) {
        in->args = kl_arena_alloc(a, sizeof(int32_t) * (size_t)nargs);
        if (in->args == NULL) {
            return -1;
        }
        memcpy(in->args, args, sizeof(int32_t) * (size_t)nargs);
    }
    return f->ninsts++;
}

int32_t
kl_emit(KlFunc *f, int32_t b, KlOp op, const KlType *type, int line,
        int32_t nargs, const int32_t *args)
{
    int32_t id = new_inst(f, b, op, type, line, nargs, args);
    if (id < 0 || kl_vec_push(&f->mod->arena, &f->blocks[b].insts, id) < 0) {
        return -1;
    }
    return id;
}

int32_t
kl_bparam_add(KlFunc *f, int32_t b, const KlType *type)
{
    int32_t id = new_inst(f, b, KL_OP_bparam, type, 0, 0, NULL);
    KlBlock *blk = &f->blocks[b];
    if (id < 0 || kl_vec_push(&f->mod->arena, &blk->insts, id) < 0) {
        return -1;
    }
    int32_t *items = blk->insts.items;
    memmove(items + blk->nparams + 1, items + blk->nparams,
            sizeof(int32_t) * (size_t)(blk->insts.len - 1 - blk->nparams));
    items[blk->nparams] = id;
    f->insts[id].imm.i = blk->nparams++;
    return id;
}

int32_t
kl_loop_new(KlFunc *f, int32_t header, int32_t body, int32_t exit,
            int32_t parent, int parallel)
{
    if (reserve(&f->mod->arena, (void **)&f->loops, f->nloops, &f->cap_loops,
                sizeof(KlLoop)) < 0) {
        return -1;
    }
    f->loops[f->nloops] = (KlLoop){header, body, exit, parent,
                                   (uint8_t)(parallel != 0)};
    return f->nloops++;
}

int32_t
kl_const_int(KlFunc *f, int32_t b, const KlType *t, int64_t v, int line)
{
    int32_t id = kl_emit(f, b, KL_OP_const, t, line, 0, NULL);
    if (id >= 0) {
        f->insts[id].imm.i = v;
    }
    return id;
}

int32_t
kl_const_float(KlFunc *f, int32_t b, const KlType *t, double v, int line)
{
    int32_t id = kl_emit(f, b, KL_OP_const, t, line, 0, NULL);
    if (id >= 0) {
        f->insts[id].imm.f = v;
    }
    return id;
}

int32_t
kl_jump(KlFunc *f, int32_t b, int32_t target, int32_t nargs,
        const int32_t *args, int line)
{
    int32_t id = kl_emit(f, b, KL_OP_jump, kl_void, line, nargs, args);
    if (id >= 0) {
        f->insts[id].imm.i = target;
    }
    return id;
}

int32_t
kl_branch(KlFunc *f, int32_t b, int32_t cond, int32_t if_true,
          int32_t if_false, int line)
{
    int32_t id = kl_emit(f, b, KL_OP_branch, kl_void, line, 1, &cond);
    if (id >= 0) {
        f->insts[id].imm.i = if_true;
        f->insts[id].aux = if_false;
    }
    return id;
}

int32_t
kl_block_term(const KlFunc *f, int32_t b)
{
    const KlVec *v = &f->blocks[b].insts;
    if (v->len == 0) {
        return -1;
    }
    int32_t last = v->items[v->len - 1];
    return (kl_op_flags(f->insts[last].op) & KL_TERM) ? last : -1;
}

int32_t
kl_block_reopen(KlFunc *f, int32_t b)
{
    KlBlock *blk = &f->blocks[b];
    return blk->insts.items[--blk->insts.len];
}

int
kl_block_succs(const KlFunc *f, int32_t b, int32_t out[2])
{
    int32_t t = kl_block_term(f, b);
    if (t < 0) {
        return -1;
    }
    const KlInst *in = &f->insts[t];
    int n = 0;
    if (in->op == KL_OP_jump || in->op == KL_OP_branch) {
        out[n++] = (int32_t)in->imm.i;
    }
    if (in->op == KL_OP_branch) {
        out[n++] = in->aux;
    }
    for (int i = 0; i < n; i++) {
        if (out[i] < 0 || out[i] >= f->nblocks) {
            return -1;
        }
    }
    return n;
}

/* ---- loops ------------------------------------------------------------ */

static int
in_loop(const KlFunc *f, int32_t loop, int32_t b)
{
    return f->blocks[b].loop == loop;
}

int
kl_loop_within(const KlFunc *f, int32_t inner, int32_t outer)
{
    for (int32_t l = inner; l >= 0; l = f->loops[l].parent) {
        if (l == outer) {
            return 1;
        }
    }
    return 0;
}

int32_t
kl_loop_entry(const KlFunc *f, int32_t loop)
{
    const KlLoop *lp = &f->loops[loop];
    int32_t entry = -1;
    for (int32_t b = 0; b < f->nblocks; b++) {
        int32_t succ[2];
        int n = kl_block_succs(f, b, succ);
        for (int s = 0; s < n; s++) {
            if (in_loop(f, loop, b) == in_loop(f, loop, succ[s])) {
                continue;
            }
            if (in_loop(f, loop, b)) {
                if (b != lp->header || succ[s] != lp->exit) {
                    return -1;      /* break, or an exit elsewhere */
                }
                continue;
            }
            int32_t t = kl_block_term(f, b);
            if (succ[s] != lp->header || f->insts[t].op != KL_OP_jump
                || entry >= 0) {
                return -1;          /* a second entry */
            }
            entry = t;
        }
    }
    return entry;
}

int32_t
kl_loop_copy(KlFunc *f, int32_t loop, int32_t exit_to, int32_t *bmap,
             int32_t *vmap)
{
    int32_t nb = f->nblocks, ni = f->ninsts;
    const KlLoop lp = f->loops[loop];
    int32_t cl = kl_loop_new(f, -1, -1, -1, lp.parent, 0);
    if (cl < 0) {
        return -1;
    }
    for (int32_t b = 0; b < nb; b++) {
        if (!in_loop(f, loop, b)) {
            continue;
        }
        int32_t c = kl_block_new(f);
        if (c < 0) {
            return -1;
        }
        f->blocks[c].loop = cl;
        bmap[b] = c;
        for (int32_t k = 0; k < f->blocks[b].nparams; k++) {
            int32_t p = f->blocks[b].insts.items[k];
            int32_t q = kl_bparam_add(f, c, f->insts[p].type);
            if (q < 0) {
                return -1;
            }
            vmap[p] = q;
        }
    }
    for (int32_t b = 0; b < nb; b++) {
        if (!in_loop(f, loop, b)) {
            continue;
        }
        for (int32_t k = f->blocks[b].nparams; k < f->blocks[b].insts.len;
             k++) {
            int32_t old = f->blocks[b].insts.items[k];
            KlInst in = f->insts[old];
            int32_t id = kl_emit(f, bmap[b], in.op, in.type, in.line,
                                 in.nargs, in.args);
            if (id < 0) {
                return -1;
            }
            f->insts[id].aux = in.aux;
            f->insts[id].imm = in.imm;
            vmap[old] = id;
        }
    }
    /* operands and targets, now that every copy exists */
    for (int32_t id = ni; id < f->ninsts; id++) {
        KlInst *in = &f->insts[id];
        for (int32_t k = 0; k < in->nargs; k++) {
            int32_t a = in->args[k];
            if (a < ni && vmap[a] >= 0) {
                in->args[k] = vmap[a];
            }
        }
        if (in->op == KL_OP_jump || in->op == KL_OP_branch) {
            int32_t t = (int32_t)in->imm.i;
            in->imm.i = bmap[t] >= 0 ? bmap[t] : exit_to;
        }
        if (in->op == KL_OP_branch) {
            in->aux = bmap[in->aux] >= 0 ? bmap[in->aux] : exit_to;
        }
    }
    f->loops[cl].header = bmap[lp.header];
    f->loops[cl].body = bmap[lp.body];
    f->loops[cl].exit = exit_to;
    return cl;
}

/* ---- which entry array a value holds ----------------------------------- */

/* The entry array value v of function fi holds, per map (KL_ARRAY_*
 * when none). */
int32_t
kl_array_of(const KlModule *m, int32_t *const *map, int32_t fi, int32_t v)
{
    const KlFunc *f = m->funcs[fi];
    const KlInst *in = &f->insts[v];
    if (in->op == KL_OP_scratch) {
        return KL_ARRAY_SCRATCH;
    }
    if (in->op != KL_OP_arg || in->imm.i < 0 || in->imm.i >= f->nparams) {
        return KL_ARRAY_UNKNOWN;
    }
    return map[fi][in->imm.i];
}

/* Merges what one call site passes (x) into parameter slot *p; 1 when
 * the slot changed. */
static int
merge_array(int32_t *p, int32_t x)
{
    if (x == KL_ARRAY_SCRATCH) {
        x = KL_ARRAY_UNKNOWN;
    }
    int32_t y = *p == KL_ARRAY_UNSET ? x
                : (x == KL_ARRAY_UNSET || x == *p) ? *p : KL_ARRAY_UNKNOWN;
    if (y == *p) {
        return 0;
    }
    *p = y;
    return 1;
}

/* One pass over the calls and pfors of function fi; 1 when a slot
 * changed. */
static int
propagate_arrays(const KlModule *m, int32_t **map, int32_t fi)
{
    const KlFunc *f = m->funcs[fi];
    int changed = 0;
    for (int32_t i = 0; i < f->ninsts; i++) {
        const KlInst *in = &f->insts[i];
        if (in->op != KL_OP_call && in->op != KL_OP_pfor) {
            continue;
        }
        int32_t ci = (int32_t)in->imm.i;
        if (ci < 0 || ci >= m->nfuncs) {
            continue;
        }
        const KlFunc *callee = m->funcs[ci];
        /* call: operand k is parameter k; pfor: operands from 3 on are
         * the body's parameters of the same number (chunk, lo, hi first) */
        int32_t first = in->op == KL_OP_pfor ? 3 : 0;
        for (int32_t k = first; k < in->nargs && k < callee->nparams; k++) {
            if (callee->param_types[k]->kind == KL_T_ARRAY) {
                changed |= merge_array(&map[ci][k],
                                       kl_array_of(m, map, fi, in->args[k]));
            }
        }
    }
    return changed;
}

int32_t **
kl_array_params(const KlModule *m)
{
    int32_t **map = calloc((size_t)m->nfuncs + 1, sizeof(int32_t *));
    if (map == NULL) {
        return NULL;
    }
    for (int32_t fi = 0; fi < m->nfuncs; fi++) {
        const KlFunc *f = m->funcs[fi];
        map[fi] = malloc(sizeof(int32_t) * ((size_t)f->nparams + 1));
        if (map[fi] == NULL) {
            kl_array_params_free(m, map);
            return NULL;
        }
        for (int32_t k = 0; k < f->nparams; k++) {
            map[fi][k] = fi > 0 ? KL_ARRAY_UNSET
                         : f->param_types[k]->kind == KL_T_ARRAY
                         ? k : KL_ARRAY_UNKNOWN;
        }
    }
    /* the slots only rise (UNSET -> k -> UNKNOWN): this terminates */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t fi = 0; fi < m->nfuncs; fi++) {
            changed |= propagate_arrays(m, map, fi);
        }
    }
    return map;
}

void
kl_array_params_free(const KlModule *m, int32_t **map)
{
    for (int32_t fi = 0; map != NULL && fi < m->nfuncs; fi++) {
        free(map[fi]);
    }
    free(map);
}

/* ---- verifier --------------------------------------------------------- */

static int
verify_target(const KlFunc *f, const KlInst *in, int64_t target, int nargs,
              KlDiag *d)
{
    if (target < 0 || target >= f->nblocks) {
        return kl_internal_error(d, "%s: %s to missing block %" PRId64,
                                 f->name, kl_op_name(in->op), target);
    }
    if (f->blocks[target].nparams != nargs) {
        return kl_internal_error(d, "%s: %s passes %d values to b%" PRId64
                                 " which takes %d", f->name,
                                 kl_op_name(in->op), nargs, target,
                                 f->blocks[target].nparams);
    }
    return 0;
}

/* bitcast %id: int or float scalars of one width on both sides. */
static int
verify_bitcast(const KlFunc *f, int32_t id, KlDiag *d)
{
    const KlType *t = f->insts[id].type;
    const KlType *a = f->insts[f->insts[id].args[0]].type;
    int ok = a != NULL
             && (t->kind == KL_T_INT || t->kind == KL_T_FLOAT)
             && (a->kind == KL_T_INT || a->kind == KL_T_FLOAT)
             && t->bits == a->bits;
    if (!ok) {
        return kl_internal_error(d, "%s: %%%d: bitcast between %s and %s",
                                 f->name, id, a ? a->name : "?", t->name);
    }
    return 0;
}

static int
verify_inst(const KlFunc *f, int32_t b, int32_t pos, int primitive,
            const char *seen, KlDiag *d)
{
    int32_t id = f->blocks[b].insts.items[pos];
    const KlInst *in = &f->insts[id];
    int flags = kl_op_flags(in->op);
    int fixed = kl_op_nargs(in->op);
    if (in->block != b) {
        return kl_internal_error(d, "%s: %%%d listed in b%d but owned by b%d",
                                 f->name, id, b, in->block);
    }
    if (fixed >= 0 && in->nargs != fixed) {
        return kl_internal_error(d, "%s: %%%d: %s takes %d operands, has %d",
                                 f->name, id, kl_op_name(in->op), fixed,
                                 in->nargs);
    }
    if (primitive && (flags & KL_PYLEVEL)) {
        return kl_internal_error(d, "%s: %%%d: Python-level %s after lower",
                                 f->name, id, kl_op_name(in->op));
    }
    if (primitive && in->type == NULL) {
        return kl_internal_error(d, "%s: %%%d: untyped", f->name, id);
    }
    if ((flags & KL_TERM) != 0 && pos != f->blocks[b].insts.len - 1) {
        return kl_internal_error(d, "%s: terminator %%%d inside b%d",
                                 f->name, id, b);
    }
    if ((in->op == KL_OP_bparam) != (pos < f->blocks[b].nparams)) {
        return kl_internal_error(d, "%s: b%d: params must come first",
                                 f->name, b);
    }
    for (int32_t i = 0; i < in->nargs; i++) {
        int32_t a = in->args[i];
        if (a < 0 || a >= f->ninsts) {
            return kl_internal_error(d, "%s: %%%d: operand %d out of range",
                                     f->name, id, a);
        }
        if (f->insts[a].block == b && !seen[a]) {
            return kl_internal_error(d, "%s: %%%d uses %%%d before its "
                                     "definition", f->name, id, a);
        }
    }
    if (in->op == KL_OP_jump) {
        return verify_target(f, in, in->imm.i, in->nargs, d);
    }
    if (in->op == KL_OP_bitcast && primitive) {
        return verify_bitcast(f, id, d);
    }
    if (in->op == KL_OP_branch) {
        if (verify_target(f, in, in->imm.i, 0, d) < 0
            || verify_target(f, in, in->aux, 0, d) < 0) {
            return -1;
        }
        if (primitive && f->insts[in->args[0]].type->kind != KL_T_BOOL) {
            return kl_internal_error(d, "%s: %%%d: branch on non-bool",
                                     f->name, id);
        }
    }
    return 0;
}

int
kl_verify(const KlFunc *f, int primitive, KlDiag *d)
{
    char *seen = calloc((size_t)f->ninsts + 1, 1);
    if (seen == NULL) {
        return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    int rc = 0;
    for (int32_t b = 0; b < f->nblocks && rc == 0; b++) {
        const KlBlock *blk = &f->blocks[b];
        if (kl_block_term(f, b) < 0) {
            rc = kl_internal_error(d, "%s: b%d has no terminator", f->name, b);
            break;
        }
        for (int32_t p = 0; p < blk->insts.len && rc == 0; p++) {
            rc = verify_inst(f, b, p, primitive, seen, d);
            seen[blk->insts.items[p]] = 1;
        }
    }
    free(seen);
    return rc;
}

/* ---- printer ---------------------------------------------------------- */

static const char *binop_names[] = {"add", "sub", "mul", "truediv",
                                    "floordiv", "mod", "pow", "lshift",
                                    "rshift", "and", "or", "xor"};
static const char *unop_names[] = {"neg", "pos", "not", "invert"};
static const char *cmp_names[] = {"lt", "le", "eq", "ne", "gt", "ge"};
static const char *attr_names[] = {"shape", "size", "ndim", "real", "imag"};

/* The sub-opcode and immediate part of an instruction's text. */
static void
print_details(KlText *b, const KlInst *in)
{
    switch (in->op) {
    case KL_OP_const:
        if (in->type == NULL || in->type->kind == KL_T_INT
            || in->type->kind == KL_T_BOOL) {
            kl_text_printf(b, " %" PRId64, in->imm.i);
        }
        else if (in->type->kind == KL_T_FLOAT) {
            kl_text_printf(b, " %.17g", in->imm.f);
        }
        else if (in->type->kind == KL_T_COMPLEX) {
            kl_text_printf(b, " (%.17g%+.17gj)", in->imm.c.re, in->imm.c.im);
        }
        else {
            kl_text_printf(b, " None");
        }
        break;
    case KL_OP_arg:
    case KL_OP_dim:
        kl_text_printf(b, " %" PRId64, in->imm.i);
        break;
    case KL_OP_py_binop:
        kl_text_printf(b, " %s", binop_names[in->aux]);
        break;
    case KL_OP_py_unop:
        kl_text_printf(b, " %s", unop_names[in->aux]);
        break;
    case KL_OP_py_cmp:
    case KL_OP_cmp:
        kl_text_printf(b, " %s", cmp_names[in->aux]);
        break;
    case KL_OP_py_getattr:
        kl_text_printf(b, " %s", attr_names[in->aux]);
        break;
    case KL_OP_py_builtin:
        kl_text_printf(b, " %s", kl_builtin_pyname(in->aux));
        break;
    case KL_OP_math:
        kl_text_printf(b, " %s", kl_math_name(in->aux));
        break;
    case KL_OP_py_call:
        kl_text_printf(b, " callee%" PRId64, in->imm.i);
        break;
    case KL_OP_call:
    case KL_OP_pfor:
        kl_text_printf(b, " f%" PRId64, in->imm.i);
        break;
    case KL_OP_scratch:
    case KL_OP_misalign:
    case KL_OP_alignptr:
        kl_text_printf(b, " %" PRId64, in->imm.i);
        break;
    case KL_OP_raise:
        kl_text_printf(b, " site%" PRId64, in->imm.i);
        break;
    default:
        break;
    }
}

/* A type as the printer shows it: Python scalars (weak) by their Python
 * names, so `int` and `int64` differ in golden output. */
static const char *
type_text(const KlType *t)
{
    return t == NULL ? "?" : kl_type_pyname(t);
}

static void
print_inst(KlText *b, const KlFunc *f, int32_t id)
{
    const KlInst *in = &f->insts[id];
    kl_text_printf(b, "    ");
    if (in->type != kl_void) {
        kl_text_printf(b, "%%%d:%s = ", id, type_text(in->type));
    }
    kl_text_printf(b, "%s", kl_op_name(in->op));
    print_details(b, in);
    if (in->op == KL_OP_jump) {
        kl_text_printf(b, " b%" PRId64 "(", in->imm.i);
    }
    for (int32_t i = 0; i < in->nargs; i++) {
        kl_text_printf(b, "%s%%%d", i == 0 && in->op != KL_OP_jump ? " " :
                i == 0 ? "" : ", ", in->args[i]);
    }
    if (in->op == KL_OP_jump) {
        kl_text_printf(b, ")");
    }
    if (in->op == KL_OP_branch) {
        kl_text_printf(b, ", b%" PRId64 ", b%d", in->imm.i, in->aux);
    }
    kl_text_printf(b, "\n");
}

static void
print_func(KlText *b, const KlFunc *f, int index)
{
    kl_text_printf(b, "func f%d %s(", index, f->name);
    for (int32_t i = 0; i < f->nparams; i++) {
        kl_text_printf(b, "%s%s: %s", i ? ", " : "",
                f->param_names ? f->param_names[i] : "?",
                f->param_types ? type_text(f->param_types[i]) : "?");
    }
    kl_text_printf(b, ") -> %s\n", type_text(f->ret_type));
    for (int32_t l = 0; l < f->nloops; l++) {
        const KlLoop *lp = &f->loops[l];
        kl_text_printf(b, "  loop%d: header b%d, body b%d, exit b%d, "
                       "parent %d%s%s\n", l, lp->header, lp->body, lp->exit,
                       lp->parent, lp->parallel ? ", parallel" : "",
                       lp->checked ? ", checked" : "");
    }
    for (int32_t k = 0; k < f->nblocks; k++) {
        const KlBlock *blk = &f->blocks[k];
        kl_text_printf(b, "  b%d(", k);
        for (int32_t p = 0; p < blk->nparams; p++) {
            const KlInst *in = &f->insts[blk->insts.items[p]];
            kl_text_printf(b, "%s%%%d:%s", p ? ", " : "", blk->insts.items[p],
                    type_text(in->type));
        }
        kl_text_printf(b, "):");
        if (blk->loop >= 0 || blk->cold) {
            kl_text_printf(b, "  ;");
        }
        if (blk->loop >= 0) {
            kl_text_printf(b, " loop%d", blk->loop);
        }
        if (blk->cold) {
            kl_text_printf(b, " cold");
        }
        kl_text_printf(b, "\n");
        int line = -1;
        for (int32_t p = blk->nparams; p < blk->insts.len; p++) {
            int32_t id = blk->insts.items[p];
            if (f->insts[id].line != line && f->insts[id].line > 0) {
                line = f->insts[id].line;
                kl_text_printf(b, "    ; line %d\n", line);
            }
            print_inst(b, f, id);
        }
    }
}

char *
kl_func_print(const KlFunc *f)
{
    KlText b = {0};
    int index = 0;
    for (int32_t i = 0; i < f->mod->nfuncs; i++) {
        if (f->mod->funcs[i] == f) {
            index = i;
        }
    }
    print_func(&b, f, index);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

char *
kl_module_print(const KlModule *m)
{
    KlText b = {0};
    for (int32_t i = 0; i < m->nfuncs; i++) {
        if (i > 0) {
            kl_text_printf(&b, "\n");
        }
        print_func(&b, m->funcs[i], i);
    }
    for (int32_t i = 0; i < m->nraises; i++) {
        kl_text_printf(&b, "site%d: kind %d, line %d, \"%s\"\n", i, m->raises[i].kind,
                m->raises[i].line, m->raises[i].msg);
    }
    if (b.failed || b.s == NULL) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
