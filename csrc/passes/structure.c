/* structure.c: structured control flow for a lowered function (see
 * structure.h for the contract).
 *
 * Steps: reverse postorder of the reachable blocks, dominators (the
 * iterative algorithm of Cooper, Harvey and Kennedy), back edges checked
 * to go to a dominator (else the flow is irreducible), natural loop
 * bodies, then the recursive translation over the dominator tree, and
 * finally the clean-up of branches that only fall through.
 */
#include "structure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Working state of one translation. */
typedef struct St {
    KlFunc *f;
    KlDiag *d;
    int32_t n;              /* blocks */
    int32_t *rpo;           /* rpo number of each block, -1 unreachable */
    int32_t *order;         /* blocks in reverse postorder */
    int32_t norder;
    int32_t *idom;          /* immediate dominator, -1 unreachable/entry */
    int32_t *fwd_in;        /* forward in-edges of each block */
    int32_t *predoff;       /* preds of b: preds[predoff[b]..predoff[b+1]) */
    int32_t *preds;
    uint8_t *header;        /* target of a back edge */
    uint8_t **inloop;       /* header h: membership bitmap of its loop */
    int32_t *loop_label;    /* header: label restarting its loop */
    int32_t *block_label;   /* block reached by `br`: its label, else -1 */
    int32_t *kids;          /* dominator-tree children, by parent */
    int32_t *kidoff;
    KlStructure *s;
    int32_t cap;            /* node table capacity */
} St;

/* ---- the CFG ---------------------------------------------------------- */

static int
nomem(St *st)
{
    return kl_error(st->d, KL_DIAG_NOMEM, 0, "out of memory");
}

/* Reverse postorder from block 0 by an explicit-stack depth-first walk. */
static int
number_blocks(St *st)
{
    KlFunc *f = st->f;
    int32_t n = st->n, sp = 1, npost = 0;
    int32_t *stack = malloc(sizeof(int32_t) * 2 * (size_t)n);
    int32_t *post = malloc(sizeof(int32_t) * (size_t)n);
    if (stack == NULL || post == NULL) {
        free(stack);
        free(post);
        return nomem(st);
    }
    for (int32_t b = 0; b < n; b++) {
        st->rpo[b] = -2;            /* -2: unseen */
    }
    stack[0] = 0;
    stack[1] = 0;
    st->rpo[0] = -1;
    while (sp > 0) {
        int32_t b = stack[2 * sp - 2], out[2];
        int ns = kl_block_succs(f, b, out);
        if (ns < 0) {
            free(stack);
            free(post);
            return kl_internal_error(st->d, "%s: block %d has no terminator",
                                     f->name, (int)b);
        }
        if (stack[2 * sp - 1] < ns) {
            int32_t t = out[stack[2 * sp - 1]++];
            if (t < 0 || t >= n) {
                free(stack);
                free(post);
                return kl_internal_error(st->d, "%s: bad target %d", f->name,
                                         (int)t);
            }
            if (st->rpo[t] == -2) {
                st->rpo[t] = -1;
                stack[2 * sp] = t;
                stack[2 * sp + 1] = 0;
                sp++;
            }
        }
        else {
            post[npost++] = b;
            sp--;
        }
    }
    for (int32_t b = 0; b < n; b++) {
        st->rpo[b] = -1;
    }
    for (int32_t i = 0; i < npost; i++) {
        int32_t b = post[npost - 1 - i];
        st->order[i] = b;
        st->rpo[b] = i;
    }
    st->norder = npost;
    free(stack);
    free(post);
    return 0;
}

/* Predecessor lists (reachable sources only) and forward in-edge counts. */
static int
find_preds(St *st)
{
    int32_t n = st->n, out[2];
    int32_t *fill = calloc((size_t)n + 1, sizeof(int32_t));
    if (fill == NULL) {
        return nomem(st);
    }
    for (int32_t i = 0; i < st->norder; i++) {
        int32_t b = st->order[i];
        int ns = kl_block_succs(st->f, b, out);
        for (int k = 0; k < ns; k++) {
            st->predoff[out[k] + 1]++;
            if (st->rpo[out[k]] > i) {
                st->fwd_in[out[k]]++;
            }
        }
    }
    for (int32_t b = 0; b < n; b++) {
        st->predoff[b + 1] += st->predoff[b];
    }
    st->preds = malloc(sizeof(int32_t) * ((size_t)st->predoff[n] + 1));
    if (st->preds == NULL) {
        free(fill);
        return nomem(st);
    }
    for (int32_t i = 0; i < st->norder; i++) {
        int32_t b = st->order[i];
        int ns = kl_block_succs(st->f, b, out);
        for (int k = 0; k < ns; k++) {
            st->preds[st->predoff[out[k]] + fill[out[k]]++] = b;
        }
    }
    free(fill);
    return 0;
}

/* Immediate dominators over the reachable blocks. */
static void
find_idoms(St *st)
{
    int changed = 1;
    for (int32_t b = 0; b < st->n; b++) {
        st->idom[b] = -1;
    }
    st->idom[0] = 0;
    while (changed) {
        changed = 0;
        for (int32_t i = 1; i < st->norder; i++) {
            int32_t b = st->order[i], nd = -1;
            for (int32_t k = st->predoff[b]; k < st->predoff[b + 1]; k++) {
                int32_t p = st->preds[k];
                if (st->idom[p] < 0) {
                    continue;
                }
                if (nd < 0) {
                    nd = p;
                    continue;
                }
                int32_t x = p, y = nd;
                while (x != y) {
                    while (st->rpo[x] > st->rpo[y]) {
                        x = st->idom[x];
                    }
                    while (st->rpo[y] > st->rpo[x]) {
                        y = st->idom[y];
                    }
                }
                nd = x;
            }
            if (nd != st->idom[b]) {
                st->idom[b] = nd;
                changed = 1;
            }
        }
    }
}

/* Does block a dominate block b (both reachable)? */
static int
dominates(const St *st, int32_t a, int32_t b)
{
    while (b != a && b != 0) {
        b = st->idom[b];
    }
    return b == a;
}

/* Marks back-edge targets as loop headers and fills their loop bodies;
 * a back edge to a non-dominator is irreducible flow. */
static int
find_loops(St *st)
{
    KlFunc *f = st->f;
    int32_t out[2];
    int32_t *work = malloc(sizeof(int32_t) * ((size_t)st->n + 1));
    if (work == NULL) {
        return nomem(st);
    }
    for (int32_t i = 0; i < st->norder; i++) {
        int32_t s = st->order[i];
        int ns = kl_block_succs(f, s, out);
        for (int k = 0; k < ns; k++) {
            int32_t h = out[k];
            if (st->rpo[h] > i) {
                continue;
            }
            if (!dominates(st, h, s)) {
                free(work);
                int32_t t = kl_block_term(f, s);
                return kl_compile_error(st->d, f->insts[t].line,
                                        "control flow of %s() is not "
                                        "structured (a loop is entered "
                                        "other than at its start)", f->name);
            }
            st->header[h] = 1;
            if (st->inloop[h] == NULL) {
                st->inloop[h] = calloc((size_t)st->n, 1);
                if (st->inloop[h] == NULL) {
                    free(work);
                    return nomem(st);
                }
                st->inloop[h][h] = 1;
            }
            uint8_t *in = st->inloop[h];
            int32_t nw = 0;
            if (!in[s]) {
                in[s] = 1;
                work[nw++] = s;
            }
            while (nw > 0) {
                int32_t b = work[--nw];
                for (int32_t j = st->predoff[b]; j < st->predoff[b + 1]; j++) {
                    int32_t p = st->preds[j];
                    if (!in[p]) {
                        in[p] = 1;
                        work[nw++] = p;
                    }
                }
            }
        }
    }
    free(work);
    return 0;
}

/* Dominator-tree children of every block, each list in decreasing rpo. */
static int
find_kids(St *st)
{
    int32_t n = st->n;
    int32_t *fill = calloc((size_t)n + 1, sizeof(int32_t));
    if (fill == NULL) {
        return nomem(st);
    }
    for (int32_t i = 1; i < st->norder; i++) {
        st->kidoff[st->idom[st->order[i]] + 1]++;
    }
    for (int32_t b = 0; b < n; b++) {
        st->kidoff[b + 1] += st->kidoff[b];
    }
    for (int32_t i = st->norder - 1; i >= 1; i--) {
        int32_t b = st->order[i], p = st->idom[b];
        st->kids[st->kidoff[p] + fill[p]++] = b;
    }
    free(fill);
    return 0;
}

/* ---- building the tree ------------------------------------------------ */

static int32_t
new_node(St *st, KlSKind kind, int32_t block)
{
    KlStructure *s = st->s;
    if (s->nnodes == st->cap) {
        int32_t cap = st->cap ? st->cap * 2 : 64;
        KlSNode *p = kl_arena_grow(&st->f->mod->arena, s->nodes,
                                   sizeof(KlSNode), (size_t)st->cap,
                                   (size_t)cap);
        if (p == NULL) {
            nomem(st);
            return -2;
        }
        s->nodes = p;
        st->cap = cap;
    }
    KlSNode *nd = &s->nodes[s->nnodes];
    *nd = (KlSNode){kind, block, -1, -1, -1, -1, -1, -1};
    return s->nnodes++;
}

/* List a followed by list b (either may be empty, -1). */
static int32_t
concat(St *st, int32_t a, int32_t b)
{
    if (a < 0) {
        return b;
    }
    int32_t t = a;
    while (st->s->nodes[t].next >= 0) {
        t = st->s->nodes[t].next;
    }
    st->s->nodes[t].next = b;
    return a;
}

/* Is block y inside the loop headed by h? */
static int
in_loop(const St *st, int32_t y, int32_t h)
{
    return st->inloop[h] != NULL && st->inloop[h][y];
}

static int32_t do_tree(St *st, int32_t x);

/* The list for going from block src to block tgt, after jump `jump`
 * (-1 for a branch edge) passes its operands.  -2 on error. */
static int32_t
do_branch(St *st, int32_t src, int32_t tgt, int32_t jump)
{
    int32_t head = -1, tail;
    if (jump >= 0 && st->f->blocks[tgt].nparams > 0) {
        head = new_node(st, KL_S_ARGS, src);
        if (head < 0) {
            return -2;
        }
        st->s->nodes[head].inst = jump;
    }
    if (st->rpo[tgt] <= st->rpo[src]) {
        tail = new_node(st, KL_S_BR, src);
        if (tail >= 0) {
            st->s->nodes[tail].label = st->loop_label[tgt];
        }
    }
    else if (st->block_label[tgt] >= 0) {
        tail = new_node(st, KL_S_BR, src);
        if (tail >= 0) {
            st->s->nodes[tail].label = st->block_label[tgt];
        }
    }
    else {
        tail = do_tree(st, tgt);
    }
    if (tail == -2) {
        return -2;
    }
    return concat(st, head, tail);
}

/* The list of block x's own code and terminator, nested in blocks for
 * the followers ys[0..ny) (decreasing rpo: ys[0] outermost). */
static int32_t
node_within(St *st, int32_t x, const int32_t *ys, int32_t ny)
{
    KlFunc *f = st->f;
    if (ny > 0) {
        int32_t blk = new_node(st, KL_S_BLOCK, x);
        if (blk < 0) {
            return -2;
        }
        int32_t body = node_within(st, x, ys + 1, ny - 1);
        int32_t after = body == -2 ? -2 : do_tree(st, ys[0]);
        if (after == -2) {
            return -2;
        }
        st->s->nodes[blk].label = st->block_label[ys[0]];
        st->s->nodes[blk].body = body;
        st->s->nodes[blk].next = after;
        return blk;
    }
    int32_t code = new_node(st, KL_S_CODE, x), rest;
    if (code < 0) {
        return -2;
    }
    int32_t t = kl_block_term(f, x);
    const KlInst *in = &f->insts[t];
    if (in->op == KL_OP_jump) {
        rest = do_branch(st, x, (int32_t)in->imm.i, t);
    }
    else if (in->op == KL_OP_branch) {
        int32_t tt = (int32_t)in->imm.i, ff = in->aux;
        rest = new_node(st, KL_S_IF, x);
        int32_t a = rest < 0 ? -2 : do_branch(st, x, tt, -1);
        int32_t b = a == -2 ? -2 : do_branch(st, x, ff, -1);
        if (b == -2) {
            return -2;
        }
        st->s->nodes[rest].body = a;
        st->s->nodes[rest].els = b;
    }
    else {
        rest = new_node(st, KL_S_EXIT, x);
    }
    if (rest == -2) {
        return -2;
    }
    st->s->nodes[code].next = rest;
    return code;
}

/* The list for the dominator subtree of block x. */
static int32_t
do_tree(St *st, int32_t x)
{
    int32_t nk = st->kidoff[x + 1] - st->kidoff[x], nin = 0, nout = 0;
    const int32_t *kids = st->kids + st->kidoff[x];
    int32_t *ins = malloc(sizeof(int32_t) * ((size_t)nk + 1));
    int32_t *outs = malloc(sizeof(int32_t) * ((size_t)nk + 1));
    int32_t list = -2;
    if (ins == NULL || outs == NULL) {
        nomem(st);
        goto done;
    }
    for (int32_t k = 0; k < nk; k++) {
        int32_t y = kids[k];
        if (st->block_label[y] < 0) {
            continue;
        }
        if (st->header[x] && !in_loop(st, y, x)) {
            outs[nout++] = y;
        }
        else {
            ins[nin++] = y;
        }
    }
    if (!st->header[x]) {
        list = node_within(st, x, ins, nin);
        goto done;
    }
    int32_t loop = new_node(st, KL_S_LOOP, x);
    int32_t body = loop < 0 ? -2 : node_within(st, x, ins, nin);
    if (body == -2) {
        goto done;
    }
    st->s->nodes[loop].label = st->loop_label[x];
    st->s->nodes[loop].body = body;
    list = loop;
    if (nout == 0) {
        goto done;
    }
    /* the innermost follower (lowest rpo) is the loop's own exit */
    st->s->nodes[loop].label2 = st->block_label[outs[nout - 1]];
    int32_t after = do_tree(st, outs[nout - 1]);
    if (after == -2) {
        list = -2;
        goto done;
    }
    st->s->nodes[loop].next = after;
    for (int32_t k = nout - 2; k >= 0; k--) {
        int32_t blk = new_node(st, KL_S_BLOCK, x);
        after = blk < 0 ? -2 : do_tree(st, outs[k]);
        if (after == -2) {
            list = -2;
            goto done;
        }
        st->s->nodes[blk].label = st->block_label[outs[k]];
        st->s->nodes[blk].body = list;
        st->s->nodes[blk].next = after;
        list = blk;
    }
done:
    free(ins);
    free(outs);
    return list;
}

/* Gives labels to loop headers and to the blocks reached by `br`: those
 * with several forward in-edges, and those a loop header dominates
 * outside its loop (they follow the loop). */
static void
assign_labels(St *st)
{
    int32_t nl = 0;
    for (int32_t i = 0; i < st->norder; i++) {
        int32_t b = st->order[i];
        st->loop_label[b] = st->header[b] ? nl++ : -1;
        int follows = i > 0 && st->header[st->idom[b]]
                      && !in_loop(st, b, st->idom[b]);
        st->block_label[b] = st->fwd_in[b] >= 2 || follows ? nl++ : -1;
    }
    st->s->nlabels = nl;
}

/* ---- clean-up --------------------------------------------------------- */

#define MAX_TAILS 16

/* Removes `br` statements in tail position of list *head whose label is
 * one of tails[0..nt): falling off the end already goes there.  Returns
 * the number removed. */
static int
drop_tail_brs(St *st, int32_t *head, const int32_t *tails, int nt)
{
    KlSNode *nodes = st->s->nodes;
    int32_t *link = head;
    int removed = 0;
    while (*link >= 0) {
        KlSNode *nd = &nodes[*link];
        int last = nd->next < 0;
        int32_t sub[MAX_TAILS + 1];
        int ns = 0;
        if (last && nd->kind == KL_S_BR) {
            for (int k = 0; k < nt; k++) {
                if (tails[k] == nd->label) {
                    *link = -1;
                    return removed + 1;
                }
            }
        }
        if (last && nt > 0) {
            ns = nt < MAX_TAILS ? nt : MAX_TAILS;
            memcpy(sub, tails, sizeof(int32_t) * (size_t)ns);
        }
        switch (nd->kind) {
        case KL_S_IF:
            removed += drop_tail_brs(st, &nd->body, sub, ns);
            removed += drop_tail_brs(st, &nd->els, sub, ns);
            break;
        case KL_S_BLOCK:
            sub[ns++] = nd->label;
            removed += drop_tail_brs(st, &nd->body, sub, ns);
            break;
        case KL_S_LOOP:
            if (nd->label2 >= 0) {
                sub[ns++] = nd->label2;
            }
            removed += drop_tail_brs(st, &nd->body, sub, ns);
            break;
        default:
            break;
        }
        link = &nd->next;
    }
    return removed;
}

/* Counts the `br` statements to each label in list head. */
static void
count_brs(const St *st, int32_t head, int32_t *refs)
{
    const KlSNode *nodes = st->s->nodes;
    for (int32_t i = head; i >= 0; i = nodes[i].next) {
        const KlSNode *nd = &nodes[i];
        if (nd->kind == KL_S_BR) {
            refs[nd->label]++;
        }
        if (nd->kind == KL_S_IF || nd->kind == KL_S_BLOCK
            || nd->kind == KL_S_LOOP) {
            count_brs(st, nd->body, refs);
        }
        if (nd->kind == KL_S_IF) {
            count_brs(st, nd->els, refs);
        }
    }
}

/* Replaces blocks nobody branches to by their bodies and forgets loop
 * exit labels nobody uses; returns the number of blocks dissolved. */
static int
dissolve(St *st, int32_t *head, const int32_t *refs)
{
    KlSNode *nodes = st->s->nodes;
    int32_t *link = head;
    int n = 0;
    while (*link >= 0) {
        KlSNode *nd = &nodes[*link];
        if (nd->kind == KL_S_BLOCK && refs[nd->label] == 0) {
            int32_t next = nd->next;
            *link = concat(st, nd->body, next);
            n++;
            continue;           /* look at the spliced-in statements */
        }
        if (nd->kind == KL_S_LOOP && nd->label2 >= 0
            && refs[nd->label2] == 0) {
            nd->label2 = -1;
        }
        if (nd->kind == KL_S_IF || nd->kind == KL_S_BLOCK
            || nd->kind == KL_S_LOOP) {
            n += dissolve(st, &nd->body, refs);
        }
        if (nd->kind == KL_S_IF) {
            n += dissolve(st, &nd->els, refs);
        }
        link = &nd->next;
    }
    return n;
}

static int
clean_up(St *st)
{
    int32_t *refs = malloc(sizeof(int32_t) * ((size_t)st->s->nlabels + 1));
    if (refs == NULL) {
        return nomem(st);
    }
    for (int round = 0; round < 8; round++) {
        int changed = drop_tail_brs(st, &st->s->root, NULL, 0);
        memset(refs, 0, sizeof(int32_t) * ((size_t)st->s->nlabels + 1));
        count_brs(st, st->s->root, refs);
        changed += dissolve(st, &st->s->root, refs);
        if (!changed) {
            break;
        }
    }
    free(refs);
    return 0;
}

/* ---- entry points ----------------------------------------------------- */

static void
free_state(St *st)
{
    if (st->inloop != NULL) {
        for (int32_t b = 0; b < st->n; b++) {
            free(st->inloop[b]);
        }
    }
    free(st->inloop);
    free(st->rpo);
    free(st->order);
    free(st->idom);
    free(st->fwd_in);
    free(st->predoff);
    free(st->preds);
    free(st->header);
    free(st->loop_label);
    free(st->block_label);
    free(st->kids);
    free(st->kidoff);
}

int
kl_structure(KlFunc *f, KlStructure *s, KlDiag *d)
{
    St st;
    size_t n = (size_t)f->nblocks + 1;
    int rc = -1;
    memset(&st, 0, sizeof(st));
    memset(s, 0, sizeof(*s));
    s->root = -1;
    st.f = f;
    st.d = d;
    st.s = s;
    st.n = f->nblocks;
    if (f->nblocks < 1) {
        return kl_internal_error(d, "%s: no blocks", f->name);
    }
    st.rpo = malloc(sizeof(int32_t) * n);
    st.order = malloc(sizeof(int32_t) * n);
    st.idom = malloc(sizeof(int32_t) * n);
    st.fwd_in = calloc(n, sizeof(int32_t));
    st.predoff = calloc(n + 1, sizeof(int32_t));
    st.header = calloc(n, 1);
    st.inloop = calloc(n, sizeof(uint8_t *));
    st.loop_label = malloc(sizeof(int32_t) * n);
    st.block_label = malloc(sizeof(int32_t) * n);
    st.kids = malloc(sizeof(int32_t) * n);
    st.kidoff = calloc(n + 1, sizeof(int32_t));
    if (st.rpo == NULL || st.order == NULL || st.idom == NULL
        || st.fwd_in == NULL || st.predoff == NULL || st.header == NULL
        || st.inloop == NULL || st.loop_label == NULL
        || st.block_label == NULL || st.kids == NULL || st.kidoff == NULL) {
        nomem(&st);
        goto done;
    }
    if (number_blocks(&st) < 0 || find_preds(&st) < 0) {
        goto done;
    }
    find_idoms(&st);
    if (find_loops(&st) < 0 || find_kids(&st) < 0) {
        goto done;
    }
    assign_labels(&st);
    s->root = do_tree(&st, 0);
    if (s->root == -2 || clean_up(&st) < 0) {
        goto done;
    }
    rc = 0;
done:
    free_state(&st);
    return rc;
}

/* ---- printing --------------------------------------------------------- */

/* Appends one line, indented by depth. */
static void
put(KlText *o, int depth, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
put(KlText *o, int depth, const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kl_text_printf(o, "%*s%s\n", 2 * depth, "", line);
}

static void
print_list(KlText *o, const KlStructure *s, int32_t head, int depth)
{
    for (int32_t i = head; i >= 0; i = s->nodes[i].next) {
        const KlSNode *nd = &s->nodes[i];
        switch (nd->kind) {
        case KL_S_CODE:
            put(o, depth, "b%d", (int)nd->block);
            break;
        case KL_S_ARGS:
            put(o, depth, "args %%%d", (int)nd->inst);
            break;
        case KL_S_IF:
            put(o, depth, "if b%d", (int)nd->block);
            print_list(o, s, nd->body, depth + 1);
            put(o, depth, "else");
            print_list(o, s, nd->els, depth + 1);
            put(o, depth, "end");
            break;
        case KL_S_BLOCK:
            put(o, depth, "block L%d", (int)nd->label);
            print_list(o, s, nd->body, depth + 1);
            put(o, depth, "end L%d", (int)nd->label);
            break;
        case KL_S_LOOP:
            if (nd->label2 >= 0) {
                put(o, depth, "loop L%d exit L%d", (int)nd->label,
                    (int)nd->label2);
            }
            else {
                put(o, depth, "loop L%d", (int)nd->label);
            }
            print_list(o, s, nd->body, depth + 1);
            put(o, depth, "end L%d", (int)nd->label);
            break;
        case KL_S_BR:
            put(o, depth, "br L%d", (int)nd->label);
            break;
        case KL_S_EXIT:
            put(o, depth, "exit b%d", (int)nd->block);
            break;
        }
    }
}

char *
kl_structure_print(const KlFunc *f, const KlStructure *s)
{
    KlText o = {NULL, 0, 0, 0};
    put(&o, 0, "structure %s", f->name);
    print_list(&o, s, s->root, 1);
    if (o.failed) {
        free(o.s);
        return NULL;
    }
    return o.s;
}
