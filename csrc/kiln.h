/* kiln.h: the few utilities every layer of the compiler shares.
 *
 * - KlArena: bump allocator owning all memory of one compilation; freed at
 *   once on success and on failure.
 * - KlVec: a growable array of int32 (value, instruction and block ids).
 * - KlText: a growing malloc'ed string for printed forms.
 * - KlDiag: a user-facing diagnostic (message + Python source line) that the
 *   CPython boundary turns into kiln.CompileError.
 *
 * Error convention: functions return 0 / a pointer on success and -1 / NULL
 * on failure, after filling the KlDiag they were given.  Nothing here aborts
 * on anything a user can cause.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define KL_MAX_NDIM 8

/* ---- arena ---------------------------------------------------------- */

typedef struct KlArenaChunk KlArenaChunk;

typedef struct KlArena {
    KlArenaChunk *head;     /* newest chunk; older ones follow via ->next */
} KlArena;

void kl_arena_init(KlArena *a);
/* Zeroed, 16-byte aligned memory living until kl_arena_free; NULL when the
 * system is out of memory. */
void *kl_arena_alloc(KlArena *a, size_t size);
/* Grows an arena array: returns a copy of old[0..old_n) in room for new_n. */
void *kl_arena_grow(KlArena *a, void *old, size_t elem, size_t old_n,
                    size_t new_n);
char *kl_arena_strdup(KlArena *a, const char *s);
char *kl_arena_printf(KlArena *a, const char *fmt, ...);
void kl_arena_free(KlArena *a);

/* ---- int32 vectors (arena-backed) ------------------------------------ */

typedef struct KlVec {
    int32_t *items;
    int32_t len;
    int32_t cap;
} KlVec;

/* Appends x; -1 when out of memory. */
int kl_vec_push(KlArena *a, KlVec *v, int32_t x);

/* ---- growing text (malloc-backed) ------------------------------------ */

/* Text built by kl_text_printf; s is malloc'ed (the caller frees it) and
 * NUL-terminated once anything was written; failed is set when memory ran
 * out (s is then incomplete). */
typedef struct KlText {
    char *s;
    size_t len, cap;
    int failed;
} KlText;

/* Appends printf-formatted text to t (nothing once t->failed). */
void kl_text_printf(KlText *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- diagnostics ----------------------------------------------------- */

/* What kind of failure a KlDiag describes; the boundary maps it to a Python
 * exception class. */
typedef enum KlDiagKind {
    KL_DIAG_NONE = 0,   /* no error recorded */
    KL_DIAG_COMPILE,    /* unsupported construct or type error: CompileError */
    KL_DIAG_TYPE,       /* bad argument at a call: TypeError */
    KL_DIAG_VALUE,      /* e.g. a read-only array written: ValueError */
    KL_DIAG_RUNTIME,    /* a device or driver failed: RuntimeError */
    KL_DIAG_NOMEM,      /* out of memory: MemoryError */
    KL_DIAG_INTERNAL,   /* broken invariant inside kiln: SystemError */
} KlDiagKind;

typedef struct KlDiag {
    KlDiagKind kind;    /* KL_DIAG_NONE until something fails */
    int line;           /* Python source line, 0 when unknown */
    char file[256];     /* Python source file, "" when unknown (the driver
                           fills it for the function that failed) */
    char msg[512];      /* message without the file:line: prefix */
} KlDiag;

/* Records the first error only (later ones are consequences); returns -1 so
 * callers can write `return kl_error(...)`. */
int kl_error(KlDiag *d, KlDiagKind kind, int line, const char *fmt, ...);
#define kl_compile_error(d, line, ...) \
    kl_error((d), KL_DIAG_COMPILE, (line), __VA_ARGS__)
#define kl_internal_error(d, ...) \
    kl_error((d), KL_DIAG_INTERNAL, 0, __VA_ARGS__)

#endif /* KILN_H */
