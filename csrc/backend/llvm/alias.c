/* alias.c: scoped alias metadata for noalias compilations (alias.h).
 *
 * Which entry array an access reaches comes from kl_array_params (ir.h).
 */
#include "alias.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct KlAlias {
    const KlModule *m;
    int32_t **param;            /* kl_array_params */
    LLVMValueRef *scope;        /* per entry parameter: {scope k} or NULL */
    LLVMValueRef *others;       /* per entry parameter: {other scopes} */
    unsigned scope_kind, noalias_kind;
};

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
    a->param = kl_array_params(m);
    a->scope = calloc((size_t)n, sizeof(LLVMValueRef));
    a->others = calloc((size_t)n, sizeof(LLVMValueRef));
    if (a->param == NULL || a->scope == NULL || a->others == NULL) {
        goto nomem;
    }
    for (int32_t k = 0; k < n; k++) {
        is_arr[k] = f0->param_types[k]->kind == KL_T_ARRAY;
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
    kl_array_params_free(a->m, a->param);
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
    while ((p->op == KL_OP_ptroff || p->op == KL_OP_alignptr)
           && p->nargs >= 1) {
        p = &f->insts[p->args[0]];      /* passes/stream.c's addresses */
    }
    if (fi == a->m->nfuncs || p->op != KL_OP_elemptr || p->nargs < 1) {
        return;
    }
    int32_t k = kl_array_of(a->m, a->param, fi, p->args[0]);
    if (k < 0 || a->scope[k] == NULL) {
        return;
    }
    LLVMSetMetadata(inst, a->scope_kind, a->scope[k]);
    LLVMSetMetadata(inst, a->noalias_kind, a->others[k]);
}
