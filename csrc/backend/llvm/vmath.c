/* vmath.c: vector variants of libm's float64 `exp` and `log` that return
 * libm's own results, so that loops calling math.exp and math.log
 * vectorise without changing a bit.
 *
 * kl_exp(x) and kl_log(x) are libm's functions.  kl_vexpN and kl_vlogN
 * compute N of them at once (N = 8 on AVX-512 hosts, else 4: the width
 * kernels' loops use), each lane with a table-driven evaluation carried in
 * double-double to within about 1/300 ulp of the exact value, rounded once:
 *   exp: x = n ln2/64 + r, exp(x) = 2^(n/64) e^r, e^r by its Taylor series;
 *   log: x = 2^k z, z in [0.707, 1.414), c ~ 1/z from a table of 128,
 *        log(x) = k ln2 - log(c) + log1p(zc - 1), zc - 1 exact, and c = 1
 *        around z = 1, where log(x) is small.
 * Whenever that rounding is not clear-cut -- the exact value may lie
 * within MARGIN ulp of a halfway point between doubles -- and for
 * arguments outside the fast range (exp: |x| >= 708; log: x not positive,
 * normal and finite), NaN, and results that are powers of two or zero,
 * the lane calls libm instead.  glibc's (2.28 and later) exp is within
 * 0.511 ulp of the exact value and its log within 0.520, so outside that
 * band libm and the fast path round to the same double: every lane
 * returns what libm returns.  Once per process, on first use, a
 * self-test compares each function with libm on a spread of inputs before
 * its fast path is switched on (kl_vexp_on, kl_vlog_on); a mismatch
 * (another libm) leaves it off: every lane then calls libm, so code kept
 * on disk stays right too, and kernels compiled in that process call libm
 * only.
 *
 * Each function's variant lives in a module of its own, added to the JIT
 * when a kernel first needs it (the text below);
 * kernels declare them and mark their calls of kl_exp / kl_log with
 * "vector-function-abi-variant", which the loop vectoriser reads.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/IRReader.h>
#include <llvm-c/LLJIT.h>

#include "llvm.h"

#define EXP_TABLE 64
#define LOG_TABLE 128
/* log's table: z's bits minus LOG_OFF (the bits of 0.70703125) index it
 * by their top 7 fraction bits; entries LOG_ONE and LOG_ONE + 1 meet at
 * z = 1 and take c = 1. */
#define LOG_OFF 0x3FE6A00000000000ull
#define LOG_ONE 74

/* The bits of double v, as LLVM IR writes a double constant. */
static unsigned long long
bits(double v)
{
    unsigned long long b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* A constant global array `name` of n doubles. */
static void
put_table(KlText *t, const char *name, const double *v, int n)
{
    kl_text_printf(t, "@%s = internal constant [%d x double] [", name, n);
    for (int j = 0; j < n; j++) {
        kl_text_printf(t, "%sdouble 0x%016llX", j ? ", " : "", bits(v[j]));
    }
    kl_text_printf(t, "]\n");
}

/* 2^(j/64) for j < 64 as a sum hi + lo of doubles, from long double
 * (about 2^-63 relative: 1/2000 ulp of the result). */
static void
put_exp_tables(KlText *t)
{
    double hi[EXP_TABLE], lo[EXP_TABLE];
    for (int j = 0; j < EXP_TABLE; j++) {
        long double v = exp2l((long double)j / EXP_TABLE);
        hi[j] = (double)v;
        lo[j] = (double)(v - hi[j]);
    }
    put_table(t, "kl_exp_thi", hi, EXP_TABLE);
    put_table(t, "kl_exp_tlo", lo, EXP_TABLE);
}

/* For each of log's intervals: c, the double nearest 1 / its midpoint (1
 * for the two around z = 1), and -log(c) as hi + lo, from long double. */
static void
put_log_tables(KlText *t)
{
    double c[LOG_TABLE], hi[LOG_TABLE], lo[LOG_TABLE];
    for (int i = 0; i < LOG_TABLE; i++) {
        uint64_t mid = LOG_OFF + ((uint64_t)i << 45) + (1ull << 44);
        double z;
        memcpy(&z, &mid, sizeof z);
        c[i] = i == LOG_ONE || i == LOG_ONE + 1 ? 1.0 : 1.0 / z;
        long double v = -logl((long double)c[i]);
        hi[i] = (double)v;
        lo[i] = (double)(v - hi[i]);
    }
    put_table(t, "kl_log_c", c, LOG_TABLE);
    put_table(t, "kl_log_thi", hi, LOG_TABLE);
    put_table(t, "kl_log_tlo", lo, LOG_TABLE);
}

/* Positional arguments shared by the templates below: 1 the vector of
 * doubles, 2 of i64, 3 of i1, 4 of ptr, 5 the intrinsic suffix (v8f64),
 * 6 N, 7 the libm function, 8 the i8 global that turns the fast path on
 * (else every lane calls libm), 9 the bits of (1/2 - MARGIN) * 2^-52
 * (times 2^e: that many ulps of a double in [2^e, 2^(e+1))).  Function
 * arguments follow from 10.  Positional printf needs every argument up to
 * the last used to appear. */
#define VHEAD \
"define %1$s @kl_v%7$s%6$d(%1$s %%x) {\n" \
"entry:\n" \
"  %%onb = load i8, ptr @%8$s\n" \
"  %%on = icmp ne i8 %%onb, 0\n"

/* After a body that defines %y (the rounded fast result before any
 * scaling), %res (what rounding left out, exactly), %inr (lanes in the
 * fast range) and %fast (the lanes' results): libm for each lane whose
 * rounding is not clear-cut, lowest first. */
#define VTAIL \
"  %%yb = bitcast %1$s %%y to %2$s\n" \
"  %%expo = and %2$s %%yb, splat (i64 9218868437227405312)\n" \
"  %%ulpb = bitcast %2$s %%expo to %1$s\n" \
"  %%lim = fmul %1$s %%ulpb, splat (double 0x%9$016llX)\n" \
"  %%ares = call %1$s @llvm.fabs.%5$s(%1$s %%res)\n" \
"  %%clear = fcmp olt %1$s %%ares, %%lim\n" \
"  %%mant = and %2$s %%yb, splat (i64 4503599627370495)\n" \
"  %%notp2 = icmp ne %2$s %%mant, zeroinitializer\n" \
"  %%ok1 = and %3$s %%inr, %%clear\n" \
"  %%ok = and %3$s %%ok1, %%notp2\n" \
"  %%okv = bitcast %3$s %%ok to i%6$d\n" \
"  %%okm = select i1 %%on, i%6$d %%okv, i%6$d 0\n" \
"  %%bad = xor i%6$d %%okm, -1\n" \
"  %%none = icmp eq i%6$d %%bad, 0\n" \
"  br i1 %%none, label %%done, label %%lane\n" \
"lane:\n" \
"  %%left = phi i%6$d [ %%bad, %%entry ], [ %%left2, %%lane ]\n" \
"  %%acc = phi %1$s [ %%fast, %%entry ], [ %%acc2, %%lane ]\n" \
"  %%iw = call i%6$d @llvm.cttz.i%6$d(i%6$d %%left, i1 true)\n" \
"  %%i = zext i%6$d %%iw to i32\n" \
"  %%xi = extractelement %1$s %%x, i32 %%i\n" \
"  %%ei = call double @%7$s(double %%xi)\n" \
"  %%acc2 = insertelement %1$s %%acc, double %%ei, i32 %%i\n" \
"  %%lm1 = sub i%6$d %%left, 1\n" \
"  %%left2 = and i%6$d %%left, %%lm1\n" \
"  %%more = icmp ne i%6$d %%left2, 0\n" \
"  br i1 %%more, label %%lane, label %%done\n" \
"done:\n" \
"  %%r = phi %1$s [ %%fast, %%entry ], [ %%acc2, %%lane ]\n" \
"  ret %1$s %%r\n" \
"}\n"

/* A gather of table %3 at indices %2 into %1 (a template line). */
#define GATHER(dst, tab, idx) \
"  %%p" dst " = getelementptr double, ptr @" tab ", %2$s %%" idx "\n" \
"  %%" dst " = call %1$s @llvm.masked.gather.%5$s.v%6$dp0(%4$s %%p" dst \
", i32 8, %3$s splat (i1 true), %1$s poison)\n"

/* exp.  10 64/ln2, 11 and 12 ln2/64 as a 36-bit head (n * head is exact
 * for |n| < 2^17) plus a tail, 13..16 1/6 1/24 1/120 1/720. */
static const char vexp_text[] =
VHEAD
"  %%ax = call %1$s @llvm.fabs.%5$s(%1$s %%x)\n"
"  %%inr = fcmp olt %1$s %%ax, splat (double 708.0)\n"
"  %%xs = select %3$s %%inr, %1$s %%x, %1$s zeroinitializer\n"
"  %%z = fmul %1$s %%xs, splat (double 0x%10$016llX)\n"
"  %%nf = call %1$s @llvm.roundeven.%5$s(%1$s %%z)\n"
"  %%ni = fptosi %1$s %%nf to %2$s\n"
"  %%j = and %2$s %%ni, splat (i64 63)\n"
"  %%k = ashr %2$s %%ni, splat (i64 6)\n"
/* r = x - n ln2/64 as rh + rl: x - n*head is exact */
"  %%nneg = fneg %1$s %%nf\n"
"  %%rhi = call %1$s @llvm.fma.%5$s(%1$s %%nneg, %1$s splat (double 0x%11$016llX), %1$s %%xs)\n"
"  %%ph = fmul %1$s %%nf, splat (double 0x%12$016llX)\n"
"  %%phn = fneg %1$s %%ph\n"
"  %%pl = call %1$s @llvm.fma.%5$s(%1$s %%nf, %1$s splat (double 0x%12$016llX), %1$s %%phn)\n"
"  %%rh = fadd %1$s %%rhi, %%phn\n"
"  %%bp = fsub %1$s %%rh, %%rhi\n"
"  %%ap = fsub %1$s %%rh, %%bp\n"
"  %%db = fsub %1$s %%phn, %%bp\n"
"  %%da = fsub %1$s %%rhi, %%ap\n"
"  %%e = fadd %1$s %%da, %%db\n"
"  %%rl = fsub %1$s %%e, %%pl\n"
/* e^r - 1 - rh = rl + rh^2 (1/2 + rh/6 + ... + rh^4/720), |r| < 0.0055 */
"  %%c4 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s splat (double 0x%16$016llX), %1$s splat (double 0x%15$016llX))\n"
"  %%c3 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%c4, %1$s splat (double 0x%14$016llX))\n"
"  %%c2 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%c3, %1$s splat (double 0x%13$016llX))\n"
"  %%c1 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%c2, %1$s splat (double 0.5))\n"
"  %%r2 = fmul %1$s %%rh, %%rh\n"
"  %%q = fmul %1$s %%r2, %%c1\n"
"  %%u = fadd %1$s %%rl, %%q\n"
/* 2^(j/64) (1 + rh + u) = th + th*rh + b = y1 + tail, exactly but for
 * the roundings of b and tail (far below 1/1000 ulp) */
GATHER("th", "kl_exp_thi", "j")
GATHER("tl", "kl_exp_tlo", "j")
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
/* y = RN(y1 + tail), then scaled by 2^k (exact: results are normal) */
"  %%y = fadd %1$s %%y1, %%tail\n"
"  %%d = fsub %1$s %%y1, %%y\n"
"  %%res = fadd %1$s %%d, %%tail\n"
"  %%ybits = bitcast %1$s %%y to %2$s\n"
"  %%kk = shl %2$s %%k, splat (i64 52)\n"
"  %%rb = add %2$s %%ybits, %%kk\n"
"  %%fast = bitcast %2$s %%rb to %1$s\n"
VTAIL;

/* A TwoSum a + b = s + e, exactly (template lines: s, e, a, b; t a
 * unique prefix). */
#define TWOSUM(t, s, e, a, b) \
"  %%" s " = fadd %1$s %%" a ", %%" b "\n" \
"  %%" t "bp = fsub %1$s %%" s ", %%" a "\n" \
"  %%" t "ap = fsub %1$s %%" s ", %%" t "bp\n" \
"  %%" t "da = fsub %1$s %%" a ", %%" t "ap\n" \
"  %%" t "db = fsub %1$s %%" b ", %%" t "bp\n" \
"  %%" e " = fadd %1$s %%" t "da, %%" t "db\n"

/* log.  10 LOG_OFF, 11 and 12 ln2 as a 42-bit head (k * head is exact)
 * plus a tail, 13..20 1/3 -1/4 1/5 -1/6 1/7 -1/8 1/9 -1/10. */
static const char vlog_text[] =
VHEAD
/* positive normal finite lanes; the others compute log(1) */
"  %%ix = bitcast %1$s %%x to %2$s\n"
"  %%ixm = sub %2$s %%ix, splat (i64 4503599627370496)\n"
"  %%inr = icmp ult %2$s %%ixm, splat (i64 9214364837600034816)\n"
"  %%ixs = select %3$s %%inr, %2$s %%ix, %2$s splat (i64 4607182418800017408)\n"
"  %%tmp = sub %2$s %%ixs, splat (i64 %10$llu)\n"
"  %%k = ashr %2$s %%tmp, splat (i64 52)\n"
"  %%i0 = lshr %2$s %%tmp, splat (i64 45)\n"
"  %%ti = and %2$s %%i0, splat (i64 127)\n"
"  %%kk = shl %2$s %%k, splat (i64 52)\n"
"  %%izb = sub %2$s %%ixs, %%kk\n"
"  %%z = bitcast %2$s %%izb to %1$s\n"
GATHER("c", "kl_log_c", "ti")
GATHER("th", "kl_log_thi", "ti")
GATHER("tl", "kl_log_tlo", "ti")
/* r = zc - 1 = rh + rl exactly (zc is in [0.5, 2]) */
"  %%p = fmul %1$s %%z, %%c\n"
"  %%pn = fneg %1$s %%p\n"
"  %%rl = call %1$s @llvm.fma.%5$s(%1$s %%z, %1$s %%c, %1$s %%pn)\n"
"  %%rh = fsub %1$s %%p, splat (double 1.0)\n"
/* k ln2 - log(c) + rh - rh^2/2, summed exactly into s3 + e1 + e2 + e3 */
"  %%kd = sitofp %2$s %%k to %1$s\n"
"  %%a = fmul %1$s %%kd, splat (double 0x%11$016llX)\n"
TWOSUM("t1", "s1", "e1", "a", "th")
TWOSUM("t2", "s2", "e2", "s1", "rh")
"  %%r2h = fmul %1$s %%rh, %%rh\n"
"  %%r2hn = fneg %1$s %%r2h\n"
"  %%r2l = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%rh, %1$s %%r2hn)\n"
"  %%h = fmul %1$s %%r2h, splat (double -0.5)\n"
"  %%hl = fmul %1$s %%r2l, splat (double -0.5)\n"
TWOSUM("t3", "s3", "e3", "s2", "h")
/* the rest of log1p(r): rh^3 (1/3 - rh/4 + ... - rh^7/10) + rl (1 - rh) */
"  %%q8 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s splat (double 0x%20$016llX), %1$s splat (double 0x%19$016llX))\n"
"  %%q7 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%q8, %1$s splat (double 0x%18$016llX))\n"
"  %%q6 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%q7, %1$s splat (double 0x%17$016llX))\n"
"  %%q5 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%q6, %1$s splat (double 0x%16$016llX))\n"
"  %%q4 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%q5, %1$s splat (double 0x%15$016llX))\n"
"  %%q3 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%q4, %1$s splat (double 0x%14$016llX))\n"
"  %%q2 = call %1$s @llvm.fma.%5$s(%1$s %%rh, %1$s %%q3, %1$s splat (double 0x%13$016llX))\n"
"  %%r3 = fmul %1$s %%r2h, %%rh\n"
"  %%u = fmul %1$s %%r3, %%q2\n"
"  %%rln = fneg %1$s %%rl\n"
"  %%rlx = call %1$s @llvm.fma.%5$s(%1$s %%rln, %1$s %%rh, %1$s %%rl)\n"
"  %%klo = call %1$s @llvm.fma.%5$s(%1$s %%kd, %1$s splat (double 0x%12$016llX), %1$s %%tl)\n"
"  %%m1 = fadd %1$s %%hl, %%u\n"
"  %%m2 = fadd %1$s %%m1, %%rlx\n"
"  %%lo = fadd %1$s %%klo, %%m2\n"
"  %%e12 = fadd %1$s %%e1, %%e2\n"
"  %%e123 = fadd %1$s %%e12, %%e3\n"
"  %%tail = fadd %1$s %%e123, %%lo\n"
"  %%y = fadd %1$s %%s3, %%tail\n"
"  %%d = fsub %1$s %%s3, %%y\n"
"  %%res = fadd %1$s %%d, %%tail\n"
"  %%fast = fadd %1$s %%y, zeroinitializer\n"
VTAIL;

/* A loop over n vectors of x into out through kl_v<fn>N, for the
 * self-test (arguments as above). */
static const char varray_text[] =
"; %2$s %3$s %4$s %5$s\n"
"define void @kl_v%7$s%6$d_array(ptr %%x, ptr %%out, i64 %%n) {\n"
"entry:\n"
"  %%go = icmp sgt i64 %%n, 0\n"
"  br i1 %%go, label %%loop, label %%end\n"
"loop:\n"
"  %%i = phi i64 [ 0, %%entry ], [ %%i1, %%loop ]\n"
"  %%px = getelementptr %1$s, ptr %%x, i64 %%i\n"
"  %%v = load %1$s, ptr %%px, align 8\n"
"  %%r = call %1$s @kl_v%7$s%6$d(%1$s %%v)\n"
"  %%po = getelementptr %1$s, ptr %%out, i64 %%i\n"
"  store %1$s %%r, ptr %%po, align 8\n"
"  %%i1 = add i64 %%i, 1\n"
"  %%more = icmp slt i64 %%i1, %%n\n"
"  br i1 %%more, label %%loop, label %%end\n"
"end:\n"
"  ret void\n"
"}\n";

/* The intrinsics of one width and libm's functions (1..6 as above). */
static const char decls_text[] =
"; lanes as %2$s\n"
"declare %1$s @llvm.fabs.%5$s(%1$s)\n"
"declare %1$s @llvm.fma.%5$s(%1$s, %1$s, %1$s)\n"
"declare %1$s @llvm.roundeven.%5$s(%1$s)\n"
"declare %1$s @llvm.masked.gather.%5$s.v%6$dp0(%4$s, i32, %3$s, %1$s)\n"
"declare i%6$d @llvm.cttz.i%6$d(i%6$d, i1)\n";

/* The functions with vector variants, in KlVmath order. */
static const struct {
    const char *name;           /* libm's */
    double margin;              /* MARGIN: 1/64 ulp for exp (glibc's bound
                                   is 1.36/128 ulp past 1/2, ours about
                                   1/1000), 1/32 for log (glibc: 0.020) */
} vfns[KL_VMATH__COUNT] = {{"exp", 1.0 / 64}, {"log", 1.0 / 32}};

/* Appends function f's scalar wrapper, switch, variant (and its tested
 * copy) and self-test loop for width n; vd..sfx as in the templates. */
static void
put_fn(KlText *t, int f, int n, const char *vd, const char *vi,
       const char *vb, const char *vp, const char *sfx)
{
    const char *name = vfns[f].name;
    kl_text_printf(t,
                   "declare double @%s(double)\n"
                   "define double @kl_%s(double %%x) {\n"
                   "  %%r = tail call double @%s(double %%x)\n"
                   "  ret double %%r\n"
                   "}\n"
                   "@kl_v%s_on = global i8 0\n", name, name, name, name);
    unsigned long long lim = bits((0.5 - vfns[f].margin) * 0x1p-52);
    char sw[32];
    snprintf(sw, sizeof sw, "kl_v%s_on", name);
    if (f == KL_VMATH_EXP) {
        /* ln2/64 = head + tail: head has 36 significant bits */
        kl_text_printf(t, vexp_text, vd, vi, vb, vp, sfx, n, name, sw, lim,
                       bits(0x1.71547652b82fep+6), bits(0x1.62e42fefa0000p-7),
                       bits(0x1.cf79abc9e3b3ap-46), bits(1.0 / 6),
                       bits(1.0 / 24), bits(1.0 / 120), bits(1.0 / 720));
    }
    else {
        /* ln2 = head + tail: head has 42 significant bits */
        kl_text_printf(t, vlog_text, vd, vi, vb, vp, sfx, n, name, sw, lim,
                       LOG_OFF, bits(0x1.62e42fefa3800p-1),
                       bits(0x1.ef35793c76730p-45), bits(1.0 / 3),
                       bits(-1.0 / 4), bits(1.0 / 5), bits(-1.0 / 6),
                       bits(1.0 / 7), bits(-1.0 / 8), bits(1.0 / 9),
                       bits(-1.0 / 10));
    }
    kl_text_printf(t, varray_text, vd, vi, vb, vp, sfx, n, name);
}

/* The text of function f's module for vectors of n doubles (malloc'ed),
 * or NULL when out of memory. */
static char *
module_text(int f, int n)
{
    char vd[24], vi[24], vb[24], vp[24], sfx[16];
    snprintf(vd, sizeof vd, "<%d x double>", n);
    snprintf(vi, sizeof vi, "<%d x i64>", n);
    snprintf(vb, sizeof vb, "<%d x i1>", n);
    snprintf(vp, sizeof vp, "<%d x ptr>", n);
    snprintf(sfx, sizeof sfx, "v%df64", n);
    KlText t = {0};
    kl_text_printf(&t, decls_text, vd, vi, vb, vp, sfx, n);
    if (f == KL_VMATH_EXP) {
        put_exp_tables(&t);
    }
    else {
        put_log_tables(&t);
    }
    put_fn(&t, f, n, vd, vi, vb, vp, sfx);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

/* Inputs of the self-test of function f: a spread over its range, values
 * near 0 (exp) or 1 (log), every binade, and edges where lanes go to
 * libm. */
static size_t
test_inputs(int f, double *x, size_t cap)
{
    static const double edges[] = {
        0.0, -0.0, 1e-300, -1e-300, 0x1p-54, 1.0, -1.0, 0.5, 707.9, -707.9,
        708.0, -708.0, 709.78, -745.0, 710.0, 5e-324, 0x1p-1022,
        0x1.fffffffffffffp1023, INFINITY, -INFINITY, NAN};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        x[n++] = edges[i];
    }
    unsigned long long s = 0x9E3779B97F4A7C15ull;
    while (n < cap) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) * 0x1p-53;     /* [0, 1) */
        double tiny = ldexp(u - 0.5, -(int)(n % 60));
        if (f == KL_VMATH_EXP) {
            x[n] = (n & 1) ? (u - 0.5) * 1415.0 : tiny;
        }
        else {
            x[n] = (n & 1) ? ldexp(0.5 + u / 2, (int)(s % 2046) - 1022)
                           : 1.0 + tiny;
        }
        n++;
    }
    return n;
}

typedef void (*VmathArray)(const double *x, double *out, int64_t n);

/* Runs kl_v<f><width> (switched on) over f's test inputs and compares
 * with libm, bit for bit but for NaNs (log(-1) is NaN of either sign,
 * depending on how libm is reached; kernels raise ValueError there). */
static int
self_test(LLVMOrcLLJITRef jit, int f, int width)
{
    enum { N = 4096 };
    static double x[N], out[N];
    size_t n = test_inputs(f, x, N) / (size_t)width * (size_t)width;
    char name[32];
    snprintf(name, sizeof name, "kl_v%s%d_array", vfns[f].name, width);
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit, &addr, name);
    if (err != NULL) {
        LLVMConsumeError(err);
        return 0;
    }
    ((VmathArray)(uintptr_t)addr)(x, out, (int64_t)(n / (size_t)width));
    for (size_t i = 0; i < n; i++) {
        double want = f == KL_VMATH_EXP ? exp(x[i]) : log(x[i]);
        if (memcmp(&want, &out[i], sizeof want) != 0
            && !(isnan(want) && isnan(out[i]))) {
            return 0;
        }
    }
    return 1;
}

/* Tests function f and switches its fast path on when it passes. */
static int
switch_on(LLVMOrcLLJITRef jit, int f, int width)
{
    char name[32];
    snprintf(name, sizeof name, "kl_v%s_on", vfns[f].name);
    LLVMOrcExecutorAddress on = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit, &on, name);
    if (err != NULL) {
        LLVMConsumeError(err);
        return 0;
    }
    /* no kernel calls the variants before kl_vmath_init returns */
    *(volatile char *)(uintptr_t)on = 1;
    if (!self_test(jit, f, width)) {
        *(volatile char *)(uintptr_t)on = 0;
        return 0;
    }
    return 1;
}

int
kl_vmath_init(LLVMOrcLLJITRef jit, const char *triple,
              LLVMTargetDataRef layout, KlVmath fn)
{
    char *features = LLVMGetHostCPUFeatures();
    int fma = features != NULL && strstr(features, "+fma") != NULL;
    int width = features != NULL && strstr(features, "+avx512f") != NULL
                ? 8 : 4;
    LLVMDisposeMessage(features);
    if (!fma) {
        return 0;
    }
    char *text = module_text(fn, width);
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
    return switch_on(jit, fn, width) ? width : 0;
}
