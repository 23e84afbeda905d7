/* emit.c: lowered kiln IR -> SPIR-V compute kernels (ABI in kernel.h).
 *
 * Each KlFunc reached from the kernel becomes a SPIR-V function, once per
 * assignment of its array parameters to buffer bindings (an array value
 * is a binding fixed at compile time plus run-time offset, extents and
 * strides, which travel as int64 function parameters).  The entry point
 * "main" decodes the params buffer and calls the kernel's function (once,
 * or once per chunk of a pfor body, grid-stride).
 *
 * Control flow comes from passes/structure.c: ifs become selections,
 * labelled blocks become one-trip loops and loops become loops whose
 * merge block is their exit.  A branch to a label of an enclosing
 * construct other than the innermost one sets a function variable and
 * leaves constructs one by one; each merge it passes checks it.  Block
 * parameters live in function variables (stored by jumps, loaded at the
 * block's start), so no OpPhi is needed.  Values are emitted where the
 * IR defines them; the structure nests every block inside its dominator,
 * so definitions dominate uses.
 *
 * `raise` fills the status buffer (in a serial kernel, first writer wins;
 * in a pfor kernel, the lowest chunk wins, see kernel.h) and sets a
 * private flag; every
 * call checks the flag and returns at once when it is set.  A pfor below
 * the kernel (a prange in a function called from a parallel body) runs
 * as one chunk in the invocation, its scratch arrays private to it.
 * A pfor kernel folds its reductions' partials per workgroup
 * (fold_workgroup) and marks them for the dispatcher, which combines the
 * workgroups' on the device (tag_partials, kernel.h).
 * Floating-point results carry NoContraction unless fastmath, so
 * `a * b + c` is never fused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spirv/unified1/GLSL.std.450.h>

#include "../../passes/structure.h"
#include "builder.h"
#include "kernel.h"
#include "../../runtime/vulkan.h"

/* An array value: a binding plus run-time geometry (int64 ids). */
typedef struct ArrVal {
    int32_t binding;            /* index into the kernel's bindings, or
                                   PRIV(p): private array p (a scratch) */
    const KlType *type;         /* the array type */
    uint32_t off;               /* element offset of [0, ..., 0] */
    uint32_t shape[KL_MAX_NDIM];
    uint32_t stride[KL_MAX_NDIM];   /* in elements */
} ArrVal;

/* One SPIR-V function: a KlFunc with its array params bound. */
typedef struct Fn {
    int32_t func;               /* module function index */
    int32_t *abind;             /* per param: binding, -1 for non-arrays */
    uint32_t id;                /* SPIR-V function id */
    int emitted;
} Fn;

/* An open construct (SPIR-V loop) of the function being emitted. */
typedef struct Con {
    uint32_t head;              /* header block id */
    uint32_t merge, cont;       /* merge block and continue target ids */
    int32_t label, label2;      /* own label (restart or leave), exit label */
    uint8_t is_loop;            /* KL_S_LOOP (label restarts) */
    uint8_t merge_used;         /* something branches to merge */
    uint8_t cont_used;          /* something branches to cont */
    int32_t pend_min;           /* lowest construct index a pending
                                   multi-level branch through it targets */
} Con;

/* Private (per-invocation) arrays are numbered PRIV(p) among bindings. */
#define PRIV(p) (-2 - (p))
#define MAX_PRIV_ELEMS 65536

/* A reduction's partials folded per workgroup in a PFOR kernel: the body
 * stores its chunk's partial into a private one-element array, and a tree
 * in workgroup memory joins the workgroup's, in chunk order, into one
 * partial per workgroup (kernel.h). */
typedef struct Fold {
    int32_t priv;               /* its private array (privs index) */
    int32_t out;                /* binding receiving the workgroups' */
    uint8_t op;                 /* KlReduceOp */
    const KlType *elem;         /* the partials' element type */
} Fold;

#define MAX_FOLDS 8

/* A buffer binding's variable and element pointer type. */
typedef struct Bind {
    uint32_t var;               /* OpVariable (StorageBuffer); with buffer
                                   device addresses a Private uint64
                                   holding the array's address */
    uint32_t elem_ptr;          /* pointer to one element */
    uint32_t mem;               /* element type in memory */
    uint32_t block_ptr;         /* addresses: PhysicalStorageBuffer
                                   pointer to the Block struct, else 0 */
    uint32_t align;             /* addresses: bytes every element access
                                   is aligned to */
} Bind;

typedef struct Em {
    KlModule *m;
    KlDiag *d;
    KlSpvMod sm;
    KlSpvKind kind;
    int bda;                    /* arrays by buffer device address */
    /* kernel-wide */
    uint32_t u32, i64t, status_var, params_var, raised_var;
    uint32_t steps_var;         /* loop steps run (lavapipe guard), or 0 */
    uint32_t zero_var;          /* Private uint32 holding 0, read from the
                                   status buffer (opaque to the driver) */
    uint32_t rsite_var;         /* PFOR: Private uint32, raise site + 1 */
    uint32_t rpay_var[3];       /* PFOR: Private int64 raise payload */
    uint32_t sb_u32_ptr;        /* pointer to a uint32 in a storage buffer */
    KlSpvBinding *binds;        /* ABI description, malloc'ed */
    Bind *bvars;
    int32_t nbinds, capbinds;
    Bind privs[32];             /* private scratch arrays */
    int32_t npriv;
    Fold folds[MAX_FOLDS];      /* PFOR: reductions folded per workgroup */
    int32_t nfolds;
    uint32_t rt_struct[16];     /* buffer struct types by memory type... */
    uint32_t rt_mem[16];        /* ...keyed by this element type id */
    int nrt;
    Fn **fns;                   /* instances, each allocated on its own so
                                   that pointers to them survive growth */
    int32_t nfns, capfns;
    /* per function */
    KlFunc *f;
    Fn *fn;
    KlStructure st;
    uint32_t *val;              /* SPIR-V id of each instruction */
    ArrVal **arr;               /* array value of each instruction */
    uint32_t *pvar;             /* function variable of each bparam */
    uint32_t *params;           /* OpFunctionParameter ids, flattened */
    int32_t *pfirst;            /* first flattened param of each param */
    uint32_t flag_var;          /* multi-level branch target, 0 if unused */
    KlSpvBuf vars, body;        /* function variables, function body */
    uint32_t cur;               /* open block, 0 after a terminator */
    Con *cons;                  /* open constructs, innermost last */
    int32_t ncons;
    int32_t *label_con;         /* construct index of an open label */
} Em;

static void loop_merge(Em *e, uint32_t merge, uint32_t cont);

#define B (&e->body)

/* ---- small helpers ---------------------------------------------------- */

static int
nomem(Em *e)
{
    return kl_error(e->d, KL_DIAG_NOMEM, 0, "out of memory");
}

static int
fail_line(Em *e, int line, const char *what)
{
    return kl_compile_error(e->d, line, "%s is not supported on the Vulkan "
                            "target yet", what);
}

static uint32_t
cu32(Em *e, uint32_t v)
{
    return kl_spv_const_int(&e->sm, 32, v);
}

static uint32_t
ci64(Em *e, int64_t v)
{
    return kl_spv_const_int(&e->sm, 64, (uint64_t)v);
}

/* Starts block `id` as the current one. */
static void
label(Em *e, uint32_t id)
{
    SPV(&e->sm, B, SpvOpLabel, id);
    e->cur = id;
}

/* Ends the current block with a branch to `to`. */
static void
branch(Em *e, uint32_t to)
{
    SPV(&e->sm, B, SpvOpBranch, to);
    e->cur = 0;
}

static void
term0(Em *e, SpvOp op)
{
    kl_spv_inst(&e->sm, B, op, NULL, 0);
    e->cur = 0;
}

/* Emits `r = op type a` / `r = op type a b` / three operands. */
static uint32_t
op1(Em *e, SpvOp op, uint32_t ty, uint32_t a)
{
    uint32_t r = kl_spv_id(&e->sm);
    SPV(&e->sm, B, op, ty, r, a);
    return r;
}

static uint32_t
op2(Em *e, SpvOp op, uint32_t ty, uint32_t a, uint32_t b)
{
    uint32_t r = kl_spv_id(&e->sm);
    SPV(&e->sm, B, op, ty, r, a, b);
    return r;
}

static uint32_t
op3(Em *e, SpvOp op, uint32_t ty, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t r = kl_spv_id(&e->sm);
    SPV(&e->sm, B, op, ty, r, a, b, c);
    return r;
}

/* A float arithmetic result: NoContraction unless fastmath. */
static uint32_t
fop(Em *e, SpvOp op, uint32_t ty, uint32_t a, uint32_t b)
{
    uint32_t r = b ? op2(e, op, ty, a, b) : op1(e, op, ty, a);
    if (!e->m->options.fastmath) {
        SPV(&e->sm, &e->sm.decos, SpvOpDecorate, r,
            SpvDecorationNoContraction);
    }
    return r;
}

static uint32_t
glsl_id(Em *e)
{
    if (e->sm.glsl == 0) {
        e->sm.glsl = kl_spv_id(&e->sm);
    }
    return e->sm.glsl;
}

/* GLSL.std.450 instruction `fn` on args. */
static uint32_t
ext(Em *e, uint32_t ty, uint32_t fn, const uint32_t *args, int n)
{
    uint32_t r = kl_spv_id(&e->sm);
    uint32_t w[8] = {ty, r, glsl_id(e), fn, 0, 0, 0, 0};
    memcpy(w + 4, args, (size_t)n * sizeof(uint32_t));
    kl_spv_inst(&e->sm, B, SpvOpExtInst, w, 4 + (size_t)n);
    return r;
}

/* ---- types ------------------------------------------------------------ */

/* The SPIR-V type of a value of kiln type t; 0 for none/void. */
static uint32_t
reg_type(Em *e, const KlType *t)
{
    switch (t->kind) {
    case KL_T_BOOL:
        return kl_spv_bool(&e->sm);
    case KL_T_INT:
        return kl_spv_int(&e->sm, t->bits);
    case KL_T_FLOAT:
        return kl_spv_float(&e->sm, t->bits);
    case KL_T_COMPLEX:
        return kl_spv_vec(&e->sm, kl_spv_float(&e->sm, t->bits / 2), 2);
    default:
        return 0;
    }
}

/* The in-memory SPIR-V type of scalar t (bool as uint8). */
static uint32_t
mem_type(Em *e, const KlType *t)
{
    return t->kind == KL_T_BOOL ? kl_spv_int(&e->sm, 8) : reg_type(e, t);
}

static int
is_float(const KlType *t)
{
    return t->kind == KL_T_FLOAT || t->kind == KL_T_COMPLEX;
}

static int
is_sint(const KlType *t)
{
    return t->kind == KL_T_INT && t->is_signed;
}

/* The Block struct {T data[]} for buffers of memory type mem (stride
 * itemsize), made once per element type. */
static uint32_t
buffer_struct(Em *e, uint32_t mem, int itemsize)
{
    for (int i = 0; i < e->nrt; i++) {
        if (e->rt_mem[i] == mem) {
            return e->rt_struct[i];
        }
    }
    KlSpvMod *sm = &e->sm;
    uint32_t w[1] = {mem};
    uint32_t rta = kl_spv_fresh_type(sm, SpvOpTypeRuntimeArray, w, 1);
    SPV(sm, &sm->decos, SpvOpDecorate, rta, SpvDecorationArrayStride,
        (uint32_t)itemsize);
    uint32_t st = kl_spv_fresh_type(sm, SpvOpTypeStruct, &rta, 1);
    SPV(sm, &sm->decos, SpvOpDecorate, st, SpvDecorationBlock);
    SPV(sm, &sm->decos, SpvOpMemberDecorate, st, 0, SpvDecorationOffset, 0);
    if (e->nrt < 16) {
        e->rt_mem[e->nrt] = mem;
        e->rt_struct[e->nrt++] = st;
    }
    return st;
}

/* A storage-buffer variable of struct type st at binding b. */
static uint32_t
buffer_var(Em *e, uint32_t st, uint32_t b, const char *name)
{
    KlSpvMod *sm = &e->sm;
    uint32_t ptr = kl_spv_ptr(sm, SpvStorageClassStorageBuffer, st);
    uint32_t var = kl_spv_id(sm);
    SPV(sm, &sm->types, SpvOpVariable, ptr, var,
        SpvStorageClassStorageBuffer);
    SPV(sm, &sm->decos, SpvOpDecorate, var, SpvDecorationDescriptorSet, 0);
    SPV(sm, &sm->decos, SpvOpDecorate, var, SpvDecorationBinding, b);
    kl_spv_name(sm, var, name);
    return var;
}

/* Adds array binding number nbinds for elements of type elem; returns its
 * index or -1. */
static int32_t
add_binding(Em *e, int32_t param, const KlType *elem, int64_t count)
{
    if (e->nbinds == e->capbinds) {
        int32_t cap = e->capbinds ? e->capbinds * 2 : 8;
        KlSpvBinding *p = realloc(e->binds, sizeof(*p) * (size_t)cap);
        Bind *q = p ? realloc(e->bvars, sizeof(*q) * (size_t)cap) : NULL;
        if (p != NULL) {
            e->binds = p;
        }
        if (q == NULL) {
            nomem(e);
            return -1;
        }
        e->bvars = q;
        e->capbinds = cap;
    }
    int32_t k = e->nbinds++;
    e->binds[k] = (KlSpvBinding){param, elem, count, 0};
    uint32_t mem = mem_type(e, elem);
    char name[32];
    snprintf(name, sizeof(name), param >= 0 ? "arg%d" : "scratch%d",
             param >= 0 ? (int)param : (int)k);
    uint32_t st = buffer_struct(e, mem, kl_type_itemsize(elem));
    Bind *b = &e->bvars[k];
    b->mem = mem;
    if (e->bda) {
        KlSpvMod *sm = &e->sm;
        sm->psb = 1;
        b->var = kl_spv_id(sm);
        SPV(sm, &sm->types, SpvOpVariable,
            kl_spv_ptr(sm, SpvStorageClassPrivate, e->i64t), b->var,
            SpvStorageClassPrivate);
        kl_spv_name(sm, b->var, name);
        b->block_ptr = kl_spv_ptr(sm, SpvStorageClassPhysicalStorageBuffer,
                                  st);
        b->elem_ptr = kl_spv_ptr(sm, SpvStorageClassPhysicalStorageBuffer,
                                 mem);
        b->align = (uint32_t)kl_type_itemsize(
            elem->kind == KL_T_COMPLEX ? (elem->bits == 64 ? kl_f32 : kl_f64)
                                       : elem);
        return k;
    }
    b->var = buffer_var(e, st, KL_SPV_FIRST_ARRAY + (uint32_t)k, name);
    b->elem_ptr = kl_spv_ptr(&e->sm, SpvStorageClassStorageBuffer, mem);
    b->block_ptr = 0;
    b->align = 0;
    return k;
}

/* ---- words of the status and params buffers --------------------------- */

/* Integer v of `from` bits converted to `to` bits, sign-extending when
 * `is_signed`.  Widening sign extension is written as a zero extension
 * and two shifts: Mesa 22's lavapipe miscompiles comparisons of an
 * OpSConvert result. */
static uint32_t
int_convert(Em *e, uint32_t v, int from, int to, int is_signed)
{
    uint32_t ty = kl_spv_int(&e->sm, to);
    if (from == to) {
        return v;
    }
    uint32_t w = op1(e, SpvOpUConvert, ty, v);
    if (!is_signed || to < from) {
        return w;
    }
    uint32_t sh = kl_spv_const_int(&e->sm, to, (uint64_t)(to - from));
    return op2(e, SpvOpShiftRightArithmetic, ty,
               op2(e, SpvOpShiftLeftLogical, ty, w, sh), sh);
}


/* Pointer to uint32 word `idx` of buffer variable var. */
static uint32_t
word_ptr(Em *e, uint32_t var, uint32_t idx)
{
    uint32_t r = kl_spv_id(&e->sm);
    SPV(&e->sm, B, SpvOpAccessChain, e->sb_u32_ptr, r, var, cu32(e, 0),
        cu32(e, idx));
    return r;
}

static uint32_t
read_word(Em *e, uint32_t idx)
{
    return op1(e, SpvOpLoad, e->u32, word_ptr(e, e->params_var, idx));
}

/* The 64-bit value of type ty in params words idx, idx + 1. */
static uint32_t
read64(Em *e, uint32_t ty, uint32_t idx)
{
    uint32_t v2 = kl_spv_vec(&e->sm, e->u32, 2);
    uint32_t lo = read_word(e, idx), hi = read_word(e, idx + 1);
    return op1(e, SpvOpBitcast, ty, op2(e, SpvOpCompositeConstruct, v2, lo,
                                         hi));
}

/* Decodes scalar t from the params buffer at word idx (kernel.h). */
static uint32_t
read_scalar(Em *e, const KlType *t, uint32_t idx)
{
    uint32_t ty = reg_type(e, t);
    switch (t->kind) {
    case KL_T_BOOL:
        return op2(e, SpvOpINotEqual, ty, read_word(e, idx), cu32(e, 0));
    case KL_T_INT:
        if (t->bits == 64) {
            return read64(e, ty, idx);
        }
        return t->bits == 32 ? read_word(e, idx)
                             : op1(e, SpvOpUConvert, ty, read_word(e, idx));
    case KL_T_FLOAT:
        return t->bits == 64 ? read64(e, ty, idx)
                             : op1(e, SpvOpBitcast, ty, read_word(e, idx));
    case KL_T_COMPLEX: {
        const KlType *part = t->bits == 64 ? kl_f32 : kl_f64;
        uint32_t step = t->bits == 64 ? 1 : 2;
        uint32_t re = read_scalar(e, part, idx);
        uint32_t im = read_scalar(e, part, idx + step);
        return op2(e, SpvOpCompositeConstruct, ty, re, im);
    }
    default:
        return 0;
    }
}

/* Stores 32-bit word w at word idx of the status buffer. */
static void
put_word(Em *e, uint32_t idx, uint32_t w)
{
    SPV(&e->sm, B, SpvOpStore, word_ptr(e, e->status_var, idx), w);
}

/* Stores scalar v of type t as its C representation from status word idx. */
static void
put_scalar(Em *e, const KlType *t, uint32_t v, uint32_t idx)
{
    uint32_t v2 = kl_spv_vec(&e->sm, e->u32, 2);
    switch (t->kind) {
    case KL_T_BOOL:
        put_word(e, idx, op3(e, SpvOpSelect, e->u32, v, cu32(e, 1),
                             cu32(e, 0)));
        break;
    case KL_T_INT:
    case KL_T_FLOAT:
        if (t->bits == 64) {
            uint32_t p = op1(e, SpvOpBitcast, v2, v);
            put_word(e, idx, op2(e, SpvOpCompositeExtract, e->u32, p, 0));
            put_word(e, idx + 1, op2(e, SpvOpCompositeExtract, e->u32, p, 1));
        }
        else if (t->kind == KL_T_FLOAT) {
            put_word(e, idx, op1(e, SpvOpBitcast, e->u32, v));
        }
        else {
            put_word(e, idx, int_convert(e, v, t->bits, 32, is_sint(t)));
        }
        break;
    case KL_T_COMPLEX: {
        const KlType *part = t->bits == 64 ? kl_f32 : kl_f64;
        uint32_t pt = reg_type(e, part), step = t->bits == 64 ? 1 : 2;
        put_scalar(e, part, op2(e, SpvOpCompositeExtract, pt, v, 0), idx);
        put_scalar(e, part, op2(e, SpvOpCompositeExtract, pt, v, 1),
                   idx + step);
        break;
    }
    default:
        break;
    }
}

/* Words a parameter of type t takes in the params buffer. */
static uint32_t
slot_words(const KlType *t)
{
    switch (t->kind) {
    case KL_T_ARRAY:
        return 2 * (1 + 2 * (uint32_t)t->ndim);
    case KL_T_COMPLEX:
        return t->bits == 128 ? 4 : 2;
    case KL_T_NONE:
    case KL_T_VOID:
        return 0;
    default:
        return 2;
    }
}

/* ---- function instances ----------------------------------------------- */

/* The instance of module function fi with array params bound to abind
 * (NULL: bind each array param to a fresh binding, for the kernel). */
static Fn *
get_fn(Em *e, int32_t fi, const int32_t *abind)
{
    KlFunc *f = e->m->funcs[fi];
    for (int32_t i = 0; abind != NULL && i < e->nfns; i++) {
        Fn *g = e->fns[i];
        if (g->func == fi && memcmp(g->abind, abind,
                                    sizeof(int32_t) * (size_t)f->nparams)
                                 == 0) {
            return g;
        }
    }
    if (e->nfns == e->capfns) {
        int32_t cap = e->capfns ? e->capfns * 2 : 8;
        Fn **p = realloc(e->fns, sizeof(Fn *) * (size_t)cap);
        if (p == NULL) {
            nomem(e);
            return NULL;
        }
        e->fns = p;
        e->capfns = cap;
    }
    int32_t *ab = calloc((size_t)f->nparams + 1, sizeof(int32_t));
    if (ab == NULL) {
        nomem(e);
        return NULL;
    }
    for (int32_t k = 0; k < f->nparams; k++) {
        if (abind != NULL) {
            ab[k] = abind[k];
        }
        else if (f->param_types[k]->kind == KL_T_ARRAY) {
            ab[k] = add_binding(e, k, f->param_types[k]->elem, 0);
            if (ab[k] < 0) {
                free(ab);
                return NULL;
            }
        }
        else {
            ab[k] = -1;
        }
    }
    Fn *g = calloc(1, sizeof(Fn));
    if (g == NULL) {
        free(ab);
        nomem(e);
        return NULL;
    }
    e->fns[e->nfns++] = g;
    g->func = fi;
    g->abind = ab;
    g->id = kl_spv_id(&e->sm);
    g->emitted = 0;
    kl_spv_name(&e->sm, g->id, f->name);
    return g;
}

/* SPIR-V parameter types of function f into out (room for the flattened
 * count); returns the count. */
static int
param_types(Em *e, const KlFunc *f, uint32_t *out)
{
    int n = 0;
    for (int32_t k = 0; k < f->nparams; k++) {
        const KlType *t = f->param_types[k];
        if (t->kind == KL_T_ARRAY) {
            for (int j = 0; j < 1 + 2 * t->ndim; j++) {
                out[n++] = e->i64t;
            }
        }
        else if (reg_type(e, t) != 0) {
            out[n++] = reg_type(e, t);
        }
    }
    return n;
}

static int
flat_count(const KlFunc *f)
{
    int n = 0;
    for (int32_t k = 0; k < f->nparams; k++) {
        const KlType *t = f->param_types[k];
        n += t->kind == KL_T_ARRAY ? 1 + 2 * t->ndim : 1;
    }
    return n;
}

static uint32_t
ret_type(Em *e, const KlFunc *f)
{
    uint32_t t = reg_type(e, f->ret_type);
    return t ? t : kl_spv_void(&e->sm);
}

static uint32_t
fn_type(Em *e, const KlFunc *f)
{
    uint32_t *pt = malloc(sizeof(uint32_t) * ((size_t)flat_count(f) + 1));
    if (pt == NULL) {
        nomem(e);
        return 0;
    }
    int n = param_types(e, f, pt);
    uint32_t t = kl_spv_fntype(&e->sm, ret_type(e, f), pt, n);
    free(pt);
    return t;
}

/* ---- values ----------------------------------------------------------- */

static uint32_t
val(Em *e, int32_t id)
{
    return e->val[id];
}

static const KlType *
vtype(Em *e, int32_t id)
{
    return e->f->insts[id].type;
}

/* The function variable of block param `id`, made on first use. */
static uint32_t
param_var(Em *e, int32_t id)
{
    if (e->pvar[id] == 0) {
        uint32_t ty = reg_type(e, vtype(e, id));
        uint32_t ptr = kl_spv_ptr(&e->sm, SpvStorageClassFunction, ty);
        e->pvar[id] = kl_spv_id(&e->sm);
        SPV(&e->sm, &e->vars, SpvOpVariable, ptr, e->pvar[id],
            SpvStorageClassFunction);
    }
    return e->pvar[id];
}

/* Checks that bparam/undef/select/... `id` of type t can live in a
 * register: arrays and pointers cannot. */
static int
check_reg(Em *e, int32_t id)
{
    const KlType *t = vtype(e, id);
    if (t->kind == KL_T_ARRAY) {
        return fail_line(e, e->f->insts[id].line,
                         "an array chosen at run time (assigned on "
                         "several paths)");
    }
    if (t->kind == KL_T_PTR || t->kind == KL_T_SHAPE) {
        return kl_internal_error(e->d, "%s: %%%d of type %s in a block "
                                 "parameter", e->f->name, (int)id, t->name);
    }
    return 0;
}

/* Float constant v of `bits` bits.  A zero is computed from a run-time
 * zero word instead: drivers fold `x + 0.0` to x (and `x * 0.0` to 0)
 * even under SignedZeroInfNanPreserve, which breaks -0.0 + 0.0. */
static uint32_t
fconst(Em *e, int bits, double v)
{
    if (v != 0.0 || e->zero_var == 0 || e->cur == 0) {
        return kl_spv_const_float(&e->sm, bits, v);
    }
    uint32_t z = op1(e, SpvOpLoad, e->u32, e->zero_var);
    uint32_t ft = kl_spv_float(&e->sm, bits);
    uint32_t sign = signbit(v) ? 0x80000000u : 0;
    uint32_t hi = op2(e, SpvOpBitwiseOr, e->u32, z, cu32(e, sign));
    if (bits == 32) {
        return op1(e, SpvOpBitcast, ft, hi);
    }
    uint32_t v2 = kl_spv_vec(&e->sm, e->u32, 2);
    return op1(e, SpvOpBitcast, ft, op2(e, SpvOpCompositeConstruct, v2, z,
                                        hi));
}

static uint32_t
const_of(Em *e, const KlInst *in)
{
    const KlType *t = in->type;
    switch (t->kind) {
    case KL_T_BOOL:
        return kl_spv_const_bool(&e->sm, in->imm.i != 0);
    case KL_T_INT:
        return kl_spv_const_int(&e->sm, t->bits, (uint64_t)in->imm.i);
    case KL_T_FLOAT:
        return fconst(e, t->bits, in->imm.f);
    case KL_T_COMPLEX: {
        int pb = t->bits / 2;
        uint32_t re = fconst(e, pb, in->imm.c.re);
        uint32_t im = fconst(e, pb, in->imm.c.im);
        return op2(e, SpvOpCompositeConstruct, reg_type(e, t), re, im);
    }
    default:
        return 0;
    }
}

/* Zero of float or int type ty of kiln type t. */
static uint32_t
zero_of(Em *e, const KlType *t)
{
    return t->kind == KL_T_FLOAT ? fconst(e, t->bits, 0.0)
                                 : kl_spv_const_int(&e->sm, t->bits, 0);
}

/* Real scalar v (bool, int, float) converted to float type `to`. */
static uint32_t
to_float(Em *e, uint32_t v, const KlType *from, const KlType *to)
{
    uint32_t ty = reg_type(e, to);
    switch (from->kind) {
    case KL_T_BOOL:
        return op3(e, SpvOpSelect, ty, v, kl_spv_const_float(&e->sm, to->bits,
                                                             1.0),
                   fconst(e, to->bits, 0.0));
    case KL_T_INT:
        return op1(e, from->is_signed ? SpvOpConvertSToF : SpvOpConvertUToF,
                   ty, v);
    default:
        return from->bits == to->bits ? v : op1(e, SpvOpFConvert, ty, v);
    }
}

/* `cast` of v from `from` to `to` (ops.h); 0 when not a scalar cast. */
static uint32_t
emit_cast(Em *e, uint32_t v, const KlType *from, const KlType *to)
{
    uint32_t ty = reg_type(e, to), bt = kl_spv_bool(&e->sm);
    if (from->kind == to->kind && from->bits == to->bits) {
        return v;
    }
    switch (to->kind) {
    case KL_T_BOOL:
        if (from->kind == KL_T_INT) {
            return op2(e, SpvOpINotEqual, bt, v, zero_of(e, from));
        }
        if (from->kind == KL_T_FLOAT) {
            return op2(e, SpvOpFUnordNotEqual, bt, v, zero_of(e, from));
        }
        if (from->kind == KL_T_COMPLEX) {
            const KlType *p = from->bits == 64 ? kl_f32 : kl_f64;
            uint32_t pt = reg_type(e, p);
            uint32_t re = op2(e, SpvOpCompositeExtract, pt, v, 0);
            uint32_t im = op2(e, SpvOpCompositeExtract, pt, v, 1);
            return op2(e, SpvOpLogicalOr, bt,
                       op2(e, SpvOpFUnordNotEqual, bt, re, zero_of(e, p)),
                       op2(e, SpvOpFUnordNotEqual, bt, im, zero_of(e, p)));
        }
        return 0;
    case KL_T_INT:
        if (from->kind == KL_T_BOOL) {
            return op3(e, SpvOpSelect, ty, v,
                       kl_spv_const_int(&e->sm, to->bits, 1),
                       kl_spv_const_int(&e->sm, to->bits, 0));
        }
        if (from->kind == KL_T_INT) {
            return int_convert(e, v, from->bits, to->bits, from->is_signed);
        }
        if (from->kind == KL_T_FLOAT) {
            return op1(e, to->is_signed ? SpvOpConvertFToS
                                        : SpvOpConvertFToU, ty, v);
        }
        return 0;
    case KL_T_FLOAT:
        return from->kind == KL_T_COMPLEX ? 0 : to_float(e, v, from, to);
    case KL_T_COMPLEX: {
        const KlType *part = to->bits == 64 ? kl_f32 : kl_f64;
        if (from->kind == KL_T_COMPLEX) {
            return op1(e, SpvOpFConvert, ty, v);
        }
        uint32_t re = to_float(e, v, from, part);
        return op2(e, SpvOpCompositeConstruct, ty, re, zero_of(e, part));
    }
    default:
        return 0;
    }
}

/* ---- math ------------------------------------------------------------- */

static const char *const math_names[] = {
#define KL_X(name, nargs) #name,
    KL_MATHFNS(KL_X)
#undef KL_X
};

/* GLSL.std.450 instruction computing fn on float32, or -1 when none;
 * *f64ok set when the instruction also takes float64. */
static int
glsl_math(KlMathFn fn, int *f64ok)
{
    *f64ok = 0;
    switch (fn) {
    case KL_MATH_sqrt: *f64ok = 1; return GLSLstd450Sqrt;
    case KL_MATH_fabs: *f64ok = 1; return GLSLstd450FAbs;
    case KL_MATH_floor: *f64ok = 1; return GLSLstd450Floor;
    case KL_MATH_ceil: *f64ok = 1; return GLSLstd450Ceil;
    case KL_MATH_trunc: *f64ok = 1; return GLSLstd450Trunc;
    case KL_MATH_rint: *f64ok = 1; return GLSLstd450RoundEven;
    case KL_MATH_sin: return GLSLstd450Sin;
    case KL_MATH_cos: return GLSLstd450Cos;
    case KL_MATH_tan: return GLSLstd450Tan;
    case KL_MATH_asin: return GLSLstd450Asin;
    case KL_MATH_acos: return GLSLstd450Acos;
    case KL_MATH_atan: return GLSLstd450Atan;
    case KL_MATH_atan2: return GLSLstd450Atan2;
    case KL_MATH_sinh: return GLSLstd450Sinh;
    case KL_MATH_cosh: return GLSLstd450Cosh;
    case KL_MATH_tanh: return GLSLstd450Tanh;
    case KL_MATH_asinh: return GLSLstd450Asinh;
    case KL_MATH_acosh: return GLSLstd450Acosh;
    case KL_MATH_atanh: return GLSLstd450Atanh;
    case KL_MATH_exp: return GLSLstd450Exp;
    case KL_MATH_exp2: return GLSLstd450Exp2;
    case KL_MATH_log: return GLSLstd450Log;
    case KL_MATH_log2: return GLSLstd450Log2;
    case KL_MATH_pow: return GLSLstd450Pow;
    default:
        return -1;
    }
}

/* copysign(x, y) on the bits: |x| with the sign of y. */
static uint32_t
emit_copysign(Em *e, const KlType *t, uint32_t x, uint32_t y)
{
    int bits = t->bits;
    uint32_t it = kl_spv_int(&e->sm, bits), ft = reg_type(e, t);
    uint64_t sign = (uint64_t)1 << (bits - 1);
    uint32_t xb = op1(e, SpvOpBitcast, it, x);
    uint32_t yb = op1(e, SpvOpBitcast, it, y);
    uint32_t mag = op2(e, SpvOpBitwiseAnd, it, xb,
                       kl_spv_const_int(&e->sm, bits, sign - 1));
    uint32_t sg = op2(e, SpvOpBitwiseAnd, it, yb,
                      kl_spv_const_int(&e->sm, bits, sign));
    return op1(e, SpvOpBitcast, ft, op2(e, SpvOpBitwiseOr, it, mag, sg));
}

/* A function variable of type ty holding v (stored at the current
 * point). */
static uint32_t
local_var(Em *e, uint32_t ty, uint32_t v)
{
    uint32_t ptr = kl_spv_ptr(&e->sm, SpvStorageClassFunction, ty);
    uint32_t var = kl_spv_id(&e->sm);
    SPV(&e->sm, &e->vars, SpvOpVariable, ptr, var, SpvStorageClassFunction);
    SPV(&e->sm, B, SpvOpStore, var, v);
    return var;
}

/* Index of the highest set bit of nonzero integer v (`bits` wide), as an
 * integer of that width (GLSL's FindUMsb takes 32-bit operands only). */
static uint32_t
msb_of(Em *e, int bits, uint32_t v)
{
    KlSpvMod *sm = &e->sm;
    if (bits == 32) {
        return ext(e, e->u32, GLSLstd450FindUMsb, &v, 1);
    }
    uint32_t it = kl_spv_int(sm, 64), bt = kl_spv_bool(sm);
    uint32_t hi = op1(e, SpvOpUConvert, e->u32, op2(
        e, SpvOpShiftRightLogical, it, v, kl_spv_const_int(sm, 64, 32)));
    uint32_t lo = op1(e, SpvOpUConvert, e->u32, v);
    uint32_t mh = ext(e, e->u32, GLSLstd450FindUMsb, &hi, 1);
    uint32_t ml = ext(e, e->u32, GLSLstd450FindUMsb, &lo, 1);
    uint32_t r = op3(e, SpvOpSelect, e->u32,
                     op2(e, SpvOpINotEqual, bt, hi, cu32(e, 0)),
                     op2(e, SpvOpIAdd, e->u32, mh, cu32(e, 32)), ml);
    return op1(e, SpvOpUConvert, it, r);
}

/* Shifts m (`bits` wide, 0 < m < 2**(mb+1)) left until bit mb is set,
 * but exponent *ex by at most *ex - lo (signed; lo < *ex), lowering *ex
 * by the shift.  m == 0 stays 0 (with any exponent). */
static uint32_t
normalise(Em *e, int bits, int mb, uint32_t m, uint32_t *ex, int64_t lo)
{
    KlSpvMod *sm = &e->sm;
    uint32_t it = kl_spv_int(sm, bits), bt = kl_spv_bool(sm);
    uint32_t z = op2(e, SpvOpIEqual, bt, m, kl_spv_const_int(sm, bits, 0));
    uint32_t safe = op3(e, SpvOpSelect, it, z, kl_spv_const_int(sm, bits, 1),
                        m);
    uint32_t sh = op2(e, SpvOpISub, it, kl_spv_const_int(sm, bits,
                                                         (uint64_t)mb),
                      msb_of(e, bits, safe));
    uint32_t room = op2(e, SpvOpISub, it, *ex,
                        kl_spv_const_int(sm, bits, (uint64_t)lo));
    sh = op3(e, SpvOpSelect, it, op2(e, SpvOpSLessThan, bt, room, sh), room,
             sh);
    sh = op3(e, SpvOpSelect, it, op2(e, SpvOpSLessThan, bt, sh,
                                     kl_spv_const_int(sm, bits, 0)),
             kl_spv_const_int(sm, bits, 0), sh);
    *ex = op2(e, SpvOpISub, it, *ex, sh);
    return op2(e, SpvOpShiftLeftLogical, it, m, sh);
}

/* C's fmod(x, y), exactly: the sign of x, NaN when x is infinite or y is
 * zero (or either is NaN), x when |x| < |y|.  Integer long division of
 * the normalised significands, a few exponent steps per iteration of a
 * loop (about 210 iterations at most for float64), so the result is the
 * exact remainder that FRem only approximates. */
static uint32_t
emit_fmod(Em *e, const KlType *t, uint32_t x, uint32_t y)
{
    KlSpvMod *sm = &e->sm;
    int bits = t->bits, mb = bits == 64 ? 52 : 23;
    uint32_t it = kl_spv_int(sm, bits), ft = reg_type(e, t);
    uint32_t bt = kl_spv_bool(sm);
#define IC(v) kl_spv_const_int(sm, bits, (uint64_t)(v))
    uint64_t sign = (uint64_t)1 << (bits - 1), impl = (uint64_t)1 << mb;
    uint64_t expm = (sign - 1) & ~(impl - 1);
    uint32_t ux = op1(e, SpvOpBitcast, it, x);
    uint32_t uy = op1(e, SpvOpBitcast, it, y);
    uint32_t ax = op2(e, SpvOpBitwiseAnd, it, ux, IC(sign - 1));
    uint32_t ay = op2(e, SpvOpBitwiseAnd, it, uy, IC(sign - 1));
    uint32_t bad = op2(e, SpvOpLogicalOr, bt,
                       op2(e, SpvOpIEqual, bt, ay, IC(0)),
                       op2(e, SpvOpLogicalOr, bt,
                           op2(e, SpvOpUGreaterThanEqual, bt, ax, IC(expm)),
                           op2(e, SpvOpUGreaterThan, bt, ay, IC(expm))));
    uint32_t small = op2(e, SpvOpULessThan, bt, ax, ay);
    uint32_t skip = op2(e, SpvOpLogicalOr, bt, bad, small);
    /* significand and exponent of |x| and |y| (subnormals: exponent 1
     * without the implicit bit, then normalised) */
    uint32_t sig[2], ex[2], ab[2] = {ax, ay};
    for (int k = 0; k < 2; k++) {
        uint32_t ek = op2(e, SpvOpShiftRightLogical, it, ab[k], IC(mb));
        uint32_t z = op2(e, SpvOpIEqual, bt, ek, IC(0));
        uint32_t mk = op3(e, SpvOpSelect, it, z, ab[k], op2(
            e, SpvOpBitwiseOr, it,
            op2(e, SpvOpBitwiseAnd, it, ab[k], IC(impl - 1)), IC(impl)));
        /* the skipped cases keep the loop short */
        mk = op3(e, SpvOpSelect, it, skip, IC(impl), mk);
        ex[k] = op3(e, SpvOpSelect, it, z, IC(1), ek);
        sig[k] = normalise(e, bits, mb, mk, &ex[k], -100000);
    }
    uint32_t my = sig[1], ey = ex[1];
    uint32_t n = op2(e, SpvOpISub, it, ex[0], ey);
    /* m = mx * 2**n mod my, a few bits per step: m < my < 2**(mb+1), so
     * m << step fits in the integer */
    uint32_t step = IC(bits == 64 ? 10 : 7);
    /* the first step outside the loop: lavapipe caps the loop iterations
     * of an invocation (65535 in all), so quotients below 2**step take
     * none */
    uint32_t m = op2(e, SpvOpUMod, it, sig[0], my);
    uint32_t s0 = op3(e, SpvOpSelect, it, op2(e, SpvOpSLessThan, bt, n, step),
                      n, step);
    s0 = op3(e, SpvOpSelect, it, op2(e, SpvOpSLessThan, bt, s0, IC(0)),
             IC(0), s0);
    m = op2(e, SpvOpUMod, it, op2(e, SpvOpShiftLeftLogical, it, m, s0), my);
    uint32_t vm = local_var(e, it, m);
    uint32_t vn = local_var(e, it, op2(e, SpvOpISub, it, n, s0));
    uint32_t head = kl_spv_id(sm), body = kl_spv_id(sm);
    uint32_t cont = kl_spv_id(sm), merge = kl_spv_id(sm);
    branch(e, head);
    label(e, head);
    uint32_t cn = op1(e, SpvOpLoad, it, vn);
    uint32_t more = op2(e, SpvOpSGreaterThan, bt, cn, IC(0));
    loop_merge(e, merge, cont);
    SPV(sm, B, SpvOpBranchConditional, more, body, merge);
    label(e, body);
    uint32_t sh = op3(e, SpvOpSelect, it,
                      op2(e, SpvOpSLessThan, bt, cn, step), cn, step);
    m = op1(e, SpvOpLoad, it, vm);
    SPV(sm, B, SpvOpStore, vm, op2(e, SpvOpUMod, it, op2(
        e, SpvOpShiftLeftLogical, it, m, sh), my));
    SPV(sm, B, SpvOpStore, vn, op2(e, SpvOpISub, it, cn, sh));
    branch(e, cont);
    label(e, cont);
    branch(e, head);
    label(e, merge);
    m = op1(e, SpvOpLoad, it, vm);
    /* |result| = m * 2**(ey - bias - mb), exactly representable:
     * normalise down to exponent 1, shift right below it (the bits shifted
     * out are zero), then the bits are ((e - 1) << mb) + m */
    uint32_t ce = ey;
    uint32_t cm = normalise(e, bits, mb, m, &ce, 1);
    uint32_t under = op2(e, SpvOpSLessThan, bt, ce, IC(1));
    uint32_t shr = op3(e, SpvOpSelect, it, under,
                       op2(e, SpvOpISub, it, IC(1), ce), IC(0));
    cm = op2(e, SpvOpShiftRightLogical, it, cm, shr);
    ce = op3(e, SpvOpSelect, it, under, IC(1), ce);
    uint32_t mbits = op2(e, SpvOpIAdd, it, op2(
        e, SpvOpShiftLeftLogical, it, op2(e, SpvOpISub, it, ce, IC(1)),
        IC(mb)), cm);
    mbits = op3(e, SpvOpSelect, it, op2(e, SpvOpIEqual, bt, cm, IC(0)),
                IC(0), mbits);
    uint32_t res = op1(e, SpvOpBitcast, ft, op2(
        e, SpvOpBitwiseOr, it, mbits,
        op2(e, SpvOpBitwiseAnd, it, ux, IC(sign))));
    res = op3(e, SpvOpSelect, ft, small, x, res);
    return op3(e, SpvOpSelect, ft, bad, kl_spv_const_float(sm, bits, NAN),
               res);
#undef IC
}

/* hypot(x, y) as glibc computes it, so results match libm bit for bit:
 * inf when either is infinite, else NaN when either is NaN; float32 as
 * sqrt of the float64 sum of squares (needs float64); float64 by glibc's
 * correction of sqrt(ax*ax + ay*ay) (ax >= ay), on operands scaled by
 * 2**+-600 when ax > 2**511 or ay < 2**-511, and ax + ay when ay is
 * below ax * 2**-54. */
static uint32_t
emit_hypot(Em *e, const KlType *t, uint32_t x, uint32_t y)
{
    KlSpvMod *sm = &e->sm;
    uint32_t ft = reg_type(e, t), bt = kl_spv_bool(sm);
    uint32_t ax = ext(e, ft, GLSLstd450FAbs, &x, 1);
    uint32_t ay = ext(e, ft, GLSLstd450FAbs, &y, 1);
    uint32_t inf = kl_spv_const_float(sm, t->bits, INFINITY);
    uint32_t anyinf = op2(e, SpvOpLogicalOr, bt,
                          op2(e, SpvOpFOrdEqual, bt, ax, inf),
                          op2(e, SpvOpFOrdEqual, bt, ay, inf));
    uint32_t anynan = op2(e, SpvOpLogicalOr, bt, op1(e, SpvOpIsNan, bt, x),
                          op1(e, SpvOpIsNan, bt, y));
    uint32_t nan = kl_spv_const_float(sm, t->bits, NAN);
    uint32_t r;
    if (t->bits == 32) {
        uint32_t dt = kl_spv_float(sm, 64);
        uint32_t dx = op1(e, SpvOpFConvert, dt, x);
        uint32_t dy = op1(e, SpvOpFConvert, dt, y);
        uint32_t sum = fop(e, SpvOpFAdd, dt, fop(e, SpvOpFMul, dt, dx, dx),
                           fop(e, SpvOpFMul, dt, dy, dy));
        r = op1(e, SpvOpFConvert, ft, ext(e, dt, GLSLstd450Sqrt, &sum, 1));
    }
    else {
#define DC(v) kl_spv_const_float(sm, 64, (v))
        uint32_t lt = op2(e, SpvOpFOrdLessThan, bt, ax, ay);
        uint32_t hi = op3(e, SpvOpSelect, ft, lt, ay, ax);
        uint32_t lo = op3(e, SpvOpSelect, ft, lt, ax, ay);
        uint32_t big = op2(e, SpvOpFOrdGreaterThan, bt, hi, DC(0x1p511));
        uint32_t tiny = op2(e, SpvOpLogicalAnd, bt,
                            op1(e, SpvOpLogicalNot, bt, big),
                            op2(e, SpvOpFOrdLessThan, bt, lo, DC(0x1p-511)));
        uint32_t sin = op3(e, SpvOpSelect, ft, big, DC(0x1p-600),
                           op3(e, SpvOpSelect, ft, tiny, DC(0x1p600),
                               DC(1.0)));
        uint32_t sout = op3(e, SpvOpSelect, ft, big, DC(0x1p600),
                            op3(e, SpvOpSelect, ft, tiny, DC(0x1p-600),
                                DC(1.0)));
        uint32_t a = fop(e, SpvOpFMul, ft, hi, sin);
        uint32_t b = fop(e, SpvOpFMul, ft, lo, sin);
        uint32_t two = DC(2.0);
        uint32_t sum = fop(e, SpvOpFAdd, ft, fop(e, SpvOpFMul, ft, a, a),
                           fop(e, SpvOpFMul, ft, b, b));
        uint32_t h = ext(e, ft, GLSLstd450Sqrt, &sum, 1);
        uint32_t near = op2(e, SpvOpFOrdLessThanEqual, bt, h,
                            fop(e, SpvOpFMul, ft, two, b));
        /* h <= 2 ay: delta = h - ay, t1 = ax * (2 delta - ax),
         *            t2 = (delta - 2 (ax - ay)) * delta;
         * else:      delta = h - ax, t1 = 2 delta * (ax - 2 ay),
         *            t2 = (4 delta - ay) * ay + delta * delta */
        uint32_t d1 = fop(e, SpvOpFSub, ft, h, b);
        uint32_t t1a = fop(e, SpvOpFMul, ft, a, fop(
            e, SpvOpFSub, ft, fop(e, SpvOpFMul, ft, two, d1), a));
        uint32_t t2a = fop(e, SpvOpFMul, ft, fop(
            e, SpvOpFSub, ft, d1, fop(e, SpvOpFMul, ft, two,
                                      fop(e, SpvOpFSub, ft, a, b))), d1);
        uint32_t d2 = fop(e, SpvOpFSub, ft, h, a);
        uint32_t t1b = fop(e, SpvOpFMul, ft, fop(e, SpvOpFMul, ft, two, d2),
                           fop(e, SpvOpFSub, ft, a,
                               fop(e, SpvOpFMul, ft, two, b)));
        uint32_t t2b = fop(e, SpvOpFAdd, ft, fop(
            e, SpvOpFMul, ft, fop(e, SpvOpFSub, ft,
                                  fop(e, SpvOpFMul, ft, DC(4.0), d2), b), b),
            fop(e, SpvOpFMul, ft, d2, d2));
        uint32_t t1 = op3(e, SpvOpSelect, ft, near, t1a, t1b);
        uint32_t t2 = op3(e, SpvOpSelect, ft, near, t2a, t2b);
        uint32_t corr = fop(e, SpvOpFDiv, ft, fop(e, SpvOpFAdd, ft, t1, t2),
                            fop(e, SpvOpFMul, ft, two, h));
        h = fop(e, SpvOpFSub, ft, h, corr);
        r = fop(e, SpvOpFMul, ft, h, sout);
        /* ay negligible: ax + ay (tiny: ax >= ay / EPS, else
         * ay <= ax * EPS) */
        uint32_t negl = op3(e, SpvOpSelect, bt, tiny,
                            op2(e, SpvOpFOrdGreaterThanEqual, bt, hi, fop(
                                e, SpvOpFMul, ft, lo, DC(0x1p54))),
                            op2(e, SpvOpFOrdLessThanEqual, bt, lo, fop(
                                e, SpvOpFMul, ft, hi, DC(0x1p-54))));
        r = op3(e, SpvOpSelect, ft, negl, fop(e, SpvOpFAdd, ft, hi, lo), r);
#undef DC
    }
    r = op3(e, SpvOpSelect, ft, anynan, nan, r);
    return op3(e, SpvOpSelect, ft, anyinf, inf, r);
}

/* |x| ** y for float32 x > 0 and y finite, computed in float64 and
 * rounded once: log2 by the series of atanh((m - 1) / (m + 1)) and exp2
 * by Taylor's series of the fraction, each within a few float64 ulps, so
 * the float32 result is correctly rounded except within ~1e-14 of a
 * rounding boundary (as libm's powf, which also works in float64). */
static uint32_t
powf_by_f64(Em *e, uint32_t ax, uint32_t y)
{
    KlSpvMod *sm = &e->sm;
    uint32_t dt = kl_spv_float(sm, 64), it = kl_spv_int(sm, 64);
    uint32_t bt = kl_spv_bool(sm);
#define DC(v) kl_spv_const_float(sm, 64, (v))
#define IC(v) kl_spv_const_int(sm, 64, (uint64_t)(v))
#define MUL(a, b) fop(e, SpvOpFMul, dt, (a), (b))
#define ADD(a, b) fop(e, SpvOpFAdd, dt, (a), (b))
    uint32_t dx = op1(e, SpvOpFConvert, dt, ax);
    uint32_t dy = op1(e, SpvOpFConvert, dt, y);
    uint32_t bits = op1(e, SpvOpBitcast, it, dx);
    uint32_t ex = op2(e, SpvOpISub, it, op2(e, SpvOpShiftRightLogical, it,
                                             bits, IC(52)), IC(1023));
    uint32_t m = op1(e, SpvOpBitcast, dt, op2(
        e, SpvOpBitwiseOr, it,
        op2(e, SpvOpBitwiseAnd, it, bits, IC(((uint64_t)1 << 52) - 1)),
        IC((uint64_t)1023 << 52)));
    uint32_t hi = op2(e, SpvOpFOrdGreaterThan, bt, m,
                      DC(1.4142135623730951));
    m = op3(e, SpvOpSelect, dt, hi, MUL(m, DC(0.5)), m);
    ex = op3(e, SpvOpSelect, it, hi, op2(e, SpvOpIAdd, it, ex, IC(1)), ex);
    uint32_t sv = fop(e, SpvOpFDiv, dt, fop(e, SpvOpFSub, dt, m, DC(1.0)),
                      ADD(m, DC(1.0)));
    uint32_t s2 = MUL(sv, sv);
    uint32_t p = DC(1.0 / 25.0);
    for (int k = 23; k >= 3; k -= 2) {
        p = ADD(MUL(p, s2), DC(1.0 / k));
    }
    p = MUL(p, s2);                         /* s2/3 + s2^2/5 + ... */
    uint32_t lnm = MUL(MUL(DC(2.0), sv), ADD(DC(1.0), p));
    uint32_t l2 = ADD(op1(e, SpvOpConvertSToF, dt, ex),
                      MUL(lnm, DC(1.4426950408889634074)));
    uint32_t t = MUL(dy, l2);
    uint32_t tl[3] = {t, DC(-400.0), DC(400.0)};
    t = ext(e, dt, GLSLstd450FClamp, tl, 3);
    uint32_t n = ext(e, dt, GLSLstd450RoundEven, &t, 1);
    uint32_t g = MUL(fop(e, SpvOpFSub, dt, t, n), DC(0.69314718055994530942));
    double fact = 1.0;
    for (int k = 2; k <= 17; k++) {
        fact *= k;
    }
    uint32_t q = DC(1.0 / fact);            /* 1/17! */
    for (int k = 16; k >= 0; k--) {
        fact /= (k + 1);
        q = ADD(MUL(q, g), DC(1.0 / fact));
    }
    /* 2**n in two normal factors (|n| <= 400) */
    uint32_t ni = op1(e, SpvOpConvertFToS, it, n);
    uint32_t n1 = op2(e, SpvOpSDiv, it, ni, IC(2));
    uint32_t n2 = op2(e, SpvOpISub, it, ni, n1);
    uint32_t f1 = op1(e, SpvOpBitcast, dt, op2(
        e, SpvOpShiftLeftLogical, it, op2(e, SpvOpIAdd, it, n1, IC(1023)),
        IC(52)));
    uint32_t f2 = op1(e, SpvOpBitcast, dt, op2(
        e, SpvOpShiftLeftLogical, it, op2(e, SpvOpIAdd, it, n2, IC(1023)),
        IC(52)));
    uint32_t r = MUL(MUL(q, f1), f2);
    return op1(e, SpvOpFConvert, kl_spv_float(sm, 32), r);
#undef DC
#undef IC
#undef MUL
#undef ADD
}

/* powf(x, y) with C99's special cases (GLSL's Pow is undefined for
 * x <= 0 and far less accurate than libm's): the general case by
 * powf_by_f64 (so float32 ** needs shaderFloat64). */
static uint32_t
emit_powf(Em *e, const KlType *t, uint32_t x, uint32_t y)
{
    KlSpvMod *sm = &e->sm;
    uint32_t ft = reg_type(e, t), bt = kl_spv_bool(sm);
#define FC(v) kl_spv_const_float(sm, 32, (v))
#define SEL(c, a, b) op3(e, SpvOpSelect, ft, (c), (a), (b))
#define AND(a, b) op2(e, SpvOpLogicalAnd, bt, (a), (b))
#define OR(a, b) op2(e, SpvOpLogicalOr, bt, (a), (b))
    uint32_t zero = FC(0.0), one = FC(1.0), inf = FC(INFINITY);
    uint32_t ax = ext(e, ft, GLSLstd450FAbs, &x, 1);
    uint32_t ay = ext(e, ft, GLSLstd450FAbs, &y, 1);
    uint32_t yfin = op2(e, SpvOpFOrdLessThan, bt, ay, inf);
    uint32_t fl = ext(e, ft, GLSLstd450Floor, &y, 1);
    uint32_t yint = AND(yfin, op2(e, SpvOpFOrdEqual, bt, fl, y));
    uint32_t half = fop(e, SpvOpFMul, ft, y, FC(0.5));
    uint32_t hf = ext(e, ft, GLSLstd450Floor, &half, 1);
    uint32_t rem2 = fop(e, SpvOpFSub, ft, y, fop(e, SpvOpFMul, ft, FC(2.0),
                                                  hf));
    uint32_t yodd = AND(AND(yint, op2(e, SpvOpFOrdLessThan, bt, ay,
                                      FC(16777216.0))),
                        op2(e, SpvOpFOrdEqual, bt, rem2, one));
    uint32_t yneg = op2(e, SpvOpFOrdLessThan, bt, y, zero);
    uint32_t xneg = op2(e, SpvOpFOrdLessThan, bt, x, zero);
    /* general: |x| ** y, negated for x < 0 and odd y */
    uint32_t r = powf_by_f64(e, ax, y);
    r = SEL(AND(xneg, yodd), fop(e, SpvOpFNegate, ft, r, 0), r);
    r = SEL(AND(xneg, op1(e, SpvOpLogicalNot, bt, yint)), FC(NAN), r);
    /* x infinite: |x| ** y is inf or 0; the sign as for finite x */
    uint32_t xinf = op2(e, SpvOpFOrdEqual, bt, ax, inf);
    uint32_t mag = SEL(yneg, zero, inf);
    uint32_t ri = SEL(AND(xneg, yodd), fop(e, SpvOpFNegate, ft, mag, 0), mag);
    r = SEL(xinf, ri, r);
    /* x zero: inf for y < 0, 0 for y > 0, the sign of x for odd y */
    uint32_t xz = op2(e, SpvOpFOrdEqual, bt, x, zero);
    uint32_t mz = SEL(yneg, inf, zero);
    uint32_t rz = SEL(yodd, emit_copysign(e, t, mz, x), mz);
    r = SEL(xz, rz, r);
    /* y infinite: 1 for |x| == 1, else 0 or inf */
    uint32_t yinf = op2(e, SpvOpFOrdEqual, bt, ay, inf);
    uint32_t big = op2(e, SpvOpFOrdGreaterThan, bt, ax, one);
    uint32_t ry = SEL(op2(e, SpvOpLogicalEqual, bt, big, yneg), zero, inf);
    ry = SEL(op2(e, SpvOpFOrdEqual, bt, ax, one), one, ry);
    r = SEL(yinf, ry, r);
    r = SEL(OR(op1(e, SpvOpIsNan, bt, x), op1(e, SpvOpIsNan, bt, y)),
            FC(NAN), r);
    r = SEL(op2(e, SpvOpFOrdEqual, bt, x, one), one, r);
    return SEL(op2(e, SpvOpFOrdEqual, bt, y, zero), one, r);
#undef FC
#undef SEL
#undef AND
#undef OR
}

static int call_fn(Em *e, int line, int32_t fi, const uint32_t *pre,
                   int npre, const int32_t *args, int32_t nargs,
                   uint32_t *result);

/* libm function fn of type t on args (ops.h `math`); 0 with d filled
 * when the Vulkan target has no implementation.  float64 functions
 * without a GLSL instruction call kiln's own implementation
 * (m->devmath, python/kiln/_devmath.py). */
static uint32_t
emit_math(Em *e, const KlInst *in, const uint32_t *args)
{
    const KlType *t = in->type;
    KlMathFn fn = (KlMathFn)in->aux;
    uint32_t ft = reg_type(e, t);
    int f64ok, g = glsl_math(fn, &f64ok);
    if (fn == KL_MATH_copysign) {
        return emit_copysign(e, t, args[0], args[1]);
    }
    if (fn == KL_MATH_fmod) {
        (void)ft;
        return emit_fmod(e, t, args[0], args[1]);
    }
    if (fn == KL_MATH_pow && t->bits == 32) {
        return emit_powf(e, t, args[0], args[1]);
    }
    if (fn == KL_MATH_hypot) {
        return emit_hypot(e, t, args[0], args[1]);
    }
    if (t->bits == 32 && fn == KL_MATH_log10) {
        uint32_t l2 = ext(e, ft, GLSLstd450Log2, args, 1);
        return fop(e, SpvOpFMul, ft, l2,
                   kl_spv_const_float(&e->sm, 32, 0.30102999566398119521));
    }
    if (t->bits == 64 && !f64ok && e->m->devmath[fn] >= 0) {
        /* kiln's own float64 implementation, resolved by infer */
        uint32_t r = 0;
        return call_fn(e, in->line, e->m->devmath[fn], NULL, 0, in->args,
                       in->nargs, &r) < 0 ? 0 : r;
    }
    if (t->bits == 64 && !f64ok && e->m->devmath_error != NULL) {
        kl_compile_error(e->d, in->line, "math.%s on float64 (Python "
                         "float) needs kiln._devmath on the Vulkan target, "
                         "which could not be imported: %s", math_names[fn],
                         e->m->devmath_error);
        return 0;
    }
    if (g < 0 || (t->bits == 64 && !f64ok)) {
        char what[96];
        snprintf(what, sizeof(what), "math.%s on %s", math_names[fn],
                 t->bits == 64 ? "float64 (Python float)" : "float32");
        fail_line(e, in->line, what);
        return 0;
    }
    return ext(e, ft, (uint32_t)g, args, in->nargs);
}

/* ---- arrays ----------------------------------------------------------- */

static ArrVal *
new_arr(Em *e, int32_t binding, const KlType *t)
{
    ArrVal *a = kl_arena_alloc(&e->m->arena, sizeof(ArrVal));
    if (a == NULL) {
        nomem(e);
        return NULL;
    }
    a->binding = binding;
    a->type = t;
    return a;
}

/* Address of element idx[0..ndim) of array a (int64 ids). */
static uint32_t
emit_elemptr(Em *e, const ArrVal *a, const uint32_t *idx)
{
    const KlType *t = a->type;
    uint32_t off = 0;
    if (t->layout == KL_LAYOUT_C) {
        off = idx[0];
        for (int k = 1; k < t->ndim; k++) {
            off = op2(e, SpvOpIMul, e->i64t, off, a->shape[k]);
            off = op2(e, SpvOpIAdd, e->i64t, off, idx[k]);
        }
    }
    else {
        for (int k = 0; k < t->ndim; k++) {
            uint32_t term = op2(e, SpvOpIMul, e->i64t, idx[k], a->stride[k]);
            off = off ? op2(e, SpvOpIAdd, e->i64t, off, term) : term;
        }
    }
    off = op2(e, SpvOpIAdd, e->i64t, off, a->off);
    uint32_t r = kl_spv_id(&e->sm);
    if (a->binding <= PRIV(0)) {
        Bind *b = &e->privs[PRIV(0) - a->binding];
        SPV(&e->sm, B, SpvOpAccessChain, b->elem_ptr, r, b->var, off);
        return r;
    }
    Bind *b = &e->bvars[a->binding];
    uint32_t base = b->var;
    if (b->block_ptr != 0) {
        base = op1(e, SpvOpConvertUToPtr, b->block_ptr,
                   op1(e, SpvOpLoad, e->i64t, b->var));
    }
    SPV(&e->sm, B, SpvOpAccessChain, b->elem_ptr, r, base, cu32(e, 0), off);
    return r;
}

/* The alignment a load or store through element pointer `ptr` (an IR
 * value) must declare: an array bound by device address needs one; 0 for
 * storage buffers and private arrays. */
static uint32_t
access_align(Em *e, int32_t ptr)
{
    const KlInst *p = &e->f->insts[ptr];
    if (!e->bda || p->op != KL_OP_elemptr) {
        return 0;
    }
    const ArrVal *av = e->arr[p->args[0]];
    if (av == NULL || av->binding < 0) {
        return 0;
    }
    return e->bvars[av->binding].align;
}

/* A new private array of n > 0 elements of type elem (each invocation
 * has its own); returns its index in e->privs.  The caller checks that
 * one is left. */
static int32_t
new_private(Em *e, const KlType *elem, int64_t n)
{
    KlSpvMod *sm = &e->sm;
    Bind *pb = &e->privs[e->npriv];
    pb->mem = mem_type(e, elem);
    uint32_t w[2] = {pb->mem, cu32(e, (uint32_t)n)};
    uint32_t at = kl_spv_fresh_type(sm, SpvOpTypeArray, w, 2);
    pb->var = kl_spv_id(sm);
    SPV(sm, &sm->types, SpvOpVariable,
        kl_spv_ptr(sm, SpvStorageClassPrivate, at), pb->var,
        SpvStorageClassPrivate);
    pb->elem_ptr = kl_spv_ptr(sm, SpvStorageClassPrivate, pb->mem);
    return e->npriv++;
}

/* `scratch` instruction in: a fresh private array of imm.i elements
 * (each invocation has its own: the scratch of a nested pfor's partials
 * would otherwise be shared by all invocations of a parallel kernel). */
static ArrVal *
emit_scratch(Em *e, const KlInst *in)
{
    const KlType *t = in->type;
    if (t->kind != KL_T_ARRAY || t->ndim != 1 || in->imm.i < 0) {
        kl_internal_error(e->d, "%s: bad scratch", e->f->name);
        return NULL;
    }
    if (in->imm.i > MAX_PRIV_ELEMS || e->npriv == 32) {
        fail_line(e, in->line, "a prange reduction this large inside a "
                  "function called from a parallel loop");
        return NULL;
    }
    int32_t p = new_private(e, t->elem, in->imm.i > 0 ? in->imm.i : 1);
    ArrVal *a = new_arr(e, PRIV(p), t);
    if (a != NULL) {
        a->off = ci64(e, 0);
        a->shape[0] = ci64(e, in->imm.i);
        a->stride[0] = ci64(e, 1);
    }
    return a;
}

/* ---- exceptions and calls --------------------------------------------- */

/* Returns from the current function: undef of its result type. */
static void
return_now(Em *e)
{
    uint32_t rt = reg_type(e, e->f->ret_type);
    if (rt == 0) {
        term0(e, SpvOpReturn);
    }
    else {
        SPV(&e->sm, B, SpvOpReturnValue, kl_spv_undef(&e->sm, rt));
        e->cur = 0;
    }
}

/* The int64 payload operand k of raise `in` (0 past its operands). */
static uint32_t
raise_payload(Em *e, const KlInst *in, int32_t k)
{
    if (k >= in->nargs) {
        return ci64(e, 0);
    }
    const KlType *t = vtype(e, in->args[k]);
    uint32_t v = val(e, in->args[k]);
    if (t->kind != KL_T_INT || t->bits != 64) {
        v = emit_cast(e, v, t, kl_i64);
    }
    return v;
}

/* Pointer to uint32 word `idx` (an id of a uint32 value) of buffer
 * variable var. */
static uint32_t
word_ptr_at(Em *e, uint32_t var, uint32_t idx)
{
    uint32_t r = kl_spv_id(&e->sm);
    SPV(&e->sm, B, SpvOpAccessChain, e->sb_u32_ptr, r, var, cu32(e, 0), idx);
    return r;
}

/* Stores the 64-bit value v (of 64-bit type) at status words idx, idx + 1
 * (idx an id). */
static void
put64_at(Em *e, uint32_t v, uint32_t idx)
{
    uint32_t v2 = kl_spv_vec(&e->sm, e->u32, 2);
    uint32_t p = op1(e, SpvOpBitcast, v2, v);
    SPV(&e->sm, B, SpvOpStore, word_ptr_at(e, e->status_var, idx),
        op2(e, SpvOpCompositeExtract, e->u32, p, 0));
    SPV(&e->sm, B, SpvOpStore, word_ptr_at(
            e, e->status_var, op2(e, SpvOpIAdd, e->u32, idx, cu32(e, 1))),
        op2(e, SpvOpCompositeExtract, e->u32, p, 1));
}

/* Opens `if (cond) {`; returns the merge block for close_if. */
static uint32_t
open_if(Em *e, uint32_t cond)
{
    uint32_t then = kl_spv_id(&e->sm), merge = kl_spv_id(&e->sm);
    SPV(&e->sm, B, SpvOpSelectionMerge, merge, SpvSelectionControlMaskNone);
    SPV(&e->sm, B, SpvOpBranchConditional, cond, then, merge);
    label(e, then);
    return merge;
}

static void
close_if(Em *e, uint32_t merge)
{
    branch(e, merge);
    label(e, merge);
}

/* OpControlBarrier over the workgroup, ordering workgroup memory. */
static void
workgroup_barrier(Em *e)
{
    SPV(&e->sm, B, SpvOpControlBarrier, cu32(e, SpvScopeWorkgroup),
        cu32(e, SpvScopeWorkgroup),
        cu32(e, SpvMemorySemanticsAcquireReleaseMask
                | SpvMemorySemanticsWorkgroupMemoryMask));
}

/* The end of a PFOR entry that can raise (every invocation of the
 * workgroup reaches it): picks the workgroup's lowest raising chunk and
 * writes the workgroup's record (kernel.h).  key is the invocation's
 * uint32 rank within the workgroup (round * KL_SPV_PFOR_WG + local id,
 * 2**32 - 1 when it did not raise), chunk its raising chunk (int64),
 * wgmin the Workgroup variable initialised to 2**32 - 1, lid and wid the
 * local id x and workgroup id x (uint32).  No lock: one atomic min in
 * shared memory and a barrier decide the winner, and each record has
 * exactly one writer, so no invocation ever waits for another. */
static void
write_record(Em *e, uint32_t key, uint32_t chunk, uint32_t wgmin,
             uint32_t lid, uint32_t wid)
{
    KlSpvMod *sm = &e->sm;
    uint32_t bt = kl_spv_bool(sm), none = cu32(e, 0xffffffffu);
    uint32_t raised = op2(e, SpvOpINotEqual, bt, key, none);
    uint32_t m = open_if(e, raised);
    uint32_t old = kl_spv_id(sm);
    SPV(sm, B, SpvOpAtomicUMin, e->u32, old, wgmin,
        cu32(e, SpvScopeWorkgroup), cu32(e, 0), key);
    close_if(e, m);
    workgroup_barrier(e);
    uint32_t low = kl_spv_id(sm);
    SPV(sm, B, SpvOpAtomicLoad, e->u32, low, wgmin,
        cu32(e, SpvScopeWorkgroup), cu32(e, 0));
    uint32_t rec = op2(e, SpvOpIAdd, e->u32, cu32(e, KL_SPV_RECORDS_AT),
                       op2(e, SpvOpIMul, e->u32, wid,
                           cu32(e, KL_SPV_RECORD_WORDS)));
    /* the winner: the raising invocation holding the lowest rank */
    uint32_t win = op2(e, SpvOpLogicalAnd, bt, raised,
                       op2(e, SpvOpIEqual, bt, key, low));
    m = open_if(e, win);
    put64_at(e, op2(e, SpvOpIAdd, e->i64t, chunk, ci64(e, 1)), rec);
    SPV(sm, B, SpvOpStore, word_ptr_at(
            e, e->status_var, op2(e, SpvOpIAdd, e->u32, rec, cu32(e, 2))),
        op1(e, SpvOpLoad, e->u32, e->rsite_var));
    for (uint32_t k = 0; k < 3; k++) {
        put64_at(e, op1(e, SpvOpLoad, e->i64t, e->rpay_var[k]),
                 op2(e, SpvOpIAdd, e->u32, rec, cu32(e, 4 + 2 * k)));
    }
    SPV(sm, B, SpvOpAtomicStore, word_ptr(e, e->status_var, 0),
        cu32(e, SpvScopeDevice), cu32(e, 0), cu32(e, 1));
    close_if(e, m);
    /* no raise in the workgroup: local invocation 0 writes "none" */
    uint32_t quiet = op2(e, SpvOpLogicalAnd, bt,
                         op2(e, SpvOpIEqual, bt, low, none),
                         op2(e, SpvOpIEqual, bt, lid, cu32(e, 0)));
    m = open_if(e, quiet);
    put64_at(e, ci64(e, 0), rec);
    close_if(e, m);
}

/* `raise` instruction in: in a serial kernel, claims the status buffer
 * (word 0 from 0 to site + 1) and the winner writes the payload; in a
 * PFOR kernel, records site + 1 and payload privately for the entry's
 * write_record.  Then sets the raised flag and returns. */
static void
emit_raise(Em *e, const KlInst *in)
{
    KlSpvMod *sm = &e->sm;
    uint32_t bt = kl_spv_bool(sm);
    if (e->kind == KL_SPV_PFOR) {
        SPV(sm, B, SpvOpStore, e->rsite_var, cu32(e, (uint32_t)in->imm.i + 1));
        for (int32_t k = 0; k < 3; k++) {
            SPV(sm, B, SpvOpStore, e->rpay_var[k], raise_payload(e, in, k));
        }
        SPV(sm, B, SpvOpStore, e->raised_var, kl_spv_const_bool(sm, 1));
        return_now(e);
        return;
    }
    uint32_t old = kl_spv_id(sm);
    SPV(sm, B, SpvOpAtomicCompareExchange, e->u32, old,
        word_ptr(e, e->status_var, 0), cu32(e, SpvScopeDevice), cu32(e, 0),
        cu32(e, 0), cu32(e, (uint32_t)in->imm.i + 1), cu32(e, 0));
    if (in->nargs > 0) {
        uint32_t won = op2(e, SpvOpIEqual, bt, old, cu32(e, 0));
        uint32_t w = kl_spv_id(sm), merge = kl_spv_id(sm);
        SPV(sm, B, SpvOpSelectionMerge, merge, SpvSelectionControlMaskNone);
        SPV(sm, B, SpvOpBranchConditional, won, w, merge);
        label(e, w);
        for (int32_t k = 0; k < in->nargs && k < 3; k++) {
            put_scalar(e, kl_i64, raise_payload(e, in, k),
                       2 + 2 * (uint32_t)k);
        }
        branch(e, merge);
        label(e, merge);
    }
    SPV(sm, B, SpvOpStore, e->raised_var, kl_spv_const_bool(sm, 1));
    return_now(e);
}

/* After a call: returns at once when the callee raised. */
static void
check_raised(Em *e)
{
    KlSpvMod *sm = &e->sm;
    uint32_t r = op1(e, SpvOpLoad, kl_spv_bool(sm), e->raised_var);
    uint32_t out = kl_spv_id(sm), go = kl_spv_id(sm);
    SPV(sm, B, SpvOpSelectionMerge, go, SpvSelectionControlMaskNone);
    SPV(sm, B, SpvOpBranchConditional, r, out, go);
    label(e, out);
    return_now(e);
    label(e, go);
}

/* Calls module function fi with the register values pre[0..npre) for its
 * first params, then the IR operands args[0..nargs): binds the callee's
 * array params to the bindings of the arrays passed, and checks for a
 * raise after the call.  *result gets the call's id (0 for none). */
static int
call_fn(Em *e, int line, int32_t fi, const uint32_t *pre, int npre,
        const int32_t *args, int32_t nargs, uint32_t *result)
{
    KlFunc *callee = e->m->funcs[fi];
    int32_t *ab = calloc((size_t)callee->nparams + 1, sizeof(int32_t));
    uint32_t *w = malloc(sizeof(uint32_t)
                         * ((size_t)flat_count(callee) + 4));
    int n = 3, rc = -1;
    if (ab == NULL || w == NULL) {
        nomem(e);
        goto done;
    }
    for (int k = 0; k < npre; k++) {
        ab[k] = -1;
        w[n++] = pre[k];
    }
    for (int32_t k = 0; k < nargs; k++) {
        int32_t a = args[k];
        const KlType *t = vtype(e, a);
        ab[npre + k] = -1;
        if (t->kind == KL_T_ARRAY) {
            const ArrVal *av = e->arr[a];
            if (av == NULL) {
                fail_line(e, line, "an array chosen at run time");
                goto done;
            }
            ab[npre + k] = av->binding;
            w[n++] = av->off;
            for (int j = 0; j < t->ndim; j++) {
                w[n++] = av->shape[j];
            }
            for (int j = 0; j < t->ndim; j++) {
                w[n++] = av->stride[j];
            }
        }
        else if (reg_type(e, t) != 0) {
            w[n++] = val(e, a);
        }
    }
    Fn *g = get_fn(e, fi, ab);
    if (g == NULL) {
        goto done;
    }
    w[0] = ret_type(e, callee);
    w[1] = kl_spv_id(&e->sm);
    w[2] = g->id;
    kl_spv_inst(&e->sm, B, SpvOpFunctionCall, w, (size_t)n);
    *result = reg_type(e, callee->ret_type) ? w[1] : 0;
    if (e->raised_var != 0) {
        check_raised(e);
    }
    rc = 0;
done:
    free(ab);
    free(w);
    return rc;
}

/* `call` instruction id. */
static int
emit_call(Em *e, int32_t id)
{
    const KlInst *in = &e->f->insts[id];
    return call_fn(e, in->line, (int32_t)in->imm.i, NULL, 0, in->args,
                   in->nargs, &e->val[id]);
}

/* A `pfor` below the kernel level (a prange in a function called from a
 * parallel body): the whole iteration space runs as one chunk (chunk 0,
 * [0, niters)) in this invocation, as CPython runs the loop, when there is
 * at least one chunk; a raise leaves at once.  One chunk is what the
 * caller's combination expects on Vulkan: it reads only the partials'
 * element 0 (passes/parallel.c gives them one element). */
static int
emit_pfor_serial(Em *e, int32_t id)
{
    KlSpvMod *sm = &e->sm;
    const KlInst *in = &e->f->insts[id];
    uint32_t bt = kl_spv_bool(sm), r = 0;
    if (in->nargs < 3) {
        return kl_internal_error(e->d, "%s: pfor arity", e->f->name);
    }
    uint32_t nch = val(e, in->args[0]), nit = val(e, in->args[2]);
    uint32_t m = open_if(e, op2(e, SpvOpSLessThan, bt, ci64(e, 0), nch));
    uint32_t pre[3] = {ci64(e, 0), ci64(e, 0), nit};
    if (call_fn(e, in->line, (int32_t)in->imm.i, pre, 3, in->args + 3,
                in->nargs - 3, &r) < 0) {
        return -1;
    }
    close_if(e, m);
    return 0;
}

/* ---- instructions ----------------------------------------------------- */

static const SpvOp sint_cmp[6] = {
    SpvOpSLessThan, SpvOpSLessThanEqual, SpvOpIEqual, SpvOpINotEqual,
    SpvOpSGreaterThan, SpvOpSGreaterThanEqual,
};
static const SpvOp uint_cmp[6] = {
    SpvOpULessThan, SpvOpULessThanEqual, SpvOpIEqual, SpvOpINotEqual,
    SpvOpUGreaterThan, SpvOpUGreaterThanEqual,
};
static const SpvOp float_cmp[6] = {
    SpvOpFOrdLessThan, SpvOpFOrdLessThanEqual, SpvOpFOrdEqual,
    SpvOpFUnordNotEqual, SpvOpFOrdGreaterThan, SpvOpFOrdGreaterThanEqual,
};

/* `cmp` of a and b of type ot by aux. */
static uint32_t
emit_cmp(Em *e, int aux, const KlType *ot, uint32_t a, uint32_t b)
{
    uint32_t bt = kl_spv_bool(&e->sm);
    if (ot->kind == KL_T_FLOAT) {
        return op2(e, float_cmp[aux], bt, a, b);
    }
    if (ot->kind == KL_T_BOOL) {
        if (aux == KL_CMP_EQ || aux == KL_CMP_NE) {
            return op2(e, aux == KL_CMP_EQ ? SpvOpLogicalEqual
                                           : SpvOpLogicalNotEqual, bt, a, b);
        }
        a = emit_cast(e, a, kl_bool, kl_u32);
        b = emit_cast(e, b, kl_bool, kl_u32);
        return op2(e, uint_cmp[aux], bt, a, b);
    }
    return op2(e, ot->is_signed ? sint_cmp[aux] : uint_cmp[aux], bt, a, b);
}

/* An int or bool bitwise op. */
static uint32_t
emit_bits(Em *e, KlOp op, const KlType *t, uint32_t a, uint32_t b)
{
    uint32_t ty = reg_type(e, t);
    if (t->kind == KL_T_BOOL) {
        SpvOp o = op == KL_OP_and ? SpvOpLogicalAnd
                  : op == KL_OP_or ? SpvOpLogicalOr : SpvOpLogicalNotEqual;
        return op2(e, o, ty, a, b);
    }
    SpvOp o = op == KL_OP_and ? SpvOpBitwiseAnd
              : op == KL_OP_or ? SpvOpBitwiseOr : SpvOpBitwiseXor;
    return op2(e, o, ty, a, b);
}

/* Emits the non-terminator instruction id; 0 or -1 with d filled. */
static int
emit_inst(Em *e, int32_t id)
{
    KlFunc *f = e->f;
    const KlInst *in = &f->insts[id];
    const KlType *T = in->type;
    uint32_t ty = T ? reg_type(e, T) : 0, v = 0, a[4] = {0, 0, 0, 0};
    if (T == NULL) {
        return kl_internal_error(e->d, "%s: %%%d has no type", f->name,
                                 (int)id);
    }
    for (int32_t k = 0; k < in->nargs && k < 4; k++) {
        int32_t x = in->args[k];
        if (x < 0 || x >= f->ninsts) {
            return kl_internal_error(e->d, "%s: bad operand", f->name);
        }
        a[k] = e->val[x];
    }
    const KlType *OT = in->nargs > 0 ? vtype(e, in->args[0]) : NULL;
    switch (in->op) {
    case KL_OP_const:
        v = const_of(e, in);
        break;
    case KL_OP_arg: {
        int32_t k = (int32_t)in->imm.i, p = e->pfirst[k];
        if (T->kind == KL_T_ARRAY) {
            ArrVal *av = new_arr(e, e->fn->abind[k], T);
            if (av == NULL) {
                return -1;
            }
            av->off = e->params[p];
            for (int j = 0; j < T->ndim; j++) {
                av->shape[j] = e->params[p + 1 + j];
                av->stride[j] = e->params[p + 1 + T->ndim + j];
            }
            e->arr[id] = av;
        }
        else if (ty != 0) {
            v = e->params[p];
        }
        break;
    }
    case KL_OP_bparam:
        if (check_reg(e, id) < 0) {
            return -1;
        }
        if (ty != 0) {
            v = op1(e, SpvOpLoad, ty, param_var(e, id));
        }
        break;
    case KL_OP_undef:
        if (T->kind == KL_T_ARRAY) {
            break;              /* an error only where it is used */
        }
        v = ty ? kl_spv_undef(&e->sm, ty) : 0;
        break;
    case KL_OP_add:
        v = is_float(T) ? fop(e, SpvOpFAdd, ty, a[0], a[1])
                        : op2(e, SpvOpIAdd, ty, a[0], a[1]);
        break;
    case KL_OP_sub:
        v = is_float(T) ? fop(e, SpvOpFSub, ty, a[0], a[1])
                        : op2(e, SpvOpISub, ty, a[0], a[1]);
        break;
    case KL_OP_mul:
        v = is_float(T) ? fop(e, SpvOpFMul, ty, a[0], a[1])
                        : op2(e, SpvOpIMul, ty, a[0], a[1]);
        break;
    case KL_OP_div:
        v = is_float(T) ? fop(e, SpvOpFDiv, ty, a[0], a[1])
                        : op2(e, is_sint(T) ? SpvOpSDiv : SpvOpUDiv, ty, a[0],
                              a[1]);
        break;
    case KL_OP_rem:
        v = is_float(T) ? emit_fmod(e, T, a[0], a[1])
                        : op2(e, is_sint(T) ? SpvOpSRem : SpvOpUMod, ty, a[0],
                              a[1]);
        break;
    case KL_OP_neg:
        v = is_float(T) ? fop(e, SpvOpFNegate, ty, a[0], 0)
                        : op1(e, SpvOpSNegate, ty, a[0]);
        break;
    case KL_OP_and:
    case KL_OP_or:
    case KL_OP_xor:
        v = emit_bits(e, in->op, T, a[0], a[1]);
        break;
    case KL_OP_shl:
        v = op2(e, SpvOpShiftLeftLogical, ty, a[0], a[1]);
        break;
    case KL_OP_shr:
        v = op2(e, is_sint(T) ? SpvOpShiftRightArithmetic
                              : SpvOpShiftRightLogical, ty, a[0], a[1]);
        break;
    case KL_OP_cmp:
        if (in->aux < 0 || in->aux > KL_CMP_GE) {
            return kl_internal_error(e->d, "%s: bad compare", f->name);
        }
        v = emit_cmp(e, in->aux, OT, a[0], a[1]);
        break;
    case KL_OP_select:
        if (check_reg(e, id) < 0) {
            return -1;
        }
        if (T->kind == KL_T_COMPLEX) {
            /* SPIR-V 1.3 selects vectors by a vector of conditions */
            uint32_t bv = kl_spv_vec(&e->sm, kl_spv_bool(&e->sm), 2);
            a[0] = op2(e, SpvOpCompositeConstruct, bv, a[0], a[0]);
        }
        v = ty ? op3(e, SpvOpSelect, ty, a[0], a[1], a[2]) : 0;
        break;
    case KL_OP_cast:
        v = emit_cast(e, a[0], OT, T);
        if (v == 0) {
            return kl_internal_error(e->d, "%s: no cast from %s to %s",
                                     f->name, OT->name, T->name);
        }
        break;
    case KL_OP_bitcast:
        v = op1(e, SpvOpBitcast, ty, a[0]);
        break;
    case KL_OP_math:
        if (in->aux < 0 || in->aux >= KL_MATH__COUNT || T->kind != KL_T_FLOAT
            || in->nargs < 1 || in->nargs > 2) {
            return kl_internal_error(e->d, "%s: bad math op", f->name);
        }
        v = emit_math(e, in, a);
        if (v == 0) {
            return -1;
        }
        break;
    case KL_OP_cmake:
        v = op2(e, SpvOpCompositeConstruct, ty, a[0], a[1]);
        break;
    case KL_OP_creal:
    case KL_OP_cimag:
        v = op2(e, SpvOpCompositeExtract, ty, a[0],
                in->op == KL_OP_creal ? 0 : 1);
        break;
    case KL_OP_dim: {
        const ArrVal *av = e->arr[in->args[0]];
        if (av == NULL) {
            return fail_line(e, in->line, "an array chosen at run time");
        }
        v = av->shape[in->imm.i];
        break;
    }
    case KL_OP_elemptr: {
        const ArrVal *av = e->arr[in->args[0]];
        uint32_t idx[KL_MAX_NDIM];
        if (av == NULL) {
            return fail_line(e, in->line, "an array chosen at run time");
        }
        if (in->nargs != av->type->ndim + 1) {
            return kl_internal_error(e->d, "%s: bad elemptr", f->name);
        }
        for (int32_t k = 1; k < in->nargs; k++) {
            idx[k - 1] = val(e, in->args[k]);
        }
        v = emit_elemptr(e, av, idx);
        break;
    }
    case KL_OP_load:
        if (access_align(e, in->args[0]) != 0) {
            v = kl_spv_id(&e->sm);
            SPV(&e->sm, B, SpvOpLoad, mem_type(e, T), v, a[0],
                SpvMemoryAccessAlignedMask, access_align(e, in->args[0]));
        }
        else {
            v = op1(e, SpvOpLoad, mem_type(e, T), a[0]);
        }
        if (T->kind == KL_T_BOOL) {
            v = op2(e, SpvOpINotEqual, ty, v, kl_spv_const_int(&e->sm, 8, 0));
        }
        break;
    case KL_OP_store: {
        const KlType *vt = vtype(e, in->args[1]);
        uint32_t x = a[1];
        int32_t ep = in->args[0];
        if (vt->kind == KL_T_BOOL) {
            x = op3(e, SpvOpSelect, mem_type(e, vt), x,
                    kl_spv_const_int(&e->sm, 8, 1),
                    kl_spv_const_int(&e->sm, 8, 0));
        }
        if (f->insts[ep].op == KL_OP_elemptr) {
            const ArrVal *av = e->arr[f->insts[ep].args[0]];
            if (av != NULL) {
                if (av->binding >= 0) {
                    e->binds[av->binding].written = 1;
                }
            }
        }
        if (access_align(e, ep) != 0) {
            SPV(&e->sm, B, SpvOpStore, a[0], x, SpvMemoryAccessAlignedMask,
                access_align(e, ep));
        }
        else {
            SPV(&e->sm, B, SpvOpStore, a[0], x);
        }
        break;
    }
    case KL_OP_call:
        if (in->imm.i < 0 || in->imm.i >= e->m->nfuncs) {
            return kl_internal_error(e->d, "%s: bad call", f->name);
        }
        return emit_call(e, id);
    case KL_OP_scratch:
        e->arr[id] = emit_scratch(e, in);
        if (e->arr[id] == NULL) {
            return -1;
        }
        break;
    case KL_OP_pfor:
        return emit_pfor_serial(e, id);
    default:
        return kl_internal_error(e->d, "%s: op %s reached the SPIR-V backend",
                                 f->name, kl_op_name(in->op));
    }
    e->val[id] = v;
    return 0;
}

/* ---- structured control flow ------------------------------------------ */

static int emit_list(Em *e, int32_t head);

/* Opens a SPIR-V loop construct for structure node nd (BLOCK or LOOP):
 * branches into its header and starts its body. */
static int
open_con(Em *e, const KlSNode *nd)
{
    KlSpvMod *sm = &e->sm;
    Con *c = &e->cons[e->ncons];
    uint32_t head = kl_spv_id(sm), body = kl_spv_id(sm);
    memset(c, 0, sizeof(*c));
    c->head = head;
    c->merge = kl_spv_id(sm);
    c->cont = kl_spv_id(sm);
    c->label = nd->label;
    c->label2 = nd->kind == KL_S_LOOP ? nd->label2 : -1;
    c->is_loop = nd->kind == KL_S_LOOP;
    c->pend_min = INT32_MAX;
    e->label_con[c->label] = e->ncons;
    if (c->label2 >= 0) {
        e->label_con[c->label2] = e->ncons;
    }
    e->ncons++;
    branch(e, head);
    label(e, head);
    loop_merge(e, c->merge, c->cont);
    branch(e, body);
    label(e, body);
    return 0;
}

/* At the merge block of construct k (just closed): finishes a pending
 * multi-level branch that targets the construct now innermost, or passes
 * it on outwards. */
static int
pass_on(Em *e, int32_t k)
{
    KlSpvMod *sm = &e->sm;
    uint32_t bt = kl_spv_bool(sm);
    if (k < 1) {
        return kl_internal_error(e->d, "%s: branch to a closed label",
                                 e->f->name);
    }
    Con *p = &e->cons[k - 1];
    uint32_t fl = op1(e, SpvOpLoad, e->u32, e->flag_var);
    uint32_t nz = op2(e, SpvOpINotEqual, bt, fl, cu32(e, 0));
    uint32_t go = kl_spv_id(sm), rest = kl_spv_id(sm);
    SPV(sm, B, SpvOpSelectionMerge, rest, SpvSelectionControlMaskNone);
    SPV(sm, B, SpvOpBranchConditional, nz, go, rest);
    label(e, go);
    uint32_t me = op2(e, SpvOpIEqual, bt, fl, cu32(e, (uint32_t)p->label + 1));
    uint32_t mine = me;
    if (p->label2 >= 0) {
        uint32_t me2 = op2(e, SpvOpIEqual, bt, fl,
                           cu32(e, (uint32_t)p->label2 + 1));
        mine = op2(e, SpvOpLogicalOr, bt, me, me2);
    }
    SPV(sm, B, SpvOpStore, e->flag_var,
        op3(e, SpvOpSelect, e->u32, mine, cu32(e, 0), fl));
    p->merge_used = 1;
    if (p->is_loop) {
        uint32_t tc = kl_spv_id(sm), tb = kl_spv_id(sm), dm = kl_spv_id(sm);
        p->cont_used = 1;
        SPV(sm, B, SpvOpSelectionMerge, dm, SpvSelectionControlMaskNone);
        SPV(sm, B, SpvOpBranchConditional, me, tc, tb);
        label(e, tc);
        branch(e, p->cont);
        label(e, tb);
        branch(e, p->merge);
        label(e, dm);
        term0(e, SpvOpUnreachable);
    }
    else {
        branch(e, p->merge);
    }
    label(e, rest);
    return 0;
}

/* Closes the innermost construct after its body: the body's fall-through
 * leaves it, its continue target branches back to its header, and its
 * merge block becomes current (checking pending branches). */
static int
close_con(Em *e, const KlSNode *nd)
{
    int32_t k = e->ncons - 1;
    Con *c = &e->cons[k];
    if (e->cur != 0) {
        c->merge_used = 1;
        branch(e, c->merge);
    }
    label(e, c->cont);
    branch(e, c->head);
    e->label_con[nd->label] = -1;
    if (c->label2 >= 0) {
        e->label_con[c->label2] = -1;
    }
    e->ncons--;
    label(e, c->merge);
    if (!c->merge_used) {
        term0(e, SpvOpUnreachable);
        return 0;
    }
    if (c->pend_min != INT32_MAX) {
        return pass_on(e, k);
    }
    return 0;
}

/* `br label` from the current block. */
static int
emit_br(Em *e, int32_t lab)
{
    int32_t k = lab >= 0 && lab < e->st.nlabels ? e->label_con[lab] : -1;
    int32_t top = e->ncons - 1;
    if (k < 0) {
        return kl_internal_error(e->d, "%s: branch to label %d outside it",
                                 e->f->name, (int)lab);
    }
    Con *c = &e->cons[k];
    int restart = c->is_loop && lab == c->label;
    if (k == top) {
        if (restart) {
            c->cont_used = 1;
            branch(e, c->cont);
        }
        else {
            c->merge_used = 1;
            branch(e, c->merge);
        }
        return 0;
    }
    if (e->flag_var == 0) {
        uint32_t ptr = kl_spv_ptr(&e->sm, SpvStorageClassFunction, e->u32);
        e->flag_var = kl_spv_id(&e->sm);
        SPV(&e->sm, &e->vars, SpvOpVariable, ptr, e->flag_var,
            SpvStorageClassFunction, cu32(e, 0));
    }
    SPV(&e->sm, B, SpvOpStore, e->flag_var, cu32(e, (uint32_t)lab + 1));
    for (int32_t i = k + 1; i <= top; i++) {
        if (e->cons[i].pend_min > k) {
            e->cons[i].pend_min = k;
        }
    }
    e->cons[top].merge_used = 1;
    branch(e, e->cons[top].merge);
    return 0;
}

/* Stores the operands of jump `jid` into its target's param variables. */
static int
emit_args(Em *e, int32_t jid)
{
    const KlInst *j = &e->f->insts[jid];
    const KlBlock *tb = &e->f->blocks[j->imm.i];
    if (j->nargs != tb->nparams) {
        return kl_internal_error(e->d, "%s: jump arity", e->f->name);
    }
    for (int32_t k = 0; k < j->nargs; k++) {
        int32_t p = tb->insts.items[k];
        if (check_reg(e, p) < 0) {
            return -1;
        }
        if (reg_type(e, vtype(e, p)) != 0) {
            SPV(&e->sm, B, SpvOpStore, param_var(e, p), val(e, j->args[k]));
        }
    }
    return 0;
}

/* The terminator of block b: ret, raise or unreachable. */
static int
emit_exit(Em *e, int32_t b)
{
    const KlInst *t = &e->f->insts[kl_block_term(e->f, b)];
    switch (t->op) {
    case KL_OP_ret:
        if (reg_type(e, e->f->ret_type) != 0) {
            if (t->nargs != 1) {
                return kl_internal_error(e->d, "%s: ret without a value",
                                         e->f->name);
            }
            SPV(&e->sm, B, SpvOpReturnValue, val(e, t->args[0]));
            e->cur = 0;
        }
        else {
            term0(e, SpvOpReturn);
        }
        return 0;
    case KL_OP_raise:
        if (t->imm.i < 0 || t->imm.i >= e->m->nraises) {
            return kl_internal_error(e->d, "%s: bad raise site", e->f->name);
        }
        emit_raise(e, t);
        return 0;
    case KL_OP_unreachable:
        term0(e, SpvOpUnreachable);
        return 0;
    default:
        return kl_internal_error(e->d, "%s: block %d ends in %s", e->f->name,
                                 (int)b, kl_op_name(t->op));
    }
}

/* `if` node nd: a selection whose arms are its lists. */
static int
emit_if(Em *e, const KlSNode *nd)
{
    KlSpvMod *sm = &e->sm;
    const KlInst *br = &e->f->insts[kl_block_term(e->f, nd->block)];
    if (nd->body < 0 && nd->els < 0) {
        return 0;
    }
    uint32_t merge = kl_spv_id(sm);
    uint32_t t = nd->body >= 0 ? kl_spv_id(sm) : merge;
    uint32_t f = nd->els >= 0 ? kl_spv_id(sm) : merge;
    int reach = nd->body < 0 || nd->els < 0;
    SPV(sm, B, SpvOpSelectionMerge, merge, SpvSelectionControlMaskNone);
    SPV(sm, B, SpvOpBranchConditional, val(e, br->args[0]), t, f);
    e->cur = 0;
    if (nd->body >= 0) {
        label(e, t);
        if (emit_list(e, nd->body) < 0) {
            return -1;
        }
        if (e->cur != 0) {
            reach = 1;
            branch(e, merge);
        }
    }
    if (nd->els >= 0) {
        label(e, f);
        if (emit_list(e, nd->els) < 0) {
            return -1;
        }
        if (e->cur != 0) {
            reach = 1;
            branch(e, merge);
        }
    }
    label(e, merge);
    if (!reach) {
        term0(e, SpvOpUnreachable);
    }
    return 0;
}

/* Emits the statements of list head; stops after a terminator (what
 * follows in the list is then unreachable). */
static int
emit_list(Em *e, int32_t head)
{
    for (int32_t i = head; i >= 0 && e->cur != 0;
         i = e->st.nodes[i].next) {
        const KlSNode *nd = &e->st.nodes[i];
        const KlBlock *blk;
        int rc = 0;
        switch (nd->kind) {
        case KL_S_CODE:
            blk = &e->f->blocks[nd->block];
            for (int32_t k = 0; k < blk->insts.len - 1 && rc == 0; k++) {
                rc = emit_inst(e, blk->insts.items[k]);
            }
            break;
        case KL_S_ARGS:
            rc = emit_args(e, nd->inst);
            break;
        case KL_S_IF:
            rc = emit_if(e, nd);
            break;
        case KL_S_BLOCK:
        case KL_S_LOOP:
            rc = open_con(e, nd);
            if (rc == 0) {
                rc = emit_list(e, nd->body);
            }
            if (rc == 0) {
                rc = close_con(e, nd);
            }
            break;
        case KL_S_BR:
            rc = emit_br(e, nd->label);
            break;
        case KL_S_EXIT:
            rc = emit_exit(e, nd->block);
            break;
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- functions -------------------------------------------------------- */

static void
free_fn_state(Em *e)
{
    free(e->val);
    free(e->arr);
    free(e->pvar);
    free(e->params);
    free(e->pfirst);
    free(e->cons);
    free(e->label_con);
    free(e->vars.w);
    free(e->body.w);
    e->val = NULL;
    e->arr = NULL;
    e->pvar = NULL;
    e->params = NULL;
    e->pfirst = NULL;
    e->cons = NULL;
    e->label_con = NULL;
    memset(&e->vars, 0, sizeof(e->vars));
    memset(&e->body, 0, sizeof(e->body));
}

/* Emits function instance fn into the module. */
static int
emit_fn(Em *e, Fn *fn)
{
    KlSpvMod *sm = &e->sm;
    KlFunc *f = e->m->funcs[fn->func];
    int rc = -1, nflat = flat_count(f);
    e->f = f;
    e->fn = fn;
    e->cur = 0;
    e->flag_var = 0;
    e->ncons = 0;
    if (kl_structure(f, &e->st, e->d) < 0) {
        return -1;
    }
    size_t ni = (size_t)f->ninsts + 1;
    e->val = calloc(ni, sizeof(uint32_t));
    e->arr = calloc(ni, sizeof(ArrVal *));
    e->pvar = calloc(ni, sizeof(uint32_t));
    e->params = calloc((size_t)nflat + 1, sizeof(uint32_t));
    e->pfirst = calloc((size_t)f->nparams + 1, sizeof(int32_t));
    e->cons = calloc((size_t)e->st.nlabels + 1, sizeof(Con));
    e->label_con = malloc(sizeof(int32_t) * ((size_t)e->st.nlabels + 1));
    if (e->val == NULL || e->arr == NULL || e->pvar == NULL
        || e->params == NULL || e->pfirst == NULL || e->cons == NULL
        || e->label_con == NULL) {
        nomem(e);
        goto done;
    }
    for (int32_t l = 0; l < e->st.nlabels; l++) {
        e->label_con[l] = -1;
    }
    uint32_t ftype = fn_type(e, f), *pt = malloc(sizeof(uint32_t)
                                                 * ((size_t)nflat + 1));
    if (ftype == 0 || pt == NULL) {
        free(pt);
        nomem(e);
        goto done;
    }
    param_types(e, f, pt);
    KlSpvBuf head = {NULL, 0, 0};
    SPV(sm, &head, SpvOpFunction, ret_type(e, f), fn->id,
        SpvFunctionControlMaskNone, ftype);
    int n = 0;
    for (int32_t k = 0; k < f->nparams; k++) {
        const KlType *t = f->param_types[k];
        int cnt = t->kind == KL_T_ARRAY ? 1 + 2 * t->ndim
                  : reg_type(e, t) != 0 ? 1 : 0;
        e->pfirst[k] = n;
        for (int j = 0; j < cnt; j++, n++) {
            e->params[n] = kl_spv_id(sm);
            SPV(sm, &head, SpvOpFunctionParameter, pt[n], e->params[n]);
        }
    }
    free(pt);
    uint32_t first = kl_spv_id(sm);
    SPV(sm, &head, SpvOpLabel, first);
    e->cur = first;
    if (emit_list(e, e->st.root) < 0) {
        free(head.w);
        goto done;
    }
    if (e->cur != 0) {
        term0(e, SpvOpUnreachable);
    }
    kl_spv_append(sm, &sm->funcs, &head);
    kl_spv_append(sm, &sm->funcs, &e->vars);
    kl_spv_append(sm, &sm->funcs, &e->body);
    kl_spv_inst(sm, &sm->funcs, SpvOpFunctionEnd, NULL, 0);
    free(head.w);
    fn->emitted = 1;
    rc = 0;
done:
    free_fn_state(e);
    return rc;
}

/* Rejects recursion (SPIR-V has none) among the functions reachable
 * from fi (by calls and by the bodies of nested pfor loops). */
static int
check_calls(Em *e, int32_t fi, uint8_t *state)
{
    KlFunc *f = e->m->funcs[fi];
    state[fi] = 1;
    for (int32_t i = 0; i < f->ninsts; i++) {
        const KlInst *in = &f->insts[i];
        if (in->op != KL_OP_call && in->op != KL_OP_pfor) {
            continue;
        }
        int32_t c = (int32_t)in->imm.i;
        if (c < 0 || c >= e->m->nfuncs) {
            return kl_internal_error(e->d, "%s: bad call", f->name);
        }
        if (state[c] == 1) {
            return fail_line(e, in->line, "recursion");
        }
        if (state[c] == 0 && check_calls(e, c, state) < 0) {
            return -1;
        }
    }
    state[fi] = 2;
    return 0;
}

/* ---- the entry point -------------------------------------------------- */

/* Decodes kernel params of f from k0 on, starting at params word w, into
 * call operands out (flattened); returns the next word. */
static uint32_t
decode_params(Em *e, const KlFunc *f, int32_t k0, uint32_t w, uint32_t *out,
              int *n)
{
    for (int32_t k = k0; k < f->nparams; k++) {
        const KlType *t = f->param_types[k];
        if (t->kind == KL_T_ARRAY) {
            for (int j = 0; j < 1 + 2 * t->ndim; j++) {
                out[(*n)++] = read64(e, e->i64t, w + 2 * (uint32_t)j);
            }
        }
        else if (reg_type(e, t) != 0) {
            out[(*n)++] = read_scalar(e, t, w);
        }
        w += slot_words(t);
    }
    return w;
}

/* An Input builtin variable of type uvec3. */
static uint32_t
builtin_var(Em *e, SpvBuiltIn which, const char *name)
{
    KlSpvMod *sm = &e->sm;
    uint32_t v3 = kl_spv_vec(sm, e->u32, 3);
    uint32_t ptr = kl_spv_ptr(sm, SpvStorageClassInput, v3);
    uint32_t var = kl_spv_id(sm);
    SPV(sm, &sm->types, SpvOpVariable, ptr, var, SpvStorageClassInput);
    SPV(sm, &sm->decos, SpvOpDecorate, var, SpvDecorationBuiltIn, which);
    kl_spv_name(sm, var, name);
    return var;
}

/* x component of builtin var, as int64. */
static uint32_t
builtin_x(Em *e, uint32_t var)
{
    uint32_t v3 = kl_spv_vec(&e->sm, e->u32, 3);
    uint32_t v = op1(e, SpvOpLoad, v3, var);
    return op1(e, SpvOpUConvert, e->i64t,
               op2(e, SpvOpCompositeExtract, e->u32, v, 0));
}

/* Calls kernel function g with operands w[3..n) (w[0..3) free) and
 * returns its result id (0 for none). */
static uint32_t
call_kernel(Em *e, Fn *g, uint32_t *w, int n)
{
    KlFunc *f = e->m->funcs[g->func];
    w[0] = ret_type(e, f);
    w[1] = kl_spv_id(&e->sm);
    w[2] = g->id;
    kl_spv_inst(&e->sm, B, SpvOpFunctionCall, w, (size_t)n);
    return reg_type(e, f->ret_type) ? w[1] : 0;
}

/* OpLoopMerge of a loop header; with the lavapipe guard on, the header
 * first counts one loop step. */
static void
loop_merge(Em *e, uint32_t merge, uint32_t cont)
{
    KlSpvMod *sm = &e->sm;
    if (e->steps_var != 0) {
        uint32_t n = op1(e, SpvOpLoad, e->u32, e->steps_var);
        SPV(sm, B, SpvOpStore, e->steps_var,
            op2(e, SpvOpIAdd, e->u32, n, cu32(e, 1)));
    }
    SPV(sm, B, SpvOpLoopMerge, merge, cont, SpvLoopControlMaskNone);
}

/* Returns from the entry point; with the lavapipe guard on, first sets
 * status word 12 when the invocation reached the driver's loop limit. */
static void
entry_return(Em *e)
{
    if (e->steps_var != 0) {
        KlSpvMod *sm = &e->sm;
        uint32_t n = op1(e, SpvOpLoad, e->u32, e->steps_var);
        uint32_t hit = op2(e, SpvOpUGreaterThanEqual, kl_spv_bool(sm), n,
                           cu32(e, KL_SPV_LOOP_LIMIT));
        uint32_t yes = kl_spv_id(sm), end = kl_spv_id(sm);
        SPV(sm, B, SpvOpSelectionMerge, end, SpvSelectionControlMaskNone);
        SPV(sm, B, SpvOpBranchConditional, hit, yes, end);
        label(e, yes);
        SPV(sm, B, SpvOpAtomicStore, word_ptr(e, e->status_var, 12),
            cu32(e, SpvScopeDevice), cu32(e, 0), cu32(e, 1));
        branch(e, end);
        label(e, end);
    }
    term0(e, SpvOpReturn);
}

/* The SERIAL entry: decode, call, store the result unless raised. */
static void
serial_body(Em *e, Fn *g, uint32_t *w)
{
    KlFunc *f = e->m->funcs[g->func];
    int n = 3;
    decode_params(e, f, 0, 0, w, &n);
    uint32_t r = call_kernel(e, g, w, n);
    if (r == 0) {
        entry_return(e);
        return;
    }
    if (e->raised_var != 0) {
        uint32_t bt = kl_spv_bool(&e->sm);
        uint32_t rs = op1(e, SpvOpLoad, bt, e->raised_var);
        uint32_t ok = kl_spv_id(&e->sm), end = kl_spv_id(&e->sm);
        SPV(&e->sm, B, SpvOpSelectionMerge, end, SpvSelectionControlMaskNone);
        SPV(&e->sm, B, SpvOpBranchConditional, rs, end, ok);
        label(e, ok);
        put_scalar(e, f->ret_type, r, 8);
        branch(e, end);
        label(e, end);
    }
    else {
        put_scalar(e, f->ret_type, r, 8);
    }
    entry_return(e);
}

/* The Input variables a PFOR entry reads (0 when unused). */
typedef struct PforIo {
    uint32_t gid, nwg;          /* global invocation id, workgroup count */
    uint32_t lid, wid;          /* local invocation id, workgroup id: only
                                   in kernels that can raise */
} PforIo;

/* x component of builtin var, as uint32. */
static uint32_t
builtin_x32(Em *e, uint32_t var)
{
    uint32_t v3 = kl_spv_vec(&e->sm, e->u32, 3);
    return op2(e, SpvOpCompositeExtract, e->u32, op1(e, SpvOpLoad, v3, var),
               0);
}

/* The type a fold computes in: its element's register type, but 32-bit
 * ints for bool and narrower ints (wrap-around and order are the same
 * there once the result is truncated back). */
static uint32_t
fold_type(Em *e, const Fold *fo)
{
    const KlType *t = fo->elem;
    int narrow = t->kind == KL_T_BOOL || (t->kind == KL_T_INT && t->bits < 32);
    return narrow ? e->u32 : reg_type(e, t);
}

/* Converts a partial between its memory type and fold_type (to_fold) or
 * back. */
static uint32_t
fold_convert(Em *e, const Fold *fo, uint32_t v, int to_fold)
{
    uint32_t ft = fold_type(e, fo), mt = mem_type(e, fo->elem);
    if (ft == mt) {
        return v;
    }
    int sext = to_fold && fo->elem->kind == KL_T_INT && fo->elem->is_signed;
    return op1(e, sext ? SpvOpSConvert : SpvOpUConvert, to_fold ? ft : mt, v);
}

/* a <op> b for a fold's operation, in fold_type: `a` holds the earlier
 * chunks.  min and max are Python's: b < a ? b : a, b > a ? b : a. */
static uint32_t
fold_op(Em *e, const Fold *fo, uint32_t a, uint32_t b)
{
    const KlType *t = fo->elem;
    uint32_t ty = fold_type(e, fo), bt = kl_spv_bool(&e->sm);
    int fl = t->kind == KL_T_FLOAT, sg = t->kind == KL_T_INT && t->is_signed;
    if (t->kind == KL_T_COMPLEX && fo->op == KL_RED_MUL) {
        uint32_t pt = kl_spv_float(&e->sm, t->bits / 2), x[2][2];
        for (int k = 0; k < 2; k++) {
            x[0][k] = op2(e, SpvOpCompositeExtract, pt, a, (uint32_t)k);
            x[1][k] = op2(e, SpvOpCompositeExtract, pt, b, (uint32_t)k);
        }
        uint32_t re = fop(e, SpvOpFSub, pt, fop(e, SpvOpFMul, pt, x[0][0],
                                                x[1][0]),
                          fop(e, SpvOpFMul, pt, x[0][1], x[1][1]));
        uint32_t im = fop(e, SpvOpFAdd, pt, fop(e, SpvOpFMul, pt, x[0][0],
                                                x[1][1]),
                          fop(e, SpvOpFMul, pt, x[0][1], x[1][0]));
        return op2(e, SpvOpCompositeConstruct, ty, re, im);
    }
    fl |= t->kind == KL_T_COMPLEX;
    switch (fo->op) {
    case KL_RED_ADD:
        return fl ? fop(e, SpvOpFAdd, ty, a, b) : op2(e, SpvOpIAdd, ty, a, b);
    case KL_RED_MUL:
        return fl ? fop(e, SpvOpFMul, ty, a, b) : op2(e, SpvOpIMul, ty, a, b);
    case KL_RED_MIN:
    case KL_RED_MAX: {
        int mn = fo->op == KL_RED_MIN;
        SpvOp lt = fl ? SpvOpFOrdLessThan : sg ? SpvOpSLessThan
                   : SpvOpULessThan;
        uint32_t wins = mn ? op2(e, lt, bt, b, a) : op2(e, lt, bt, a, b);
        return op3(e, SpvOpSelect, ty, wins, b, a);
    }
    case KL_RED_AND:
        return op2(e, SpvOpBitwiseAnd, ty, a, b);
    case KL_RED_OR:
        return op2(e, SpvOpBitwiseOr, ty, a, b);
    default:
        return op2(e, SpvOpBitwiseXor, ty, a, b);
    }
}

/* At the end of the entry (every invocation of the workgroup reaches
 * it): each invocation's partial (it ran at most one chunk: kernel.h) goes
 * to workgroup memory, a tree joins neighbours in chunk order (t with
 * t + 1, then t with t + 2, ... t + 32, among the workgroup's chunks
 * below nchunks), and local invocation 0 stores the result at the
 * workgroup's index of the fold's binding. */
static void
fold_workgroup(Em *e, uint32_t lid, uint32_t wid, uint32_t nchunks)
{
    KlSpvMod *sm = &e->sm;
    uint32_t bt = kl_spv_bool(sm), wg[MAX_FOLDS], ptr[MAX_FOLDS];
    for (int32_t i = 0; i < e->nfolds; i++) {
        const Fold *fo = &e->folds[i];
        const Bind *pb = &e->privs[fo->priv];
        uint32_t ty = fold_type(e, fo);
        uint32_t w[2] = {ty, cu32(e, KL_SPV_PFOR_WG)};
        uint32_t at = kl_spv_fresh_type(sm, SpvOpTypeArray, w, 2);
        wg[i] = kl_spv_id(sm);
        SPV(sm, &sm->types, SpvOpVariable,
            kl_spv_ptr(sm, SpvStorageClassWorkgroup, at), wg[i],
            SpvStorageClassWorkgroup);
        kl_spv_name(sm, wg[i], "fold");
        ptr[i] = kl_spv_ptr(sm, SpvStorageClassWorkgroup, ty);
        uint32_t mine = op1(e, SpvOpLoad, pb->mem,
                            op2(e, SpvOpAccessChain, pb->elem_ptr, pb->var,
                                cu32(e, 0)));
        SPV(sm, B, SpvOpStore, op2(e, SpvOpAccessChain, ptr[i], wg[i], lid),
            fold_convert(e, fo, mine, 1));
    }
    /* the workgroup's chunks: min(nchunks - wid * 64, 64) */
    uint32_t left = op2(e, SpvOpISub, e->i64t, nchunks,
                        op2(e, SpvOpIMul, e->i64t,
                            op1(e, SpvOpUConvert, e->i64t, wid),
                            ci64(e, KL_SPV_PFOR_WG)));
    uint32_t full = op2(e, SpvOpSLessThan, bt, left, ci64(e, KL_SPV_PFOR_WG));
    uint32_t valid = op1(e, SpvOpUConvert, e->u32,
                         op3(e, SpvOpSelect, e->i64t, full, left,
                             ci64(e, KL_SPV_PFOR_WG)));
    for (uint32_t s = 1; s < KL_SPV_PFOR_WG; s *= 2) {
        workgroup_barrier(e);
        uint32_t other = op2(e, SpvOpIAdd, e->u32, lid, cu32(e, s));
        uint32_t lead = op2(e, SpvOpIEqual, bt,
                            op2(e, SpvOpBitwiseAnd, e->u32, lid,
                                cu32(e, 2 * s - 1)), cu32(e, 0));
        uint32_t m = open_if(e, op2(e, SpvOpLogicalAnd, bt, lead,
                                    op2(e, SpvOpULessThan, bt, other,
                                        valid)));
        for (int32_t i = 0; i < e->nfolds; i++) {
            uint32_t ty = fold_type(e, &e->folds[i]);
            uint32_t here = op2(e, SpvOpAccessChain, ptr[i], wg[i], lid);
            uint32_t there = op2(e, SpvOpAccessChain, ptr[i], wg[i], other);
            SPV(sm, B, SpvOpStore, here,
                fold_op(e, &e->folds[i], op1(e, SpvOpLoad, ty, here),
                        op1(e, SpvOpLoad, ty, there)));
        }
        close_if(e, m);
    }
    workgroup_barrier(e);
    uint32_t m = open_if(e, op2(e, SpvOpIEqual, bt, lid, cu32(e, 0)));
    for (int32_t i = 0; i < e->nfolds; i++) {
        const Fold *fo = &e->folds[i];
        const Bind *b = &e->bvars[fo->out];
        uint32_t v = op1(e, SpvOpLoad, fold_type(e, fo),
                         op2(e, SpvOpAccessChain, ptr[i], wg[i], cu32(e, 0)));
        v = fold_convert(e, fo, v, 0);
        uint32_t base = b->var;
        if (b->block_ptr != 0) {
            base = op1(e, SpvOpConvertUToPtr, b->block_ptr,
                       op1(e, SpvOpLoad, e->i64t, b->var));
        }
        uint32_t p = op3(e, SpvOpAccessChain, b->elem_ptr, base, cu32(e, 0),
                         wid);
        if (b->align != 0) {
            SPV(sm, B, SpvOpStore, p, v, SpvMemoryAccessAlignedMask,
                b->align);
        }
        else {
            SPV(sm, B, SpvOpStore, p, v);
        }
        e->binds[fo->out].written = 1;
    }
    close_if(e, m);
}

/* The PFOR entry: grid-stride loop over chunks (kernel.h).  In a kernel
 * that can raise, an invocation leaves the loop at its first raising
 * chunk, and the workgroup then writes its record (write_record). */
static void
pfor_body(Em *e, Fn *g, uint32_t *w, const PforIo *io)
{
    KlSpvMod *sm = &e->sm;
    KlFunc *f = e->m->funcs[g->func];
    uint32_t bt = kl_spv_bool(sm), i64 = e->i64t;
    uint32_t cvar = kl_spv_id(sm);
    SPV(sm, &e->vars, SpvOpVariable,
        kl_spv_ptr(sm, SpvStorageClassFunction, i64), cvar,
        SpvStorageClassFunction);
    uint32_t wgmin = 0, keyvar = 0, chunkvar = 0, lid = 0;
    if (e->raised_var != 0 || e->nfolds > 0) {
        lid = builtin_x32(e, io->lid);
    }
    if (e->raised_var != 0) {
        wgmin = kl_spv_id(sm);
        SPV(sm, &sm->types, SpvOpVariable,
            kl_spv_ptr(sm, SpvStorageClassWorkgroup, e->u32), wgmin,
            SpvStorageClassWorkgroup);
        kl_spv_name(sm, wgmin, "lowest_raise");
        uint32_t m = open_if(e, op2(e, SpvOpIEqual, bt, lid, cu32(e, 0)));
        SPV(sm, B, SpvOpStore, wgmin, cu32(e, 0xffffffffu));
        close_if(e, m);
        workgroup_barrier(e);
        keyvar = local_var(e, e->u32, cu32(e, 0xffffffffu));
        chunkvar = local_var(e, i64, ci64(e, 0));
    }
    uint32_t nchunks = read64(e, i64, 0), cs = read64(e, i64, 2);
    uint32_t niters = read64(e, i64, 4);
    int n = 6;
    decode_params(e, f, 3, 6, w, &n);
    uint32_t c0 = builtin_x(e, io->gid);
    uint32_t grid = op2(e, SpvOpIMul, i64, builtin_x(e, io->nwg),
                        ci64(e, KL_SPV_PFOR_WG));
    SPV(sm, B, SpvOpStore, cvar, c0);
    uint32_t head = kl_spv_id(sm), body = kl_spv_id(sm);
    uint32_t cont = kl_spv_id(sm), merge = kl_spv_id(sm);
    branch(e, head);
    label(e, head);
    uint32_t c = op1(e, SpvOpLoad, i64, cvar);
    uint32_t more = op2(e, SpvOpSLessThan, bt, c, nchunks);
    loop_merge(e, merge, cont);
    SPV(sm, B, SpvOpBranchConditional, more, body, merge);
    label(e, body);
    /* lo = c * cs; hi = lo + min(cs, niters - lo) */
    uint32_t lo = op2(e, SpvOpIMul, i64, c, cs);
    uint32_t left = op2(e, SpvOpISub, i64, niters, lo);
    uint32_t fewer = op2(e, SpvOpSLessThan, bt, left, cs);
    uint32_t len = op3(e, SpvOpSelect, i64, fewer, left, cs);
    w[3] = e->nfolds > 0 ? ci64(e, 0) : c;  /* folds: private partials */
    w[4] = lo;
    w[5] = op2(e, SpvOpIAdd, i64, lo, len);
    call_kernel(e, g, w, n);
    if (e->raised_var != 0) {
        uint32_t rs = op1(e, SpvOpLoad, bt, e->raised_var);
        uint32_t out = kl_spv_id(sm), go = kl_spv_id(sm);
        SPV(sm, B, SpvOpSelectionMerge, go, SpvSelectionControlMaskNone);
        SPV(sm, B, SpvOpBranchConditional, rs, out, go);
        label(e, out);
        /* rank = min(round, 2**26 - 2) * KL_SPV_PFOR_WG + local id, where
         * round = (c - c0) / grid: within a workgroup, chunk order.  The
         * cap keeps every rank below 2**32 - 1, write_record's "none"
         * (2**26 - 1 would give (2**26 - 1) * 64 + 63 = 2**32 - 1) */
        uint32_t round = op2(e, SpvOpUDiv, i64, op2(e, SpvOpISub, i64, c, c0),
                             grid);
        uint32_t cap = ci64(e, (1LL << 26) - 2);
        round = op3(e, SpvOpSelect, i64,
                    op2(e, SpvOpULessThan, bt, round, cap), round, cap);
        uint32_t rank = op2(e, SpvOpIAdd, e->u32,
                            op2(e, SpvOpIMul, e->u32,
                                op1(e, SpvOpUConvert, e->u32, round),
                                cu32(e, KL_SPV_PFOR_WG)), lid);
        SPV(sm, B, SpvOpStore, keyvar, rank);
        SPV(sm, B, SpvOpStore, chunkvar, c);
        branch(e, merge);
        label(e, go);
    }
    branch(e, cont);
    label(e, cont);
    SPV(sm, B, SpvOpStore, cvar, op2(e, SpvOpIAdd, i64, c, grid));
    branch(e, head);
    label(e, merge);
    if (e->nfolds > 0) {
        fold_workgroup(e, lid, builtin_x32(e, io->wid), nchunks);
    }
    if (e->raised_var != 0) {
        write_record(e, op1(e, SpvOpLoad, e->u32, keyvar),
                     op1(e, SpvOpLoad, i64, chunkvar), wgmin, lid,
                     builtin_x32(e, io->wid));
    }
    entry_return(e);
}

/* Emits "main" for kernel function instance g; returns the params size
 * in words. */
static uint32_t
emit_main(Em *e, Fn *g)
{
    KlSpvMod *sm = &e->sm;
    KlFunc *f = e->m->funcs[g->func];
    uint32_t main_id = kl_spv_id(sm), first = kl_spv_id(sm);
    uint32_t vt = kl_spv_void(sm), ft = kl_spv_fntype(sm, vt, NULL, 0);
    uint32_t words = 0;
    PforIo io = {0, 0, 0, 0};
    uint32_t *w = malloc(sizeof(uint32_t) * ((size_t)flat_count(f) + 8));
    if (w == NULL) {
        nomem(e);
        return 0;
    }
    kl_spv_name(sm, main_id, "main");
    e->f = f;
    e->cur = first;
    /* status word 11 is zero until a serial kernel's result is stored */
    SPV(sm, B, SpvOpStore, e->zero_var,
        op1(e, SpvOpLoad, e->u32, word_ptr(e, e->status_var, 11)));
    /* the params words; then, with device addresses, one uint64 per
     * array binding, copied into the bindings' Private variables */
    words = e->kind == KL_SPV_PFOR ? 6 : 0;
    for (int32_t k = e->kind == KL_SPV_PFOR ? 3 : 0; k < f->nparams; k++) {
        words += slot_words(f->param_types[k]);
    }
    for (int32_t k = 0; e->bda && k < e->nbinds; k++) {
        SPV(sm, B, SpvOpStore, e->bvars[k].var,
            read64(e, e->i64t, words + 2 * (uint32_t)k));
    }
    if (e->bda) {
        words += 2 * (uint32_t)e->nbinds;
    }
    if (e->kind == KL_SPV_PFOR) {
        io.gid = builtin_var(e, SpvBuiltInGlobalInvocationId,
                             "gl_GlobalInvocationID");
        io.nwg = builtin_var(e, SpvBuiltInNumWorkgroups, "gl_NumWorkGroups");
        if (e->raised_var != 0 || e->nfolds > 0) {
            io.lid = builtin_var(e, SpvBuiltInLocalInvocationId,
                                 "gl_LocalInvocationID");
            io.wid = builtin_var(e, SpvBuiltInWorkgroupId, "gl_WorkGroupID");
        }
        pfor_body(e, g, w, &io);
    }
    else {
        serial_body(e, g, w);
    }
    free(w);
    uint32_t ep[2] = {SpvExecutionModelGLCompute, main_id};
    uint32_t iface[4] = {io.gid, io.nwg, io.lid, io.wid};
    kl_spv_inst_str(sm, &sm->entry, SpvOpEntryPoint, ep, 2, "main", iface,
                    io.gid == 0 ? 0 : io.lid == 0 ? 2 : 4);
    sm->entry_fn = main_id;
    SPV(sm, &sm->entry, SpvOpExecutionMode, main_id,
        SpvExecutionModeLocalSize,
        e->kind == KL_SPV_PFOR ? KL_SPV_PFOR_WG : 1, 1, 1);
    SPV(sm, &sm->funcs, SpvOpFunction, vt, main_id,
        SpvFunctionControlMaskNone, ft);
    SPV(sm, &sm->funcs, SpvOpLabel, first);
    kl_spv_append(sm, &sm->funcs, &e->vars);
    kl_spv_append(sm, &sm->funcs, &e->body);
    kl_spv_inst(sm, &sm->funcs, SpvOpFunctionEnd, NULL, 0);
    free(e->vars.w);
    free(e->body.w);
    memset(&e->vars, 0, sizeof(e->vars));
    memset(&e->body, 0, sizeof(e->body));
    return words;
}

/* The status and params buffers and the raised flag. */
static void
make_globals(Em *e)
{
    KlSpvMod *sm = &e->sm;
    e->u32 = kl_spv_int(sm, 32);
    e->i64t = kl_spv_int(sm, 64);
    e->sb_u32_ptr = kl_spv_ptr(sm, SpvStorageClassStorageBuffer, e->u32);
    uint32_t arr = kl_spv_fresh_type(sm, SpvOpTypeRuntimeArray, &e->u32, 1);
    SPV(sm, &sm->decos, SpvOpDecorate, arr, SpvDecorationArrayStride, 4);
    uint32_t st = kl_spv_fresh_type(sm, SpvOpTypeStruct, &arr, 1);
    SPV(sm, &sm->decos, SpvOpDecorate, st, SpvDecorationBlock);
    SPV(sm, &sm->decos, SpvOpMemberDecorate, st, 0, SpvDecorationOffset, 0);
    e->status_var = buffer_var(e, st, 0, "status");
    e->params_var = buffer_var(e, buffer_struct(e, e->u32, 4), 1, "params");
    if (e->m->nraises > 0) {
        uint32_t bt = kl_spv_bool(sm);
        uint32_t ptr = kl_spv_ptr(sm, SpvStorageClassPrivate, bt);
        e->raised_var = kl_spv_id(sm);
        SPV(sm, &sm->types, SpvOpVariable, ptr, e->raised_var,
            SpvStorageClassPrivate, kl_spv_const_bool(sm, 0));
        kl_spv_name(sm, e->raised_var, "raised");
    }
    uint32_t zp = kl_spv_ptr(sm, SpvStorageClassPrivate, e->u32);
    if (e->steps_var != 0) {
        SPV(sm, &sm->types, SpvOpVariable, zp, e->steps_var,
            SpvStorageClassPrivate, cu32(e, 0));
        kl_spv_name(sm, e->steps_var, "loop_steps");
    }
    e->zero_var = kl_spv_id(sm);
    SPV(sm, &sm->types, SpvOpVariable, zp, e->zero_var,
        SpvStorageClassPrivate);
    kl_spv_name(sm, e->zero_var, "zero");
    if (e->kind == KL_SPV_PFOR && e->raised_var != 0) {
        uint32_t cp = kl_spv_ptr(sm, SpvStorageClassPrivate, e->i64t);
        e->rsite_var = kl_spv_id(sm);
        SPV(sm, &sm->types, SpvOpVariable, zp, e->rsite_var,
            SpvStorageClassPrivate);
        for (int k = 0; k < 3; k++) {
            e->rpay_var[k] = kl_spv_id(sm);
            SPV(sm, &sm->types, SpvOpVariable, cp, e->rpay_var[k],
                SpvStorageClassPrivate);
        }
    }
}

static int
check_kernel(Em *e, int32_t fi, KlSpvKind kind)
{
    if (fi < 0 || fi >= e->m->nfuncs) {
        return kl_internal_error(e->d, "SPIR-V backend: no function %d",
                                 (int)fi);
    }
    KlFunc *f = e->m->funcs[fi];
    if (f->ret_type == NULL) {
        return kl_internal_error(e->d, "%s: untyped", f->name);
    }
    if (kind == KL_SPV_PFOR) {
        int ok = f->nparams >= 3 && reg_type(e, f->ret_type) == 0;
        for (int32_t k = 0; ok && k < 3; k++) {
            const KlType *t = f->param_types[k];
            ok = t->kind == KL_T_INT && t->bits == 64;
        }
        if (!ok) {
            return kl_internal_error(e->d, "%s is not a pfor body", f->name);
        }
    }
    uint8_t *state = calloc((size_t)e->m->nfuncs, 1);
    if (state == NULL) {
        return nomem(e);
    }
    int rc = check_calls(e, fi, state);
    free(state);
    return rc;
}

/* Marks the bindings of pfor body f's partials params (f->param_reduce,
 * set by passes/parallel.c) with their combining operation, and those
 * folded per workgroup as such. */
static void
tag_partials(const Em *e, const KlFunc *f)
{
    for (int32_t b = 0; f->param_reduce != NULL && b < e->nbinds; b++) {
        int32_t p = e->binds[b].param;
        if (p >= 3 && p < f->nparams) {
            e->binds[b].reduce = f->param_reduce[p];
            e->binds[b].per_group = e->nfolds > 0;
        }
    }
}

/* 1 when pfor body f's reductions (at most MAX_FOLDS) can be folded per
 * workgroup: the chunk number (param 0) only indexes the partials. */
static int
foldable(const KlFunc *f)
{
    int n = 0;
    for (int32_t p = 3; f->param_reduce != NULL && p < f->nparams; p++) {
        n += f->param_reduce[p] != KL_RED_NONE;
    }
    if (n == 0 || n > MAX_FOLDS) {
        return 0;
    }
    for (int32_t i = 0; i < f->ninsts; i++) {
        const KlInst *in = &f->insts[i];
        for (int32_t a = 0; a < in->nargs; a++) {
            const KlInst *x = &f->insts[in->args[a]];
            if (x->op != KL_OP_arg || x->imm.i != 0) {
                continue;
            }
            const KlInst *arr = &f->insts[in->args[0]];
            if (in->op != KL_OP_elemptr || a != 1 || arr->op != KL_OP_arg
                || f->param_reduce[arr->imm.i] == KL_RED_NONE) {
                return 0;
            }
        }
    }
    return 1;
}

/* The array bindings of PFOR body f when its partials are folded: one
 * binding per array param in order (a partials param's receives the
 * workgroups' partials), and a private one-element array per partials
 * param, which the body writes (e->folds).  malloc'ed, per param; NULL
 * with e->d filled. */
static int32_t *
fold_bindings(Em *e, const KlFunc *f)
{
    int32_t *ab = malloc(sizeof(int32_t) * ((size_t)f->nparams + 1));
    if (ab == NULL) {
        nomem(e);
        return NULL;
    }
    for (int32_t k = 0; k < f->nparams; k++) {
        const KlType *t = f->param_types[k];
        ab[k] = t->kind == KL_T_ARRAY ? add_binding(e, k, t->elem, 0) : -1;
        if (t->kind == KL_T_ARRAY && ab[k] < 0) {
            free(ab);
            return NULL;
        }
        if (k >= 3 && f->param_reduce[k] != KL_RED_NONE) {
            Fold *fo = &e->folds[e->nfolds++];
            fo->out = ab[k];
            fo->op = f->param_reduce[k];
            fo->elem = t->elem;
            fo->priv = new_private(e, t->elem, 1);
            ab[k] = PRIV(fo->priv);
        }
    }
    return ab;
}

int
kl_spirv_emit(KlModule *m, int32_t fi, KlSpvKind kind, KlSpirv *out,
              KlDiag *d)
{
    Em e;
    int rc = -1;
    memset(&e, 0, sizeof(e));
    memset(out, 0, sizeof(*out));
    e.m = m;
    e.d = d;
    e.kind = kind;
    kl_spv_init(&e.sm);
    const KlVkInfo *vi = kl_vk_info();
    if (vi != NULL && strstr(vi->name, "llvmpipe") != NULL) {
        e.steps_var = kl_spv_id(&e.sm);     /* lavapipe: guard loops */
    }
    e.bda = vi != NULL && vi->buffer_device_address && vi->int64;
    if (check_kernel(&e, fi, kind) < 0) {
        goto done;
    }
    make_globals(&e);
    int32_t *abind = NULL;
    if (kind == KL_SPV_PFOR && foldable(m->funcs[fi])
        && (abind = fold_bindings(&e, m->funcs[fi])) == NULL) {
        goto done;
    }
    Fn *g = get_fn(&e, fi, abind);
    free(abind);
    if (g == NULL) {
        goto done;
    }
    for (int32_t i = 0; i < e.nfns; i++) {
        if (!e.fns[i]->emitted && emit_fn(&e, e.fns[i]) < 0) {
            goto done;
        }
    }
    uint32_t words = emit_main(&e, g);
    if (e.sm.oom) {
        nomem(&e);
        goto done;
    }
    if (kl_spv_finish(&e.sm, &out->words, &out->nwords) < 0) {
        nomem(&e);
        goto done;
    }
    out->kind = kind;
    out->func = fi;
    out->local_size = kind == KL_SPV_PFOR ? KL_SPV_PFOR_WG : 1;
    out->params_bytes = words * 4;
    out->features = e.sm.caps;
    out->bindings = e.binds;
    out->nbindings = e.nbinds;
    out->ret_type = m->funcs[fi]->ret_type;
    out->records = kind == KL_SPV_PFOR && e.raised_var != 0;
    if (kind == KL_SPV_PFOR) {
        tag_partials(&e, m->funcs[fi]);
    }
    out->bda = (uint8_t)e.sm.psb;
    e.binds = NULL;
    rc = 0;
done:
    for (int32_t i = 0; i < e.nfns; i++) {
        free(e.fns[i]->abind);
        free(e.fns[i]);
    }
    free(e.fns);
    free(e.binds);
    free(e.bvars);
    free_fn_state(&e);
    kl_spv_release(&e.sm);
    if (rc < 0) {
        kl_spirv_free(out);
    }
    return rc;
}

void
kl_spirv_free(KlSpirv *k)
{
    if (k == NULL) {
        return;
    }
    free(k->words);
    free(k->bindings);
    k->words = NULL;
    k->bindings = NULL;
    k->nwords = 0;
    k->nbindings = 0;
}
