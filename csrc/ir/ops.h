/* ops.h: every kiln IR opcode, defined once.
 *
 * X(name, nargs, flags, doc)
 *   name   the opcode: KL_OP_<name> in the enum, "name" in the printer
 *   nargs  operand count, or -1 when variable (see doc)
 *   flags  KL_PURE (no side effects, may be removed when unused or
 *          hoisted), KL_COMM (commutative), KL_TERM (ends a block),
 *          KL_PYLEVEL (Python-level: exists only between the frontend and
 *          passes/lower.c; backends never see it)
 *
 * Notation in docs: %a..%c are operands in order; `imm` and `aux` are the
 * instruction's immediate fields (ir.h).  "T" is the instruction's result
 * type.  Unless stated, primitive operands all have type T exactly (lower
 * inserts the casts).
 */
#ifndef KL_OP
#error "define KL_OP(name, nargs, flags, doc) before including ir/ops.h"
#endif

/* ---- values without operands (both levels) ------------------------- */
KL_OP(const, 0, KL_PURE,
      "constant: imm.i (bool, int), imm.f (float), imm.c (complex), or "
      "nothing for None; T is its type (Python literals are weak)")
KL_OP(arg, 0, KL_PURE,
      "function parameter number imm.i; only in the entry block")
KL_OP(bparam, 0, KL_PURE,
      "block parameter; the block's params come first in the block, in "
      "order, and receive the operands of every `jump` to the block")
KL_OP(undef, 0, KL_PURE,
      "a local read before assignment on some path; any value of T")

/* ---- Python-level ops: frontend output, typed by infer, gone after
 *      lower.  Operands may have any type; infer checks them. ---------- */
KL_OP(py_binop, 2, KL_PYLEVEL,
      "%a <aux: KlBinop> %b with Python/NumPy semantics (inplace forms too); "
      "imm.i = 1 marks the advance of a range counter (%a + step %b), "
      "which saturates at the type's limits instead of wrapping; imm.i = 2 "
      "a float reduction step of a prange loop (passes/parallel.c)")
KL_OP(py_unop, 1, KL_PYLEVEL, "<aux: KlUnop> %a: -x, +x, ~x, not x")
KL_OP(py_cmp, 2, KL_PYLEVEL,
      "%a <aux: KlCmp> %b: one comparison of a chain; bool result")
KL_OP(py_truth, 1, KL_PYLEVEL, "bool(%a): truth value for branches")
KL_OP(py_getitem, -1, KL_PYLEVEL,
      "%a[%b, %c, ...]: array element (one index per dimension) or item "
      "of a shape tuple; imm.i bit k set (by passes/bounds.c) when index k "
      "is proven to lie in [0, extent k): no wrap, no check")
KL_OP(py_setitem, -1, KL_PYLEVEL,
      "%a[%c, %d, ...] = %b: store into an array element; imm.i as for "
      "py_getitem")
KL_OP(py_getattr, 1, KL_PYLEVEL,
      "%a.<aux: KlAttr>: .shape .size .ndim .real .imag")
KL_OP(py_call, -1, KL_PYLEVEL,
      "call Python function number imm.i of the function's callee table "
      "(a @kiln.jit function or a plain Python function) with all operands; "
      "infer stores the specialisation's module function index in aux")
KL_OP(py_builtin, -1, KL_PYLEVEL,
      "call builtin <aux: KlBuiltin> (abs, min, math.sqrt, ...) with all "
      "operands; int() with imm.i = 1 converts a range() argument, which "
      "must be an integer")
KL_OP(py_range_test, 3, KL_PYLEVEL,
      "loop test of `for _ in range(start, %b, %c)`: counter %a still "
      "before stop %b for step %c (step > 0: a < b; step < 0: a > b; "
      "step == 0 raised ValueError at loop entry); bool result")

/* ---- primitive ops: output of lower, input of backends ------------- */
KL_OP(add, 2, KL_PURE | KL_COMM,
      "%a + %b: int (wrapping) or float; for floats, imm.i = 1 marks a "
      "prange reduction step, which may be reassociated with the other "
      "steps of its accumulator within one chunk (so it vectorises)")
KL_OP(sub, 2, KL_PURE, "%a - %b: int (wrapping) or float; imm.i as add")
KL_OP(mul, 2, KL_PURE | KL_COMM, "%a * %b: int (wrapping) or float; imm.i "
      "as add")
KL_OP(div, 2, KL_PURE,
      "%a / %b: float IEEE division; int: C truncating division, signed or "
      "unsigned by T (lower guarantees %b != 0 and no INT_MIN / -1)")
KL_OP(rem, 2, KL_PURE,
      "float: C fmod; int: C truncating remainder, same guarantees as div")
KL_OP(neg, 1, KL_PURE, "-%a: int (wrapping) or float")
KL_OP(and, 2, KL_PURE | KL_COMM, "%a & %b: int or bool")
KL_OP(or, 2, KL_PURE | KL_COMM, "%a | %b: int or bool")
KL_OP(xor, 2, KL_PURE | KL_COMM, "%a ^ %b: int or bool")
KL_OP(shl, 2, KL_PURE,
      "%a << %b: int; lower guarantees 0 <= %b < bits")
KL_OP(shr, 2, KL_PURE,
      "%a >> %b: int; arithmetic for signed T, logical for unsigned; "
      "lower guarantees 0 <= %b < bits")
KL_OP(cmp, 2, KL_PURE,
      "%a <aux: KlCmp> %b -> bool; %a and %b share one int, bool or float "
      "type; float compares are ordered except ne (true on NaN)")
KL_OP(select, 3, KL_PURE, "%a ? %b : %c; %a is bool")
KL_OP(cast, 1, KL_PURE,
      "convert scalar %a to T: int<->int (truncate or extend by the source "
      "signedness), int<->float, float<->float, bool->int/float (0/1), "
      "int/float->bool (x != 0); float->int truncates and requires a value "
      "in range (lower checks)")
KL_OP(bitcast, 1, KL_PURE,
      "the bits of scalar %a reinterpreted as T, an int or float type of "
      "the same width (float64 <-> int64 in kiln's own math)")
KL_OP(math, -1, KL_PURE,
      "libm function <aux: KlMathFn> of its operands (all of type T); the "
      "same libm CPython calls, so results are bit-identical")
KL_OP(cmake, 2, KL_PURE, "complex T from real part %a and imaginary %b")
KL_OP(creal, 1, KL_PURE, "real part of complex %a")
KL_OP(cimag, 1, KL_PURE, "imaginary part of complex %a")
KL_OP(dim, 1, KL_PURE, "extent of array %a along axis imm.i; int64")
KL_OP(elemptr, -1, KL_PURE,
      "address of element %b, %c, ... (int64 indices, one per dimension, "
      "already checked and non-negative) of array %a; T is ptr(elem)")
KL_OP(load, 1, 0, "read the element at address %a; T is its type")
KL_OP(store, 2, 0, "write %b to the element at address %a; T is void")
KL_OP(misalign, 1, KL_PURE,
      "address %a modulo imm.i bytes (a power of two); int64.  %a may "
      "point outside its array (an unchecked index): some value then")
KL_OP(alignptr, 1, KL_PURE,
      "address %a rounded down to a multiple of imm.i bytes (a power of "
      "two); T is %a's type.  Made by passes/stream.c only where %a is "
      "already such a multiple whenever the result is used, so the "
      "backend learns the alignment")
KL_OP(ptroff, 2, KL_PURE,
      "the address %b (int64) elements after address %a; T is %a's type")
KL_OP(call, -1, 0,
      "call module function number imm.i with all operands; when the callee "
      "raises, the caller returns its error status at once")

/* ---- parallel loops (made by passes/parallel.c; both levels) --------- */
KL_OP(scratch, 0, 0,
      "a fresh 1-d C-contiguous array of imm.i elements (T is its array "
      "type), living until the function returns; contents undefined")
KL_OP(pfor, -1, 0,
      "run module function imm.i (the outlined body of a prange loop) once "
      "per chunk c in [0, %a) on the thread pool, as body(c, lo, hi, "
      "%d, %e, ...) with lo = c * %b and hi = min(lo + %b, %c): chunk count, "
      "chunk size, iteration count, then the captured values; when chunks "
      "raise, the one with the lowest c is re-raised; T is void")

/* ---- terminators (both levels) -------------------------------------- */
KL_OP(jump, -1, KL_TERM,
      "go to block imm.i, passing all operands to its block params")
KL_OP(branch, 1, KL_TERM,
      "if %a go to block imm.i else to block aux; neither target takes "
      "block params (frontend inserts a block when needed); primitive "
      "level: %a is bool")
KL_OP(ret, -1, KL_TERM, "return %a, or None with no operand")
KL_OP(raise, -1, KL_TERM,
      "raise the exception of raise site imm.i (module raise table) with "
      "up to 3 int64 operands as message payload; aux 1 marks a deferrable "
      "raise: its check guards float arithmetic only, so code after the "
      "check stays well defined when it fails (passes/defer.c)")
KL_OP(unreachable, 0, KL_TERM, "control never gets here")
