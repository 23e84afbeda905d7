/* test_llvm.c: standalone test of the CPU backend (not part of the build).
 *
 * Builds small primitive-IR modules with the IR builder, compiles them with
 * kl_llvm_compile and calls them through the KlEntry ABI, checking results
 * bit for bit against the same computation in C (built without FP
 * contraction).  Build by hand, e.g.:
 *
 *   cc -std=c11 -O1 -ffp-contract=off -I csrc $(llvm-config --cflags) \
 *      csrc/backend/llvm/test_llvm.c csrc/backend/llvm/codegen.c \
 *      csrc/backend/llvm/jit.c csrc/kiln.c csrc/types.c csrc/ir/ir.c \
 *      csrc/runtime/pool.c \
 *      $(llvm-config --ldflags --libs core orcjit native passes) -lm \
 *      -lpthread -o /tmp/test_llvm
 *
 * The parallel-loop tests run at several pool sizes; KILN_NUM_THREADS sets
 * the size the first of them starts with.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compile.h"
#include "runtime/pool.h"

static int failures;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                     \
            failures++;                                                   \
        }                                                                 \
    } while (0)

/* ---- IR building shorthands ------------------------------------------- */

static KlFunc *
new_func(KlModule *m, const char *name, const KlType *ret, int nparams,
         const KlType **ptypes)
{
    KlFunc *f = kl_func_new(m, name);
    f->nparams = nparams;
    f->param_types = kl_arena_alloc(&m->arena,
                                    sizeof(KlType *) * (size_t)(nparams + 1));
    for (int i = 0; i < nparams; i++) {
        f->param_types[i] = ptypes[i];
    }
    f->ret_type = ret;
    return f;
}

static int32_t
op(KlFunc *f, int32_t b, KlOp o, const KlType *t, int n, ...)
{
    int32_t args[8];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        args[i] = va_arg(ap, int32_t);
    }
    va_end(ap);
    return kl_emit(f, b, o, t, 1, n, args);
}

static int32_t
arg(KlFunc *f, int i)
{
    int32_t id = kl_emit(f, 0, KL_OP_arg, f->param_types[i], 1, 0, NULL);
    f->insts[id].imm.i = i;
    return id;
}

static int32_t
cmp(KlFunc *f, int32_t b, KlCmp c, int32_t x, int32_t y)
{
    int32_t id = op(f, b, KL_OP_cmp, kl_bool, 2, x, y);
    f->insts[id].aux = c;
    return id;
}

static int32_t
math(KlFunc *f, int32_t b, KlMathFn fn, const KlType *t, int n, int32_t x,
     int32_t y)
{
    int32_t id = op(f, b, KL_OP_math, t, n, x, y);
    f->insts[id].aux = fn;
    return id;
}

static int32_t
ret(KlFunc *f, int32_t b, int32_t v)
{
    return v < 0 ? op(f, b, KL_OP_ret, kl_void, 0)
                 : op(f, b, KL_OP_ret, kl_void, 1, v);
}

static KlEntry
compile(KlModule *m, KlLlvmText *text)
{
    KlDiag d;
    memset(&d, 0, sizeof(d));
    for (int32_t i = 0; i < m->nfuncs; i++) {
        if (kl_verify(m->funcs[i], 1, &d) < 0) {
            fprintf(stderr, "kiln verify: %s\n", d.msg);
            failures++;
            return NULL;
        }
    }
    KlLlvmText own = {0};
    int show = getenv("KL_SHOW") != NULL;
    if (show && text == NULL) {
        text = &own;
    }
    KlEntry e = kl_llvm_compile(m, text, &d);
    if (e == NULL) {
        fprintf(stderr, "compile failed: %s\n", d.msg);
        failures++;
    }
    else if (show) {
        printf("==== %s\n%s\n%s\n", m->funcs[0]->name, text->llvm_ir,
               text->asm_text);
    }
    free(own.llvm_ir);
    free(own.asm_text);
    return e;
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- 1. sum of a float64 array (loop with block params) ---------------- */

/* sum(a: f64[:] or f64[::1]) -> f64, left to right. */
static KlModule *
build_sum(KlLayout layout, int fastmath)
{
    KlOptions o = {(uint8_t)fastmath, 1};
    KlModule *m = kl_module_new(o);
    const KlType *at = kl_type_array(kl_f64, 1, layout, 0);
    KlFunc *f = new_func(m, "sum", kl_f64, 1, &at);
    int32_t head = kl_block_new(f), body = kl_block_new(f),
            done = kl_block_new(f);
    int32_t a = arg(f, 0);
    int32_t n = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    int32_t zero = kl_const_int(f, 0, kl_i64, 0, 1);
    int32_t fz = kl_const_float(f, 0, kl_f64, 0.0, 1);
    int32_t init[2] = {zero, fz};
    kl_jump(f, 0, head, 2, init, 1);
    int32_t i = kl_bparam_add(f, head, kl_i64);
    int32_t s = kl_bparam_add(f, head, kl_f64);
    kl_branch(f, head, cmp(f, head, KL_CMP_LT, i, n), body, done, 1);
    int32_t p = op(f, body, KL_OP_elemptr, kl_type_ptr(kl_f64), 2, a, i);
    int32_t x = op(f, body, KL_OP_load, kl_f64, 1, p);
    int32_t s2 = op(f, body, KL_OP_add, kl_f64, 2, s, x);
    int32_t one = kl_const_int(f, body, kl_i64, 1, 1);
    int32_t i2 = op(f, body, KL_OP_add, kl_i64, 2, i, one);
    int32_t next[2] = {i2, s2};
    kl_jump(f, body, head, 2, next, 1);
    ret(f, done, s);
    kl_loop_new(f, head, body, done, -1, 0);
    return m;
}

static void
test_sum(void)
{
    enum { N = 1003 };
    static double data[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        data[i] = (i % 7 == 0 ? 1e16 : 1.0) * sin(i * 0.37) + i * 1e-3;
    }
    double expect = 0.0, expect2 = 0.0;
    for (int i = 0; i < N; i++) {
        expect += data[i];
        expect2 += data[2 * i];
    }
    int64_t shape[1] = {N}, strides[1] = {8};
    int64_t strides2[1] = {16};
    KlArrayArg arr = {(char *)data, shape, strides};
    KlArrayArg arr2 = {(char *)data, shape, strides2};
    void *args[1] = {&arr};
    KlStatus st;
    double r = -1;

    for (int layout = 0; layout < 2; layout++) {
        KlModule *m = build_sum(layout ? KL_LAYOUT_C : KL_LAYOUT_ANY, 0);
        KlEntry e = compile(m, NULL);
        if (e != NULL) {
            args[0] = &arr;
            CHECK(e(args, &r, &st) == 0);
            CHECK(memcmp(&r, &expect, 8) == 0);
            if (layout == 0) {
                args[0] = &arr2;
                CHECK(e(args, &r, &st) == 0);
                CHECK(memcmp(&r, &expect2, 8) == 0);
            }
        }
        kl_module_free(m);
    }
    /* fastmath: may reassociate; close but not necessarily identical */
    KlModule *m = build_sum(KL_LAYOUT_C, 1);
    KlLlvmText text = {0};
    KlEntry e = compile(m, &text);
    if (e != NULL) {
        args[0] = &arr;
        CHECK(e(args, &r, &st) == 0);
        CHECK(fabs(r - expect) <= 1e-6 * fabs(expect) + 16);
        CHECK(strstr(text.llvm_ir, "fadd fast") != NULL);
    }
    free(text.llvm_ir);
    free(text.asm_text);
    kl_module_free(m);
}

/* ---- 2. 2-d update: a[i, j] = a[i, j] * k + (i * 10 + j) --------------- */

static KlModule *
build_update(KlLayout layout)
{
    KlOptions o = {0, 1};
    KlModule *m = kl_module_new(o);
    const KlType *pt[2] = {kl_type_array(kl_f64, 2, layout, 0), kl_f64};
    KlFunc *f = new_func(m, "update", kl_none, 2, pt);
    int32_t oh = kl_block_new(f), ob = kl_block_new(f), ih = kl_block_new(f),
            ib = kl_block_new(f), ie = kl_block_new(f), done = kl_block_new(f);
    int32_t a = arg(f, 0), k = arg(f, 1);
    int32_t n0 = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    int32_t n1 = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    f->insts[n1].imm.i = 1;
    int32_t zero = kl_const_int(f, 0, kl_i64, 0, 1);
    kl_jump(f, 0, oh, 1, &zero, 1);
    int32_t i = kl_bparam_add(f, oh, kl_i64);
    kl_branch(f, oh, cmp(f, oh, KL_CMP_LT, i, n0), ob, done, 1);
    int32_t z2 = kl_const_int(f, ob, kl_i64, 0, 1);
    kl_jump(f, ob, ih, 1, &z2, 1);
    int32_t j = kl_bparam_add(f, ih, kl_i64);
    kl_branch(f, ih, cmp(f, ih, KL_CMP_LT, j, n1), ib, ie, 1);
    int32_t p = op(f, ib, KL_OP_elemptr, kl_type_ptr(kl_f64), 3, a, i, j);
    int32_t x = op(f, ib, KL_OP_load, kl_f64, 1, p);
    int32_t y = op(f, ib, KL_OP_mul, kl_f64, 2, x, k);
    int32_t ten = kl_const_int(f, ib, kl_i64, 10, 1);
    int32_t t = op(f, ib, KL_OP_add, kl_i64, 2,
                   op(f, ib, KL_OP_mul, kl_i64, 2, i, ten), j);
    int32_t tf = op(f, ib, KL_OP_cast, kl_f64, 1, t);
    op(f, ib, KL_OP_store, kl_void, 2, p,
       op(f, ib, KL_OP_add, kl_f64, 2, y, tf));
    int32_t one = kl_const_int(f, ib, kl_i64, 1, 1);
    int32_t j2 = op(f, ib, KL_OP_add, kl_i64, 2, j, one);
    kl_jump(f, ib, ih, 1, &j2, 1);
    int32_t one2 = kl_const_int(f, ie, kl_i64, 1, 1);
    int32_t i2 = op(f, ie, KL_OP_add, kl_i64, 2, i, one2);
    kl_jump(f, ie, oh, 1, &i2, 1);
    ret(f, done, -1);
    return m;
}

static void
test_update(void)
{
    enum { R = 7, C = 13 };
    double a[R][C], ref[R][C], k = 1.1;
    for (int i = 0; i < R; i++) {
        for (int j = 0; j < C; j++) {
            a[i][j] = ref[i][j] = cos(i * 3.1 + j);
            ref[i][j] = ref[i][j] * k + (double)(i * 10 + j);
        }
    }
    int64_t shape[2] = {R, C}, strides[2] = {C * 8, 8};
    KlArrayArg arr = {(char *)a, shape, strides};
    void *args[2] = {&arr, &k};
    KlStatus st;
    char retbuf[16] = {0};
    KlModule *m = build_update(KL_LAYOUT_C);
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        CHECK(e(args, retbuf, &st) == 0);
        CHECK(memcmp(a, ref, sizeof(a)) == 0);
    }
    kl_module_free(m);

    /* ANY layout on a transposed view: shape (C, R), strides (8, C*8) */
    double b[R][C], refb[R][C];
    for (int i = 0; i < R; i++) {
        for (int j = 0; j < C; j++) {
            b[i][j] = refb[i][j] = sin(i + j * 0.5);
        }
    }
    for (int i = 0; i < C; i++) {       /* view[i][j] = b[j][i] */
        for (int j = 0; j < R; j++) {
            refb[j][i] = refb[j][i] * k + (double)(i * 10 + j);
        }
    }
    int64_t tshape[2] = {C, R}, tstrides[2] = {8, C * 8};
    KlArrayArg tarr = {(char *)b, tshape, tstrides};
    args[0] = &tarr;
    m = build_update(KL_LAYOUT_ANY);
    e = compile(m, NULL);
    if (e != NULL) {
        CHECK(e(args, retbuf, &st) == 0);
        CHECK(memcmp(b, refb, sizeof(b)) == 0);
    }
    kl_module_free(m);
}

/* ---- 3. complex multiply ----------------------------------------------- */

static void
test_complex(int bits)
{
    const KlType *ct = kl_type_complex(bits), *ft = kl_type_float(bits / 2);
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[2] = {ct, ct};
    KlFunc *f = new_func(m, "cmul", ct, 2, pt);
    int32_t x = arg(f, 0), y = arg(f, 1);
    int32_t xr = op(f, 0, KL_OP_creal, ft, 1, x);
    int32_t xi = op(f, 0, KL_OP_cimag, ft, 1, x);
    int32_t yr = op(f, 0, KL_OP_creal, ft, 1, y);
    int32_t yi = op(f, 0, KL_OP_cimag, ft, 1, y);
    int32_t re = op(f, 0, KL_OP_sub, ft, 2, op(f, 0, KL_OP_mul, ft, 2, xr, yr),
                    op(f, 0, KL_OP_mul, ft, 2, xi, yi));
    int32_t im = op(f, 0, KL_OP_add, ft, 2, op(f, 0, KL_OP_mul, ft, 2, xr, yi),
                    op(f, 0, KL_OP_mul, ft, 2, xi, yr));
    ret(f, 0, op(f, 0, KL_OP_cmake, ct, 2, re, im));
    KlEntry e = compile(m, NULL);
    KlStatus st;
    if (e != NULL && bits == 128) {
        double a[2] = {1.0 / 3, 2.7182818}, b[2] = {-0.1, 1e-7};
        double r[2], ref[2];
        void *args[2] = {a, b};
        ref[0] = a[0] * b[0] - a[1] * b[1];
        ref[1] = a[0] * b[1] + a[1] * b[0];
        CHECK(e(args, r, &st) == 0);
        CHECK(memcmp(r, ref, sizeof(r)) == 0);
    }
    else if (e != NULL) {
        float a[2] = {1.0f / 3, 2.7182818f}, b[2] = {-0.1f, 1e-3f};
        float r[2], ref[2];
        void *args[2] = {a, b};
        ref[0] = a[0] * b[0] - a[1] * b[1];
        ref[1] = a[0] * b[1] + a[1] * b[0];
        CHECK(e(args, r, &st) == 0);
        CHECK(memcmp(r, ref, sizeof(r)) == 0);
    }
    kl_module_free(m);
}

/* ---- 4. raise with payload: get(a: i64[:], i: i64) -> i64 -------------- */

static void
test_raise(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[2] = {kl_type_array(kl_i64, 1, KL_LAYOUT_C, 0), kl_i64};
    KlFunc *f = new_func(m, "get", kl_i64, 2, pt);
    int32_t bad = kl_block_new(f), ok = kl_block_new(f);
    int32_t a = arg(f, 0), i = arg(f, 1);
    int32_t n = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    kl_branch(f, 0, cmp(f, 0, KL_CMP_GE, i, n), bad, ok, 1);
    kl_raise_site(m, KL_EXC_INDEX, 1, NULL, "x");
    int32_t site = kl_raise_site(m, KL_EXC_INDEX, 2, NULL,
                                 "index %lld out of range for %lld");
    int32_t r = op(f, bad, KL_OP_raise, kl_void, 2, i, n);
    f->insts[r].imm.i = site;
    int32_t p = op(f, ok, KL_OP_elemptr, kl_type_ptr(kl_i64), 2, a, i);
    ret(f, ok, op(f, ok, KL_OP_load, kl_i64, 1, p));
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        int64_t data[4] = {10, 20, 30, 40}, shape[1] = {4}, strides[1] = {8};
        KlArrayArg arr = {(char *)data, shape, strides};
        int64_t idx = 2, out = 0;
        void *args[2] = {&arr, &idx};
        KlStatus st;
        memset(&st, 0, sizeof(st));
        CHECK(e(args, &out, &st) == 0 && out == 30);
        idx = 9;
        CHECK(e(args, &out, &st) == 1);
        CHECK(st.site == 1 && st.payload[0] == 9 && st.payload[1] == 4);
    }
    kl_module_free(m);
}

/* ---- 5. calls: g(x: f64, y: i32) -> f64 raises when y < 0 -------------- */

static void
test_call(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *ptf[2] = {kl_f64, kl_i32};
    KlFunc *f = new_func(m, "f", kl_f64, 2, ptf);
    KlFunc *g = new_func(m, "g", kl_f64, 2, ptf);
    int32_t site = kl_raise_site(m, KL_EXC_VALUE, 3, NULL, "neg %lld");
    /* g */
    int32_t gb = kl_block_new(g), gok = kl_block_new(g);
    int32_t gx = arg(g, 0), gy = arg(g, 1);
    int32_t z = kl_const_int(g, 0, kl_i32, 0, 1);
    kl_branch(g, 0, cmp(g, 0, KL_CMP_LT, gy, z), gb, gok, 1);
    int32_t r = op(g, gb, KL_OP_raise, kl_void, 1, gy);
    g->insts[r].imm.i = site;
    int32_t yf = op(g, gok, KL_OP_cast, kl_f64, 1, gy);
    ret(g, gok, op(g, gok, KL_OP_mul, kl_f64, 2, gx, yf));
    /* f: return g(x, y) + 1.0 */
    int32_t fx = arg(f, 0), fy = arg(f, 1);
    int32_t c = op(f, 0, KL_OP_call, kl_f64, 2, fx, fy);
    f->insts[c].imm.i = 1;
    int32_t one = kl_const_float(f, 0, kl_f64, 1.0, 1);
    ret(f, 0, op(f, 0, KL_OP_add, kl_f64, 2, c, one));
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        double x = 2.5, out = 0;
        int32_t y = 3;
        void *args[2] = {&x, &y};
        KlStatus st;
        CHECK(e(args, &out, &st) == 0 && out == 8.5);
        y = -5;
        out = 0;
        CHECK(e(args, &out, &st) == 1 && st.site == site
              && st.payload[0] == -5 && out == 0);
    }
    kl_module_free(m);
}

/* ---- 6. bool arrays: count(a: bool[:], b: bool[::1], flag: bool) -> i64
 *         b[i] = a[i] ^ flag; returns the number of true a[i], and the
 *         second function returns a bool ------------------------------- */

static void
test_bool(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[3] = {kl_type_array(kl_bool, 1, KL_LAYOUT_ANY, 0),
                           kl_type_array(kl_bool, 1, KL_LAYOUT_C, 0),
                           kl_bool};
    KlFunc *f = new_func(m, "count", kl_i64, 3, pt);
    int32_t head = kl_block_new(f), body = kl_block_new(f),
            done = kl_block_new(f);
    int32_t a = arg(f, 0), b = arg(f, 1), flag = arg(f, 2);
    int32_t n = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    int32_t zero = kl_const_int(f, 0, kl_i64, 0, 1);
    int32_t init[2] = {zero, zero};
    kl_jump(f, 0, head, 2, init, 1);
    int32_t i = kl_bparam_add(f, head, kl_i64);
    int32_t cnt = kl_bparam_add(f, head, kl_i64);
    kl_branch(f, head, cmp(f, head, KL_CMP_LT, i, n), body, done, 1);
    int32_t x = op(f, body, KL_OP_load, kl_bool, 1,
                   op(f, body, KL_OP_elemptr, kl_type_ptr(kl_bool), 2, a, i));
    op(f, body, KL_OP_store, kl_void, 2,
       op(f, body, KL_OP_elemptr, kl_type_ptr(kl_bool), 2, b, i),
       op(f, body, KL_OP_xor, kl_bool, 2, x, flag));
    int32_t c2 = op(f, body, KL_OP_add, kl_i64, 2, cnt,
                    op(f, body, KL_OP_cast, kl_i64, 1, x));
    int32_t one = kl_const_int(f, body, kl_i64, 1, 1);
    int32_t next[2] = {op(f, body, KL_OP_add, kl_i64, 2, i, one), c2};
    kl_jump(f, body, head, 2, next, 1);
    ret(f, done, cnt);
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        uint8_t av[10] = {1, 0, 1, 1, 0, 0, 0, 1, 0, 1};
        uint8_t bv[5] = {9, 9, 9, 9, 9};
        int64_t shape[1] = {5}, sa[1] = {2}, sb[1] = {1};
        KlArrayArg aa = {(char *)av, shape, sa}, ba = {(char *)bv, shape, sb};
        uint8_t fl = 1;
        int64_t out = -1;
        void *args[3] = {&aa, &ba, &fl};
        KlStatus st;
        CHECK(e(args, &out, &st) == 0 && out == 2);
        uint8_t expect[5] = {0, 0, 1, 1, 1};
        CHECK(memcmp(bv, expect, 5) == 0);
    }
    kl_module_free(m);

    /* bool return: both(x: i64, y: f64) -> bool = bool(x) & bool(y) */
    m = kl_module_new((KlOptions){0, 1});
    const KlType *pt2[2] = {kl_i64, kl_f64};
    f = new_func(m, "both", kl_bool, 2, pt2);
    int32_t bx = op(f, 0, KL_OP_cast, kl_bool, 1, arg(f, 0));
    int32_t by = op(f, 0, KL_OP_cast, kl_bool, 1, arg(f, 1));
    ret(f, 0, op(f, 0, KL_OP_and, kl_bool, 2, bx, by));
    e = compile(m, NULL);
    if (e != NULL) {
        int64_t x = 4;
        double y = NAN;
        uint8_t out[16];
        void *args[2] = {&x, &y};
        KlStatus st;
        memset(out, 7, sizeof(out));
        CHECK(e(args, out, &st) == 0 && out[0] == 1 && out[1] == 7);
        y = 0.0;
        CHECK(e(args, out, &st) == 0 && out[0] == 0);
        y = -0.0;
        CHECK(e(args, out, &st) == 0 && out[0] == 0);
        x = 0;
        y = 1;
        CHECK(e(args, out, &st) == 0 && out[0] == 0);
    }
    kl_module_free(m);
}

/* ---- 7. libm: sin, atan2, sqrt, floor, pow, lgamma on f64; sinf, expf --- */

static void
test_math(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[1] = {kl_type_array(kl_f64, 1, KL_LAYOUT_C, 0)};
    KlFunc *f = new_func(m, "mathy", kl_none, 1, pt);
    int32_t a = arg(f, 0);
    static const KlMathFn fns[] = {KL_MATH_sin, KL_MATH_atan2, KL_MATH_sqrt,
                                   KL_MATH_floor, KL_MATH_pow,
                                   KL_MATH_lgamma, KL_MATH_copysign,
                                   KL_MATH_rint, KL_MATH_fmod,
                                   KL_MATH_expm1};
    int nf = (int)(sizeof(fns) / sizeof(fns[0]));
    int32_t x = op(f, 0, KL_OP_load, kl_f64, 1,
                   op(f, 0, KL_OP_elemptr, kl_type_ptr(kl_f64), 2, a,
                      kl_const_int(f, 0, kl_i64, 0, 1)));
    int32_t c = kl_const_float(f, 0, kl_f64, -1.25, 1);
    for (int k = 0; k < nf; k++) {
        int n2 = fns[k] == KL_MATH_atan2 || fns[k] == KL_MATH_pow
                 || fns[k] == KL_MATH_copysign || fns[k] == KL_MATH_fmod;
        int32_t v = math(f, 0, fns[k], kl_f64, n2 ? 2 : 1, x, c);
        op(f, 0, KL_OP_store, kl_void, 2,
           op(f, 0, KL_OP_elemptr, kl_type_ptr(kl_f64), 2, a,
              kl_const_int(f, 0, kl_i64, k + 1, 1)),
           v);
    }
    ret(f, 0, -1);
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        double v[16] = {2.3456789}, x0 = v[0], y = -1.25, ref[16];
        volatile double vx = x0;   /* keep gcc from folding the reference */
        ref[1] = sin(vx);
        ref[2] = atan2(vx, y);
        ref[3] = sqrt(vx);
        ref[4] = floor(vx);
        ref[5] = pow(vx, y);
        ref[6] = lgamma(vx);
        ref[7] = copysign(vx, y);
        ref[8] = rint(vx);
        ref[9] = fmod(vx, y);
        ref[10] = expm1(vx);
        int64_t shape[1] = {16}, strides[1] = {8};
        KlArrayArg arr = {(char *)v, shape, strides};
        void *args[1] = {&arr};
        KlStatus st;
        CHECK(e(args, NULL, &st) == 0);
        for (int k = 1; k <= nf; k++) {
            if (memcmp(&v[k], &ref[k], 8) != 0) {
                fprintf(stderr, "math %d: %.17g != %.17g\n", k, v[k], ref[k]);
                failures++;
            }
        }
    }
    kl_module_free(m);

    /* float32: r = sinf(x) + expf(x) as a scalar function */
    m = kl_module_new((KlOptions){0, 1});
    const KlType *p32[1] = {kl_f32};
    f = new_func(m, "m32", kl_f32, 1, p32);
    int32_t x32 = arg(f, 0);
    ret(f, 0, op(f, 0, KL_OP_add, kl_f32, 2,
                 math(f, 0, KL_MATH_sin, kl_f32, 1, x32, 0),
                 math(f, 0, KL_MATH_exp, kl_f32, 1, x32, 0)));
    KlLlvmText text = {0};
    e = compile(m, &text);
    if (e != NULL) {
        volatile float xin = 0.7f;
        float xv = xin, out = 0, ref = sinf(xin) + expf(xin);
        void *args[1] = {&xv};
        KlStatus st;
        CHECK(e(args, &out, &st) == 0 && memcmp(&out, &ref, 4) == 0);
        CHECK(strstr(text.llvm_ir, "@sinf") != NULL);
        CHECK(text.asm_text != NULL && strstr(text.asm_text, "sinf") != NULL);
    }
    free(text.llvm_ir);
    free(text.asm_text);
    kl_module_free(m);
}

/* ---- 8. casts and integer ops ------------------------------------------- */

/* conv(x: f64, u: u8, k: i64) -> i64 combining casts, shifts, div/rem */
static void
test_casts(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[3] = {kl_f64, kl_u8, kl_i64};
    KlFunc *f = new_func(m, "conv", kl_i64, 3, pt);
    int32_t x = arg(f, 0), u = arg(f, 1), k = arg(f, 2);
    int32_t xi = op(f, 0, KL_OP_cast, kl_i64, 1, x);               /* trunc */
    int32_t ui = op(f, 0, KL_OP_cast, kl_i64, 1, u);               /* zext */
    int32_t k8 = op(f, 0, KL_OP_cast, kl_i8, 1, k);                /* trunc */
    int32_t k8w = op(f, 0, KL_OP_cast, kl_i64, 1, k8);             /* sext */
    int32_t two = kl_const_int(f, 0, kl_i64, 2, 1);
    int32_t sh = op(f, 0, KL_OP_shr, kl_i64, 2, k8w, two);         /* ashr */
    int32_t ku = op(f, 0, KL_OP_cast, kl_u64, 1, k8w);
    int32_t two_u = kl_const_int(f, 0, kl_u64, 60, 1);
    int32_t shu = op(f, 0, KL_OP_cast, kl_i64, 1,
                     op(f, 0, KL_OP_shr, kl_u64, 2, ku, two_u));   /* lshr */
    int32_t seven = kl_const_int(f, 0, kl_i64, 7, 1);
    int32_t dv = op(f, 0, KL_OP_div, kl_i64, 2, xi, seven);
    int32_t rm = op(f, 0, KL_OP_rem, kl_i64, 2, xi, seven);
    int32_t s = dv;
    const int32_t terms[4] = {rm, ui, sh, shu};
    const int64_t scales[4] = {100, 10000, 1000000, 100000000};
    for (int t = 0; t < 4; t++) {
        int32_t sc = kl_const_int(f, 0, kl_i64, scales[t], 1);
        s = op(f, 0, KL_OP_add, kl_i64, 2, s,
               op(f, 0, KL_OP_mul, kl_i64, 2, terms[t], sc));
    }
    /* unsigned compare on the u8: u > 200 adds 1e10 */
    int32_t big = cmp(f, 0, KL_CMP_GT, u, kl_const_int(f, 0, kl_u8, 200, 1));
    int32_t bonus = op(f, 0, KL_OP_select, kl_i64, 3, big,
                       kl_const_int(f, 0, kl_i64, 10000000000LL, 1),
                       kl_const_int(f, 0, kl_i64, 0, 1));
    ret(f, 0, op(f, 0, KL_OP_add, kl_i64, 2, s, bonus));
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        double x = -45.9;
        uint8_t uu = 250;
        int64_t kk = 0x1F0, out = 0;   /* low byte 0xF0 = -16 as i8 */
        void *args[3] = {&x, &uu, &kk};
        KlStatus st;
        int64_t xi_ = (int64_t)x, k8_ = (int8_t)kk;
        int64_t ref = xi_ / 7 + (xi_ % 7) * 100 + (int64_t)uu * 10000
                      + (k8_ >> 2) * 1000000
                      + (int64_t)((uint64_t)k8_ >> 60) * 100000000
                      + 10000000000LL;
        CHECK(e(args, &out, &st) == 0);
        if (out != ref) {
            fprintf(stderr, "casts: %lld != %lld\n", (long long)out,
                    (long long)ref);
            failures++;
        }
    }
    kl_module_free(m);
}

/* ---- 9. misc: 3-d float32 array, frem, neg, shl, int->bool, undef into
 *         a phi, complex cast and select, an unreachable block ---------- */

static void
test_misc(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[4] = {kl_type_array(kl_f32, 3, KL_LAYOUT_C, 0), kl_f64,
                           kl_c64, kl_i32};
    KlFunc *f = new_func(m, "misc", kl_c128, 4, pt);
    int32_t b1 = kl_block_new(f), b2 = kl_block_new(f), b3 = kl_block_new(f),
            dead = kl_block_new(f);
    int32_t a = arg(f, 0), x = arg(f, 1), c = arg(f, 2), k = arg(f, 3);
    const KlType *pf = kl_type_ptr(kl_f32);
    int32_t i0 = kl_const_int(f, 0, kl_i64, 0, 1),
            i1 = kl_const_int(f, 0, kl_i64, 1, 1),
            i2 = kl_const_int(f, 0, kl_i64, 2, 1),
            i3 = kl_const_int(f, 0, kl_i64, 3, 1);
    int32_t r = op(f, 0, KL_OP_neg, kl_f64, 1,
                   op(f, 0, KL_OP_rem, kl_f64, 2, x,
                      kl_const_float(f, 0, kl_f64, 2.5, 1)));
    op(f, 0, KL_OP_store, kl_void, 2,
       op(f, 0, KL_OP_elemptr, pf, 4, a, i1, i2, i3),
       op(f, 0, KL_OP_cast, kl_f32, 1, r));
    int32_t sh = op(f, 0, KL_OP_shl, kl_i32, 2, k,
                    kl_const_int(f, 0, kl_i32, 3, 1));
    op(f, 0, KL_OP_store, kl_void, 2,
       op(f, 0, KL_OP_elemptr, pf, 4, a, i0, i0, i1),
       op(f, 0, KL_OP_cast, kl_f32, 1, sh));
    int32_t kb = op(f, 0, KL_OP_cast, kl_bool, 1, k);
    int32_t u = op(f, 0, KL_OP_undef, kl_f64, 0);
    kl_branch(f, 0, kb, b1, b2, 1);
    kl_jump(f, b1, b3, 1, &x, 1);
    kl_jump(f, b2, b3, 1, &u, 1);
    int32_t v = kl_bparam_add(f, b3, kl_f64);
    int32_t cc = op(f, b3, KL_OP_cast, kl_c128, 1, c);
    int32_t mk = op(f, b3, KL_OP_cmake, kl_c128, 2, v,
                    kl_const_float(f, b3, kl_f64, 0.0, 1));
    ret(f, b3, op(f, b3, KL_OP_select, kl_c128, 3, kb, cc, mk));
    op(f, dead, KL_OP_unreachable, kl_void, 0);
    KlEntry e = compile(m, NULL);
    if (e != NULL) {
        float data[24] = {0};
        int64_t shape[3] = {2, 3, 4}, strides[3] = {48, 16, 4};
        KlArrayArg arr = {(char *)data, shape, strides};
        volatile double xv = 7.3;
        double xx = xv, out[2];
        float cv[2] = {1.5f, -0.1f};
        int32_t kk = 5;
        void *args[4] = {&arr, &xx, cv, &kk};
        KlStatus st;
        CHECK(e(args, out, &st) == 0);
        CHECK(data[23] == (float)-fmod(xv, 2.5) && data[1] == 40.0f);
        CHECK(out[0] == (double)cv[0] && out[1] == (double)cv[1]);
        kk = 0;
        CHECK(e(args, out, &st) == 0 && out[1] == 0.0 && data[1] == 0.0f);
    }
    kl_module_free(m);
}

/* ---- 10. errors: a Python-level op is an internal error, not a crash ---- */

static void
test_errors(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *pt[1] = {kl_i64};
    KlFunc *f = new_func(m, "bad", kl_i64, 1, pt);
    int32_t x = arg(f, 0);
    ret(f, 0, op(f, 0, KL_OP_py_binop, kl_i64, 2, x, x));
    KlDiag d;
    memset(&d, 0, sizeof(d));
    KlLlvmText text = {0};
    CHECK(kl_llvm_compile(m, &text, &d) == NULL);
    CHECK(d.kind == KL_DIAG_INTERNAL && strstr(d.msg, "py_binop") != NULL);
    CHECK(text.llvm_ir == NULL && text.asm_text == NULL);
    kl_module_free(m);
}

/* ---- 11. compile time of a small kernel (warm JIT) --------------------- */

static void
test_timing(void)
{
    const char *env = getenv("KL_REPS");   /* more reps: watch memory */
    int REPS = env != NULL ? atoi(env) : 20;
    double best = 1e9, total = 0;
    for (int r = 0; r < REPS; r++) {
        KlModule *m = build_sum(KL_LAYOUT_C, 0);
        double t0 = now();
        KlEntry e = compile(m, NULL);
        double data[4] = {1, 2, 3, 4}, out = 0;
        int64_t shape[1] = {4}, strides[1] = {8};
        KlArrayArg arr = {(char *)data, shape, strides};
        void *args[1] = {&arr};
        KlStatus st;
        if (e != NULL) {
            CHECK(e(args, &out, &st) == 0 && out == 10);
        }
        double dt = now() - t0;
        total += dt;
        best = dt < best ? dt : best;
        kl_module_free(m);
    }
    printf("compile+first call of sum(f64[::1]): best %.2f ms, mean %.2f ms"
           " (%d reps)\n", best * 1e3, total / REPS * 1e3, REPS);
    /* with text */
    KlModule *m = build_update(KL_LAYOUT_C);
    KlLlvmText text = {0};
    double t0 = now();
    compile(m, &text);
    printf("compile of update(f64[:, ::1]) with IR and asm text: %.2f ms\n",
           (now() - t0) * 1e3);
    free(text.llvm_ir);
    free(text.asm_text);
    kl_module_free(m);
}

/* ---- 12. parallel loops: pfor, scratch, errors from chunks ------------- */

/* Opens `for i in range(lo, hi)` in f at block b: returns the body block
 * and sets *i to the counter and *exit to the block after the loop; the
 * caller ends the body with loop_next. */
static int32_t
loop_open(KlFunc *f, int32_t b, int32_t lo, int32_t hi, int32_t *i,
          int32_t *head, int32_t *exit)
{
    int32_t h = kl_block_new(f), body = kl_block_new(f);
    *exit = kl_block_new(f);
    kl_jump(f, b, h, 1, &lo, 1);
    *i = kl_bparam_add(f, h, kl_i64);
    kl_branch(f, h, cmp(f, h, KL_CMP_LT, *i, hi), body, *exit, 1);
    *head = h;
    return body;
}

static void
loop_next(KlFunc *f, int32_t b, int32_t i, int32_t head)
{
    int32_t one = kl_const_int(f, b, kl_i64, 1, 1);
    int32_t i2 = op(f, b, KL_OP_add, kl_i64, 2, i, one);
    kl_jump(f, b, head, 1, &i2, 1);
}

/* A pfor in block b of f over body function number fi: %a, %b, %c, then
 * ncap captured values. */
static int32_t
pfor(KlFunc *f, int32_t b, int32_t fi, int32_t nchunks, int32_t cs,
     int32_t n, int ncap, int32_t c0, int32_t c1)
{
    int32_t args[5] = {nchunks, cs, n, c0, c1};
    int32_t id = kl_emit(f, b, KL_OP_pfor, kl_void, 1, 3 + ncap, args);
    f->insts[id].imm.i = fi;
    return id;
}

/* Chunk count ceil(n / cs) in block b. */
static int32_t
chunks_of(KlFunc *f, int32_t b, int32_t n, int32_t cs)
{
    int32_t one = kl_const_int(f, b, kl_i64, 1, 1);
    int32_t t = op(f, b, KL_OP_sub, kl_i64, 2,
                   op(f, b, KL_OP_add, kl_i64, 2, n, cs), one);
    return op(f, b, KL_OP_div, kl_i64, 2, t, cs);
}

/* fill(a: i64[::1], cs: i64, k: i32): a[i] = i * 2 + k for every i, in
 * parallel chunks of cs; the body is fill_body(chunk, lo, hi, a, k). */
static KlModule *
build_fill(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *at = kl_type_array(kl_i64, 1, KL_LAYOUT_C, 0);
    const KlType *pt[3] = {at, kl_i64, kl_i32};
    KlFunc *f = new_func(m, "fill", kl_none, 3, pt);
    const KlType *bt[5] = {kl_i64, kl_i64, kl_i64, at, kl_i32};
    KlFunc *g = new_func(m, "fill_body", kl_none, 5, bt);
    int32_t a = arg(f, 0), cs = arg(f, 1), k = arg(f, 2);
    int32_t n = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    pfor(f, 0, 1, chunks_of(f, 0, n, cs), cs, n, 2, a, k);
    ret(f, 0, -1);
    /* body */
    arg(g, 0);
    int32_t lo = arg(g, 1), hi = arg(g, 2), ga = arg(g, 3), gk = arg(g, 4);
    int32_t i, head, exit;
    int32_t body = loop_open(g, 0, lo, hi, &i, &head, &exit);
    int32_t two = kl_const_int(g, body, kl_i64, 2, 1);
    int32_t v = op(g, body, KL_OP_add, kl_i64, 2,
                   op(g, body, KL_OP_mul, kl_i64, 2, i, two),
                   op(g, body, KL_OP_cast, kl_i64, 1, gk));
    op(g, body, KL_OP_store, kl_void, 2,
       op(g, body, KL_OP_elemptr, kl_type_ptr(kl_i64), 2, ga, i), v);
    loop_next(g, body, i, head);
    ret(g, exit, -1);
    kl_loop_new(g, head, body, exit, -1, 0);
    return m;
}

/* psum(a: f64[::1]) -> f64: chunks of 64 sum into scratch[chunk], then
 * the parent adds the partials in chunk order. */
static KlModule *
build_psum(void)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *at = kl_type_array(kl_f64, 1, KL_LAYOUT_C, 0);
    KlFunc *f = new_func(m, "psum", kl_f64, 1, &at);
    const KlType *bt[5] = {kl_i64, kl_i64, kl_i64, at, at};
    KlFunc *g = new_func(m, "psum_body", kl_none, 5, bt);
    const KlType *pf = kl_type_ptr(kl_f64);
    /* parent */
    int32_t a = arg(f, 0);
    int32_t n = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    int32_t cs = kl_const_int(f, 0, kl_i64, 64, 1);
    int32_t s = op(f, 0, KL_OP_scratch, at, 0);
    f->insts[s].imm.i = 256;
    int32_t nc = chunks_of(f, 0, n, cs);
    pfor(f, 0, 1, nc, cs, n, 2, a, s);
    int32_t head = kl_block_new(f), body = kl_block_new(f),
            done = kl_block_new(f);
    int32_t init[2] = {kl_const_int(f, 0, kl_i64, 0, 1),
                       kl_const_float(f, 0, kl_f64, 0.0, 1)};
    kl_jump(f, 0, head, 2, init, 1);
    int32_t c = kl_bparam_add(f, head, kl_i64);
    int32_t t = kl_bparam_add(f, head, kl_f64);
    kl_branch(f, head, cmp(f, head, KL_CMP_LT, c, nc), body, done, 1);
    int32_t x = op(f, body, KL_OP_load, kl_f64, 1,
                   op(f, body, KL_OP_elemptr, pf, 2, s, c));
    int32_t next[2] = {op(f, body, KL_OP_add, kl_i64, 2, c,
                          kl_const_int(f, body, kl_i64, 1, 1)),
                       op(f, body, KL_OP_add, kl_f64, 2, t, x)};
    kl_jump(f, body, head, 2, next, 1);
    ret(f, done, t);
    kl_loop_new(f, head, body, done, -1, 0);
    /* body: scratch[chunk] = sum(a[lo:hi]) */
    int32_t chunk = arg(g, 0), lo = arg(g, 1), hi = arg(g, 2);
    int32_t ga = arg(g, 3), gs = arg(g, 4);
    int32_t gh = kl_block_new(g), gb = kl_block_new(g), ge = kl_block_new(g);
    int32_t ginit[2] = {lo, kl_const_float(g, 0, kl_f64, 0.0, 1)};
    kl_jump(g, 0, gh, 2, ginit, 1);
    int32_t i = kl_bparam_add(g, gh, kl_i64);
    int32_t acc = kl_bparam_add(g, gh, kl_f64);
    kl_branch(g, gh, cmp(g, gh, KL_CMP_LT, i, hi), gb, ge, 1);
    int32_t y = op(g, gb, KL_OP_load, kl_f64, 1,
                   op(g, gb, KL_OP_elemptr, pf, 2, ga, i));
    int32_t gnext[2] = {op(g, gb, KL_OP_add, kl_i64, 2, i,
                           kl_const_int(g, gb, kl_i64, 1, 1)),
                        op(g, gb, KL_OP_add, kl_f64, 2, acc, y)};
    kl_jump(g, gb, gh, 2, gnext, 1);
    op(g, ge, KL_OP_store, kl_void, 2,
       op(g, ge, KL_OP_elemptr, pf, 2, gs, chunk), acc);
    ret(g, ge, -1);
    kl_loop_new(g, gh, gb, ge, -1, 0);
    return m;
}

/* fail(a: i64[::1]) -> i64: 16 chunks of len(a) / 16 write a[i] = 1;
 * chunks 3 and 7 raise ValueError(chunk, lo) before writing; returns 5
 * when nothing raised. */
static KlModule *
build_fail(int32_t *site)
{
    KlModule *m = kl_module_new((KlOptions){0, 1});
    const KlType *at = kl_type_array(kl_i64, 1, KL_LAYOUT_C, 0);
    KlFunc *f = new_func(m, "fail", kl_i64, 1, &at);
    const KlType *bt[4] = {kl_i64, kl_i64, kl_i64, at};
    KlFunc *g = new_func(m, "fail_body", kl_none, 4, bt);
    kl_raise_site(m, KL_EXC_INDEX, 1, NULL, "unused");
    *site = kl_raise_site(m, KL_EXC_VALUE, 2, NULL, "chunk %lld at %lld");
    int32_t a = arg(f, 0);
    int32_t n = op(f, 0, KL_OP_dim, kl_i64, 1, a);
    int32_t sixteen = kl_const_int(f, 0, kl_i64, 16, 1);
    int32_t cs = op(f, 0, KL_OP_div, kl_i64, 2, n, sixteen);
    pfor(f, 0, 1, sixteen, cs, n, 1, a, 0);
    ret(f, 0, kl_const_int(f, 0, kl_i64, 5, 1));
    /* body */
    int32_t chunk = arg(g, 0), lo = arg(g, 1), hi = arg(g, 2), ga = arg(g, 3);
    int32_t bad = kl_block_new(g), ok = kl_block_new(g);
    int32_t three = kl_const_int(g, 0, kl_i64, 3, 1);
    int32_t seven = kl_const_int(g, 0, kl_i64, 7, 1);
    int32_t is3 = cmp(g, 0, KL_CMP_EQ, chunk, three);
    int32_t is7 = cmp(g, 0, KL_CMP_EQ, chunk, seven);
    kl_branch(g, 0, op(g, 0, KL_OP_or, kl_bool, 2, is3, is7), bad, ok, 1);
    int32_t r = op(g, bad, KL_OP_raise, kl_void, 2, chunk, lo);
    g->insts[r].imm.i = *site;
    int32_t i, head, exit;
    int32_t body = loop_open(g, ok, lo, hi, &i, &head, &exit);
    op(g, body, KL_OP_store, kl_void, 2,
       op(g, body, KL_OP_elemptr, kl_type_ptr(kl_i64), 2, ga, i),
       kl_const_int(g, body, kl_i64, 1, 1));
    loop_next(g, body, i, head);
    ret(g, exit, -1);
    kl_loop_new(g, head, body, exit, -1, 0);
    return m;
}

static void
test_parallel(void)
{
    enum { N = 1000, M = 10007, F = 160 };
    static int64_t ia[N], fa[F];
    static double da[M];
    int32_t site = -1;
    KlLlvmText text = {0};
    KlModule *mf = build_fill(), *ms = build_psum(), *mx = build_fail(&site);
    KlEntry fill = compile(mf, NULL), psum = compile(ms, &text),
            fail = compile(mx, NULL);
    if (text.llvm_ir != NULL) {
        CHECK(strstr(text.llvm_ir, "@kl_pool_run(") != NULL);
    }
    for (int i = 0; i < M; i++) {
        da[i] = (i % 5 == 0 ? 1e12 : 1.0) * sin(i * 0.71) + 1e-3 * i;
    }
    double expect = 0.0;
    for (int c = 0; c * 64 < M; c++) {
        double part = 0.0;
        for (int i = c * 64; i < M && i < (c + 1) * 64; i++) {
            part += da[i];
        }
        expect += part;
    }
    const int sizes[5] = {0, 1, 2, 3, 8};   /* 0: as the pool started */
    for (int t = 0; t < 5; t++) {
        if (sizes[t] > 0) {
            CHECK(kl_pool_set_threads(sizes[t]) == 0);
        }
        for (int rep = 0; rep < 20; rep++) {
            KlStatus st;
            memset(&st, 0, sizeof(st));
            char none[8];
            if (fill != NULL) {
                /* chunk sizes: 7 (143 chunks), N (one chunk), 1000 > n */
                const int64_t css[3] = {7, 256, N};
                for (int j = 0; j < 3; j++) {
                    int64_t shape[1] = {N - rep}, strides[1] = {8};
                    KlArrayArg arr = {(char *)ia, shape, strides};
                    int64_t cs = css[j];
                    int32_t k = rep == 0 ? 0 : -3 * rep;
                    void *args[3] = {&arr, &cs, &k};
                    memset(ia, 0xff, sizeof(ia));
                    CHECK(fill(args, none, &st) == 0);
                    int good = 1;
                    for (int i = 0; i < N - rep; i++) {
                        good &= ia[i] == (int64_t)i * 2 + k;
                    }
                    for (int i = N - rep; i < N; i++) {
                        good &= ia[i] == -1;
                    }
                    CHECK(good);
                }
                /* empty range: no chunk runs */
                int64_t shape0[1] = {0}, strides0[1] = {8}, cs0 = 4;
                int32_t k0 = 0;
                KlArrayArg arr0 = {(char *)ia, shape0, strides0};
                void *args0[3] = {&arr0, &cs0, &k0};
                CHECK(fill(args0, none, &st) == 0);
            }
            if (psum != NULL) {
                int64_t shape[1] = {M}, strides[1] = {8};
                KlArrayArg arr = {(char *)da, shape, strides};
                void *args[1] = {&arr};
                double out = -1;
                CHECK(psum(args, &out, &st) == 0);
                CHECK(memcmp(&out, &expect, 8) == 0);
            }
            if (fail != NULL) {
                int64_t shape[1] = {F}, strides[1] = {8}, out = 0;
                KlArrayArg arr = {(char *)fa, shape, strides};
                void *args[1] = {&arr};
                memset(fa, 0, sizeof(fa));
                CHECK(fail(args, &out, &st) == 1);
                CHECK(st.site == site && st.payload[0] == 3
                      && st.payload[1] == 30 && out == 0);
                int before = 1;
                for (int i = 0; i < 30; i++) {
                    before &= fa[i] == 1;       /* chunks 0-2 all ran */
                }
                CHECK(before && fa[30] == 0 && fa[70] == 0);
            }
        }
        printf("parallel loops at %d threads: done\n", kl_pool_get_threads());
    }
    free(text.llvm_ir);
    free(text.asm_text);
    kl_module_free(mf);
    kl_module_free(ms);
    kl_module_free(mx);
}

int
main(void)
{
    if (kl_types_init() < 0) {
        return 2;
    }
    double t0 = now();
    test_sum();
    printf("first compilations (cold JIT): %.1f ms\n", (now() - t0) * 1e3);
    test_update();
    test_complex(128);
    test_complex(64);
    test_raise();
    test_call();
    test_bool();
    test_math();
    test_casts();
    test_misc();
    test_errors();
    test_parallel();
    test_timing();
    if (failures) {
        printf("FAILED: %d\n", failures);
        return 1;
    }
    printf("all LLVM backend tests passed\n");
    return 0;
}
