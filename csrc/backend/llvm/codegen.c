/* codegen.c: lowered kiln IR -> LLVM IR (CPU backend, first half).
 *
 * Each KlFunc becomes one internal LLVM function (convention in llvm.h);
 * block parameters become phis, `raise` fills the KlStatus and returns 1,
 * `call` propagates a nonzero callee status at once.  `pfor` hands an
 * internal trampoline and a context struct to the thread pool (llvm.h);
 * `scratch` arrays live in the prologue's allocas.  Floating point is
 * emitted without fast-math flags (and never as fmuladd) unless the module
 * asks for fastmath, so results match C compiled without contraction.
 * The exported entry wrapper adapts the KlEntry ABI of compile.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/TargetMachine.h>

#include "alias.h"
#include "llvm.h"

/* State of one module's translation. */
typedef struct Cg {
    KlModule *m;                /* module being translated */
    KlDiag *d;                  /* where errors go */
    LLVMContextRef ctx;         /* the LLVM module's context */
    LLVMModuleRef mod;          /* output */
    LLVMBuilderRef b;           /* builder for instructions */
    LLVMValueRef *fns;          /* LLVM function of each KlFunc */
    LLVMTypeRef *fntys;         /* and its function type */
    LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr, unit; /* common types */
    LLVMTypeRef status;         /* KlStatus: {i32, i32, [3 x i64]} */
    unsigned prof_kind;         /* metadata kind id of "prof" */
    int npfor;                  /* trampolines emitted, for their names */
    /* per function */
    KlFunc *f;                  /* function being emitted */
    LLVMValueRef fn;            /* its LLVM function */
    LLVMValueRef *vals;         /* LLVM value of each instruction */
    LLVMBasicBlockRef *bbs;     /* LLVM block of each reachable IR block */
    LLVMBasicBlockRef prologue; /* holds allocas, then jumps to block 0 */
    LLVMBuilderRef ab;          /* builder at the end of the prologue */
    LLVMValueRef statuses;      /* the pfor status slots, NULL until used */
    KlAlias *alias;             /* noalias scopes of entry arrays, or NULL */
    LLVMValueRef vmath[KL_VMATH__COUNT]; /* vector variants declared */
} Cg;

/* ---- types ------------------------------------------------------------ */

static LLVMTypeRef
complex_type(Cg *cg, const KlType *t)
{
    LLVMTypeRef part = t->bits == 64 ? cg->f32 : cg->f64;
    LLVMTypeRef parts[2] = {part, part};
    return LLVMStructTypeInContext(cg->ctx, parts, 2, 0);
}

/* The register type of kiln type t; NULL for void (no value). */
static LLVMTypeRef
reg_type(Cg *cg, const KlType *t)
{
    switch (t->kind) {
    case KL_T_VOID:
        return NULL;
    case KL_T_NONE:
        return cg->unit;
    case KL_T_BOOL:
        return cg->i1;
    case KL_T_INT:
        return LLVMIntTypeInContext(cg->ctx, t->bits);
    case KL_T_FLOAT:
        return t->bits == 32 ? cg->f32 : cg->f64;
    case KL_T_COMPLEX:
        return complex_type(cg, t);
    case KL_T_ARRAY: {
        LLVMTypeRef dims = LLVMArrayType2(cg->i64, (uint64_t)t->ndim);
        LLVMTypeRef fields[3] = {cg->ptr, dims, dims};
        return LLVMStructTypeInContext(cg->ctx, fields, 3, 0);
    }
    case KL_T_SHAPE:
        return LLVMArrayType2(cg->i64, (uint64_t)t->ndim);
    case KL_T_PTR:
        return cg->ptr;
    }
    return NULL;
}

/* The in-memory type of scalar t (array elements, entry arguments). */
static LLVMTypeRef
mem_type(Cg *cg, const KlType *t)
{
    return t->kind == KL_T_BOOL ? cg->i8 : reg_type(cg, t);
}

/* Alignment of an element of scalar type t: that of its scalar part. */
static unsigned
elem_align(const KlType *t)
{
    switch (t->kind) {
    case KL_T_BOOL:
        return 1;
    case KL_T_INT:
    case KL_T_FLOAT:
        return t->bits / 8;
    case KL_T_COMPLEX:
        return t->bits / 16;
    default:
        return 8;
    }
}

static int
is_float(const KlType *t)
{
    return t->kind == KL_T_FLOAT;
}

static int
is_signed_int(const KlType *t)
{
    return t->kind == KL_T_INT && t->is_signed;
}

/* Does the function return a value through a result pointer? */
static int
has_result(const KlFunc *f)
{
    return f->ret_type->kind != KL_T_NONE && f->ret_type->kind != KL_T_VOID;
}

/* ---- small helpers ---------------------------------------------------- */

/* Marks floating-point instruction v fast when the module allows it. */
static LLVMValueRef
fm(Cg *cg, LLVMValueRef v)
{
    if (cg->m->options.fastmath && LLVMIsAInstruction(v)
        && LLVMCanValueUseFastMathFlags(v)) {
        /* reassociation, contraction, reciprocals, approximate functions
         * and signed zeros; NaN and infinity keep their meaning */
        LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc
                                    | LLVMFastMathAllowContract
                                    | LLVMFastMathAllowReciprocal
                                    | LLVMFastMathApproxFunc
                                    | LLVMFastMathNoSignedZeros);
    }
    return v;
}

/* fm() for float add/sub/mul instruction `in`, which a prange reduction
 * step (ops.h: imm.i 1) also marks reassociable. */
static LLVMValueRef
fm_step(Cg *cg, const KlInst *in, LLVMValueRef v)
{
    v = fm(cg, v);
    if (in->imm.i == 1 && LLVMIsAInstruction(v)
        && LLVMCanValueUseFastMathFlags(v)) {
        LLVMSetFastMathFlags(v, LLVMGetFastMathFlags(v)
                                    | LLVMFastMathAllowReassoc);
    }
    return v;
}

/* Adds the enum attribute `name` (value 0) to function or call v at idx. */
static void
add_attr(Cg *cg, LLVMValueRef v, LLVMAttributeIndex idx, const char *name,
         int callsite)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAttributeRef a = LLVMCreateEnumAttribute(cg->ctx, kind, 0);
    if (callsite) {
        LLVMAddCallSiteAttribute(v, idx, a);
    }
    else {
        LLVMAddAttributeAtIndex(v, idx, a);
    }
}

/* An alloca of type ty in the current function's prologue. */
static LLVMValueRef
prologue_alloca(Cg *cg, LLVMTypeRef ty)
{
    return LLVMBuildAlloca(cg->ab, ty, "");
}

/* Attaches weights (true target : false target) to conditional branch br. */
static void
set_weights(Cg *cg, LLVMValueRef br, unsigned wtrue, unsigned wfalse)
{
    LLVMMetadataRef md[3];
    md[0] = LLVMMDStringInContext2(cg->ctx, "branch_weights", 14);
    md[1] = LLVMValueAsMetadata(LLVMConstInt(cg->i32, wtrue, 0));
    md[2] = LLVMValueAsMetadata(LLVMConstInt(cg->i32, wfalse, 0));
    LLVMMetadataRef node = LLVMMDNodeInContext2(cg->ctx, md, 3);
    LLVMSetMetadata(br, cg->prof_kind, LLVMMetadataAsValue(cg->ctx, node));
}

/* Branches on `failed` to a new cold block, where the builder is left to
 * emit the failure path; returns the block where normal flow continues. */
static LLVMBasicBlockRef
branch_cold(Cg *cg, LLVMValueRef failed)
{
    LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn,
                                                           "");
    LLVMBasicBlockRef cont = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn,
                                                           "");
    set_weights(cg, LLVMBuildCondBr(cg->b, failed, fail, cont), 1, 2000);
    LLVMPositionBuilderAtEnd(cg->b, fail);
    return cont;
}

/* ---- math ------------------------------------------------------------- */

static const char *const math_names[] = {
#define KL_X(name, nargs) #name,
    KL_MATHFNS(KL_X)
#undef KL_X
};

/* The LLVM intrinsic used for libm function fn, or NULL for a call. */
static const char *
math_intrinsic(KlMathFn fn)
{
    switch (fn) {
    case KL_MATH_sqrt:
        return "llvm.sqrt";
    case KL_MATH_fabs:
        return "llvm.fabs";
    case KL_MATH_floor:
        return "llvm.floor";
    case KL_MATH_ceil:
        return "llvm.ceil";
    case KL_MATH_trunc:
        return "llvm.trunc";
    case KL_MATH_rint:
        return "llvm.rint";
    case KL_MATH_copysign:
        return "llvm.copysign";
    default:
        return NULL;
    }
}

/* Declares `double name(double)` without memory effects, as libm's math
 * functions are called (they set errno, which no kernel reads). */
static LLVMValueRef
declare_math(Cg *cg, const char *name, LLVMTypeRef fnty)
{
    LLVMValueRef callee = LLVMGetNamedFunction(cg->mod, name);
    if (callee == NULL) {
        callee = LLVMAddFunction(cg->mod, name, fnty);
        add_attr(cg, callee, LLVMAttributeFunctionIndex, "nounwind", 0);
        add_attr(cg, callee, LLVMAttributeFunctionIndex, "willreturn", 0);
        add_attr(cg, callee, LLVMAttributeFunctionIndex, "nosync", 0);
        add_attr(cg, callee, LLVMAttributeFunctionIndex, "memory", 0);
    }
    return callee;
}

/* vmath.c's name for libm function fn (exp or log). */
static KlVmath
vmath_of(KlMathFn fn)
{
    return fn == KL_MATH_exp ? KL_VMATH_EXP : KL_VMATH_LOG;
}

/* float64 exp(x) or log(x) (fn) as a call of kl_exp / kl_log (libm's,
 * jit.c), which the loop vectoriser may replace with kl_vexpN / kl_vlogN
 * (vmath.c): they give the same bits.  The variant is declared and kept in
 * llvm.compiler.used (keep_vmath) so that it survives until the
 * vectoriser runs. */
static LLVMValueRef
emit_vmath_call(Cg *cg, KlMathFn fn, LLVMValueRef x)
{
    KlVmath vm = vmath_of(fn);
    int width = kl_llvm_vmath_width(vm);
    char scalar[16], vector[16], variant[64];
    snprintf(scalar, sizeof(scalar), "kl_%s", math_names[fn]);
    snprintf(vector, sizeof(vector), "kl_v%s%d", math_names[fn], width);
    int n = snprintf(variant, sizeof(variant), "_ZGV_LLVM_N%dv_%s(%s)",
                     width, scalar, vector);
    if (cg->vmath[vm] == NULL) {
        LLVMTypeRef v = LLVMVectorType(cg->f64, (unsigned)width);
        cg->vmath[vm] = declare_math(cg, vector,
                                     LLVMFunctionType(v, &v, 1, 0));
    }
    LLVMTypeRef fnty = LLVMFunctionType(cg->f64, &cg->f64, 1, 0);
    LLVMValueRef callee = declare_math(cg, scalar, fnty);
    LLVMValueRef call = LLVMBuildCall2(cg->b, fnty, callee, &x, 1, "");
    LLVMAddCallSiteAttribute(
        call, LLVMAttributeFunctionIndex,
        LLVMCreateStringAttribute(cg->ctx, "vector-function-abi-variant", 27,
                                  variant, (unsigned)n));
    return call;
}

/* Vector width: LLVM's choice for the host, which on AVX-512 machines is
 * 256-bit vectors of AVX-512 instructions (measured as fast or faster
 * than 512-bit ones on every workload of bench/, memory-bound ones by 10
 * to 20%), except in modules that call the vector exp or log of vmath.c,
 * whose variants are as wide as the host's widest vectors. */
static void
prefer_vmath_width(Cg *cg)
{
    for (LLVMValueRef fn = LLVMGetFirstFunction(cg->mod); fn != NULL;
         fn = LLVMGetNextFunction(fn)) {
        if (LLVMCountBasicBlocks(fn) > 0) {
            LLVMAddTargetDependentFunctionAttr(fn, "prefer-vector-width",
                                               "512");
        }
    }
}

/* Keeps the vector variants the module declared (llvm.compiler.used), and
 * makes its functions vectorise at their width. */
static void
keep_vmath(Cg *cg)
{
    LLVMValueRef used[KL_VMATH__COUNT];
    unsigned n = 0;
    int wide = 0;
    for (int k = 0; k < KL_VMATH__COUNT; k++) {
        if (cg->vmath[k] != NULL) {
            used[n++] = cg->vmath[k];
            wide |= kl_llvm_vmath_width((KlVmath)k) > 4;
        }
    }
    if (wide) {
        prefer_vmath_width(cg);
    }
    if (n > 0) {
        LLVMTypeRef aty = LLVMArrayType2(cg->ptr, n);
        LLVMValueRef g = LLVMAddGlobal(cg->mod, aty, "llvm.compiler.used");
        LLVMSetLinkage(g, LLVMAppendingLinkage);
        LLVMSetSection(g, "llvm.metadata");
        LLVMSetInitializer(g, LLVMConstArray2(cg->ptr, used, n));
    }
}

/* Emits libm function fn on args[0..nargs) of float type t (an intrinsic
 * when LLVM has an exact one, else a call to the libm symbol, `f`-suffixed
 * for float32, declared without memory effects). */
static LLVMValueRef
emit_math(Cg *cg, KlMathFn fn, const KlType *t, LLVMValueRef *args,
          unsigned nargs)
{
    LLVMTypeRef ty = reg_type(cg, t);
    const char *intr = math_intrinsic(fn);
    LLVMValueRef callee;
    LLVMTypeRef fnty;
    if (intr != NULL) {
        unsigned id = LLVMLookupIntrinsicID(intr, strlen(intr));
        callee = LLVMGetIntrinsicDeclaration(cg->mod, id, &ty, 1);
        fnty = LLVMIntrinsicGetType(cg->ctx, id, &ty, 1);
    }
    else if (t->bits == 64 && (fn == KL_MATH_exp || fn == KL_MATH_log)
             && kl_llvm_vmath_width(vmath_of(fn)) > 0) {
        return emit_vmath_call(cg, fn, args[0]);
    }
    else {
        char name[32];
        size_t n = strlen(math_names[fn]);
        memcpy(name, math_names[fn], n);
        if (t->bits == 32) {
            name[n++] = 'f';
        }
        name[n] = '\0';
        LLVMTypeRef params[2] = {ty, ty};
        fnty = LLVMFunctionType(ty, params, nargs, 0);
        callee = declare_math(cg, name, fnty);
    }
    return fm(cg, LLVMBuildCall2(cg->b, fnty, callee, args, nargs, ""));
}

/* ---- casts ------------------------------------------------------------ */

/* Converts real scalar v of type from (bool, int or float) to float type
 * fty of kiln type to. */
static LLVMValueRef
to_float(Cg *cg, LLVMValueRef v, const KlType *from, const KlType *to,
         LLVMTypeRef fty)
{
    if (from->kind == KL_T_BOOL) {
        return LLVMBuildUIToFP(cg->b, v, fty, "");
    }
    if (from->kind == KL_T_INT) {
        return from->is_signed ? LLVMBuildSIToFP(cg->b, v, fty, "")
                               : LLVMBuildUIToFP(cg->b, v, fty, "");
    }
    if (from->bits == to->bits) {
        return v;
    }
    return from->bits < to->bits ? LLVMBuildFPExt(cg->b, v, fty, "")
                                 : LLVMBuildFPTrunc(cg->b, v, fty, "");
}

/* Emits the scalar conversion of v from type `from` to type `to` (ops.h
 * `cast`); NULL when the pair is not a scalar conversion. */
static LLVMValueRef
emit_cast(Cg *cg, LLVMValueRef v, const KlType *from, const KlType *to)
{
    LLVMTypeRef ty = reg_type(cg, to);
    if (from->kind == to->kind && from->bits == to->bits) {
        return v;       /* weak/strong or signedness change only */
    }
    switch (to->kind) {
    case KL_T_BOOL:
        if (from->kind == KL_T_INT) {
            return LLVMBuildICmp(cg->b, LLVMIntNE, v,
                                 LLVMConstNull(LLVMTypeOf(v)), "");
        }
        if (from->kind == KL_T_FLOAT) {
            return LLVMBuildFCmp(cg->b, LLVMRealUNE, v,
                                 LLVMConstNull(LLVMTypeOf(v)), "");
        }
        if (from->kind == KL_T_COMPLEX) {
            LLVMValueRef re = LLVMBuildExtractValue(cg->b, v, 0, "");
            LLVMValueRef im = LLVMBuildExtractValue(cg->b, v, 1, "");
            LLVMValueRef z = LLVMConstNull(LLVMTypeOf(re));
            return LLVMBuildOr(
                cg->b, LLVMBuildFCmp(cg->b, LLVMRealUNE, re, z, ""),
                LLVMBuildFCmp(cg->b, LLVMRealUNE, im, z, ""), "");
        }
        return NULL;
    case KL_T_INT:
        if (from->kind == KL_T_BOOL) {
            return LLVMBuildZExt(cg->b, v, ty, "");
        }
        if (from->kind == KL_T_INT) {
            return LLVMBuildIntCast2(cg->b, v, ty, from->is_signed, "");
        }
        if (from->kind == KL_T_FLOAT) {
            return to->is_signed ? LLVMBuildFPToSI(cg->b, v, ty, "")
                                 : LLVMBuildFPToUI(cg->b, v, ty, "");
        }
        return NULL;
    case KL_T_FLOAT:
        if (from->kind == KL_T_COMPLEX) {
            return NULL;
        }
        return to_float(cg, v, from, to, ty);
    case KL_T_COMPLEX: {
        const KlType *part = to->bits == 64 ? kl_f32 : kl_f64;
        LLVMTypeRef pty = reg_type(cg, part);
        LLVMValueRef re, im;
        if (from->kind == KL_T_COMPLEX) {
            const KlType *fpart = from->bits == 64 ? kl_f32 : kl_f64;
            re = to_float(cg, LLVMBuildExtractValue(cg->b, v, 0, ""), fpart,
                          part, pty);
            im = to_float(cg, LLVMBuildExtractValue(cg->b, v, 1, ""), fpart,
                          part, pty);
        }
        else {
            re = to_float(cg, v, from, part, pty);
            im = LLVMConstNull(pty);
        }
        LLVMValueRef c = LLVMGetUndef(ty);
        c = LLVMBuildInsertValue(cg->b, c, re, 0, "");
        return LLVMBuildInsertValue(cg->b, c, im, 1, "");
    }
    default:
        return NULL;
    }
}

/* ---- constants -------------------------------------------------------- */

/* The constant of `const` instruction in. */
static LLVMValueRef
emit_const(Cg *cg, const KlInst *in)
{
    LLVMTypeRef ty = reg_type(cg, in->type);
    switch (in->type->kind) {
    case KL_T_BOOL:
        return LLVMConstInt(ty, in->imm.i != 0, 0);
    case KL_T_INT:
        return LLVMConstInt(ty, (unsigned long long)in->imm.i,
                            in->type->is_signed);
    case KL_T_FLOAT:
        return LLVMConstReal(ty, in->imm.f);
    case KL_T_COMPLEX: {
        LLVMTypeRef pty = in->type->bits == 64 ? cg->f32 : cg->f64;
        LLVMValueRef parts[2] = {LLVMConstReal(pty, in->imm.c.re),
                                 LLVMConstReal(pty, in->imm.c.im)};
        return LLVMConstStructInContext(cg->ctx, parts, 2, 0);
    }
    case KL_T_VOID:
        return NULL;
    default:
        return LLVMConstNull(ty);
    }
}

/* ---- addresses -------------------------------------------------------- */

/* Address of element idx[0..ndim) of array value arr of type at: row-major
 * element offset for C layout (unit stride visible to LLVM), byte offset
 * sum(idx_k * stride_k) otherwise. */
static LLVMValueRef
emit_elemptr(Cg *cg, LLVMValueRef arr, const KlType *at, LLVMValueRef *idx)
{
    LLVMValueRef data = LLVMBuildExtractValue(cg->b, arr, 0, "");
    LLVMValueRef off = NULL;
    if (at->layout == KL_LAYOUT_C) {
        LLVMValueRef shape = LLVMBuildExtractValue(cg->b, arr, 1, "");
        off = idx[0];
        for (int k = 1; k < at->ndim; k++) {
            LLVMValueRef ext = LLVMBuildExtractValue(cg->b, shape,
                                                     (unsigned)k, "");
            off = LLVMBuildNSWMul(cg->b, off, ext, "");
            off = LLVMBuildNSWAdd(cg->b, off, idx[k], "");
        }
        return LLVMBuildInBoundsGEP2(cg->b, mem_type(cg, at->elem), data,
                                     &off, 1, "");
    }
    LLVMValueRef strides = LLVMBuildExtractValue(cg->b, arr, 2, "");
    for (int k = 0; k < at->ndim; k++) {
        LLVMValueRef s = LLVMBuildExtractValue(cg->b, strides, (unsigned)k,
                                               "");
        LLVMValueRef term = LLVMBuildNSWMul(cg->b, idx[k], s, "");
        off = off == NULL ? term : LLVMBuildNSWAdd(cg->b, off, term, "");
    }
    return LLVMBuildInBoundsGEP2(cg->b, cg->i8, data, &off, 1, "");
}

/* ---- control flow ----------------------------------------------------- */

/* Reverse postorder of the blocks reachable from block 0 into order
 * (room for nblocks); returns its length or -1 with d filled.  Every
 * definition is emitted before its uses in this order. */
static int32_t
reverse_postorder(Cg *cg, int32_t *order)
{
    KlFunc *f = cg->f;
    int32_t n = f->nblocks, npost = 0, sp = 0;
    int32_t *stack = malloc(sizeof(int32_t) * 2 * (size_t)n);
    uint8_t *seen = calloc((size_t)n, 1);
    if (stack == NULL || seen == NULL) {
        free(stack);
        free(seen);
        kl_error(cg->d, KL_DIAG_NOMEM, 0, "out of memory");
        return -1;
    }
    stack[0] = 0;
    stack[1] = 0;
    sp = 1;
    seen[0] = 1;
    while (sp > 0) {
        int32_t b = stack[2 * (sp - 1)], *next = &stack[2 * (sp - 1) + 1];
        int32_t succ[2];
        int ns = kl_block_succs(f, b, succ);
        if (ns < 0) {
            free(stack);
            free(seen);
            return kl_internal_error(cg->d, "%s: block %d has no terminator",
                                     f->name, (int)b);
        }
        if (*next < ns) {
            int32_t s = succ[(*next)++];
            if (s < 0 || s >= n) {
                free(stack);
                free(seen);
                return kl_internal_error(cg->d, "%s: bad block target %d",
                                         f->name, (int)s);
            }
            if (!seen[s]) {
                seen[s] = 1;
                stack[2 * sp] = s;
                stack[2 * sp + 1] = 0;
                sp++;
            }
        }
        else {
            order[npost++] = b;
            sp--;
        }
    }
    for (int32_t i = 0; i < npost / 2; i++) {
        int32_t tmp = order[i];
        order[i] = order[npost - 1 - i];
        order[npost - 1 - i] = tmp;
    }
    free(stack);
    free(seen);
    return npost;
}

/* Does IR block b end in a raise (a cold path)? */
static int
ends_in_raise(const KlFunc *f, int32_t b)
{
    const KlBlock *blk = &f->blocks[b];
    return blk->insts.len > 0
           && f->insts[blk->insts.items[blk->insts.len - 1]].op
                  == KL_OP_raise;
}

/* ---- instructions ----------------------------------------------------- */

/* Operand k of instruction in, checked to have been emitted. */
#define OPND(k) (cg->vals[in->args[(k)]])
#define OPTYPE(k) (f->insts[in->args[(k)]].type)

/* Emits `call` instruction in: calls the callee with the shared status,
 * returns its status at once when nonzero, and yields its result. */
static LLVMValueRef
emit_call(Cg *cg, const KlInst *in, LLVMValueRef *args)
{
    int32_t ci = (int32_t)in->imm.i;
    KlFunc *callee = cg->m->funcs[ci];
    unsigned nh = has_result(callee) ? 2 : 1, na = nh + (unsigned)in->nargs;
    LLVMValueRef slot = NULL;
    args[0] = LLVMGetParam(cg->fn, 0);
    if (nh == 2) {
        slot = prologue_alloca(cg, reg_type(cg, callee->ret_type));
        args[1] = slot;
    }
    for (int32_t k = 0; k < in->nargs; k++) {
        args[nh + (unsigned)k] = cg->vals[in->args[k]];
    }
    LLVMValueRef st = LLVMBuildCall2(cg->b, cg->fntys[ci], cg->fns[ci], args,
                                     na, "");
    LLVMBasicBlockRef cont = branch_cold(
        cg, LLVMBuildICmp(cg->b, LLVMIntNE, st, LLVMConstNull(cg->i32), ""));
    LLVMBuildRet(cg->b, st);
    LLVMPositionBuilderAtEnd(cg->b, cont);
    if (slot == NULL) {
        return in->type->kind == KL_T_VOID ? NULL : LLVMConstNull(cg->unit);
    }
    return LLVMBuildLoad2(cg->b, reg_type(cg, callee->ret_type), slot, "");
}

/* Emits `raise` instruction in: fills the KlStatus and returns 1. */
static void
emit_raise(Cg *cg, const KlInst *in)
{
    KlFunc *f = cg->f;
    LLVMValueRef st = LLVMGetParam(cg->fn, 0);
    LLVMValueRef site_p = LLVMBuildStructGEP2(cg->b, cg->status, st, 0, "");
    LLVMBuildStore(cg->b, LLVMConstInt(cg->i32, (unsigned long long)in->imm.i,
                                       0), site_p);
    for (int32_t k = 0; k < in->nargs && k < 3; k++) {
        LLVMValueRef v = OPND(k);
        const KlType *t = OPTYPE(k);
        if (t->kind == KL_T_BOOL) {
            v = LLVMBuildZExt(cg->b, v, cg->i64, "");
        }
        else if (t->kind == KL_T_INT && t->bits != 64) {
            v = LLVMBuildIntCast2(cg->b, v, cg->i64, t->is_signed, "");
        }
        LLVMValueRef idx[3] = {LLVMConstInt(cg->i32, 0, 0),
                               LLVMConstInt(cg->i32, 2, 0),
                               LLVMConstInt(cg->i32, (unsigned long long)k,
                                            0)};
        LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->status, st, idx, 3,
                                               "");
        LLVMBuildStore(cg->b, v, p);
    }
    LLVMBuildRet(cg->b, LLVMConstInt(cg->i32, 1, 0));
}

/* ---- parallel loops --------------------------------------------------- */

/* Largest scratch array, in bytes: it lives on the stack. */
#define SCRATCH_MAX_BYTES (1 << 20)
/* Status slots of one pfor: pool.h's limit on chunks. */
#define PFOR_MAX_CHUNKS 256

/* Emits `scratch` instruction in: an alloca of imm.i elements in the
 * prologue (so a scratch inside a loop reuses one buffer) and the array
 * value {data, {imm.i}, {itemsize}}.  NULL with d filled on a malformed
 * instruction. */
static LLVMValueRef
emit_scratch(Cg *cg, const KlInst *in)
{
    const KlType *t = in->type;
    if (t->kind != KL_T_ARRAY || t->ndim != 1 || !kl_type_is_scalar(t->elem)
        || in->imm.i < 0
        || in->imm.i > SCRATCH_MAX_BYTES / kl_type_itemsize(t->elem)) {
        kl_internal_error(cg->d, "%s: bad scratch of %lld x %s", cg->f->name,
                          (long long)in->imm.i, t->name);
        return NULL;
    }
    LLVMTypeRef aty = LLVMArrayType2(mem_type(cg, t->elem),
                                     (uint64_t)in->imm.i);
    LLVMValueRef mem = prologue_alloca(cg, aty);
    LLVMSetAlignment(mem, 64);
    LLVMValueRef n = LLVMConstInt(cg->i64, (unsigned long long)in->imm.i, 0);
    LLVMValueRef size = LLVMConstInt(
        cg->i64, (unsigned long long)kl_type_itemsize(t->elem), 0);
    LLVMValueRef v = LLVMGetUndef(reg_type(cg, t));
    v = LLVMBuildInsertValue(cg->b, v, mem, 0, "");
    v = LLVMBuildInsertValue(cg->b, v, LLVMConstArray2(cg->i64, &n, 1), 1, "");
    return LLVMBuildInsertValue(cg->b, v, LLVMConstArray2(cg->i64, &size, 1),
                                2, "");
}

/* Checks that `pfor` instruction in matches its body function: at least
 * three int64 operands, a body taking (int64 x 3, the captured types)
 * and returning None.  0 or -1 with d filled. */
static int
check_pfor(Cg *cg, const KlInst *in)
{
    KlFunc *f = cg->f;
    if (in->imm.i < 0 || in->imm.i >= cg->m->nfuncs || in->nargs < 3) {
        return kl_internal_error(cg->d, "%s: bad pfor of function %lld",
                                 f->name, (long long)in->imm.i);
    }
    KlFunc *body = cg->m->funcs[in->imm.i];
    int ok = body->nparams == in->nargs && !has_result(body);
    for (int32_t k = 0; ok && k < in->nargs; k++) {
        const KlType *at = f->insts[in->args[k]].type;
        LLVMTypeRef ty = reg_type(cg, at);
        ok = (k >= 3 || ty == cg->i64)
             && ty == reg_type(cg, body->param_types[k]);
    }
    if (!ok) {
        return kl_internal_error(cg->d, "%s: pfor operands do not match "
                                 "body %s", f->name, body->name);
    }
    return 0;
}

/* The context struct a pfor passes to its trampoline: chunk size,
 * iteration count, status slots, then the captured values of in. */
static LLVMTypeRef
pfor_context_type(Cg *cg, const KlInst *in)
{
    unsigned n = (unsigned)in->nargs;
    LLVMTypeRef *fields = malloc(sizeof(LLVMTypeRef) * n);
    if (fields == NULL) {
        kl_error(cg->d, KL_DIAG_NOMEM, 0, "out of memory");
        return NULL;
    }
    fields[0] = cg->i64;
    fields[1] = cg->i64;
    fields[2] = cg->ptr;
    for (unsigned k = 3; k < n; k++) {
        LLVMTypeRef ty = reg_type(cg, cg->f->insts[in->args[k]].type);
        fields[k] = ty != NULL ? ty : cg->unit;
    }
    LLVMTypeRef t = LLVMStructTypeInContext(cg->ctx, fields, n, 0);
    free(fields);
    return t;
}

/* Emits `i32 tramp(ptr ctx, i64 chunk)` for body function bi and context
 * type ctxty (nfields fields): loads the context, computes the chunk's
 * [lo, hi) without overflow, calls the body with the chunk's status slot
 * and returns its status.  NULL with d filled. */
static LLVMValueRef
emit_trampoline(Cg *cg, int32_t bi, LLVMTypeRef ctxty, unsigned nfields)
{
    char name[48];
    snprintf(name, sizeof(name), "kl.pfor.%d", cg->npfor++);
    LLVMTypeRef params[2] = {cg->ptr, cg->i64};
    LLVMValueRef fn = LLVMAddFunction(
        cg->mod, name, LLVMFunctionType(cg->i32, params, 2, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    LLVMValueRef *args = malloc(sizeof(LLVMValueRef) * (nfields + 1));
    if (args == NULL) {
        kl_error(cg->d, KL_DIAG_NOMEM, 0, "out of memory");
        return NULL;
    }
    LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(cg->ctx, fn,
                                                              ""));
    LLVMValueRef ctx = LLVMGetParam(fn, 0), chunk = LLVMGetParam(fn, 1);
    LLVMValueRef field[3];
    for (unsigned k = 0; k < nfields; k++) {
        LLVMTypeRef ty = LLVMStructGetTypeAtIndex(ctxty, k);
        LLVMValueRef p = LLVMBuildStructGEP2(b, ctxty, ctx, k, "");
        LLVMValueRef x = LLVMBuildLoad2(b, ty, p, "");
        if (k < 3) {
            field[k] = x;
        }
        else {
            args[k + 1] = x;
        }
    }
    /* lo = chunk * cs < niters; hi = lo + min(cs, niters - lo) */
    LLVMValueRef lo = LLVMBuildNSWMul(b, chunk, field[0], "");
    LLVMValueRef left = LLVMBuildNSWSub(b, field[1], lo, "");
    LLVMValueRef fewer = LLVMBuildICmp(b, LLVMIntSLT, left, field[0], "");
    LLVMValueRef len = LLVMBuildSelect(b, fewer, left, field[0], "");
    args[0] = LLVMBuildInBoundsGEP2(b, cg->status, field[2], &chunk, 1, "");
    args[1] = chunk;
    args[2] = lo;
    args[3] = LLVMBuildNSWAdd(b, lo, len, "");
    LLVMValueRef st = LLVMBuildCall2(b, cg->fntys[bi], cg->fns[bi], args,
                                     nfields + 1, "");
    LLVMBuildRet(b, st);
    LLVMDisposeBuilder(b);
    free(args);
    return fn;
}

/* llvm.ptrmask(p, -align): p rounded down to a multiple of align, which
 * LLVM then knows p to be (passes/stream.c). */
static LLVMValueRef
emit_alignptr(Cg *cg, LLVMValueRef p, int64_t align)
{
    LLVMTypeRef tys[2] = {cg->ptr, cg->i64};
    unsigned id = LLVMLookupIntrinsicID("llvm.ptrmask", 12);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, tys, 2);
    LLVMValueRef args[2] = {p, LLVMConstInt(cg->i64, (uint64_t)-align, 1)};
    return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, args, 2,
                          "");
}

/* The declaration of the pool's `int64 kl_pool_run(fn, ctx, nchunks)`. */
static LLVMValueRef
pool_run_decl(Cg *cg, LLVMTypeRef *fnty)
{
    LLVMTypeRef params[3] = {cg->ptr, cg->ptr, cg->i64};
    *fnty = LLVMFunctionType(cg->i64, params, 3, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, "kl_pool_run");
    if (fn == NULL) {
        fn = LLVMAddFunction(cg->mod, "kl_pool_run", *fnty);
        add_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    }
    return fn;
}

/* Emits `pfor` instruction in: fills a context struct (prologue alloca),
 * runs the trampoline on the pool over %a chunks and, when a chunk
 * raised, copies the lowest failing chunk's status into this function's
 * KlStatus and returns 1.  The status slots (room for the pool's maximum
 * chunk count) are shared by the function's pfors, which run one after
 * another.  0 or -1 with d filled. */
static int
emit_pfor(Cg *cg, const KlInst *in)
{
    if (check_pfor(cg, in) < 0) {
        return -1;
    }
    LLVMTypeRef ctxty = pfor_context_type(cg, in);
    if (ctxty == NULL) {
        return -1;
    }
    LLVMValueRef tramp = emit_trampoline(cg, (int32_t)in->imm.i, ctxty,
                                         (unsigned)in->nargs);
    if (tramp == NULL) {
        return -1;
    }
    LLVMBuilderRef b = cg->b;
    if (cg->statuses == NULL) {
        cg->statuses = prologue_alloca(
            cg, LLVMArrayType2(cg->status, PFOR_MAX_CHUNKS));
        LLVMSetAlignment(cg->statuses, 8);
    }
    LLVMValueRef ctx = prologue_alloca(cg, ctxty);
    for (unsigned k = 0; k < (unsigned)in->nargs; k++) {
        /* fields: cs = %b, niters = %c, statuses, then the captured */
        LLVMValueRef x = k < 2 ? cg->vals[in->args[k + 1]]
                         : k == 2 ? cg->statuses : cg->vals[in->args[k]];
        if (x == NULL) {
            x = LLVMConstNull(cg->unit);
        }
        LLVMBuildStore(b, x, LLVMBuildStructGEP2(b, ctxty, ctx, k, ""));
    }
    LLVMTypeRef runty;
    LLVMValueRef run = pool_run_decl(cg, &runty);
    LLVMValueRef args[3] = {tramp, ctx, cg->vals[in->args[0]]};
    LLVMValueRef r = LLVMBuildCall2(b, runty, run, args, 3, "");
    LLVMBasicBlockRef cont = branch_cold(
        cg, LLVMBuildICmp(b, LLVMIntSGE, r, LLVMConstInt(cg->i64, 0, 0), ""));
    LLVMValueRef src = LLVMBuildInBoundsGEP2(b, cg->status, cg->statuses, &r,
                                             1, "");
    LLVMBuildMemCpy(b, LLVMGetParam(cg->fn, 0), 8, src, 8,
                    LLVMConstInt(cg->i64, sizeof(KlStatus), 0));
    LLVMBuildRet(b, LLVMConstInt(cg->i32, 1, 0));
    LLVMPositionBuilderAtEnd(b, cont);
    return 0;
}

static const LLVMIntPredicate int_preds[2][6] = {
    {LLVMIntULT, LLVMIntULE, LLVMIntEQ, LLVMIntNE, LLVMIntUGT, LLVMIntUGE},
    {LLVMIntSLT, LLVMIntSLE, LLVMIntEQ, LLVMIntNE, LLVMIntSGT, LLVMIntSGE},
};
static const LLVMRealPredicate real_preds[6] = {
    LLVMRealOLT, LLVMRealOLE, LLVMRealOEQ, LLVMRealUNE, LLVMRealOGT,
    LLVMRealOGE,
};

/* Emits instruction id of the current function into the current block;
 * 0 or -1 with d filled.  args is scratch room for nargs + 2 values. */
static int
emit_inst(Cg *cg, int32_t id, LLVMValueRef *args)
{
    KlFunc *f = cg->f;
    const KlInst *in = &f->insts[id];
    const KlType *T = in->type;
    LLVMBuilderRef b = cg->b;
    LLVMValueRef v = NULL;

    if (T == NULL) {
        return kl_internal_error(cg->d, "%s: %%%d has no type", f->name,
                                 (int)id);
    }
    for (int32_t k = 0; k < in->nargs; k++) {
        int32_t a = in->args[k];
        if (a < 0 || a >= f->ninsts || f->insts[a].type == NULL
            || (cg->vals[a] == NULL && f->insts[a].type->kind != KL_T_VOID)) {
            return kl_internal_error(cg->d,
                                     "%s: %%%d uses %%%d before its "
                                     "definition", f->name, (int)id, (int)a);
        }
    }
    switch (in->op) {
    case KL_OP_const:
        v = emit_const(cg, in);
        break;
    case KL_OP_arg: {
        unsigned nh = has_result(f) ? 2 : 1;
        v = LLVMGetParam(cg->fn, nh + (unsigned)in->imm.i);
        break;
    }
    case KL_OP_bparam:
        return 0;       /* phi created with the block */
    case KL_OP_undef:
        v = T->kind == KL_T_VOID ? NULL : LLVMConstNull(reg_type(cg, T));
        break;
    case KL_OP_add:
        v = is_float(T)
                ? fm_step(cg, in, LLVMBuildFAdd(b, OPND(0), OPND(1), ""))
                : LLVMBuildAdd(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_sub:
        v = is_float(T)
                ? fm_step(cg, in, LLVMBuildFSub(b, OPND(0), OPND(1), ""))
                : LLVMBuildSub(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_mul:
        v = is_float(T)
                ? fm_step(cg, in, LLVMBuildFMul(b, OPND(0), OPND(1), ""))
                : LLVMBuildMul(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_div:
        if (is_float(T)) {
            v = fm(cg, LLVMBuildFDiv(b, OPND(0), OPND(1), ""));
        }
        else {
            v = is_signed_int(T) ? LLVMBuildSDiv(b, OPND(0), OPND(1), "")
                                 : LLVMBuildUDiv(b, OPND(0), OPND(1), "");
        }
        break;
    case KL_OP_rem:
        if (is_float(T)) {
            v = fm(cg, LLVMBuildFRem(b, OPND(0), OPND(1), ""));
        }
        else {
            v = is_signed_int(T) ? LLVMBuildSRem(b, OPND(0), OPND(1), "")
                                 : LLVMBuildURem(b, OPND(0), OPND(1), "");
        }
        break;
    case KL_OP_neg:
        v = is_float(T) ? fm(cg, LLVMBuildFNeg(b, OPND(0), ""))
                        : LLVMBuildNeg(b, OPND(0), "");
        break;
    case KL_OP_and:
        v = LLVMBuildAnd(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_or:
        v = LLVMBuildOr(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_xor:
        v = LLVMBuildXor(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_shl:
        v = LLVMBuildShl(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_shr:
        v = is_signed_int(T) ? LLVMBuildAShr(b, OPND(0), OPND(1), "")
                             : LLVMBuildLShr(b, OPND(0), OPND(1), "");
        break;
    case KL_OP_cmp: {
        const KlType *ot = OPTYPE(0);
        if (in->aux < 0 || in->aux > KL_CMP_GE) {
            return kl_internal_error(cg->d, "%s: bad compare %d", f->name,
                                     (int)in->aux);
        }
        if (is_float(ot)) {
            v = fm(cg, LLVMBuildFCmp(b, real_preds[in->aux], OPND(0),
                                     OPND(1), ""));
        }
        else {
            v = LLVMBuildICmp(b, int_preds[is_signed_int(ot)][in->aux],
                              OPND(0), OPND(1), "");
        }
        break;
    }
    case KL_OP_select:
        v = LLVMBuildSelect(b, OPND(0), OPND(1), OPND(2), "");
        break;
    case KL_OP_cast:
        v = emit_cast(cg, OPND(0), OPTYPE(0), T);
        if (v == NULL) {
            return kl_internal_error(cg->d, "%s: no cast from %s to %s",
                                     f->name, OPTYPE(0)->name, T->name);
        }
        break;
    case KL_OP_bitcast:
        v = LLVMBuildBitCast(b, OPND(0), reg_type(cg, T), "");
        break;
    case KL_OP_math:
        if (in->aux < 0 || in->aux >= KL_MATH__COUNT || !is_float(T)
            || in->nargs < 1 || in->nargs > 2) {
            return kl_internal_error(cg->d, "%s: bad math op %%%d", f->name,
                                     (int)id);
        }
        for (int32_t k = 0; k < in->nargs; k++) {
            args[k] = OPND(k);
        }
        v = emit_math(cg, (KlMathFn)in->aux, T, args, (unsigned)in->nargs);
        break;
    case KL_OP_cmake:
        v = LLVMBuildInsertValue(b, LLVMGetUndef(reg_type(cg, T)), OPND(0), 0,
                                 "");
        v = LLVMBuildInsertValue(b, v, OPND(1), 1, "");
        break;
    case KL_OP_creal:
        v = LLVMBuildExtractValue(b, OPND(0), 0, "");
        break;
    case KL_OP_cimag:
        v = LLVMBuildExtractValue(b, OPND(0), 1, "");
        break;
    case KL_OP_dim:
        v = LLVMBuildExtractValue(b, OPND(0), 1, "");
        v = LLVMBuildExtractValue(b, v, (unsigned)in->imm.i, "");
        break;
    case KL_OP_elemptr: {
        const KlType *at = OPTYPE(0);
        if (at->kind != KL_T_ARRAY || in->nargs != at->ndim + 1) {
            return kl_internal_error(cg->d, "%s: bad elemptr %%%d", f->name,
                                     (int)id);
        }
        for (int32_t k = 1; k < in->nargs; k++) {
            args[k - 1] = OPND(k);
        }
        v = emit_elemptr(cg, OPND(0), at, args);
        break;
    }
    case KL_OP_misalign:
        /* frozen: passes/stream.c asks before the index is checked, so the
         * address may be past the array (poison, as an inbounds GEP) */
        v = LLVMBuildFreeze(
            b, LLVMBuildAnd(b, LLVMBuildPtrToInt(b, OPND(0), cg->i64, ""),
                            LLVMConstInt(cg->i64, (uint64_t)in->imm.i - 1,
                                         0), ""), "");
        break;
    case KL_OP_alignptr:
        v = emit_alignptr(cg, OPND(0), in->imm.i);
        break;
    case KL_OP_ptroff: {
        LLVMValueRef off = OPND(1);
        v = LLVMBuildGEP2(b, mem_type(cg, T->elem), OPND(0), &off, 1, "");
        break;
    }
    case KL_OP_load:
        v = LLVMBuildLoad2(b, mem_type(cg, T), OPND(0), "");
        LLVMSetAlignment(v, elem_align(T));
        kl_alias_tag(cg->alias, f, in->args[0], v);
        if (T->kind == KL_T_BOOL) {
            v = LLVMBuildICmp(b, LLVMIntNE, v, LLVMConstNull(cg->i8), "");
        }
        break;
    case KL_OP_store: {
        const KlType *vt = OPTYPE(1);
        LLVMValueRef x = OPND(1);
        if (vt->kind == KL_T_BOOL) {
            x = LLVMBuildZExt(b, x, cg->i8, "");
        }
        LLVMValueRef st = LLVMBuildStore(b, x, OPND(0));
        LLVMSetAlignment(st, elem_align(vt));
        kl_alias_tag(cg->alias, f, in->args[0], st);
        break;
    }
    case KL_OP_call:
        if (in->imm.i < 0 || in->imm.i >= cg->m->nfuncs) {
            return kl_internal_error(cg->d, "%s: call of function %lld",
                                     f->name, (long long)in->imm.i);
        }
        v = emit_call(cg, in, args);
        break;
    case KL_OP_scratch:
        v = emit_scratch(cg, in);
        if (v == NULL) {
            return -1;
        }
        break;
    case KL_OP_pfor:
        if (emit_pfor(cg, in) < 0) {
            return -1;
        }
        break;
    case KL_OP_jump: {
        int32_t t = (int32_t)in->imm.i;
        const KlBlock *tb = &f->blocks[t];
        LLVMBasicBlockRef here = LLVMGetInsertBlock(b);
        if (in->nargs != tb->nparams) {
            return kl_internal_error(cg->d, "%s: jump to block %d passes %d "
                                     "values for %d params", f->name, (int)t,
                                     (int)in->nargs, (int)tb->nparams);
        }
        for (int32_t k = 0; k < in->nargs; k++) {
            LLVMValueRef phi = cg->vals[tb->insts.items[k]];
            LLVMValueRef x = OPND(k);
            if (phi != NULL) {
                LLVMAddIncoming(phi, &x, &here, 1);
            }
        }
        LLVMBuildBr(b, cg->bbs[t]);
        break;
    }
    case KL_OP_branch: {
        int32_t t = (int32_t)in->imm.i, e = in->aux;
        LLVMValueRef br = LLVMBuildCondBr(b, OPND(0), cg->bbs[t], cg->bbs[e]);
        int rt = ends_in_raise(f, t), re = ends_in_raise(f, e);
        if (rt != re) {
            set_weights(cg, br, rt ? 1 : 2000, rt ? 2000 : 1);
        }
        break;
    }
    case KL_OP_ret:
        if (has_result(f)) {
            if (in->nargs != 1) {
                return kl_internal_error(cg->d, "%s: ret without a value",
                                         f->name);
            }
            LLVMBuildStore(b, OPND(0), LLVMGetParam(cg->fn, 1));
        }
        LLVMBuildRet(b, LLVMConstNull(cg->i32));
        break;
    case KL_OP_raise:
        emit_raise(cg, in);
        break;
    case KL_OP_unreachable:
        LLVMBuildUnreachable(b);
        break;
    default:
        return kl_internal_error(cg->d, "%s: op %s reached the LLVM backend",
                                 f->name, kl_op_name(in->op));
    }
    cg->vals[id] = v;
    return 0;
}

#undef OPND
#undef OPTYPE

/* ---- functions -------------------------------------------------------- */

/* Declares the internal LLVM function of every KlFunc. */
static int
declare_funcs(Cg *cg)
{
    for (int32_t i = 0; i < cg->m->nfuncs; i++) {
        KlFunc *f = cg->m->funcs[i];
        if (f->ret_type == NULL) {
            return kl_internal_error(cg->d, "%s: no return type", f->name);
        }
        unsigned nh = has_result(f) ? 2 : 1;
        unsigned np = nh + (unsigned)f->nparams;
        LLVMTypeRef *params = malloc(sizeof(LLVMTypeRef) * np);
        if (params == NULL) {
            return kl_error(cg->d, KL_DIAG_NOMEM, 0, "out of memory");
        }
        params[0] = cg->ptr;
        params[1] = cg->ptr;
        for (int32_t k = 0; k < f->nparams; k++) {
            LLVMTypeRef pt = reg_type(cg, f->param_types[k]);
            params[nh + (unsigned)k] = pt != NULL ? pt : cg->unit;
        }
        char name[160];
        snprintf(name, sizeof(name), "kl.%.150s", f->name);
        cg->fntys[i] = LLVMFunctionType(cg->i32, params, np, 0);
        free(params);
        cg->fns[i] = LLVMAddFunction(cg->mod, name, cg->fntys[i]);
        LLVMSetLinkage(cg->fns[i], LLVMInternalLinkage);
        add_attr(cg, cg->fns[i], LLVMAttributeFunctionIndex, "nounwind", 0);
    }
    return 0;
}

/* Creates the LLVM block (and the phis of the block params) of every
 * block in order[0..n). */
static void
create_blocks(Cg *cg, const int32_t *order, int32_t n)
{
    KlFunc *f = cg->f;
    for (int32_t i = 0; i < n; i++) {
        int32_t bi = order[i];
        const KlBlock *blk = &f->blocks[bi];
        cg->bbs[bi] = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "");
        LLVMPositionBuilderAtEnd(cg->b, cg->bbs[bi]);
        for (int32_t k = 0; k < blk->nparams; k++) {
            int32_t id = blk->insts.items[k];
            LLVMTypeRef ty = reg_type(cg, f->insts[id].type);
            cg->vals[id] = ty != NULL ? LLVMBuildPhi(cg->b, ty, "") : NULL;
        }
    }
}

/* Emits the body of KlFunc number fi into its declared LLVM function. */
static int
emit_func(Cg *cg, int32_t fi)
{
    KlFunc *f = cg->m->funcs[fi];
    int32_t maxargs = 0, n;
    int rc = -1;
    for (int32_t i = 0; i < f->ninsts; i++) {
        if (f->insts[i].nargs > maxargs) {
            maxargs = f->insts[i].nargs;
        }
    }
    cg->f = f;
    cg->fn = cg->fns[fi];
    cg->statuses = NULL;
    cg->vals = calloc((size_t)f->ninsts + 1, sizeof(LLVMValueRef));
    cg->bbs = calloc((size_t)f->nblocks + 1, sizeof(LLVMBasicBlockRef));
    int32_t *order = malloc(sizeof(int32_t) * ((size_t)f->nblocks + 1));
    LLVMValueRef *args = malloc(sizeof(LLVMValueRef) * ((size_t)maxargs + 2));
    if (cg->vals == NULL || cg->bbs == NULL || order == NULL || args == NULL) {
        kl_error(cg->d, KL_DIAG_NOMEM, 0, "out of memory");
        goto done;
    }
    if (f->nblocks == 0) {
        kl_internal_error(cg->d, "%s: no blocks", f->name);
        goto done;
    }
    n = reverse_postorder(cg, order);
    if (n < 0) {
        goto done;
    }
    cg->prologue = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "prologue");
    LLVMPositionBuilderAtEnd(cg->ab, cg->prologue);
    create_blocks(cg, order, n);
    for (int32_t i = 0; i < n; i++) {
        const KlBlock *blk = &f->blocks[order[i]];
        LLVMPositionBuilderAtEnd(cg->b, cg->bbs[order[i]]);
        for (int32_t k = 0; k < blk->insts.len; k++) {
            if (emit_inst(cg, blk->insts.items[k], args) < 0) {
                goto done;
            }
        }
    }
    LLVMPositionBuilderAtEnd(cg->ab, cg->prologue);
    LLVMBuildBr(cg->ab, cg->bbs[0]);
    rc = 0;
done:
    free(cg->vals);
    free(cg->bbs);
    free(order);
    free(args);
    cg->vals = NULL;
    cg->bbs = NULL;
    return rc;
}

/* ---- entry wrapper ---------------------------------------------------- */

/* Loads entry argument number i of type t from `void **args`. */
static LLVMValueRef
load_entry_arg(Cg *cg, LLVMValueRef argv, int32_t i, const KlType *t)
{
    LLVMBuilderRef b = cg->b;
    LLVMValueRef idx = LLVMConstInt(cg->i64, (unsigned long long)i, 0);
    LLVMValueRef slot = LLVMBuildInBoundsGEP2(b, cg->ptr, argv, &idx, 1, "");
    LLVMValueRef p = LLVMBuildLoad2(b, cg->ptr, slot, "");
    if (t->kind == KL_T_ARRAY) {
        /* KlArrayArg: {char *data, int64 *shape, int64 *strides} */
        LLVMValueRef v = LLVMGetUndef(reg_type(cg, t));
        for (unsigned field = 0; field < 3; field++) {
            LLVMValueRef fi = LLVMConstInt(cg->i64, field, 0);
            LLVMValueRef fp = LLVMBuildInBoundsGEP2(b, cg->ptr, p, &fi, 1, "");
            LLVMValueRef x = LLVMBuildLoad2(b, cg->ptr, fp, "");
            if (field == 0) {
                v = LLVMBuildInsertValue(b, v, x, 0, "");
                continue;
            }
            for (int k = 0; k < t->ndim; k++) {
                LLVMValueRef ki = LLVMConstInt(cg->i64, (unsigned)k, 0);
                LLVMValueRef ep = LLVMBuildInBoundsGEP2(b, cg->i64, x, &ki, 1,
                                                        "");
                LLVMValueRef e = LLVMBuildLoad2(b, cg->i64, ep, "");
                LLVMValueRef agg = LLVMBuildExtractValue(b, v, field, "");
                agg = LLVMBuildInsertValue(b, agg, e, (unsigned)k, "");
                v = LLVMBuildInsertValue(b, v, agg, field, "");
            }
        }
        return v;
    }
    if (!kl_type_is_scalar(t)) {
        return LLVMConstNull(reg_type(cg, t) ? reg_type(cg, t) : cg->unit);
    }
    LLVMValueRef v = LLVMBuildLoad2(b, mem_type(cg, t), p, "");
    if (t->kind == KL_T_BOOL) {
        v = LLVMBuildICmp(b, LLVMIntNE, v, LLVMConstNull(cg->i8), "");
    }
    return v;
}

/* Emits `i32 name(ptr args, ptr ret, ptr st)`: the exported KlEntry that
 * unpacks the arguments, calls funcs[0] and stores its result as C data. */
static int
emit_entry(Cg *cg, const char *name)
{
    KlFunc *f = cg->m->funcs[0];
    LLVMTypeRef params[3] = {cg->ptr, cg->ptr, cg->ptr};
    LLVMTypeRef fnty = LLVMFunctionType(cg->i32, params, 3, 0);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fnty);
    add_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    unsigned nh = has_result(f) ? 2 : 1;
    unsigned na = nh + (unsigned)f->nparams;
    LLVMValueRef *args = malloc(sizeof(LLVMValueRef) * na);
    if (args == NULL) {
        return kl_error(cg->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(cg->ctx, fn, "");
    LLVMPositionBuilderAtEnd(cg->b, entry);
    LLVMValueRef slot = NULL;
    args[0] = LLVMGetParam(fn, 2);
    if (nh == 2) {
        slot = LLVMBuildAlloca(cg->b, reg_type(cg, f->ret_type), "");
        args[1] = slot;
    }
    for (int32_t i = 0; i < f->nparams; i++) {
        args[nh + (unsigned)i] = load_entry_arg(cg, LLVMGetParam(fn, 0), i,
                                                f->param_types[i]);
    }
    LLVMValueRef st = LLVMBuildCall2(cg->b, cg->fntys[0], cg->fns[0], args,
                                     na, "");
    free(args);
    if (slot != NULL) {
        const KlType *rt = f->ret_type;
        LLVMValueRef ok = LLVMBuildICmp(cg->b, LLVMIntEQ, st,
                                        LLVMConstNull(cg->i32), "");
        LLVMBasicBlockRef bs = LLVMAppendBasicBlockInContext(cg->ctx, fn, "");
        LLVMBasicBlockRef be = LLVMAppendBasicBlockInContext(cg->ctx, fn, "");
        LLVMBuildCondBr(cg->b, ok, bs, be);
        LLVMPositionBuilderAtEnd(cg->b, bs);
        LLVMValueRef r = LLVMBuildLoad2(cg->b, reg_type(cg, rt), slot, "");
        if (rt->kind == KL_T_BOOL) {
            r = LLVMBuildZExt(cg->b, r, cg->i8, "");
        }
        if (kl_type_is_scalar(rt)) {
            LLVMBuildStore(cg->b, r, LLVMGetParam(fn, 1));
        }
        LLVMBuildBr(cg->b, be);
        LLVMPositionBuilderAtEnd(cg->b, be);
    }
    LLVMBuildRet(cg->b, st);
    return 0;
}

/* ---- module ----------------------------------------------------------- */

int
kl_llvm_codegen(KlModule *m, LLVMModuleRef mod, const char *entry_name,
                KlDiag *d)
{
    Cg cg;
    int rc = -1;
    memset(&cg, 0, sizeof(cg));
    if (m->nfuncs < 1) {
        return kl_internal_error(d, "LLVM backend: empty module");
    }
    cg.m = m;
    cg.d = d;
    cg.mod = mod;
    cg.ctx = LLVMGetModuleContext(mod);
    cg.i1 = LLVMInt1TypeInContext(cg.ctx);
    cg.i8 = LLVMInt8TypeInContext(cg.ctx);
    cg.i32 = LLVMInt32TypeInContext(cg.ctx);
    cg.i64 = LLVMInt64TypeInContext(cg.ctx);
    cg.f32 = LLVMFloatTypeInContext(cg.ctx);
    cg.f64 = LLVMDoubleTypeInContext(cg.ctx);
    cg.ptr = LLVMPointerTypeInContext(cg.ctx, 0);
    cg.unit = LLVMStructTypeInContext(cg.ctx, NULL, 0, 0);
    LLVMTypeRef sf[3] = {cg.i32, cg.i32, LLVMArrayType2(cg.i64, 3)};
    cg.status = LLVMStructTypeInContext(cg.ctx, sf, 3, 0);
    cg.prof_kind = LLVMGetMDKindIDInContext(cg.ctx, "prof", 4);
    cg.fns = calloc((size_t)m->nfuncs, sizeof(LLVMValueRef));
    cg.fntys = calloc((size_t)m->nfuncs, sizeof(LLVMTypeRef));
    cg.b = LLVMCreateBuilderInContext(cg.ctx);
    cg.ab = LLVMCreateBuilderInContext(cg.ctx);
    if (cg.fns == NULL || cg.fntys == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto done;
    }
    if (kl_alias_new(m, cg.ctx, &cg.alias, d) < 0
        || declare_funcs(&cg) < 0) {
        goto done;
    }
    for (int32_t i = 0; i < m->nfuncs; i++) {
        if (emit_func(&cg, i) < 0) {
            goto done;
        }
    }
    keep_vmath(&cg);
    rc = emit_entry(&cg, entry_name);
done:
    LLVMDisposeBuilder(cg.b);
    LLVMDisposeBuilder(cg.ab);
    free(cg.fns);
    free(cg.fntys);
    kl_alias_free(cg.alias);
    return rc;
}
