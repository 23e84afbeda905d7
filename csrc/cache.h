/* cache.h: compiled code kept on disk across processes (`cache=True`).
 *
 * An entry is keyed by everything its machine code depends on: the
 * function's code object, the values of the globals and module attributes
 * it can reach (numbers folded into the code, callee functions with their
 * own code and globals, recursively; builtins and exception classes by
 * name), the argument and return types, the options, kiln's build, the
 * Python version, the LLVM version and the host CPU.  The key is stored in
 * full in the entry and compared byte for byte on load: a file that does
 * not match, is truncated or fails its checksum is a miss, never an error.
 * Only the CPU target is cached (see docs/language.md).
 *
 * Where: $KILN_CACHE_DIR when set; else __pycache__/kiln/ beside the
 * function's source file when that directory can be written; else
 * $XDG_CACHE_HOME/kiln or ~/.cache/kiln.  Entries are written to a
 * temporary file and renamed into place, so concurrent processes only
 * ever see whole entries.
 */
#ifndef KILN_CACHE_H
#define KILN_CACHE_H

#include "compile.h"

/* The CPU code of Python function `func` for argtypes[0..nargs) (as
 * kl_compile without texts): loaded from the disk cache when an entry with
 * exactly this key is there (*hit = 1), else compiled and stored (*hit =
 * 0).  When func cannot be keyed (it reaches something the key cannot
 * describe) or the cache directory is unusable, it is simply compiled.
 * NULL with d filled when compilation fails; problems of the cache itself
 * are never errors.  Requires the GIL and options.target 0. */
KlCompiled *kl_cache_compile(void *func, const KlType **argtypes,
                             int32_t nargs, const KlType *ret_annot,
                             KlOptions options, int *hit, KlDiag *d);

#endif /* KILN_CACHE_H */
