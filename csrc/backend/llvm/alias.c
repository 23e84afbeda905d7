/* alias.c: scoped alias metadata for noalias compilations (alias.h).
 *
 * Which entry array a function parameter always holds is found by a
 * small fixed point over the module's calls: a parameter is "array k"
 * only when every call (or pfor) that reaches it passes a value that is
 * itself array k; one caller passing anything else makes it unknown.
 */
#include "alias.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { UNSET = -1, UNKNOWN = -2 };

struct KlAlias {
    const KlModule *m;
    int32_t **param;            /* per function, per parameter: entry
                                   array index, UNSET or UNKNOWN */
    LLVMValueRef *scope;        /* per entry parameter: {scope k} or NULL */
    LLVMValueRef *others;       /* per entry parameter: {other scopes} */
    unsigned scope_kind, noalias_kind;
};

/* The entry array value v of function fi holds, or UNSET / UNKNOWN. */
static int32_t
value_array(const KlAlias *a, int32_t fi, int32_t v)
{
    const KlFunc *f = a->m->funcs[fi];
    const KlInst *in = &f->insts[v];
    if (in->op != KL_OP_arg || in->imm.i < 0 || in->imm.i >= f->nparams) {
        return UNKNOWN;
    }
    return a->param[fi][in->imm.i];
}

/* Merges what one call site passes (x) into parameter slot *p; 1 when
 * the slot changed. */
static int
merge(int32_t *p, int32_t x)
{
    int32_t y = *p == UNSET ? x : (x == UNSET || x == *p) ? *p : UNKNOWN;
    if (y == *p) {
        return 0;
    }
    *p = y;
    return 1;
}

/* One pass over the calls of function fi; 1 when a slot changed. */
static int
propagate(KlAlias *a, int32_t fi)
{
    const KlFunc *f = a->m->funcs[fi];
    int changed = 0;
    for (int32_t i = 0; i < f->ninsts; i++) {
        const KlInst *in = &f->insts[i];
        if (in->op != KL_OP_call && in->op != KL_OP_pfor) {
            continue;
        }
        int32_t ci = (int32_t)in->imm.i;
        if (ci < 0 || ci >= a->m->nfuncs) {
            continue;
        }
        const KlFunc *callee = a->m->funcs[ci];
        /* call: operand k is parameter k; pfor: operands from 3 on are
         * the body's parameters of the same number (chunk, lo, hi first) */
        int32_t first = in->op == KL_OP_pfor ? 3 : 0;
        for (int32_t k = first; k < in->nargs && k < callee->nparams; k++) {
            if (callee->param_types[k]->kind != KL_T_ARRAY) {
                continue;
            }
            changed |= merge(&a->param[ci][k],
                             value_array(a, fi, in->args[k]));
        }
    }
    return changed;
}

/* Builds the scope lists of the n entry parameters (arrays where
 * is_arr[k]). */
static void
build_scopes(KlAlias *a, LLVMContextRef ctx, const uint8_t *is_arr,
             int32_t n, LLVMMetadataRef *scopes)
{
    LLVMMetadataRef name = LLVMMDStringInContext2(ctx, "kiln.noalias", 12);
    LLVMMetadataRef domain = LLVMMDNodeInContext2(ctx, &name, 1);
    for (int32_t k = 0; k < n; k++) {
        if (!is_arr[k]) {
            continue;
        }
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "kiln.array.%d", (int)k);
        LLVMMetadataRef ops[2] = {
            LLVMMDStringInContext2(ctx, buf, (size_t)len), domain};
        scopes[k] = LLVMMDNodeInContext2(ctx, ops, 2);
    }
    LLVMMetadataRef *list = scopes + n;
    for (int32_t k = 0; k < n; k++) {
        if (!is_arr[k]) {
            continue;
        }
        size_t no = 0;
        for (int32_t t = 0; t < n; t++) {
            if (is_arr[t] && t != k) {
                list[no++] = scopes[t];
            }
        }
        a->scope[k] = LLVMMetadataAsValue(
            ctx, LLVMMDNodeInContext2(ctx, &scopes[k], 1));
        a->others[k] = LLVMMetadataAsValue(
            ctx, LLVMMDNodeInContext2(ctx, list, no));
    }
}

int
kl_alias_new(KlModule *m, LLVMContextRef ctx, KlAlias **out, KlDiag *d)
{
    *out = NULL;
    const KlFunc *f0 = m->funcs[0];
    int32_t n = f0->nparams, narr = 0;
    for (int32_t k = 0; k < n; k++) {
        narr += f0->param_types[k]->kind == KL_T_ARRAY;
    }
    if (!m->options.noalias || narr < 2) {
        return 0;
    }
    KlAlias *a = calloc(1, sizeof(KlAlias));
    uint8_t *is_arr = calloc((size_t)n, 1);
    LLVMMetadataRef *scopes = calloc(2 * (size_t)n, sizeof(LLVMMetadataRef));
    if (a == NULL || is_arr == NULL || scopes == NULL) {
        goto nomem;
    }
    a->m = m;
    a->param = calloc((size_t)m->nfuncs, sizeof(int32_t *));
    a->scope = calloc((size_t)n, sizeof(LLVMValueRef));
    a->others = calloc((size_t)n, sizeof(LLVMValueRef));
    if (a->param == NULL || a->scope == NULL || a->others == NULL) {
        goto nomem;
    }
    for (int32_t fi = 0; fi < m->nfuncs; fi++) {
        int32_t np = m->funcs[fi]->nparams;
        a->param[fi] = malloc(sizeof(int32_t) * (size_t)(np + 1));
        if (a->param[fi] == NULL) {
            goto nomem;
        }
        for (int32_t k = 0; k < np; k++) {
            a->param[fi][k] = UNSET;
        }
    }
    for (int32_t k = 0; k < n; k++) {
        is_arr[k] = f0->param_types[k]->kind == KL_T_ARRAY;
        a->param[0][k] = is_arr[k] ? k : UNKNOWN;
    }
    /* the slots only rise (UNSET -> k -> UNKNOWN): this terminates */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t fi = 0; fi < m->nfuncs; fi++) {
            changed |= propagate(a, fi);
        }
    }
    build_scopes(a, ctx, is_arr, n, scopes);
    a->scope_kind = LLVMGetMDKindIDInContext(ctx, "alias.scope", 11);
    a->noalias_kind = LLVMGetMDKindIDInContext(ctx, "noalias", 7);
    free(is_arr);
    free(scopes);
    *out = a;
    return 0;
nomem:
    free(is_arr);
    free(scopes);
    kl_alias_free(a);
    return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
}

void
kl_alias_free(KlAlias *a)
{
    if (a == NULL) {
        return;
    }
    for (int32_t fi = 0; a->param != NULL && fi < a->m->nfuncs; fi++) {
        free(a->param[fi]);
    }
    free(a->param);
    free(a->scope);
    free(a->others);
    free(a);
}

void
kl_alias_tag(const KlAlias *a, const KlFunc *f, int32_t addr,
             LLVMValueRef inst)
{
    if (a == NULL || inst == NULL || !LLVMIsAInstruction(inst)) {
        return;
    }
    int32_t fi = 0;
    while (fi < a->m->nfuncs && a->m->funcs[fi] != f) {
        fi++;
    }
    const KlInst *p = &f->insts[addr];
    if (fi == a->m->nfuncs || p->op != KL_OP_elemptr || p->nargs < 1) {
        return;
    }
    int32_t k = value_array(a, fi, p->args[0]);
    if (k < 0 || a->scope[k] == NULL) {
        return;
    }
    LLVMSetMetadata(inst, a->scope_kind, a->scope[k]);
    LLVMSetMetadata(inst, a->noalias_kind, a->others[k]);
}
