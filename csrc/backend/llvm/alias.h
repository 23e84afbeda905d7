/* alias.h: scoped alias metadata for a compilation with
 * KlOptions.noalias, telling LLVM that distinct array arguments of the
 * entry function share no memory (the dispatcher checked it at the call).
 *
 * Each array parameter k of m->funcs[0] gets one scope; an element access
 * whose array is known to be entry array k (directly, or through the
 * parameters of functions every caller passes that same array to, `call`
 * and `pfor` alike) gets !alias.scope {k} and !noalias {every other}.
 * Accesses to anything else (scratch arrays, arrays chosen at run time)
 * get no metadata and may alias everything.
 */
#ifndef KILN_BACKEND_LLVM_ALIAS_H
#define KILN_BACKEND_LLVM_ALIAS_H

#include <llvm-c/Core.h>

#include "../../compile.h"

typedef struct KlAlias KlAlias;

/* The scopes of module m in context ctx; *out is NULL (and 0 returned)
 * when m is not compiled noalias or has fewer than two array arguments.
 * -1 with d filled when out of memory. */
int kl_alias_new(KlModule *m, LLVMContextRef ctx, KlAlias **out,
                 KlDiag *d);
void kl_alias_free(KlAlias *a);

/* Tags LLVM load or store `inst` of function f, whose address operand is
 * instruction `addr` of f (an elemptr), with its array's scopes.  Does
 * nothing when a is NULL or the array is not a known entry array. */
void kl_alias_tag(const KlAlias *a, const KlFunc *f, int32_t addr,
                  LLVMValueRef inst);

#endif /* KILN_BACKEND_LLVM_ALIAS_H */
