/* vmath.c: vector variants of libm's float64 `exp` that return libm's own
 * results, so that loops calling math.exp vectorise without changing a
 * bit.
 *
 * kl_exp(x) is libm's exp.  kl_vexpN computes N of them at once (N = 8
 * on AVX-512 hosts, else 4: the width kernels' loops use): a
 * table-driven evaluation (x = n ln2/64 + r, exp(x) = 2^(n/64) e^r) carried
 * in double-double to within about 1/1000 ulp of the exact value, then
 * rounded once.  Whenever that rounding is not clear-cut -- the exact
 * value may lie within 1/64 ulp of a halfway point between doubles -- and
 * for |x| >= 708, NaN and results that are powers of two, the lane calls
 * libm's exp instead.  libm's exp (glibc 2.28 and later) is within 0.511 ulp
 * of the exact value, so outside that band both round to the same double:
 * every lane returns what libm returns.  A self-test compares both on a
 * spread of inputs once per process before the fast path is switched on
 * (SWITCH); a mismatch (another libm) leaves it off, and kernels compiled
 * in that process call libm only.
 *
 * The variant lives in one module added to the JIT once (the text below);
 * kernels declare it and mark their calls of
 * kl_exp with "vector-function-abi-variant", which the loop vectoriser
 * reads.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/IRReader.h>
#include <llvm-c/LLJIT.h>

#include "llvm.h"

#define EXP_TABLE 64
/* The global that turns kl_vexpN's fast path on once the self-test passed:
 * until then, and for good when it fails, every lane calls libm, so code
 * kept on disk that calls kl_vexpN stays right in any process. */
#define SWITCH "kl_vexp_on"
/* A lane's rounding is clear-cut when the part rounded off is below this
 * many ulps.  The margin of 1/64 ulp covers libm's error beyond half an ulp
 * (glibc: 1.36/128 ulp, its polynomial included) and ours (about 1/1000
 * ulp, mostly the table's), with a third to spare. */
#define CLEAR_ULPS (0.5 - 1.0 / 64)

/* Appends printf-formatted text to a growing malloc'ed buffer. */
typedef struct Text {
    char *s;
    size_t len, cap;
    int failed;
} Text;

static void
put(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(Text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = t->failed ? 0 : vsnprintf(t->s + t->len, room, fmt, ap);
        va_end(ap);
        if (t->failed || n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n) * 2;
        char *s = realloc(t->s, cap);
        if (s == NULL) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

/* The bits of double v, as LLVM IR writes a double constant. */
static unsigned long long
bits(double v)
{
    unsigned long long b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* 2^(j/64) for j < 64 as a sum hi + lo of doubles, from long double
 * (about 2^-63 relative: 1/2000 ulp of the result). */
static void
put_tables(Text *t)
{
    double hi[EXP_TABLE], lo[EXP_TABLE];
    for (int j = 0; j < EXP_TABLE; j++) {
        long double v = exp2l((long double)j / EXP_TABLE);
        hi[j] = (double)v;
        lo[j] = (double)(v - hi[j]);
    }
    const double *tabs[2] = {hi, lo};
    for (int k = 0; k < 2; k++) {
        put(t, "@kl_exp_t%s = internal constant [%d x double] [",
            k ? "lo" : "hi", EXP_TABLE);
        for (int j = 0; j < EXP_TABLE; j++) {
            put(t, "%sdouble 0x%016llX", j ? ", " : "", bits(tabs[k][j]));
        }
        put(t, "]\n");
    }
}

/* The body of kl_vexp<N>.  Positional arguments: 1 the vector of doubles,
 * 2 of i64, 3 of i1, 4 of ptr, 5 the intrinsic suffix (v8f64), 6 N, then
 * the constants' bits: 7 64/ln2, 8 and 9 ln2/64 as a 36-bit head (n * head
 * is exact for |n| < 2^17) plus a tail, 10..13 1/6 1/24 1/120 1/720, 14
 * CLEAR_ULPS * 2^-52 (times 2^e: CLEAR_ULPS ulps of a double in
 * [2^e, 2^(e+1))), 15 the name's suffix, 16 the i8 global that turns the
 * fast path on (else every lane calls libm). */
static const char vexp_body[] =
"define %1$s @kl_vexp%6$d%15$s(%1$s %%x) {\n"
"entry:\n"
"  %%onb = load i8, ptr @%16$s\n"
"  %%on = icmp ne i8 %%onb, 0\n"
"  %%ax = call %1$s @llvm.fabs.%5$s(%1$s %%x)\n"
"  %%inr = fcmp olt %1$s %%ax, splat (double 708.0)\n"
"  %%xs = select %3$s %%inr, %1$s %%x, %1$s zeroinitializer\n"
"  %%z = fmul %1$s %%xs, splat (double 0x%7$016llX)\n"
"  %%nf = call %1$s @llvm.roundeven.%5$s(%1$s %%z)\n"
"  %%ni = fptosi %1$s %%nf to %2$s\n"
"  %%j = and %2$s %%ni, splat (i64 63)\n"
"  %%k = ashr %2$s %%ni, splat (i64 6)\n"
/* r = x - n ln2/64 as rh + rl: x - n*head is exact */
"  %%nneg = fneg %1$s %%nf\n"
"  %%rhi = call %1$s @llvm.fma.%5$s(%1$s %%nneg, %1$s splat (double 0x%8$016llX), %1$s %%xs)\n"
"  %%ph = fmul %1$s %%nf, splat (double 0x%9$016llX)\n"
"  %%phn = fneg %1$s %%ph\n"
"  %%pl = call %1$s @llvm.fma.%5$s(%1$s %%nf, %1$s splat (double 0x%9$016llX), %1$s %%phn)\n"
"  %%rh = fadd %1$s %%rhi, %%phn\n"
"  %%bp = fsub %1$s %%rh, %%rhi\n"
"  %%ap = fsub %1$s %%rh, %%bp\n"
"  %%db = fsub %1$s %%phn, %%bp\n"
"  %%da = fsub %1$s %%rhi, %%ap\n"
"  %%e = fadd %1$s %%da, %%db\n"
"  %%rl = fsub %1$s %%e, %%pl\n"
/* e^r - 1 - rh = rl + rh^2 (1/2 + rh/6 + ... + rh^4/720), |r| < 0.0055 */
"  %%c4 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s splat (double 0x%13$016llX), %1$s splat (double 0x%12$016llX))\n"
"  %%c3 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%c4, %1$s splat (double 0x%11$016llX))\n"
"  %%c2 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%c3, %1$s splat (double 0x%10$016llX))\n"
"  %%c1 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%c2, %1$s splat (double 0.5))\n"
"  %%r2 = fmul %1$s %%rh, %%rh\n"
"  %%q = fmul %1$s %%r2, %%c1\n"
"  %%u = fadd %1$s %%rl, %%q\n"
/* 2^(j/64) (1 + rh + u) = th + th*rh + b = y1 + tail, exactly but for
 * the roundings of b and tail (far below 1/1000 ulp) */
"  %%pth = getelementptr double, ptr @kl_exp_thi, %2$s %%j\n"
"  %%ptl = getelementptr double, ptr @kl_exp_tlo, %2$s %%j\n"
"  %%th = call %1$s @llvm.masked.gather.%5$s.v%6$dp0(%4$s %%pth, i32 8, %3$s splat (i1 true), %1$s poison)\n"
"  %%tl = call %1$s @llvm.masked.gather.%5$s.v%6$dp0(%4$s %%ptl, i32 8, %3$s splat (i1 true), %1$s poison)\n"
"  %%t2 = call %1$s @llvm.fma.%5$s(%1$s %%tl, %1$s %%rh, %1$s %%tl)\n"
"  %%b = call %1$s @llvm.fma.%5$s(%1$s %%th, %1$s %%u, %1$s %%t2)\n"
"  %%ahi = fmul %1$s %%th, %%rh\n"
"  %%ahin = fneg %1$s %%ahi\n"
"  %%alo = call %1$s @llvm.fma.%5$s(%1$s %%th, %1$s %%rh, %1$s %%ahin)\n"
"  %%y1 = fadd %1$s %%th, %%ahi\n"
"  %%d1 = fsub %1$s %%th, %%y1\n"
"  %%e1 = fadd %1$s %%d1, %%ahi\n"
"  %%ab = fadd %1$s %%alo, %%b\n"
"  %%tail = fadd %1$s %%e1, %%ab\n"
/* y = RN(y1 + tail), and what rounding left out, exactly */
"  %%y = fadd %1$s %%y1, %%tail\n"
"  %%d = fsub %1$s %%y1, %%y\n"
"  %%res = fadd %1$s %%d, %%tail\n"
"  %%yb = bitcast %1$s %%y to %2$s\n"
"  %%expo = and %2$s %%yb, splat (i64 9218868437227405312)\n"
"  %%ulpb = bitcast %2$s %%expo to %1$s\n"
"  %%lim = fmul %1$s %%ulpb, splat (double 0x%14$016llX)\n"
"  %%ares = call %1$s @llvm.fabs.%5$s(%1$s %%res)\n"
"  %%clear = fcmp olt %1$s %%ares, %%lim\n"
"  %%mant = and %2$s %%yb, splat (i64 4503599627370495)\n"
"  %%notp2 = icmp ne %2$s %%mant, zeroinitializer\n"
"  %%ok1 = and %3$s %%inr, %%clear\n"
"  %%ok = and %3$s %%ok1, %%notp2\n"
"  %%kk = shl %2$s %%k, splat (i64 52)\n"
"  %%rb = add %2$s %%yb, %%kk\n"
"  %%fast = bitcast %2$s %%rb to %1$s\n"
"  %%okv = bitcast %3$s %%ok to i%6$d\n"
"  %%okm = select i1 %%on, i%6$d %%okv, i%6$d 0\n"
"  %%bad = xor i%6$d %%okm, -1\n"
"  %%none = icmp eq i%6$d %%bad, 0\n"
"  br i1 %%none, label %%done, label %%lane\n"
/* libm for each lane whose bit is set in %%left, lowest first */
"lane:\n"
"  %%left = phi i%6$d [ %%bad, %%entry ], [ %%left2, %%lane ]\n"
"  %%acc = phi %1$s [ %%fast, %%entry ], [ %%acc2, %%lane ]\n"
"  %%iw = call i%6$d @llvm.cttz.i%6$d(i%6$d %%left, i1 true)\n"
"  %%i = zext i%6$d %%iw to i32\n"
"  %%xi = extractelement %1$s %%x, i32 %%i\n"
"  %%ei = call double @exp(double %%xi)\n"
"  %%acc2 = insertelement %1$s %%acc, double %%ei, i32 %%i\n"
"  %%lm1 = sub i%6$d %%left, 1\n"
"  %%left2 = and i%6$d %%left, %%lm1\n"
"  %%more = icmp ne i%6$d %%left2, 0\n"
"  br i1 %%more, label %%lane, label %%done\n"
"done:\n"
"  %%r = phi %1$s [ %%fast, %%entry ], [ %%acc2, %%lane ]\n"
"  ret %1$s %%r\n"
"}\n";

/* A loop over n vectors of x into out through kl_vexp<N>_tested (the
 * same code, always on), for the self-test; %1$s and %6$d as above (the
 * arguments between them appear in a comment, as printf requires). */
static const char vexp_array[] =
"; %2$s %3$s %4$s %5$s\n"
"define void @kl_vexp%6$d_array(ptr %%x, ptr %%out, i64 %%n) {\n"
"entry:\n"
"  %%go = icmp sgt i64 %%n, 0\n"
"  br i1 %%go, label %%loop, label %%end\n"
"loop:\n"
"  %%i = phi i64 [ 0, %%entry ], [ %%i1, %%loop ]\n"
"  %%px = getelementptr %1$s, ptr %%x, i64 %%i\n"
"  %%v = load %1$s, ptr %%px, align 8\n"
"  %%r = call %1$s @kl_vexp%6$d_tested(%1$s %%v)\n"
"  %%po = getelementptr %1$s, ptr %%out, i64 %%i\n"
"  store %1$s %%r, ptr %%po, align 8\n"
"  %%i1 = add i64 %%i, 1\n"
"  %%more = icmp slt i64 %%i1, %%n\n"
"  br i1 %%more, label %%loop, label %%end\n"
"end:\n"
"  ret void\n"
"}\n";

/* Declarations of the intrinsics of one width (%1$s vector, %5$s suffix,
 * %4$s vector of ptr, %3$s mask, %6$d N; every argument up to the last
 * one used appears, as positional printf requires). */
static const char vexp_decls[] =
"; width %6$d, lanes as %2$s\n"
"declare %1$s @llvm.fabs.%5$s(%1$s)\n"
"declare %1$s @llvm.fma.%5$s(%1$s, %1$s, %1$s)\n"
"declare %1$s @llvm.roundeven.%5$s(%1$s)\n"
"declare %1$s @llvm.masked.gather.%5$s.v%6$dp0(%4$s, i32, %3$s, %1$s)\n"
"declare i%6$d @llvm.cttz.i%6$d(i%6$d, i1)\n";

/* The module's text for vectors of n doubles (malloc'ed), or NULL when
 * out of memory. */
static char *
module_text(int n)
{
    /* ln2/64 = head + tail: head has 36 significant bits */
    const double head = 0x1.62e42fefa0000p-7;
    const double tail = 0x1.cf79abc9e3b3ap-46;
    char vd[24], vi[24], vb[24], vp[24], sfx[16];
    snprintf(vd, sizeof vd, "<%d x double>", n);
    snprintf(vi, sizeof vi, "<%d x i64>", n);
    snprintf(vb, sizeof vb, "<%d x i1>", n);
    snprintf(vp, sizeof vp, "<%d x ptr>", n);
    snprintf(sfx, sizeof sfx, "v%df64", n);
    Text t = {0};
    put(&t, "declare double @exp(double)\n"
            "define double @kl_exp(double %%x) {\n"
            "  %%r = tail call double @exp(double %%x)\n"
            "  ret double %%r\n"
            "}\n");
    put(&t, "@" SWITCH " = global i8 0\n"
            "@kl_vexp_always = internal constant i8 1\n");
    put_tables(&t);
    put(&t, vexp_decls, vd, vi, vb, vp, sfx, n);
    for (int tested = 0; tested < 2; tested++) {
        put(&t, vexp_body, vd, vi, vb, vp, sfx, n,
            bits(0x1.71547652b82fep+6), bits(head), bits(tail),
            bits(1.0 / 6), bits(1.0 / 24), bits(1.0 / 120), bits(1.0 / 720),
            bits(CLEAR_ULPS * 0x1p-52), tested ? "_tested" : "",
            tested ? "kl_vexp_always" : SWITCH);
    }
    put(&t, vexp_array, vd, vi, vb, vp, sfx, n);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

/* Inputs of the self-test: a spread over (-708, 708), small and tiny
 * arguments, and the edges where lanes go to libm. */
static size_t
test_inputs(double *x, size_t cap)
{
    static const double edges[] = {
        0.0, -0.0, 1e-300, -1e-300, 0x1p-54, 1.0, -1.0, 0.5, 707.9, -707.9,
        708.0, -708.0, 709.78, -745.0, 710.0, INFINITY, -INFINITY, NAN};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        x[n++] = edges[i];
    }
    unsigned long long s = 0x9E3779B97F4A7C15ull;
    while (n < cap) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) * 0x1p-53;     /* [0, 1) */
        x[n] = (n & 1) ? (u - 0.5) * 1415.0 : ldexp(u - 0.5, -(int)(n % 60));
        n++;
    }
    return n;
}

typedef void (*VexpArray)(const double *x, double *out, int64_t n);

/* Runs kl_vexp<width> over the test inputs and compares with exp. */
static int
self_test(LLVMOrcLLJITRef jit, int width)
{
    enum { N = 4096 };
    static double x[N], out[N];
    size_t n = test_inputs(x, N) / (size_t)width * (size_t)width;
    char name[32];
    snprintf(name, sizeof name, "kl_vexp%d_array", width);
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit, &addr, name);
    if (err != NULL) {
        LLVMConsumeError(err);
        return 0;
    }
    ((VexpArray)(uintptr_t)addr)(x, out, (int64_t)(n / (size_t)width));
    for (size_t i = 0; i < n; i++) {
        double want = exp(x[i]);
        if (memcmp(&want, &out[i], sizeof want) != 0) {
            return 0;
        }
    }
    return 1;
}

int
kl_vmath_init(LLVMOrcLLJITRef jit, const char *triple,
              LLVMTargetDataRef layout)
{
    char *features = LLVMGetHostCPUFeatures();
    int fma = features != NULL && strstr(features, "+fma") != NULL;
    int width = features != NULL && strstr(features, "+avx512f") != NULL
                ? 8 : 4;
    LLVMDisposeMessage(features);
    if (!fma) {
        return 0;
    }
    char *text = module_text(width);
    if (text == NULL) {
        return 0;
    }
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(
        text, strlen(text), "kiln-vmath");
    free(text);
    LLVMModuleRef mod = NULL;
    char *msg = NULL;
    if (LLVMParseIRInContext(ctx, buf, &mod, &msg)) {
        fprintf(stderr, "kiln: internal error in vector math: %s\n", msg);
        LLVMDisposeMessage(msg);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return 0;
    }
    LLVMSetTarget(mod, triple);
    LLVMSetModuleDataLayout(mod, layout);
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod,
                                                                      tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMErrorRef err = LLVMOrcLLJITAddLLVMIRModule(
        jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm);
    if (err != NULL) {
        LLVMConsumeError(err);
        return 0;
    }
    LLVMOrcExecutorAddress on = 0;
    err = LLVMOrcLLJITLookup(jit, &on, SWITCH);
    if (err != NULL) {
        LLVMConsumeError(err);
        return 0;
    }
    if (!self_test(jit, width)) {
        return 0;
    }
    *(volatile char *)(uintptr_t)on = 1;
    return width;
}
