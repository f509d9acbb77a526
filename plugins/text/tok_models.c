/* tok_models.c - the models: WordPiece (greedy longest match), BPE (merges by rank, word cache), WordLevel. */
#include "tok_int.h"

static int push_raw(tok_tokenizer *t, const tok_split *sp, int32_t id, size_t a, size_t b)
{
    tok_work *w = &t->w;
    if (TOK_RESERVE(w->raw, w->rawcap, w->nraw, 1) < 0)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    tok_raw *r = &w->raw[w->nraw++];
    r->id = id;
    if (b > a) {
        r->s = w->al[sp->off + a].s;
        r->e = w->al[sp->off + b - 1].e;
    } else {                    /* an empty token (never made by these models) */
        r->s = r->e = sp->shift;
    }
    r->lead = r->trail = 0;
    return 0;
}

/* ---- WordPiece ------------------------------------------------------------------------------ */
int tok_wordpiece_tokenize(tok_tokenizer *t, const tok_split *sp)
{
    const tok_model *m = &t->model;
    tok_work *w = &t->w;
    const char *s = w->buf + sp->off;
    size_t len = sp->len, nchars = 0;
    for (size_t i = 0; i < len; i++)
        nchars += ((unsigned char)s[i] & 0xC0) != 0x80;
    if ((int64_t)nchars > m->max_chars)
        return push_raw(t, sp, m->unk_id, 0, len);
    size_t first = w->nraw, start = 0;
    while (start < len) {
        size_t end = len;
        if (end - start > m->max_token_len) {       /* no entry is longer: start below */
            end = start + m->max_token_len;
            while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80)
                end--;
        }
        int32_t id = -1;
        while (end > start) {
            id = start == 0 ? tok_strmap_get(&m->vocab, s, end)
                            : tok_strmap_get(&m->cont, s + start, end - start);
            if (id >= 0)
                break;
            end -= tok_utf8_prev_len(s, end);
        }
        if (id < 0) {           /* a piece of the word is unknown: the whole word is [UNK] */
            w->nraw = first;
            return push_raw(t, sp, m->unk_id, 0, len);
        }
        int err = push_raw(t, sp, id, start, end);
        if (err)
            return err;
        start = end;
    }
    return 0;
}

/* ---- WordLevel ------------------------------------------------------------------------------ */
int tok_wordlevel_tokenize(tok_tokenizer *t, const tok_split *sp)
{
    int32_t id = tok_strmap_get(&t->model.vocab, t->w.buf + sp->off, sp->len);
    if (id < 0)
        id = t->model.unk_id;
    if (id < 0)
        return tok_fail(t, DSP_EFORMAT, "WordLevel: '%.*s' is not in the vocabulary and there is no unk_token",
                        (int)(sp->len > 40 ? 40 : sp->len), t->w.buf + sp->off);
    return push_raw(t, sp, id, 0, sp->len);
}

/* ---- BPE ------------------------------------------------------------------------------------- */
#define CACHE_MAX_ENTRIES 65536
#define CACHE_MAX_WORD 256

void tok_cache_clear(tok_cache *c)
{
    if (c->ent)
        for (size_t i = 0; i <= c->mask; i++)
            c->ent[i].key_len = UINT32_MAX;
    c->n = 0;
    c->keys_len = 0;
    c->toks_len = 0;
}

void tok_cache_free(tok_cache *c)
{
    free(c->ent);
    free(c->keys);
    free(c->toks);
    memset(c, 0, sizeof *c);
}

static const tok_cache_ent *cache_get(const tok_cache *c, const char *s, size_t len, uint32_t h)
{
    if (!c->ent)
        return NULL;
    size_t i = h & c->mask;
    while (c->ent[i].key_len != UINT32_MAX) {
        const tok_cache_ent *e = &c->ent[i];
        if (e->hash == h && e->key_len == len && memcmp(c->keys + e->key_off, s, len) == 0)
            return e;
        i = (i + 1) & c->mask;
    }
    return NULL;
}

static void cache_put(tok_cache *c, const char *s, size_t len, uint32_t h,
                      const struct tok_sym *sym, int32_t head)
{
    if (len > CACHE_MAX_WORD)
        return;
    if (!c->ent) {
        size_t n = CACHE_MAX_ENTRIES * 2;
        c->ent = malloc(n * sizeof *c->ent);
        if (!c->ent)
            return;
        c->mask = n - 1;
        tok_cache_clear(c);
    }
    if (c->n >= CACHE_MAX_ENTRIES)
        tok_cache_clear(c);     /* simple and bounded: start over */
    size_t ntok = 0;
    for (int32_t k = head; k >= 0; k = sym[k].next)
        ntok++;
    if (TOK_RESERVE(c->keys, c->keys_cap, c->keys_len, len) < 0 ||
        TOK_RESERVE(c->toks, c->toks_cap, c->toks_len, ntok) < 0)
        return;
    size_t i = h & c->mask;
    while (c->ent[i].key_len != UINT32_MAX)
        i = (i + 1) & c->mask;
    tok_cache_ent *e = &c->ent[i];
    e->key_off = (uint32_t)c->keys_len;
    e->key_len = (uint32_t)len;
    e->hash = h;
    e->tok_off = (uint32_t)c->toks_len;
    e->ntok = (uint32_t)ntok;
    memcpy(c->keys + c->keys_len, s, len);
    c->keys_len += len;
    for (int32_t k = head; k >= 0; k = sym[k].next)
        c->toks[c->toks_len++] = (struct tok_cache_tok){ sym[k].id, sym[k].s, sym[k].e };
    c->n++;
}

/* Min-heap of (rank, position): the lowest rank first, then the leftmost. */
static inline int heap_less(const struct tok_heap *a, const struct tok_heap *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct tok_heap *h, size_t *n, struct tok_heap x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&x, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static struct tok_heap heap_pop(struct tok_heap *h, size_t *n)
{
    struct tok_heap top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct tok_heap *best = &x;
        if (l < *n && heap_less(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && heap_less(&h[r], best))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n)
        h[i] = x;
    return top;
}

/* Look up one char (with the continuing prefix when not first, the end-of-word suffix when
 * last) in the vocabulary. */
static int32_t char_id(tok_tokenizer *t, const char *c, size_t cl, int first, int last)
{
    const tok_model *m = &t->model;
    if (first && !(last && m->suffix_len) && cl <= 2) {
        /* the byte-level fast path: single chars U+0000..U+01FF */
        uint32_t cp = cl == 1 ? (unsigned char)c[0]
                              : (((uint32_t)(unsigned char)c[0] & 0x1F) << 6) | ((unsigned char)c[1] & 0x3F);
        if (cp < 512)
            return m->char_id[cp];
    }
    if ((first || !m->prefix_len) && !(last && m->suffix_len))
        return tok_strmap_get(&m->vocab, c, cl);
    tok_work *w = &t->w;
    size_t n = (first ? 0 : m->prefix_len) + cl + (last ? m->suffix_len : 0);
    if (TOK_RESERVE(w->tmp, w->tmpcap, 0, n) < 0)
        return -2;
    size_t k = 0;
    if (!first) {
        memcpy(w->tmp, m->prefix, m->prefix_len);
        k = m->prefix_len;
    }
    memcpy(w->tmp + k, c, cl);
    k += cl;
    if (last && m->suffix_len) {
        memcpy(w->tmp + k, m->suffix, m->suffix_len);
        k += m->suffix_len;
    }
    return tok_strmap_get(&m->vocab, w->tmp, k);
}

int tok_bpe_tokenize(tok_tokenizer *t, const tok_split *sp)
{
    const tok_model *m = &t->model;
    tok_work *w = &t->w;
    const char *s = w->buf + sp->off;
    size_t len = sp->len;
    if (len == 0)
        return 0;
    uint32_t h = tok_hash(s, len);
    if (m->ignore_merges) {
        int32_t id = tok_strmap_get_h(&m->vocab, s, len, h);
        if (id >= 0)
            return push_raw(t, sp, id, 0, len);
    }
    const tok_cache_ent *hit = cache_get(&t->cache, s, len, h);
    if (hit) {
        for (uint32_t k = 0; k < hit->ntok; k++) {
            const struct tok_cache_tok *ct = &t->cache.toks[hit->tok_off + k];
            int err = push_raw(t, sp, ct->id, ct->s, ct->e);
            if (err)
                return err;
        }
        return 0;
    }
    /* the word as symbols, one per char (or per byte with byte_fallback) */
    if (TOK_RESERVE(w->sym, w->symcap, 0, len + 1) < 0)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    struct tok_sym *sym = w->sym;
    int32_t n = 0;
    int last_unk = 0;
    for (size_t i = 0; i < len;) {
        size_t cl;
        tok_utf8_next(s + i, &cl);
        int32_t id = char_id(t, s + i, cl, i == 0, i + cl == len);
        if (id == -2)
            return tok_fail(t, DSP_ENOMEM, "out of memory");
        if (id >= 0) {
            sym[n] = (struct tok_sym){ id, n - 1, -1, (uint32_t)i, (uint32_t)(i + cl) };
            n++;
            last_unk = 0;
            i += cl;
            continue;
        }
        if (m->byte_fallback) {
            int all = 1;
            for (size_t b = 0; b < cl; b++)
                all &= m->byte_id[(unsigned char)s[i + b]] >= 0;
            if (all) {
                for (size_t b = 0; b < cl; b++) {
                    sym[n] = (struct tok_sym){ m->byte_id[(unsigned char)s[i + b]], n - 1, -1,
                                               (uint32_t)(i + b), (uint32_t)(i + b + 1) };
                    n++;
                }
                last_unk = 0;
                i += cl;
                continue;
            }
        }
        if (m->unk_id >= 0) {
            if (m->fuse_unk && last_unk) {
                sym[n - 1].e = (uint32_t)(i + cl);
            } else {
                sym[n] = (struct tok_sym){ m->unk_id, n - 1, -1, (uint32_t)i, (uint32_t)(i + cl) };
                n++;
            }
            last_unk = 1;
        }
        i += cl;
    }
    for (int32_t k = 0; k + 1 < n; k++)
        sym[k].next = k + 1;
    /* merge by rank */
    if (n > 1) {
        if (TOK_RESERVE(w->heap, w->heapcap, 0, (size_t)n * 2 + 2) < 0)
            return tok_fail(t, DSP_ENOMEM, "out of memory");
        size_t hn = 0, hcap = w->heapcap;
        for (int32_t k = 0; k + 1 < n; k++) {
            int32_t nid, r = tok_pairmap_get(&m->merges, sym[k].id, sym[k + 1].id, &nid);
            if (r >= 0)
                heap_push(w->heap, &hn, (struct tok_heap){ r, k });
        }
        while (hn) {
            struct tok_heap top = heap_pop(w->heap, &hn);
            struct tok_sym *a = &sym[top.pos];
            if (a->e == a->s || a->next < 0)
                continue;
            struct tok_sym *b = &sym[a->next];
            int32_t nid = 0, r = tok_pairmap_get(&m->merges, a->id, b->id, &nid);
            if (r != top.rank)
                continue;
            a->id = nid;
            a->e = b->e;
            a->next = b->next;
            b->e = b->s;            /* merged away */
            if (b->next >= 0)
                sym[b->next].prev = top.pos;
            if (hn + 2 > hcap) {
                if (TOK_RESERVE(w->heap, w->heapcap, hn, 2) < 0)
                    return tok_fail(t, DSP_ENOMEM, "out of memory");
                hcap = w->heapcap;
            }
            if (a->prev >= 0) {
                int32_t nid2, r2 = tok_pairmap_get(&m->merges, sym[a->prev].id, a->id, &nid2);
                if (r2 >= 0)
                    heap_push(w->heap, &hn, (struct tok_heap){ r2, a->prev });
            }
            if (a->next >= 0) {
                int32_t nid2, r2 = tok_pairmap_get(&m->merges, a->id, sym[a->next].id, &nid2);
                if (r2 >= 0)
                    heap_push(w->heap, &hn, (struct tok_heap){ r2, top.pos });
            }
        }
    }
    int32_t head = n > 0 ? 0 : -1;
    for (int32_t k = head; k >= 0; k = sym[k].next) {
        int err = push_raw(t, sp, sym[k].id, sym[k].s, sym[k].e);
        if (err)
            return err;
    }
    cache_put(&t->cache, s, len, h, sym, head);
    return 0;
}

/* ---- Unigram ------------------------------------------------------------------------------------ */
#define UNK_PENALTY 10.0

/* Push the pieces of s[a, b) (one vocabulary piece, or an unknown run): the piece's id, or with
 * byte_fallback its bytes as <0xXX> tokens, each spanning the whole run, or the unk id. */
static int unigram_piece(tok_tokenizer *t, const tok_split *sp, const char *s, size_t a, size_t b)
{
    const tok_model *m = &t->model;
    int32_t id = tok_strmap_get(&m->vocab, s + a, b - a);
    if (id >= 0)
        return push_raw(t, sp, id, a, b);
    if (m->byte_fallback) {
        int all = 1;
        for (size_t k = a; k < b; k++)
            all &= m->byte_id[(unsigned char)s[k]] >= 0;
        if (all) {
            for (size_t k = a; k < b; k++) {
                int err = push_raw(t, sp, m->byte_id[(unsigned char)s[k]], a, b);
                if (err)
                    return err;
            }
            return 0;
        }
    }
    if (m->unk_id < 0)
        return tok_fail(t, DSP_EFORMAT, "Unigram: '%.*s' is not in the vocabulary and there is no unk_id",
                        (int)(b - a > 40 ? 40 : b - a), s + a);
    return push_raw(t, sp, m->unk_id, a, b);
}

/* Viterbi over the pieces that start at each char (SentencePiece's optimized encoder, as the
 * library runs it): the best path wins on a strictly higher score, shorter pieces are tried
 * first; a char no piece covers alone is an unknown piece scoring min_score - 10; runs of
 * unknown pieces are fused. */
int tok_unigram_tokenize(tok_tokenizer *t, const tok_split *sp)
{
    const tok_model *m = &t->model;
    tok_work *w = &t->w;
    const char *s = w->buf + sp->off;
    size_t len = sp->len;
    if (len == 0)
        return 0;
    if (TOK_RESERVE(w->best, w->bestcap, 0, len + 1) < 0)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    struct tok_best *best = w->best;
    for (size_t i = 0; i <= len; i++)
        best[i] = (struct tok_best){ 0.0, -1, -1 };
    double unk_score = m->min_score - UNK_PENALTY;
    for (size_t start = 0; start < len;) {
        double base = best[start].score;
        size_t cl;
        tok_utf8_next(s + start, &cl);
        int single = 0;
        for (size_t end = start + cl; end <= len && end - start <= m->max_token_len;) {
            int32_t id = tok_strmap_get(&m->prefixes, s + start, end - start);
            if (id == -1)
                break;              /* no piece starts like this */
            if (id >= 0) {
                double cand = m->score[id] + base;
                if (best[end].start < 0 || cand > best[end].score)
                    best[end] = (struct tok_best){ cand, id, (int32_t)start };
                single |= end - start == cl;
            }
            if (end == len)
                break;
            size_t c2;
            tok_utf8_next(s + end, &c2);
            end += c2;
        }
        if (!single) {
            double cand = unk_score + base;
            if (best[start + cl].start < 0 || cand > best[start + cl].score)
                best[start + cl] = (struct tok_best){ cand, m->unk_id, (int32_t)start };
        }
        start += cl;
    }
    /* back from the end: record the pieces, then emit them front to back */
    size_t first = w->nraw, npieces = 0;
    for (size_t end = len; end > 0;) {
        size_t start = (size_t)best[end].start;
        int unk = m->unk_id >= 0 && best[end].id == m->unk_id;
        if (unk && npieces > 0 && w->raw[w->nraw - 1].id == -2) {
            w->raw[w->nraw - 1].s = (uint32_t)start;        /* fuse with the unknown run after it */
        } else {
            if (TOK_RESERVE(w->raw, w->rawcap, w->nraw, 1) < 0)
                return tok_fail(t, DSP_ENOMEM, "out of memory");
            w->raw[w->nraw++] = (tok_raw){ unk ? -2 : -1, (uint32_t)start, (uint32_t)end, 0, 0 };
            npieces++;
        }
        end = start;
    }
    /* the pieces sit reversed at raw[first..]: move them aside, then push the real tokens */
    size_t np = w->nraw - first;
    if (TOK_RESERVE(w->tmp, w->tmpcap, 0, np * 2 * sizeof(uint32_t)) < 0)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    uint32_t *span = (uint32_t *)(void *)w->tmp;
    for (size_t k = 0; k < np; k++) {
        span[2 * k] = w->raw[w->nraw - 1 - k].s;
        span[2 * k + 1] = w->raw[w->nraw - 1 - k].e;
    }
    w->nraw = first;
    for (size_t k = 0; k < np; k++) {
        int err = unigram_piece(t, sp, s, span[2 * k], span[2 * k + 1]);
        if (err)
            return err;
    }
    return 0;
}
