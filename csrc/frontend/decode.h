/* decode.h: CPython 3.11 bytecode as a flat list of instructions.
 *
 * The decoder is the only part of kiln that knows the 3.11 encoding: code
 * units, EXTENDED_ARG prefixes, inline CACHE entries, relative jump
 * offsets and the exception table format.  It hands the builder one
 * KlBcInst per real instruction, with the full argument, the source line
 * and jump targets already resolved to instruction indices.  Opcode
 * numbers are CPython's public ones from <opcode.h>.
 */
#ifndef KILN_FRONTEND_DECODE_H
#define KILN_FRONTEND_DECODE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../kiln.h"

/* How an instruction passes control on. */
typedef enum KlBcFlow {
    KL_FLOW_NEXT,       /* falls through to the next instruction */
    KL_FLOW_JUMP,       /* always goes to `target` */
    KL_FLOW_COND,       /* goes to `target` or falls through */
    KL_FLOW_EXIT,       /* leaves the function (return, raise, reraise) */
} KlBcFlow;

typedef struct KlBcInst {
    int32_t start;      /* code unit of the first prefix (EXTENDED_ARG) */
    int32_t unit;       /* code unit of the opcode itself */
    int32_t op;         /* opcode number (<opcode.h>) */
    int32_t arg;        /* argument with EXTENDED_ARG prefixes folded in */
    int32_t line;       /* source line (last known line when unlisted) */
    int32_t target;     /* instruction index jumped to, -1 if none */
    KlBcFlow flow;      /* control flow kind */
} KlBcInst;

typedef struct KlBytecode {
    KlBcInst *insts;    /* instructions in code order (arena memory) */
    int32_t n;          /* number of instructions */
} KlBytecode;

/* Decodes the de-optimised `co_code` of code object `code` into out
 * (memory from arena a).  Requires the GIL.  0, or -1 with d filled
 * (malformed code: an internal error; never a crash). */
int kl_decode(KlArena *a, PyObject *code, KlBytecode *out, KlDiag *d);

/* Source line of the first instruction covered by an exception handler
 * of `code`, 0 when its exception table is empty, -1 with d filled on
 * failure. */
int kl_decode_exc_table_line(PyObject *code, int firstline, KlDiag *d);

/* Printable name of an opcode ("BUILD_LIST"), "?" when unknown. */
const char *kl_opcode_name(int op);

#endif /* KILN_FRONTEND_DECODE_H */
