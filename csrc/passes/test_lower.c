/* passes/test_lower.c: standalone test of passes/lower.c (not part of the
 * build).  Builds small typed Python-level functions by hand (types set as
 * infer would), lowers them, checks kl_verify plus the operand-type rules
 * of ir/ops.h, and runs the result in a small interpreter of primitive IR.
 *
 *   gcc -std=c11 -O1 -g -I csrc -o /tmp/test_lower csrc/passes/test_lower.c \
 *       csrc/passes/lower.c csrc/passes/lower_builtins.c csrc/ir/ir.c \
 *       csrc/types.c csrc/kiln.c -lm -lpthread
 *   /tmp/test_lower            sample functions: checks and printed IR
 *   /tmp/test_lower eval       reads "OP TA TB A B" lines, prints results
 *                              (a driver compares them with CPython/NumPy)
 *
 * Values on the eval protocol: ints in decimal, floats as C99 hex floats,
 * complex as "re,im" (hex floats).  OP is a binop name (add sub mul
 * truediv floordiv mod pow lshift rshift and or xor), a comparison (lt le
 * eq ne gt ge), or a builtin's Python name ("abs", "math.sqrt", ...) with
 * TB "-" for one operand.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compile.h"

static int failures;

#define EXPECT(cond, ...)                                                 \
    do {                                                                  \
        if (!(cond)) {                                                    \
            failures++;                                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                   \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
        }                                                                 \
    } while (0)

/* ---- building Python-level IR ---------------------------------------- */

static KlModule *M;
static KlFunc *F;
static int32_t B;       /* block being filled */

static void
begin(const char *name, int nparams, const KlType **ptypes, const KlType *ret)
{
    F = kl_func_new(M, name);
    F->nparams = nparams;
    F->param_types = kl_arena_alloc(&M->arena, sizeof(KlType *) * 8);
    for (int i = 0; i < nparams; i++) {
        F->param_types[i] = ptypes[i];
    }
    F->ret_type = ret;
    B = 0;
}

static int32_t
op(KlOp o, const KlType *t, int aux, int n, const int32_t *args)
{
    int32_t id = kl_emit(F, B, o, t, 1, n, args);
    F->insts[id].aux = aux;
    return id;
}

static int32_t
arg(int i)
{
    int32_t id = op(KL_OP_arg, F->param_types[i], 0, 0, NULL);
    F->insts[id].imm.i = i;
    return id;
}

static int32_t
cint(const KlType *t, int64_t v)
{
    return kl_const_int(F, B, t, v, 1);
}

static int32_t
bin(KlBinop o, const KlType *t, int32_t a, int32_t b)
{
    int32_t args[2] = {a, b};
    return op(KL_OP_py_binop, t, o, 2, args);
}

static int32_t
ret(int32_t v)
{
    return op(KL_OP_ret, kl_void, 0, v < 0 ? 0 : 1, &v);
}

/* ---- checking the ops.h operand rules ---------------------------------- */

static const KlType *
T(const KlFunc *f, int32_t v)
{
    return f->insts[v].type;
}

static void
check_types(const KlFunc *f)
{
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlBlock *blk = &f->blocks[b];
        for (int32_t k = 0; k < blk->insts.len; k++) {
            int32_t id = blk->insts.items[k];
            const KlInst *in = &f->insts[id];
            const KlType *t = in->type;
            const char *nm = kl_op_name(in->op);
            EXPECT(t != NULL && !t->weak, "%s %%%d: weak or missing type",
                   f->name, id);
            switch (in->op) {
            case KL_OP_add: case KL_OP_sub: case KL_OP_mul: case KL_OP_div:
            case KL_OP_rem: case KL_OP_and: case KL_OP_or: case KL_OP_xor:
            case KL_OP_shl: case KL_OP_shr: case KL_OP_neg: case KL_OP_math:
                for (int i = 0; i < in->nargs; i++) {
                    EXPECT(T(f, in->args[i]) == t, "%s %%%d: %s operand %d "
                           "is %s, T %s", f->name, id, nm, i,
                           T(f, in->args[i])->name, t->name);
                }
                break;
            case KL_OP_cmp:
                EXPECT(t == kl_bool && T(f, in->args[0]) == T(f, in->args[1]),
                       "%s %%%d: cmp types", f->name, id);
                break;
            case KL_OP_select:
                EXPECT(T(f, in->args[0]) == kl_bool
                       && T(f, in->args[1]) == t && T(f, in->args[2]) == t,
                       "%s %%%d: select types", f->name, id);
                break;
            case KL_OP_cmake:
                EXPECT(t->kind == KL_T_COMPLEX
                       && T(f, in->args[0]) == kl_type_float(t->bits / 2)
                       && T(f, in->args[1]) == kl_type_float(t->bits / 2),
                       "%s %%%d: cmake types", f->name, id);
                break;
            case KL_OP_creal: case KL_OP_cimag:
                EXPECT(T(f, in->args[0])->kind == KL_T_COMPLEX
                       && t == kl_type_float(T(f, in->args[0])->bits / 2),
                       "%s %%%d: part types", f->name, id);
                break;
            case KL_OP_cast:
                EXPECT(kl_type_is_scalar(t) && t->kind != KL_T_COMPLEX
                       && T(f, in->args[0])->kind != KL_T_COMPLEX,
                       "%s %%%d: cast types", f->name, id);
                break;
            case KL_OP_elemptr:
                EXPECT(T(f, in->args[0])->kind == KL_T_ARRAY, "elemptr");
                for (int i = 1; i < in->nargs; i++) {
                    EXPECT(T(f, in->args[i]) == kl_i64, "%s %%%d: index type",
                           f->name, id);
                }
                break;
            case KL_OP_load:
                EXPECT(T(f, in->args[0])->kind == KL_T_PTR
                       && T(f, in->args[0])->elem == t, "load types");
                break;
            case KL_OP_store:
                EXPECT(T(f, in->args[0])->kind == KL_T_PTR
                       && T(f, in->args[0])->elem == T(f, in->args[1]),
                       "%s %%%d: store types", f->name, id);
                break;
            case KL_OP_jump: {
                const KlBlock *tb = &f->blocks[in->imm.i];
                for (int i = 0; i < in->nargs; i++) {
                    EXPECT(T(f, in->args[i]) == T(f, tb->insts.items[i]),
                           "%s %%%d: jump operand %d type", f->name, id, i);
                }
                break;
            }
            case KL_OP_ret:
                if (in->nargs) {
                    EXPECT(T(f, in->args[0]) == kl_type_strong(f->ret_type),
                           "%s %%%d: ret type", f->name, id);
                }
                break;
            case KL_OP_raise:
                for (int i = 0; i < in->nargs; i++) {
                    EXPECT(T(f, in->args[i]) == kl_i64, "raise payload");
                }
                break;
            default:
                break;
            }
        }
    }
}

/* Lowers F, verifies it and checks operand types; prints the IR when
 * `show`.  Returns 0 when lowering succeeded. */
static int
lower_and_check(int show)
{
    KlDiag d = {0};
    EXPECT(kl_verify(F, 0, &d) == 0, "%s: input invalid: %s", F->name, d.msg);
    if (kl_lower(F, &d) < 0) {
        if (show) {
            printf("%s: lower failed (%d): line %d: %s\n", F->name, d.kind,
                   d.line, d.msg);
        }
        return -1;
    }
    EXPECT(kl_verify(F, 1, &d) == 0, "%s: output invalid: %s", F->name,
           d.msg);
    check_types(F);
    if (show) {
        char *s = kl_func_print(F);
        printf("%s\n", s);
        free(s);
    }
    return 0;
}

/* ---- interpreter of primitive IR --------------------------------------- */

typedef struct V {
    int64_t i;
    double f, re, im;
    char *p;
    const KlArrayArg *arr;
} V;

typedef struct Result {
    int raised;     /* 0: returned; 1: raised */
    int32_t site;
    int64_t payload[3];
    V v;
} Result;

static int64_t
wrap(int64_t v, const KlType *t)
{
    if (t->kind == KL_T_BOOL) {
        return v & 1;
    }
    if (t->bits >= 64) {
        return v;
    }
    uint64_t mask = ((uint64_t)1 << t->bits) - 1, u = (uint64_t)v & mask;
    if (t->is_signed && (u >> (t->bits - 1))) {
        u |= ~mask;
    }
    return (int64_t)u;
}

static double
rnd(double x, const KlType *t)
{
    return t->bits == 32 ? (double)(float)x : x;
}

static double
callm(KlMathFn fn, double a, double b, int f32)
{
    switch (fn) {
#define M1(n) case KL_MATH_##n: return f32 ? n##f((float)a) : n(a);
#define M2(n) case KL_MATH_##n: return f32 ? n##f((float)a, (float)b) : n(a, b);
    M1(sqrt) M1(sin) M1(cos) M1(tan) M1(asin) M1(acos) M1(atan) M2(atan2)
    M1(sinh) M1(cosh) M1(tanh) M1(asinh) M1(acosh) M1(atanh) M1(exp)
    M1(exp2) M1(expm1) M1(log) M1(log2) M1(log10) M1(log1p) M2(pow)
    M1(fabs) M2(hypot) M2(copysign) M2(fmod) M1(erf) M1(erfc) M1(tgamma)
    M1(lgamma) M1(floor) M1(ceil) M1(trunc) M1(rint)
#undef M1
#undef M2
    default:
        return NAN;
    }
}

static int
icmp(KlCmp c, int64_t a, int64_t b, int is_signed)
{
    if (!is_signed) {
        uint64_t x = (uint64_t)a, y = (uint64_t)b;
        return c == KL_CMP_LT ? x < y : c == KL_CMP_LE ? x <= y
               : c == KL_CMP_EQ ? x == y : c == KL_CMP_NE ? x != y
               : c == KL_CMP_GT ? x > y : x >= y;
    }
    return c == KL_CMP_LT ? a < b : c == KL_CMP_LE ? a <= b
           : c == KL_CMP_EQ ? a == b : c == KL_CMP_NE ? a != b
           : c == KL_CMP_GT ? a > b : a >= b;
}

static int
fcmp(KlCmp c, double a, double b)
{
    return c == KL_CMP_LT ? a < b : c == KL_CMP_LE ? a <= b
           : c == KL_CMP_EQ ? a == b : c == KL_CMP_NE ? a != b
           : c == KL_CMP_GT ? a > b : a >= b;
}

#define BAD(...) do { printf("INTERP: " __VA_ARGS__); printf("\n");        \
                      failures++; r.raised = 2; return r; } while (0)

static Result
run(const KlFunc *f, const V *args)
{
    Result r = {0};
    V *regs = calloc((size_t)f->ninsts + 1, sizeof(V));
    V tmp[64];
    int32_t b = 0;
    long steps = 0;
    for (;;) {
        const KlBlock *blk = &f->blocks[b];
        int32_t next = -1;
        for (int32_t k = blk->nparams; k < blk->insts.len; k++) {
            int32_t id = blk->insts.items[k];
            const KlInst *in = &f->insts[id];
            const KlType *t = in->type;
            V *o = &regs[id];
            V a = in->nargs > 0 ? regs[in->args[0]] : (V){0};
            V c = in->nargs > 1 ? regs[in->args[1]] : (V){0};
            const KlType *at = in->nargs > 0 ? f->insts[in->args[0]].type : NULL;
            if (++steps > 10000000) {
                BAD("too many steps");
            }
            switch (in->op) {
            case KL_OP_const:
                o->i = in->imm.i;
                o->f = in->imm.f;
                o->re = in->imm.c.re;
                o->im = in->imm.c.im;
                break;
            case KL_OP_arg:
                *o = args[in->imm.i];
                break;
            case KL_OP_undef:
                memset(o, 0, sizeof(*o));
                break;
            case KL_OP_add: case KL_OP_sub: case KL_OP_mul: case KL_OP_div:
            case KL_OP_rem:
                if (t->kind == KL_T_FLOAT) {
                    double x = a.f, y = c.f;
                    double z = in->op == KL_OP_add ? x + y
                               : in->op == KL_OP_sub ? x - y
                               : in->op == KL_OP_mul ? x * y
                               : in->op == KL_OP_div ? x / y
                               : callm(KL_MATH_fmod, x, y, t->bits == 32);
                    o->f = rnd(z, t);
                    break;
                }
                if ((in->op == KL_OP_div || in->op == KL_OP_rem)
                    && (c.i == 0 || (t->is_signed && c.i == -1
                                     && a.i == wrap(INT64_MIN, t)))) {
                    BAD("%s %%%d: bad divisor", f->name, id);
                }
                {
                    uint64_t x = (uint64_t)a.i, y = (uint64_t)c.i, z;
                    if (in->op == KL_OP_div) {
                        z = t->is_signed ? (uint64_t)(a.i / c.i) : x / y;
                    }
                    else if (in->op == KL_OP_rem) {
                        z = t->is_signed ? (uint64_t)(a.i % c.i) : x % y;
                    }
                    else {
                        z = in->op == KL_OP_add ? x + y
                            : in->op == KL_OP_sub ? x - y : x * y;
                    }
                    o->i = wrap((int64_t)z, t);
                }
                break;
            case KL_OP_neg:
                if (t->kind == KL_T_FLOAT) {
                    o->f = -a.f;
                }
                else {
                    o->i = wrap((int64_t)(0 - (uint64_t)a.i), t);
                }
                break;
            case KL_OP_and:
                o->i = a.i & c.i;
                break;
            case KL_OP_or:
                o->i = a.i | c.i;
                break;
            case KL_OP_xor:
                o->i = wrap(a.i ^ c.i, t);
                break;
            case KL_OP_shl: case KL_OP_shr:
                if (c.i < 0 || c.i >= t->bits) {
                    BAD("%s %%%d: bad shift count", f->name, id);
                }
                if (in->op == KL_OP_shl) {
                    o->i = wrap((int64_t)((uint64_t)a.i << c.i), t);
                }
                else if (t->is_signed) {
                    o->i = a.i >> c.i;
                }
                else {
                    uint64_t mask = t->bits == 64 ? ~(uint64_t)0
                                    : (((uint64_t)1 << t->bits) - 1);
                    o->i = (int64_t)(((uint64_t)a.i & mask) >> c.i);
                }
                break;
            case KL_OP_cmp:
                o->i = at->kind == KL_T_FLOAT ? fcmp(in->aux, a.f, c.f)
                       : icmp(in->aux, a.i, c.i,
                              at->kind == KL_T_INT ? at->is_signed : 0);
                break;
            case KL_OP_select:
                *o = a.i ? c : regs[in->args[2]];
                break;
            case KL_OP_cast:
                if (at->kind == KL_T_FLOAT) {
                    if (t->kind == KL_T_FLOAT) {
                        o->f = rnd(a.f, t);
                    }
                    else if (t == kl_bool) {
                        o->i = a.f != 0;
                    }
                    else {
                        double lim = t->bits == 64 && !t->is_signed
                                     ? 18446744073709551616.0
                                     : ldexp(1.0, t->bits - t->is_signed);
                        double lo = t->is_signed ? -lim : -1.0;
                        if (!(a.f > lo - 1 && a.f < lim)) {
                            BAD("%s %%%d: float->int out of range %g",
                                f->name, id, a.f);
                        }
                        o->i = t->is_signed || t->bits < 64
                               ? wrap((int64_t)a.f, t)
                               : (int64_t)(uint64_t)a.f;
                    }
                }
                else if (t->kind == KL_T_FLOAT) {
                    int uns = at->kind == KL_T_INT && !at->is_signed;
                    o->f = rnd(uns ? (double)(uint64_t)a.i : (double)a.i, t);
                }
                else if (t == kl_bool) {
                    o->i = a.i != 0;
                }
                else {
                    o->i = wrap(a.i, t);
                }
                break;
            case KL_OP_math:
                o->f = rnd(callm(in->aux, a.f, c.f, t->bits == 32), t);
                break;
            case KL_OP_cmake:
                o->re = a.f;
                o->im = c.f;
                break;
            case KL_OP_creal:
                o->f = a.re;
                break;
            case KL_OP_cimag:
                o->f = a.im;
                break;
            case KL_OP_dim:
                o->i = a.arr->shape[in->imm.i];
                break;
            case KL_OP_elemptr: {
                char *p = a.arr->data;
                for (int i = 1; i < in->nargs; i++) {
                    int64_t ix = regs[in->args[i]].i;
                    if (ix < 0 || ix >= a.arr->shape[i - 1]) {
                        BAD("%s %%%d: elemptr out of range", f->name, id);
                    }
                    p += ix * a.arr->strides[i - 1];
                }
                o->p = p;
                break;
            }
            case KL_OP_load:
                if (t == kl_f64) {
                    memcpy(&o->f, a.p, 8);
                }
                else if (t == kl_i64) {
                    memcpy(&o->i, a.p, 8);
                }
                else if (t == kl_bool) {
                    o->i = *(unsigned char *)a.p;
                }
                else {
                    BAD("load of %s", t->name);
                }
                break;
            case KL_OP_store: {
                const KlType *et = f->insts[in->args[1]].type;
                if (et == kl_f64) {
                    memcpy(a.p, &c.f, 8);
                }
                else if (et == kl_i64) {
                    memcpy(a.p, &c.i, 8);
                }
                else if (et == kl_bool) {
                    *(unsigned char *)a.p = (unsigned char)c.i;
                }
                else {
                    BAD("store of %s", et->name);
                }
                break;
            }
            case KL_OP_jump: {
                const KlBlock *tb = &f->blocks[in->imm.i];
                for (int i = 0; i < in->nargs; i++) {
                    tmp[i] = regs[in->args[i]];
                }
                for (int i = 0; i < in->nargs; i++) {
                    regs[tb->insts.items[i]] = tmp[i];
                }
                next = (int32_t)in->imm.i;
                break;
            }
            case KL_OP_branch:
                next = a.i ? (int32_t)in->imm.i : in->aux;
                break;
            case KL_OP_ret:
                r.v = in->nargs ? a : (V){0};
                free(regs);
                return r;
            case KL_OP_raise:
                r.raised = 1;
                r.site = (int32_t)in->imm.i;
                for (int i = 0; i < in->nargs; i++) {
                    r.payload[i] = regs[in->args[i]].i;
                }
                free(regs);
                return r;
            default:
                BAD("%s %%%d: cannot run %s", f->name, id, kl_op_name(in->op));
            }
        }
        if (next < 0) {
            BAD("%s: fell off b%d", f->name, b);
        }
        b = next;
    }
}

/* ---- eval mode: one operation per input line ----------------------------- */

static const char *const binop_names[] = {
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lshift",
    "rshift", "and", "or", "xor",
};
static const char *const cmp_names[] = {"lt", "le", "eq", "ne", "gt", "ge"};

static const KlType *
parse_type(const char *s)
{
    if (strcmp(s, "pyint") == 0) {
        return kl_pyint;
    }
    if (strcmp(s, "pyfloat") == 0) {
        return kl_pyfloat;
    }
    if (strcmp(s, "pycomplex") == 0) {
        return kl_pycomplex;
    }
    return kl_type_from_name(s);
}

static V
parse_value(const KlType *t, const char *s)
{
    V v = {0};
    if (t->kind == KL_T_FLOAT) {
        v.f = strtod(s, NULL);
    }
    else if (t->kind == KL_T_COMPLEX) {
        char *end;
        v.re = strtod(s, &end);
        v.im = strtod(end + 1, NULL);
    }
    else if (t->kind == KL_T_INT && !t->is_signed) {
        v.i = wrap((int64_t)strtoull(s, NULL, 10), t);
    }
    else {
        v.i = wrap(strtoll(s, NULL, 10), t);
    }
    return v;
}

/* Arithmetic view of an operand type: bool counts as a Python int. */
static const KlType *
arith(const KlType *t)
{
    return t == kl_bool ? kl_pyint : t;
}

/* The result type infer gives. */
static const KlType *
result_type(int kind, int code, const KlType *ta, const KlType *tb)
{
    if (kind == 1) {
        return kl_bool;
    }
    if (kind == 0) {
        if ((code == KL_BIN_AND || code == KL_BIN_OR || code == KL_BIN_XOR)
            && ta == kl_bool && tb == kl_bool) {
            return kl_bool;
        }
        const KlType *r = kl_type_promote(arith(ta), arith(tb));
        if (code == KL_BIN_TRUEDIV && r->kind == KL_T_INT) {
            return r->weak ? kl_pyfloat : kl_f64;
        }
        return r;
    }
    switch (code) {
    case KL_BI_abs:
        if (ta->kind == KL_T_COMPLEX) {
            return ta->weak ? kl_pyfloat : kl_type_float(ta->bits / 2);
        }
        return arith(ta);
    case KL_BI_min:
    case KL_BI_max:
        return kl_type_promote(ta, tb);
    case KL_BI_int: case KL_BI_round: case KL_BI_floor: case KL_BI_ceil:
    case KL_BI_trunc:
        return kl_pyint;
    case KL_BI_bool: case KL_BI_isnan: case KL_BI_isinf: case KL_BI_isfinite:
        return kl_bool;
    case KL_BI_complex:
        return kl_pycomplex;
    case KL_BI_conjugate:
        return arith(ta);
    default:
        return kl_pyfloat;
    }
}

static void
print_value(const KlType *t, V v)
{
    t = kl_type_strong(t);
    if (t->kind == KL_T_FLOAT) {
        printf("%a", v.f);
    }
    else if (t->kind == KL_T_COMPLEX) {
        printf("%a,%a", v.re, v.im);
    }
    else if (t->kind == KL_T_INT && !t->is_signed) {
        printf("%llu", (unsigned long long)(uint64_t)v.i
               & (t->bits == 64 ? ~0ULL : ((1ULL << t->bits) - 1)));
    }
    else {
        printf("%lld", (long long)v.i);
    }
}

static const char *const exc_names[] = {
    "IndexError", "ZeroDivisionError", "ValueError", "OverflowError",
    "AssertionError", "Exception",
};

static void
print_result(const KlFunc *f, Result r)
{
    if (r.raised == 1) {
        const KlRaiseSite *s = &f->mod->raises[r.site];
        printf("raise %s ", exc_names[s->kind]);
        printf(s->msg, (long long)r.payload[0], (long long)r.payload[1],
               (long long)r.payload[2]);
        printf("\n");
        return;
    }
    if (r.raised == 2) {
        printf("interp-error\n");
        return;
    }
    printf("ok ");
    print_value(f->ret_type, r.v);
    printf("\n");
}

static int
eval_line(char *line)
{
    char opname[64], tan[32], tbn[32], as[128], bs[128];
    if (sscanf(line, "%63s %31s %31s %127s %127s", opname, tan, tbn, as,
               bs) < 4) {
        return -1;
    }
    int kind = -1, code = -1;
    for (int i = 0; i < 12; i++) {
        if (strcmp(opname, binop_names[i]) == 0) {
            kind = 0;
            code = i;
        }
    }
    for (int i = 0; i < 6; i++) {
        if (strcmp(opname, cmp_names[i]) == 0) {
            kind = 1;
            code = i;
        }
    }
    if (kind < 0 && (code = kl_builtin_lookup(opname)) >= 0) {
        kind = 2;
    }
    const KlType *ta = parse_type(tan);
    const KlType *tb = strcmp(tbn, "-") == 0 ? NULL : parse_type(tbn);
    if (kind < 0 || ta == NULL) {
        printf("bad-line\n");
        return 0;
    }
    const KlType *pt[2] = {ta, tb};
    const KlType *rt = result_type(kind, code, ta, tb ? tb : ta);
    begin(opname, tb ? 2 : 1, pt, rt);
    int32_t args[2] = {arg(0), tb ? arg(1) : -1};
    int32_t v;
    if (kind == 0) {
        v = bin(code, rt, args[0], args[1]);
    }
    else if (kind == 1) {
        v = op(KL_OP_py_cmp, kl_bool, code, 2, args);
    }
    else {
        v = op(KL_OP_py_builtin, rt, code, tb ? 2 : 1, args);
    }
    ret(v);
    if (lower_and_check(0) < 0) {
        printf("compile-error\n");
        return 0;
    }
    V vals[2] = {parse_value(ta, as), tb ? parse_value(tb, bs) : (V){0}};
    print_result(F, run(F, vals));
    return 0;
}

/* ---- sample functions ---------------------------------------------------- */

static void
sample_divmod(void)
{
    const KlType *pt[2] = {kl_pyint, kl_pyint};
    begin("divmod_int", 2, pt, kl_pyint);
    int32_t a = arg(0), b = arg(1);
    int32_t q = bin(KL_BIN_FLOORDIV, kl_pyint, a, b);
    int32_t r = bin(KL_BIN_MOD, kl_pyint, a, b);
    ret(bin(KL_BIN_ADD, kl_pyint, bin(KL_BIN_MUL, kl_pyint, q,
                                      cint(kl_pyint, 1000)), r));
    lower_and_check(1);
    V in[2] = {{.i = -7}, {.i = 2}};
    Result res = run(F, in);
    EXPECT(!res.raised && res.v.i == -4000 + 1, "-7 // 2, -7 %% 2");
    in[1].i = 0;
    res = run(F, in);
    EXPECT(res.raised == 1 && M->raises[res.site].kind == KL_EXC_ZERODIV,
           "x // 0 raises");
    in[0].i = INT64_MIN;
    in[1].i = -1;
    res = run(F, in);
    EXPECT(!res.raised && res.v.i == (int64_t)((uint64_t)INT64_MIN * 1000),
           "INT_MIN // -1 wraps");
}

/* a[i, j] += x on float64[:, ::1]; returns a[i, j] and exercises bounds
 * checks, negative indices, shape and size. */
static void
sample_array(void)
{
    const KlType *at = kl_type_array(kl_f64, 2, KL_LAYOUT_C, 0);
    const KlType *pt[3] = {at, kl_pyint, kl_pyint};
    begin("array", 3, pt, kl_pyfloat);
    int32_t a = arg(0), i = arg(1), j = arg(2);
    int32_t ij[3] = {a, i, j};
    int32_t x = op(KL_OP_py_getitem, kl_f64, 0, 3, ij);
    int32_t size = op(KL_OP_py_getattr, kl_pyint, KL_ATTR_SIZE, 1, &a);
    int32_t y = bin(KL_BIN_ADD, kl_f64, x, size);
    int32_t st[4] = {a, y, i, j};
    op(KL_OP_py_setitem, kl_void, 0, 4, st);
    ret(op(KL_OP_py_getitem, kl_f64, 0, 3, ij));
    lower_and_check(1);
    double data[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[2] = {2, 3}, strides[2] = {24, 8};
    KlArrayArg arr = {(char *)data, shape, strides};
    V in[3] = {{.arr = &arr}, {.i = -1}, {.i = -3}};
    Result r = run(F, in);
    EXPECT(!r.raised && r.v.f == 9.0 && data[3] == 9.0, "a[-1, -3] += size");
    in[2].i = 3;
    r = run(F, in);
    EXPECT(r.raised == 1 && r.payload[0] == 3 && r.payload[1] == 1
           && r.payload[2] == 3, "a[-1, 3] is out of bounds");
    if (r.raised == 1) {
        print_result(F, r);
    }
}

/* s = a.shape carried through a loop-like join, then s[k]. */
static void
sample_shape(void)
{
    const KlType *at = kl_type_array(kl_f64, 2, KL_LAYOUT_ANY, 1);
    const KlType *st = kl_type_shape(2);
    const KlType *pt[2] = {at, kl_pyint};
    begin("shape", 2, pt, kl_pyint);
    int32_t a = arg(0), k = arg(1);
    int32_t s = op(KL_OP_py_getattr, st, KL_ATTR_SHAPE, 1, &a);
    int32_t b1 = kl_block_new(F);
    int32_t p = kl_bparam_add(F, b1, st);
    int32_t pk = kl_bparam_add(F, b1, kl_pyint);
    int32_t ja[2] = {s, k};
    kl_jump(F, 0, b1, 2, ja, 1);
    B = b1;
    int32_t gi[2] = {p, pk};
    int32_t n = op(KL_OP_py_getitem, kl_pyint, 0, 2, gi);
    int32_t ln = op(KL_OP_py_builtin, kl_pyint, KL_BI_len, 1, &p);
    ret(bin(KL_BIN_ADD, kl_pyint, n, ln));
    lower_and_check(1);
    int64_t shape[2] = {4, 5}, strides[2] = {40, 8};
    KlArrayArg arr = {NULL, shape, strides};
    V in[2] = {{.arr = &arr}, {.i = -1}};
    Result r = run(F, in);
    EXPECT(!r.raised && r.v.i == 7, "a.shape[-1] + len(a.shape)");
    in[1].i = 2;
    r = run(F, in);
    EXPECT(r.raised == 1, "a.shape[2] raises");
}

/* i32 ** weak int with a run-time exponent: a loop in IR. */
static void
sample_ipow(void)
{
    const KlType *pt[2] = {kl_i32, kl_pyint};
    begin("ipow", 2, pt, kl_i32);
    ret(bin(KL_BIN_POW, kl_i32, arg(0), arg(1)));
    lower_and_check(1);
    EXPECT(F->nloops == 1, "ipow adds a loop");
    V in[2] = {{.i = 3}, {.i = 21}};
    Result r = run(F, in);
    EXPECT(!r.raised && r.v.i == wrap(10460353203LL, kl_i32), "3 ** 21 i32");
    in[1].i = -1;
    r = run(F, in);
    EXPECT(r.raised == 1, "negative exponent raises");
}

/* range test with a run-time step, and a call to another function. */
static void
sample_range_call(void)
{
    const KlType *pt1[1] = {kl_f64};
    begin("callee", 1, pt1, kl_f64);
    ret(arg(0));
    lower_and_check(0);
    int32_t callee = M->nfuncs - 1;
    const KlType *pt[3] = {kl_pyint, kl_pyint, kl_pyint};
    begin("range_call", 3, pt, kl_pyfloat);
    int32_t a[3] = {arg(0), arg(1), arg(2)};
    int32_t t = op(KL_OP_py_range_test, kl_bool, 0, 3, a);
    int32_t c = op(KL_OP_py_call, kl_f64, callee, 1, &t);
    ret(c);
    lower_and_check(1);
}

/* weak float ** and complex ** with a constant exponent. */
static void
sample_pow(void)
{
    const KlType *pt[2] = {kl_pyfloat, kl_pycomplex};
    begin("pow", 2, pt, kl_pycomplex);
    int32_t x = bin(KL_BIN_POW, kl_pyfloat, arg(0), arg(0));
    int32_t z = bin(KL_BIN_POW, kl_pycomplex, arg(1), cint(kl_pyint, -3));
    ret(bin(KL_BIN_ADD, kl_pycomplex, x, z));
    lower_and_check(1);
    V in[2] = {{.f = 2.0}, {.re = 1.0, .im = 1.0}};
    Result r = run(F, in);
    EXPECT(!r.raised && r.v.re == 4.0 - 0.25 && r.v.im == -0.25,
           "2.0 ** 2.0 + (1+1j) ** -3 = %a %a", r.v.re, r.v.im);
}

int
main(int argc, char **argv)
{
    if (kl_types_init() < 0) {
        return 2;
    }
    KlOptions opt = {0, 1};
    M = kl_module_new(opt);
    if (argc > 1 && strcmp(argv[1], "eval") == 0) {
        char line[512];
        while (fgets(line, sizeof(line), stdin)) {
            eval_line(line);
            fflush(stdout);
        }
        kl_module_free(M);
        return failures != 0;
    }
    sample_divmod();
    sample_array();
    sample_shape();
    sample_ipow();
    sample_range_call();
    sample_pow();
    printf("%d failure(s)\n", failures);
    kl_module_free(M);
    return failures != 0;
}
