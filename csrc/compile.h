/* compile.h: the compile pipeline's entry points and the calling
 * convention of compiled code.
 *
 * Layers (each calls only the ones below it):
 *   dispatch.c  -> compile.c (driver) -> frontend/ -> passes/ -> backend/
 *
 * Calling convention of every compiled entry point (KlEntry):
 *   status = entry(args, ret, st)
 *   args[i]  points to argument i: a scalar stored as its C type (bool as
 *            uint8_t 0/1, int64_t, float, double, complex as {re, im}), or
 *            an array as a KlArrayArg;
 *   ret      points to at least 16 bytes receiving a scalar result (not
 *            written for None);
 *   status   0 on success; 1 when the kernel raised, with *st filled.
 */
#ifndef KILN_COMPILE_H
#define KILN_COMPILE_H

#include "ir/ir.h"

/* An array argument as compiled code sees it (shape and strides are the
 * ndarray's own: npy_intp is int64 on every supported platform). */
typedef struct KlArrayArg {
    char *data;             /* first element */
    const int64_t *shape;   /* ndim extents */
    const int64_t *strides; /* ndim byte strides */
} KlArrayArg;

/* What a raising kernel reports. */
typedef struct KlStatus {
    int32_t site;           /* index into the module's raise table */
    int32_t pad;            /* unused */
    int64_t payload[3];     /* the raise's int64 operands, for its message */
} KlStatus;

typedef int32_t (*KlEntry)(void **args, void *ret, KlStatus *st);

/* ---- frontend (frontend/build.c) ------------------------------------ */

/* Builds the Python-level IR of Python function `func` (a PyObject *
 * function) into module m; the caller sets param_types afterwards.
 * Globals are resolved now: constants become `const`, functions become
 * callees, math/builtins become py_builtin.  NULL with d filled for
 * anything outside kiln's language. */
KlFunc *kl_build_ir(KlModule *m, void *func, KlDiag *d);

/* The kiln scalar type of `obj` (a PyObject *) when it is a NumPy scalar
 * the frontend folds into a constant (numpy.float32(1.5), numpy.int8(3)),
 * else NULL. */
const KlType *kl_numpy_scalar_type(void *obj);

/* ---- passes --------------------------------------------------------- */

/* passes/infer.c: gives every instruction a type, from f->param_types and
 * (for calls) m->resolve_call; sets f->ret_type unless annotated. */
int kl_infer(KlFunc *f, KlDiag *d);
/* passes/bounds.c: on a typed function, sets the proof bits (imm.i) of
 * array py_getitem / py_setitem whose indices it proves in range. */
int kl_bounds(KlFunc *f, KlDiag *d);
/* passes/parallel.c: outlines each outermost prange loop of a typed
 * function into a new module function run by `pfor` (see ops.h). */
int kl_parallel(KlFunc *f, KlDiag *d);
/* passes/lower.c: replaces every Python-level op of a typed function by
 * primitive ops, making Python semantics explicit (promotion, floor
 * division, negative indices, bounds checks, error raises). */
int kl_lower(KlFunc *f, KlDiag *d);
/* passes/defer.c: on a lowered function of the CPU target, lets innermost
 * loops without side effects postpone deferrable float checks to their
 * exit (re-running the loop checked when one failed), so they vectorise. */
int kl_defer(KlFunc *f, KlDiag *d);
/* passes/stream.c: on a lowered module of the CPU target, finds the
 * innermost loops that could write an entry array with streaming
 * (non-temporal) stores; *streamed gets a bit per such array parameter.
 * With KlOptions.stream, rewrites those loops to do so.  map is
 * kl_array_params(m) (which neither this pass nor kl_jam changes). */
int kl_stream(KlModule *m, int32_t *const *map, uint64_t *streamed,
              KlDiag *d);
/* passes/jam.c: on a lowered module of the CPU target, runs groups of
 * KL_JAM iterations of prange bodies side by side where their inner loops
 * read the same elements (parallel.c makes chunks whole groups). */
#define KL_JAM 4
int kl_jam(KlModule *m, int32_t *const *map, KlDiag *d);

/* ---- CPU backend (backend/llvm/) ------------------------------------ */

/* Text views of one compilation, for inspect_llvm() / inspect_asm(). */
typedef struct KlLlvmText {
    char *llvm_ir;          /* optimised LLVM IR (malloc'ed) */
    char *asm_text;         /* host assembly (malloc'ed) */
} KlLlvmText;

/* Compiles a lowered module to host code through LLVM and the ORC JIT and
 * returns the entry point of m->funcs[0] (code lives until process exit).
 * When text is non-NULL it receives the optimised IR and assembly.
 * NULL with d filled on failure. */
KlEntry kl_llvm_compile(KlModule *m, KlLlvmText *text, KlDiag *d);

/* The machine code of one compilation as a relocatable object file. */
typedef struct KlObjCode {
    void *data;             /* the object file's bytes (malloc'ed) */
    size_t size;            /* their number */
} KlObjCode;

/* Like kl_llvm_compile, for code kept on disk (cache.c): the entry is the
 * exported symbol `entry_name`, which must name this code only (the same
 * name always means the same code); the host code is generated once as an
 * object file, whose bytes *obj receives, and that object is what runs.
 * An entry already linked in this process is reused.  NULL with d filled
 * (and *obj empty) on failure. */
KlEntry kl_llvm_compile_object(KlModule *m, const char *entry_name,
                               KlObjCode *obj, KlDiag *d);
/* Links object file data[0..size) made by kl_llvm_compile_object (in any
 * process of the same kiln build on the same host) and returns its entry
 * `entry_name`; an entry already linked in this process is reused.  The
 * bytes are copied.  NULL with d filled when LLVM refuses them. */
KlEntry kl_llvm_load_object(const char *entry_name, const void *data,
                            size_t size, KlDiag *d);
/* What host code depends on besides kiln itself: the LLVM version, the
 * host triple, CPU name and features, and the optimisation pipeline, as
 * one malloc'ed string (NULL when out of memory). */
char *kl_llvm_host_id(void);

/* ---- driver (compile.c) -------------------------------------------- */

/* One compiled specialisation, owned by the dispatcher's cache. */
typedef struct KlCompiled {
    KlEntry entry;          /* the code */
    const KlType *ret_type; /* type of what entry writes to *ret */
    KlRaiseSite *raises;    /* raise table (malloc'ed; msg strings and a
                               reference to each user exc_class owned) */
    int32_t nraises;
    char *ir_text;          /* lowered kiln IR, when text was requested */
    KlLlvmText text;        /* LLVM IR and assembly, when requested */
    uint64_t stream_arrays; /* CPU: bit k for each array parameter k that
                               a compilation with KlOptions.stream writes
                               with streaming stores (passes/stream.c) */
    /* Vulkan target (KlOptions.target 1; entry is NULL): */
    struct KlVkKernel *vk_serial;   /* a kernel without prange: the SPIR-V
                                       kernel of funcs[0] */
    struct KlVkKernel **vk_kernels; /* with prange: the kernels of the
                                       steps, then of the pfor bodies */
    int32_t nvk;
    struct KlVkSteps *vk_steps;     /* with prange: their runner */
} KlCompiled;

/* Compiles Python function `func` (PyObject *) for argument types
 * argtypes[0..nargs) and an optional return annotation (NULL: inferred).
 * The pipeline: frontend, infer, lower, verify, LLVM.  want_text keeps the
 * IR, LLVM IR and assembly texts.  For the Vulkan target (options.target
 * 1, kl_vk_init done), a module without `pfor` becomes one serial SPIR-V
 * kernel (vk_serial); otherwise the entry is split into steps at its
 * pfors (passes/steps.h), and each step and each pfor body becomes a
 * SPIR-V kernel (vk_kernels, run by vk_steps).  NULL with d filled on
 * failure.
 * Requires the GIL. */
KlCompiled *kl_compile(void *func, const KlType **argtypes, int32_t nargs,
                       const KlType *ret_annot, KlOptions options,
                       int want_text, KlDiag *d);
/* kl_compile for the CPU target (options.target 0) with host code kept
 * as an object file (kl_llvm_compile_object: entry `entry_name`, bytes
 * into *obj, malloc'ed; empty on failure).  Requires the GIL. */
KlCompiled *kl_compile_object(void *func, const KlType **argtypes,
                              int32_t nargs, const KlType *ret_annot,
                              KlOptions options, const char *entry_name,
                              KlObjCode *obj, KlDiag *d);
void kl_compiled_free(KlCompiled *c);

#endif /* KILN_COMPILE_H */
