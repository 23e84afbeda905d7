/* llvm.h: private interface between the two halves of the CPU backend.
 *
 * codegen.c translates a lowered kiln module into an LLVM module; jit.c owns
 * the process-wide target machine and ORC LLJIT, optimises the module and
 * turns it into callable code (kl_llvm_compile, declared in compile.h).
 *
 * Calling convention of the LLVM functions codegen.c emits:
 *   - one internal function per KlFunc, named "kl.<Python name>":
 *       i32 @f(ptr %st, [ptr %ret,] <params...>)
 *     %st is the caller's KlStatus; %ret (present unless the function
 *     returns None) receives the result in its register type; parameters
 *     are passed by value in their register types (see below).  The i32 is
 *     0 on success and 1 after a raise has filled *%st.
 *   - one exported entry wrapper with the KlEntry ABI of compile.h, named by
 *     the caller, that unpacks `void **args`, calls funcs[0] and stores the
 *     result to `ret` in its C representation.
 *   - one internal trampoline per `pfor`, named "kl.pfor.<n>", with the
 *     pool's KlChunkFn ABI: i32 @t(ptr %ctx, i64 %chunk).  %ctx points to
 *     {i64 chunk size, i64 iteration count, ptr status slots, captured
 *     values...} in the caller's frame; the trampoline calls the body with
 *     the chunk's own KlStatus slot, and the caller copies the lowest
 *     failing chunk's slot into its own status.  Runtime helpers (today
 *     kl_pool_run) are external declarations jit.c defines by address.
 *
 * Register types: bool i1, ints iN, floats float/double, complex {fK, fK},
 * None `{}`, element pointers ptr, arrays {ptr data, [n x i64] shape,
 * [n x i64] byte strides}.  In memory bool is i8 and complex is {fK, fK}
 * (the C layout of {re, im}).
 */
#ifndef KILN_BACKEND_LLVM_H
#define KILN_BACKEND_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Target.h>

#include "../../compile.h"

/* Fills `mod` (empty, in its own context, with triple and data layout set)
 * with the functions of lowered module m and the entry wrapper named
 * `entry_name`.  Requires every function of m to contain primitive ops only
 * with all types set.  0, or -1 with d filled. */
int kl_llvm_codegen(KlModule *m, LLVMModuleRef mod, const char *entry_name,
                    KlDiag *d);

/* The libm functions vmath.c has vector variants of. */
typedef enum KlVmath {
    KL_VMATH_EXP, KL_VMATH_LOG, KL_VMATH__COUNT
} KlVmath;

/* The width N of vmath.c's vector variant kl_v<fn>N of kl_<fn> (libm's
 * float64 exp or log) that kernels may call, or 0 when they may not; both
 * are defined in the JIT on the first call for fn (jit.c; requires the JIT
 * lock, held while codegen runs). */
int kl_llvm_vmath_width(KlVmath fn);

/* vmath.c: adds the module of kl_<fn> and its vector variant to jit (host
 * triple and data layout), tests the variant against libm and switches it
 * on when it passes; returns its width, or 0 when it must not be used. */
int kl_vmath_init(LLVMOrcLLJITRef jit, const char *triple,
                  LLVMTargetDataRef layout, KlVmath fn);

#endif /* KILN_BACKEND_LLVM_H */
