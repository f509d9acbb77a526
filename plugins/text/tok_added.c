/* tok_added.c - added and special tokens: leftmost-longest matching with single_word, lstrip and rstrip. */
#include "tok_int.h"

static int cmp_len_desc(const void *a, const void *b, void *arg)
{
    const tok_tokenizer *t = arg;
    const tok_added *x = &t->added[*(const int32_t *)a], *y = &t->added[*(const int32_t *)b];
    size_t lx = x->normalized ? x->norm_len : x->len, ly = y->normalized ? y->norm_len : y->len;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    /* special tokens come before the others, then table order (the library's pattern order) */
    if (x->special != y->special)
        return x->special ? -1 : 1;
    return *(const int32_t *)a < *(const int32_t *)b ? -1 : 1;
}

/* qsort_r is not C11: a small insertion sort (few added tokens share a first byte). */
static void sort_idx(int32_t *v, size_t n, tok_tokenizer *t)
{
    for (size_t i = 1; i < n; i++) {
        int32_t x = v[i];
        size_t j = i;
        while (j > 0 && cmp_len_desc(&v[j - 1], &x, t) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

int tok_matcher_build(tok_tokenizer *t, tok_matcher *m, int normalized)
{
    memset(m, 0, sizeof *m);
    m->normalized = normalized;
    uint32_t count[256] = { 0 };
    size_t total = 0;
    for (size_t i = 0; i < t->nadded; i++) {
        const tok_added *a = &t->added[i];
        size_t len = normalized ? a->norm_len : a->len;
        if (!!a->normalized != !!normalized || len == 0)
            continue;
        count[(unsigned char)(normalized ? a->norm : a->content)[0]]++;
        total++;
    }
    m->idx = malloc((total ? total : 1) * sizeof *m->idx);
    if (!m->idx)
        return DSP_ENOMEM;
    m->start[0] = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b + 1] = m->start[b] + count[b];
        m->first[b] = count[b] > 0;
    }
    uint32_t fill[256];
    memcpy(fill, m->start, sizeof fill);
    for (size_t i = 0; i < t->nadded; i++) {
        const tok_added *a = &t->added[i];
        size_t len = normalized ? a->norm_len : a->len;
        if (!!a->normalized != !!normalized || len == 0)
            continue;
        m->idx[fill[(unsigned char)(normalized ? a->norm : a->content)[0]]++] = (int32_t)i;
    }
    for (int b = 0; b < 256; b++)
        sort_idx(m->idx + m->start[b], m->start[b + 1] - m->start[b], t);
    return 0;
}

void tok_matcher_free(tok_matcher *m)
{
    free(m->idx);
    m->idx = NULL;
}

static int seg_push(tok_work *w, size_t s, size_t e, int32_t id)
{
    if (TOK_RESERVE(w->seg, w->segcap, w->nseg, 1) < 0)
        return DSP_ENOMEM;
    w->seg[w->nseg++] = (struct tok_seg){ (uint32_t)s, (uint32_t)e, id };
    return 0;
}

/* The char before s[pos] / at s[pos] is a regex \w char. */
static int word_before(const char *s, size_t pos)
{
    if (pos == 0)
        return 0;
    size_t k = tok_utf8_prev_len(s, pos), cl;
    return tok_is_word_char(tok_utf8_next(s + pos - k, &cl));
}

static int word_at(const char *s, size_t len, size_t pos)
{
    size_t cl;
    return pos < len && tok_is_word_char(tok_utf8_next(s + pos, &cl));
}

int tok_added_segments(tok_tokenizer *t, const tok_matcher *m, const char *s, size_t len)
{
    tok_work *w = &t->w;
    w->nseg = 0;
    size_t start_offset = 0, pos = 0;
    while (pos < len) {
        /* leftmost-longest: the first position where a pattern starts, its longest pattern */
        unsigned char b = (unsigned char)s[pos];
        if (!m->first[b]) {
            pos++;
            continue;
        }
        const tok_added *hit = NULL;
        size_t hlen = 0;
        for (uint32_t k = m->start[b]; k < m->start[b + 1]; k++) {
            const tok_added *a = &t->added[m->idx[k]];
            const char *p = m->normalized ? a->norm : a->content;
            size_t pl = m->normalized ? a->norm_len : a->len;
            if (pl <= len - pos && memcmp(s + pos, p, pl) == 0) {
                hit = a;
                hlen = pl;
                break;
            }
        }
        if (!hit) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + hlen;
        pos = stop;             /* the scan goes on after the match, whatever happens to it */
        if (hit->single_word && (word_before(s, start) || word_at(s, len, stop)))
            continue;
        if (hit->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t k = tok_utf8_prev_len(s, ns), cl;
                if (!tok_is_whitespace(tok_utf8_next(s + ns - k, &cl)))
                    break;
                ns -= k;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (hit->rstrip) {
            while (stop < len) {
                size_t cl;
                if (!tok_is_whitespace(tok_utf8_next(s + stop, &cl)))
                    break;
                stop += cl;
            }
        }
        if (start_offset < start && seg_push(w, start_offset, start, -1) < 0)
            return DSP_ENOMEM;
        if (seg_push(w, start, stop, hit->id) < 0)
            return DSP_ENOMEM;
        start_offset = stop;
    }
    if (start_offset < len && seg_push(w, start_offset, len, -1) < 0)
        return DSP_ENOMEM;
    return 0;
}
