/* decode.c: CPython 3.11 bytecode decoder (see decode.h).
 *
 * Everything specific to the 3.11 encoding lives here: 2-byte code units,
 * EXTENDED_ARG folding, the number of inline CACHE units after each
 * opcode, relative jump offsets (in code units, forward and backward
 * forms) and the varint exception table.  `co_code` is the de-optimised
 * copy of the bytecode, so only base opcodes appear in it.
 */
#include "decode.h"

#include <opcode.h>

static const char *const opcode_names[256] = {
    [CACHE] = "CACHE",
    [POP_TOP] = "POP_TOP",
    [PUSH_NULL] = "PUSH_NULL",
    [NOP] = "NOP",
    [UNARY_POSITIVE] = "UNARY_POSITIVE",
    [UNARY_NEGATIVE] = "UNARY_NEGATIVE",
    [UNARY_NOT] = "UNARY_NOT",
    [UNARY_INVERT] = "UNARY_INVERT",
    [BINARY_SUBSCR] = "BINARY_SUBSCR",
    [GET_LEN] = "GET_LEN",
    [MATCH_MAPPING] = "MATCH_MAPPING",
    [MATCH_SEQUENCE] = "MATCH_SEQUENCE",
    [MATCH_KEYS] = "MATCH_KEYS",
    [PUSH_EXC_INFO] = "PUSH_EXC_INFO",
    [CHECK_EXC_MATCH] = "CHECK_EXC_MATCH",
    [CHECK_EG_MATCH] = "CHECK_EG_MATCH",
    [WITH_EXCEPT_START] = "WITH_EXCEPT_START",
    [GET_AITER] = "GET_AITER",
    [GET_ANEXT] = "GET_ANEXT",
    [BEFORE_ASYNC_WITH] = "BEFORE_ASYNC_WITH",
    [BEFORE_WITH] = "BEFORE_WITH",
    [END_ASYNC_FOR] = "END_ASYNC_FOR",
    [STORE_SUBSCR] = "STORE_SUBSCR",
    [DELETE_SUBSCR] = "DELETE_SUBSCR",
    [GET_ITER] = "GET_ITER",
    [GET_YIELD_FROM_ITER] = "GET_YIELD_FROM_ITER",
    [PRINT_EXPR] = "PRINT_EXPR",
    [LOAD_BUILD_CLASS] = "LOAD_BUILD_CLASS",
    [LOAD_ASSERTION_ERROR] = "LOAD_ASSERTION_ERROR",
    [RETURN_GENERATOR] = "RETURN_GENERATOR",
    [LIST_TO_TUPLE] = "LIST_TO_TUPLE",
    [RETURN_VALUE] = "RETURN_VALUE",
    [IMPORT_STAR] = "IMPORT_STAR",
    [SETUP_ANNOTATIONS] = "SETUP_ANNOTATIONS",
    [YIELD_VALUE] = "YIELD_VALUE",
    [ASYNC_GEN_WRAP] = "ASYNC_GEN_WRAP",
    [PREP_RERAISE_STAR] = "PREP_RERAISE_STAR",
    [POP_EXCEPT] = "POP_EXCEPT",
    [STORE_NAME] = "STORE_NAME",
    [DELETE_NAME] = "DELETE_NAME",
    [UNPACK_SEQUENCE] = "UNPACK_SEQUENCE",
    [FOR_ITER] = "FOR_ITER",
    [UNPACK_EX] = "UNPACK_EX",
    [STORE_ATTR] = "STORE_ATTR",
    [DELETE_ATTR] = "DELETE_ATTR",
    [STORE_GLOBAL] = "STORE_GLOBAL",
    [DELETE_GLOBAL] = "DELETE_GLOBAL",
    [SWAP] = "SWAP",
    [LOAD_CONST] = "LOAD_CONST",
    [LOAD_NAME] = "LOAD_NAME",
    [BUILD_TUPLE] = "BUILD_TUPLE",
    [BUILD_LIST] = "BUILD_LIST",
    [BUILD_SET] = "BUILD_SET",
    [BUILD_MAP] = "BUILD_MAP",
    [LOAD_ATTR] = "LOAD_ATTR",
    [COMPARE_OP] = "COMPARE_OP",
    [IMPORT_NAME] = "IMPORT_NAME",
    [IMPORT_FROM] = "IMPORT_FROM",
    [JUMP_FORWARD] = "JUMP_FORWARD",
    [JUMP_IF_FALSE_OR_POP] = "JUMP_IF_FALSE_OR_POP",
    [JUMP_IF_TRUE_OR_POP] = "JUMP_IF_TRUE_OR_POP",
    [POP_JUMP_FORWARD_IF_FALSE] = "POP_JUMP_FORWARD_IF_FALSE",
    [POP_JUMP_FORWARD_IF_TRUE] = "POP_JUMP_FORWARD_IF_TRUE",
    [LOAD_GLOBAL] = "LOAD_GLOBAL",
    [IS_OP] = "IS_OP",
    [CONTAINS_OP] = "CONTAINS_OP",
    [RERAISE] = "RERAISE",
    [COPY] = "COPY",
    [BINARY_OP] = "BINARY_OP",
    [SEND] = "SEND",
    [LOAD_FAST] = "LOAD_FAST",
    [STORE_FAST] = "STORE_FAST",
    [DELETE_FAST] = "DELETE_FAST",
    [POP_JUMP_FORWARD_IF_NOT_NONE] = "POP_JUMP_FORWARD_IF_NOT_NONE",
    [POP_JUMP_FORWARD_IF_NONE] = "POP_JUMP_FORWARD_IF_NONE",
    [RAISE_VARARGS] = "RAISE_VARARGS",
    [GET_AWAITABLE] = "GET_AWAITABLE",
    [MAKE_FUNCTION] = "MAKE_FUNCTION",
    [BUILD_SLICE] = "BUILD_SLICE",
    [JUMP_BACKWARD_NO_INTERRUPT] = "JUMP_BACKWARD_NO_INTERRUPT",
    [MAKE_CELL] = "MAKE_CELL",
    [LOAD_CLOSURE] = "LOAD_CLOSURE",
    [LOAD_DEREF] = "LOAD_DEREF",
    [STORE_DEREF] = "STORE_DEREF",
    [DELETE_DEREF] = "DELETE_DEREF",
    [JUMP_BACKWARD] = "JUMP_BACKWARD",
    [CALL_FUNCTION_EX] = "CALL_FUNCTION_EX",
    [EXTENDED_ARG] = "EXTENDED_ARG",
    [LIST_APPEND] = "LIST_APPEND",
    [SET_ADD] = "SET_ADD",
    [MAP_ADD] = "MAP_ADD",
    [LOAD_CLASSDEREF] = "LOAD_CLASSDEREF",
    [COPY_FREE_VARS] = "COPY_FREE_VARS",
    [RESUME] = "RESUME",
    [MATCH_CLASS] = "MATCH_CLASS",
    [FORMAT_VALUE] = "FORMAT_VALUE",
    [BUILD_CONST_KEY_MAP] = "BUILD_CONST_KEY_MAP",
    [BUILD_STRING] = "BUILD_STRING",
    [LOAD_METHOD] = "LOAD_METHOD",
    [LIST_EXTEND] = "LIST_EXTEND",
    [SET_UPDATE] = "SET_UPDATE",
    [DICT_MERGE] = "DICT_MERGE",
    [DICT_UPDATE] = "DICT_UPDATE",
    [PRECALL] = "PRECALL",
    [CALL] = "CALL",
    [KW_NAMES] = "KW_NAMES",
    [POP_JUMP_BACKWARD_IF_NOT_NONE] = "POP_JUMP_BACKWARD_IF_NOT_NONE",
    [POP_JUMP_BACKWARD_IF_NONE] = "POP_JUMP_BACKWARD_IF_NONE",
    [POP_JUMP_BACKWARD_IF_FALSE] = "POP_JUMP_BACKWARD_IF_FALSE",
    [POP_JUMP_BACKWARD_IF_TRUE] = "POP_JUMP_BACKWARD_IF_TRUE",
};

const char *
kl_opcode_name(int op)
{
    if (op < 0 || op > 255 || opcode_names[op] == NULL) {
        return "?";
    }
    return opcode_names[op];
}

/* Inline CACHE units that follow opcode `op` in 3.11. */
static int
cache_units(int op)
{
    switch (op) {
    case BINARY_SUBSCR:   return 4;
    case STORE_SUBSCR:    return 1;
    case UNPACK_SEQUENCE: return 1;
    case STORE_ATTR:      return 4;
    case LOAD_ATTR:       return 4;
    case COMPARE_OP:      return 2;
    case LOAD_GLOBAL:     return 5;
    case BINARY_OP:       return 1;
    case LOAD_METHOD:     return 10;
    case PRECALL:         return 1;
    case CALL:            return 4;
    default:              return 0;
    }
}

/* Control flow of `op`; *dir is +1 for forward relative jumps, -1 for
 * backward ones, 0 for instructions without a target. */
static KlBcFlow
flow_of(int op, int *dir)
{
    *dir = 0;
    switch (op) {
    case JUMP_FORWARD:
        *dir = 1;
        return KL_FLOW_JUMP;
    case JUMP_BACKWARD:
    case JUMP_BACKWARD_NO_INTERRUPT:
        *dir = -1;
        return KL_FLOW_JUMP;
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_FORWARD_IF_NONE:
    case POP_JUMP_FORWARD_IF_NOT_NONE:
    case JUMP_IF_FALSE_OR_POP:
    case JUMP_IF_TRUE_OR_POP:
    case FOR_ITER:
    case SEND:
        *dir = 1;
        return KL_FLOW_COND;
    case POP_JUMP_BACKWARD_IF_FALSE:
    case POP_JUMP_BACKWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_NONE:
    case POP_JUMP_BACKWARD_IF_NOT_NONE:
        *dir = -1;
        return KL_FLOW_COND;
    case RETURN_VALUE:
    case RAISE_VARARGS:
    case RERAISE:
        return KL_FLOW_EXIT;
    default:
        return KL_FLOW_NEXT;
    }
}

/* First pass: instruction boundaries, arguments and raw target units.
 * Returns the instruction count or -1. */
static int32_t
scan(const unsigned char *code, int32_t nunits, PyObject *co, KlBcInst *out,
     KlDiag *d)
{
    int32_t n = 0, line = 0;
    int32_t u = 0;
    while (u < nunits) {
        int32_t start = u;
        int32_t arg = 0;
        int op = code[2 * u];
        while (op == EXTENDED_ARG) {
            arg = (arg << 8) | code[2 * u + 1];
            u++;
            if (u >= nunits) {
                return kl_internal_error(d, "bytecode ends in EXTENDED_ARG");
            }
            op = code[2 * u];
        }
        arg = (arg << 8) | code[2 * u + 1];
        int32_t unit = u;
        u += 1 + cache_units(op);
        int dir;
        KlBcInst *ins = &out[n++];
        ins->start = start;
        ins->unit = unit;
        ins->op = op;
        ins->arg = arg;
        ins->flow = flow_of(op, &dir);
        /* Relative jumps count from the unit after the caches. */
        ins->target = dir == 0 ? -1 : (dir > 0 ? u + arg : u - arg);
        int l = PyCode_Addr2Line((PyCodeObject *)co, unit * 2);
        if (l > 0) {
            line = l;
        }
        ins->line = line;
    }
    return n;
}

int
kl_decode(KlArena *a, PyObject *code, KlBytecode *out, KlDiag *d)
{
    out->insts = NULL;
    out->n = 0;
    PyObject *bytes = PyObject_GetAttrString(code, "co_code");
    if (bytes == NULL || !PyBytes_Check(bytes)) {
        Py_XDECREF(bytes);
        PyErr_Clear();
        return kl_internal_error(d, "code object without co_code");
    }
    Py_ssize_t len = PyBytes_GET_SIZE(bytes);
    if (len % 2 != 0 || len / 2 > INT32_MAX / 4) {
        Py_DECREF(bytes);
        return kl_internal_error(d, "malformed co_code");
    }
    int32_t nunits = (int32_t)(len / 2);
    KlBcInst *insts = kl_arena_alloc(a, sizeof(KlBcInst) * (nunits + 1));
    int32_t *index = kl_arena_alloc(a, sizeof(int32_t) * (nunits + 1));
    if (insts == NULL || index == NULL) {
        Py_DECREF(bytes);
        return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    int32_t n = scan((const unsigned char *)PyBytes_AS_STRING(bytes), nunits,
                     code, insts, d);
    Py_DECREF(bytes);
    if (n < 0) {
        return -1;
    }
    /* Map code units to instruction indices; a jump may land on the first
     * EXTENDED_ARG of an instruction, never inside one. */
    for (int32_t u = 0; u <= nunits; u++) {
        index[u] = -1;
    }
    for (int32_t i = 0; i < n; i++) {
        index[insts[i].start] = i;
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t t = insts[i].target;
        if (insts[i].flow == KL_FLOW_JUMP || insts[i].flow == KL_FLOW_COND) {
            if (t < 0 || t >= nunits || index[t] < 0) {
                return kl_internal_error(d, "jump to a bad offset in bytecode");
            }
            insts[i].target = index[t];
        }
    }
    out->insts = insts;
    out->n = n;
    return 0;
}

/* Reads one 6-bit-chunk varint of the 3.11 exception table at *p. */
static int
read_varint(const unsigned char *s, Py_ssize_t len, Py_ssize_t *p, int *out)
{
    int v = 0;
    for (;;) {
        if (*p >= len) {
            return -1;
        }
        unsigned char b = s[(*p)++];
        v = (v << 6) | (b & 63);
        if (!(b & 64)) {
            break;
        }
    }
    *out = v;
    return 0;
}

int
kl_decode_exc_table_line(PyObject *code, int firstline, KlDiag *d)
{
    PyObject *tab = PyObject_GetAttrString(code, "co_exceptiontable");
    if (tab == NULL || !PyBytes_Check(tab)) {
        Py_XDECREF(tab);
        PyErr_Clear();
        return kl_internal_error(d, "code object without co_exceptiontable");
    }
    Py_ssize_t len = PyBytes_GET_SIZE(tab);
    int line = 0;
    if (len > 0) {
        /* The first entry's start is the smallest covered unit. */
        Py_ssize_t p = 0;
        int start;
        line = firstline > 0 ? firstline : 1;
        if (read_varint((const unsigned char *)PyBytes_AS_STRING(tab), len,
                        &p, &start) == 0) {
            int l = PyCode_Addr2Line((PyCodeObject *)code, start * 2);
            if (l > 0) {
                line = l;
            }
        }
    }
    Py_DECREF(tab);
    return line;
}
