/* kiln.c: arena, int32 vectors and diagnostics (see kiln.h). */
#include "kiln.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct KlArenaChunk {
    KlArenaChunk *next;     /* older chunk */
    size_t used;            /* bytes handed out from data */
    size_t size;            /* capacity of data */
    _Alignas(16) unsigned char data[];
};

#define KL_CHUNK_MIN (64 * 1024)

void
kl_arena_init(KlArena *a)
{
    a->head = NULL;
}

void *
kl_arena_alloc(KlArena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    KlArenaChunk *c = a->head;
    if (c == NULL || c->size - c->used < size) {
        size_t cap = size > KL_CHUNK_MIN ? size : KL_CHUNK_MIN;
        c = malloc(sizeof(KlArenaChunk) + cap);
        if (c == NULL) {
            return NULL;
        }
        c->next = a->head;
        c->used = 0;
        c->size = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

void *
kl_arena_grow(KlArena *a, void *old, size_t elem, size_t old_n, size_t new_n)
{
    void *p = kl_arena_alloc(a, elem * new_n);
    if (p != NULL && old_n > 0) {
        memcpy(p, old, elem * old_n);
    }
    return p;
}

char *
kl_arena_strdup(KlArena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = kl_arena_alloc(a, n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

char *
kl_arena_printf(KlArena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *p = kl_arena_alloc(a, (size_t)n + 1);
    if (p != NULL) {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

void
kl_arena_free(KlArena *a)
{
    KlArenaChunk *c = a->head;
    while (c != NULL) {
        KlArenaChunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

int
kl_vec_push(KlArena *a, KlVec *v, int32_t x)
{
    if (v->len == v->cap) {
        int32_t cap = v->cap ? v->cap * 2 : 8;
        int32_t *items = kl_arena_grow(a, v->items, sizeof(int32_t),
                                       (size_t)v->len, (size_t)cap);
        if (items == NULL) {
            return -1;
        }
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = x;
    return 0;
}

void
kl_text_printf(KlText *b, const char *fmt, ...)
{
    if (b->failed) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->failed = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int
kl_error(KlDiag *d, KlDiagKind kind, int line, const char *fmt, ...)
{
    if (d == NULL || d->kind != KL_DIAG_NONE) {
        return -1;
    }
    d->kind = kind;
    d->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
    return -1;
}
