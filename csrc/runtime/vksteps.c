/* vksteps.c: runs a Vulkan entry split into steps (vkexec.h,
 * passes/steps.h): each step is a single-invocation dispatch, each pfor
 * between them a parallel one; what crosses a pfor stays in the step
 * state, a few host-memory cells bound to every step like any array.
 */
#include <stdlib.h>
#include <string.h>

#include "vkexec.h"
#include "../passes/steps.h"

/* A narrow value lies in the low bytes of its int32 cell (steps.c). */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the step state assumes a little-endian host"
#endif

/* Alignment and size granule of the hidden arrays, so that each can be
 * imported on its own. */
#define HIDDEN_ALIGN 4096

/* One pfor as the runner dispatches it. */
typedef struct Pfor {
    const KlVkKernel *body;
    int32_t nops;
    KlStepOperand *ops;         /* malloc'ed */
} Pfor;

struct KlVkSteps {
    const KlVkKernel **steps;   /* step k runs after pfor k (0: first) */
    Pfor *pfors;                /* pfor j at [j - 1] */
    int32_t npfors;
    int32_t nparams;            /* the entry's own parameters */
    int32_t nhidden;            /* state arrays, then scratch arrays */
    int32_t nstate;
    const KlType **elem;        /* per hidden array: element type */
    int64_t *len;               /* its elements */
};

void
kl_vk_steps_free(KlVkSteps *s)
{
    if (s == NULL) {
        return;
    }
    for (int32_t j = 0; s->pfors != NULL && j < s->npfors; j++) {
        free(s->pfors[j].ops);
    }
    free(s->pfors);
    free(s->steps);
    free(s->elem);
    free(s->len);
    free(s);
}

KlVkSteps *
kl_vk_steps_new(const KlModule *m, const KlSteps *plan,
                KlVkKernel *const *kernels, KlDiag *d)
{
    KlVkSteps *s = calloc(1, sizeof(KlVkSteps));
    int32_t nhidden = plan->nstate + plan->nscratch;
    if (s == NULL
        || (s->steps = calloc((size_t)plan->npfors + 1,
                              sizeof(KlVkKernel *))) == NULL
        || (s->pfors = calloc((size_t)plan->npfors + 1,
                              sizeof(Pfor))) == NULL
        || (s->elem = calloc((size_t)nhidden + 1,
                             sizeof(KlType *))) == NULL
        || (s->len = calloc((size_t)nhidden + 1, sizeof(int64_t))) == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        kl_vk_steps_free(s);
        return NULL;
    }
    s->npfors = plan->npfors;
    s->nparams = m->funcs[0]->nparams;
    s->nhidden = nhidden;
    s->nstate = plan->nstate;
    for (int32_t h = 0; h < nhidden; h++) {
        int st = h < plan->nstate;
        s->elem[h] = st ? plan->state[h] : plan->scratch[h - s->nstate]->elem;
        s->len[h] = st ? plan->ncells[h] : plan->scratch_len[h - s->nstate];
    }
    for (int32_t k = 0; k <= plan->npfors; k++) {
        s->steps[k] = kernels[plan->first + k];
    }
    for (int32_t j = 0; j < plan->npfors; j++) {
        const KlStepPfor *p = &plan->pfors[j];
        Pfor *q = &s->pfors[j];
        q->body = kernels[p->body];
        q->nops = p->nops;
        q->ops = malloc(sizeof(KlStepOperand) * (size_t)(p->nops + 1));
        if (q->ops == NULL) {
            kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
            kl_vk_steps_free(s);
            return NULL;
        }
        memcpy(q->ops, p->ops, sizeof(KlStepOperand) * (size_t)p->nops);
    }
    return s;
}

/* The hidden arrays of one call. */
typedef struct Hidden {
    char *mem;                  /* all of them (aligned_alloc) */
    KlArrayArg *arg;            /* per hidden array */
    int64_t *geom;              /* per hidden array: extent, byte stride */
} Hidden;

static int
hidden_new(const KlVkSteps *s, Hidden *h, KlDiag *d)
{
    size_t total = 0;
    for (int32_t i = 0; i < s->nhidden; i++) {
        size_t bytes = (size_t)s->len[i]
                       * (size_t)kl_type_itemsize(s->elem[i]);
        total += (bytes + HIDDEN_ALIGN - 1) / HIDDEN_ALIGN * HIDDEN_ALIGN;
    }
    h->mem = aligned_alloc(HIDDEN_ALIGN, total > 0 ? total : HIDDEN_ALIGN);
    h->arg = calloc((size_t)s->nhidden + 1, sizeof(KlArrayArg));
    h->geom = calloc((size_t)s->nhidden + 1, 2 * sizeof(int64_t));
    if (h->mem == NULL || h->arg == NULL || h->geom == NULL) {
        return kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    memset(h->mem, 0, total);
    size_t at = 0;
    for (int32_t i = 0; i < s->nhidden; i++) {
        int64_t item = kl_type_itemsize(s->elem[i]);
        h->geom[2 * i] = s->len[i];
        h->geom[2 * i + 1] = item;
        h->arg[i] = (KlArrayArg){h->mem + at, &h->geom[2 * i],
                                 &h->geom[2 * i + 1]};
        size_t bytes = (size_t)s->len[i] * (size_t)item;
        at += (bytes + HIDDEN_ALIGN - 1) / HIDDEN_ALIGN * HIDDEN_ALIGN;
    }
    return 0;
}

static void
hidden_free(Hidden *h)
{
    free(h->mem);
    free(h->arg);
    free(h->geom);
}

/* The cell an operand names. */
static void *
cell(const KlVkSteps *s, const Hidden *h, const KlStepOperand *op)
{
    return h->arg[op->index].data
           + (size_t)op->slot * (size_t)kl_type_itemsize(s->elem[op->index]);
}

/* Dispatches pfor p with its operands from the arguments and the state. */
static int32_t
run_pfor(const KlVkSteps *s, const Pfor *p, void **args, const Hidden *h,
         KlStatus *st, KlDiag *d)
{
    void *captured[p->nops];
    int64_t head[3];
    for (int32_t k = 0; k < p->nops; k++) {
        const KlStepOperand *op = &p->ops[k];
        void *v = op->src == KL_STEP_CELL ? cell(s, h, op)
                  : op->src == KL_STEP_PARAM ? args[op->index]
                  : op->src == KL_STEP_SCRATCH
                  ? (void *)&h->arg[s->nstate + op->index] : NULL;
        if (k < 3) {
            memcpy(&head[k], v, sizeof(int64_t));
        }
        else {
            captured[k - 3] = v;
        }
    }
    return kl_vk_pfor(p->body, head[0], head[1], head[2], captured, st, d);
}

int32_t
kl_vk_steps_run(const KlVkSteps *s, void **args, void *ret, KlStatus *st,
                KlDiag *d)
{
    Hidden h;
    memset(&h, 0, sizeof(h));
    int32_t nargs = s->nparams + s->nhidden;
    void **argv = malloc(sizeof(void *) * (size_t)(nargs + 1));
    int32_t rc = -1;
    if (argv == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto done;
    }
    if (hidden_new(s, &h, d) < 0) {
        goto done;
    }
    memcpy(argv, args, sizeof(void *) * (size_t)s->nparams);
    for (int32_t i = 0; i < s->nhidden; i++) {
        argv[s->nparams + i] = &h.arg[i];
    }
    int64_t *suspended = (int64_t *)h.arg[0].data;
    for (int64_t k = 0;;) {
        *suspended = 0;
        rc = kl_vk_serial(s->steps[k], argv, ret, st, d);
        if (rc != 0 || *suspended == 0) {
            break;
        }
        k = *suspended;
        if (k < 1 || k > s->npfors) {
            rc = kl_internal_error(d, "steps: suspended at pfor %lld",
                                   (long long)k);
            break;
        }
        if ((rc = run_pfor(s, &s->pfors[k - 1], args, &h, st, d)) != 0) {
            break;
        }
    }
done:
    hidden_free(&h);
    free(argv);
    return rc;
}
