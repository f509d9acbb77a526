/* tok_normalize.c - normalizers (BERT, NFC/NFD/NFKC/NFKD, lower case, strip, replace, prepend) with offset alignments. */
#include <utf8proc.h>

#include "tok_int.h"

/* Every normalizer keeps, for each byte of the text it produces, the span of the original
 * text it came from, following the rules of the Hugging Face library's NormalizedString so
 * that offsets come out the same: a replaced or kept char keeps its own span, an inserted char
 * takes the span of the char before it in the source (or an empty span at the piece's start),
 * removed chars leave nothing. */

int tok_ns_reserve(tok_ns *n, size_t more)
{
    if (n->len + more <= n->cap)
        return 0;
    size_t c = n->cap ? n->cap : 64;
    while (c < n->len + more)
        c *= 2;
    char *s = realloc(n->s, c);
    if (!s)
        return DSP_ENOMEM;
    n->s = s;
    tok_span *al = realloc(n->al, c * sizeof *al);
    if (!al)
        return DSP_ENOMEM;
    n->al = al;
    n->cap = c;
    return 0;
}

void tok_ns_free(tok_ns *n)
{
    free(n->s);
    free(n->al);
    memset(n, 0, sizeof *n);
}

/* Append c with alignment a (room for 4 bytes reserved by the caller). */
static inline void ns_put(tok_ns *n, uint32_t c, tok_span a)
{
    size_t k = tok_utf8_put(n->s + n->len, c);
    for (size_t i = 0; i < k; i++)
        n->al[n->len + i] = a;
    n->len += k;
}

static inline size_t char_len_at(const char *s, size_t pos)
{
    unsigned char b = (unsigned char)s[pos];
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

int tok_xf_begin(tok_xf *x, const tok_ns *src, tok_ns *dst, size_t initial_removed_chars)
{
    x->src = src;
    x->dst = dst;
    x->pos = 0;
    dst->len = 0;
    dst->shift = src->shift;
    for (size_t i = 0; i < initial_removed_chars && x->pos < src->len; i++)
        x->pos += char_len_at(src->s, x->pos);
    return tok_ns_reserve(dst, src->len + 16);
}

int tok_xf_push(tok_xf *x, uint32_t c, int change)
{
    const tok_ns *src = x->src;
    tok_span a;
    if (change > 0) {
        if (x->pos < 1)
            a = (tok_span){ src->shift, src->shift };
        else
            a = src->al[x->pos - 1];
    } else {
        if (x->pos < src->len) {
            a = src->al[x->pos];
            x->pos += char_len_at(src->s, x->pos);
        } else {
            a = src->len ? src->al[src->len - 1] : (tok_span){ src->shift, src->shift };
        }
        for (int k = 0; k < -change && x->pos < src->len; k++)
            x->pos += char_len_at(src->s, x->pos);
    }
    if (tok_ns_reserve(x->dst, 4) < 0)
        return DSP_ENOMEM;
    ns_put(x->dst, c, a);
    return 0;
}

static void ns_swap(tok_ns *a, tok_ns *b)
{
    tok_ns t = *a;
    *a = *b;
    *b = t;
}

static int is_ascii(const char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if (v & 0x8080808080808080ull)
            return 0;
    }
    for (; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* ---- Unicode normalization forms ---------------------------------------------------------- */
typedef struct nchar { uint32_t c; int change; uint8_t ccc; } nchar;

typedef struct nbuf { nchar *v; size_t n, cap; } nbuf;

static int nbuf_push(nbuf *b, uint32_t c, int change, uint8_t ccc)
{
    if (TOK_RESERVE(b->v, b->cap, b->n, 1) < 0)
        return DSP_ENOMEM;
    b->v[b->n++] = (nchar){ c, change, ccc };
    return 0;
}

static inline uint8_t ccc_of(uint32_t c)
{
    if (c < 0x300)
        return 0;
    return (uint8_t)utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

/* Stable sort of v[from..n) by combining class (insertion sort: runs are short). */
static void sort_by_ccc(nchar *v, size_t from, size_t n)
{
    for (size_t i = from + 1; i < n; i++) {
        nchar x = v[i];
        size_t j = i;
        while (j > from && v[j - 1].ccc > x.ccc) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* The canonical (or compatibility) decomposition of the whole string as (char, change)
 * pairs in canonical order: the first char of each source char's decomposition replaces it
 * (change 0), the others are insertions (+1); marks are reordered with their change. */
static int decompose(const tok_ns *src, int compat, nbuf *out)
{
    utf8proc_option_t opt = UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0);
    size_t pending = 0;         /* out->v[pending..] still to be sorted */
    out->n = 0;
    for (size_t i = 0; i < src->len;) {
        size_t cl;
        uint32_t c = tok_utf8_next(src->s + i, &cl);
        i += cl;
        utf8proc_int32_t d[32];
        int nd = 1;
        if (c < 0xA0 || tok_no_decomposition(c, compat))
            d[0] = (utf8proc_int32_t)c;
        else {
            int last = 0;
            utf8proc_ssize_t r = utf8proc_decompose_char((utf8proc_int32_t)c, d, 32, opt, &last);
            if (r < 1 || r > 32) {
                d[0] = (utf8proc_int32_t)c;
                r = 1;
            }
            nd = (int)r;
        }
        for (int k = 0; k < nd; k++) {
            uint8_t cc = ccc_of((uint32_t)d[k]);
            if (cc == 0) {
                sort_by_ccc(out->v, pending, out->n);
                pending = out->n;
            }
            if (nbuf_push(out, (uint32_t)d[k], k == 0 ? 0 : 1, cc) < 0)
                return DSP_ENOMEM;
        }
    }
    sort_by_ccc(out->v, pending, out->n);
    return 0;
}

#define HANGUL_S 0xAC00
#define HANGUL_L 0x1100
#define HANGUL_V 0x1161
#define HANGUL_T 0x11A7
#define HANGUL_LCOUNT 19
#define HANGUL_VCOUNT 21
#define HANGUL_TCOUNT 28
#define HANGUL_NCOUNT (HANGUL_VCOUNT * HANGUL_TCOUNT)
#define HANGUL_SCOUNT (HANGUL_LCOUNT * HANGUL_NCOUNT)

/* The primary composite of (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V && b < HANGUL_V + HANGUL_VCOUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
        return a + (b - HANGUL_T);
    if (b < 0x300)
        return 0;
    const utf8proc_property_t *pa = utf8proc_get_property((utf8proc_int32_t)a);
    const utf8proc_property_t *pb = utf8proc_get_property((utf8proc_int32_t)b);
    if (pa->comb_index >= 0x8000 || pb->comb_index == UINT16_MAX || pb->comb_index < 0x8000)
        return 0;
    utf8proc_int32_t buf[2] = { (utf8proc_int32_t)a, (utf8proc_int32_t)b };
    if (utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE) == 1 &&
        !tok_no_decomposition((uint32_t)buf[0], 0))      /* a composite the library does not know */
        return (uint32_t)buf[0];
    return 0;
}

/* Canonical composition of a decomposed stream, carrying the changes the way the library's
 * alignment-aware recomposition does: a composite's change is the sum of its parts' minus 1
 * for each char it absorbed. */
static int recompose(const nbuf *in, nbuf *out)
{
    nchar comp = { 0, 0, 0 };
    int have_comp = 0, have_last = 0;
    uint8_t last_ccc = 0;
    nbuf held = { 0 };          /* blocked marks, emitted after the composite */
    int err = 0;
    out->n = 0;
    for (size_t i = 0; i < in->n && !err; i++) {
        nchar ch = in->v[i];
        if (!have_comp) {
            if (ch.ccc != 0) {
                err = nbuf_push(out, ch.c, ch.change, ch.ccc);
                continue;
            }
            comp = ch;
            have_comp = 1;
            continue;
        }
        if (!have_last) {
            uint32_t r = compose_pair(comp.c, ch.c);
            if (r) {
                comp.c = r;
                comp.change = comp.change + ch.change - 1;
                continue;
            }
            if (ch.ccc == 0) {
                err = nbuf_push(out, comp.c, comp.change, 0);
                comp = ch;
                continue;
            }
            err = nbuf_push(&held, ch.c, ch.change, ch.ccc);
            last_ccc = ch.ccc;
            have_last = 1;
            continue;
        }
        if (last_ccc >= ch.ccc) {
            if (ch.ccc == 0) {
                err = nbuf_push(out, comp.c, comp.change, 0);
                for (size_t k = 0; k < held.n && !err; k++)
                    err = nbuf_push(out, held.v[k].c, held.v[k].change, held.v[k].ccc);
                held.n = 0;
                comp = ch;
                have_last = 0;
                continue;
            }
            err = nbuf_push(&held, ch.c, ch.change, ch.ccc);
            last_ccc = ch.ccc;
            continue;
        }
        uint32_t r = compose_pair(comp.c, ch.c);
        if (r) {
            comp.c = r;
            comp.change = comp.change + ch.change - 1;
            continue;
        }
        err = nbuf_push(&held, ch.c, ch.change, ch.ccc);
        last_ccc = ch.ccc;
    }
    if (!err && have_comp)
        err = nbuf_push(out, comp.c, comp.change, 0);
    for (size_t k = 0; k < held.n && !err; k++)
        err = nbuf_push(out, held.v[k].c, held.v[k].change, held.v[k].ccc);
    free(held.v);
    return err;
}

static int apply_stream(tok_ns *ns, tok_ns *tmp, const nbuf *b)
{
    tok_xf x;
    int err = tok_xf_begin(&x, ns, tmp, 0);
    for (size_t i = 0; i < b->n && !err; i++)
        err = tok_xf_push(&x, b->v[i].c, b->v[i].change);
    if (!err)
        ns_swap(ns, tmp);
    return err;
}

/* NFD / NFKD / NFC / NFKC. */
static int unicode_form(tok_ns *ns, tok_ns *tmp, int compat, int compose)
{
    if (is_ascii(ns->s, ns->len))
        return 0;
    nbuf d = { 0 }, c = { 0 };
    int err = decompose(ns, compat, &d);
    if (!err && compose)
        err = recompose(&d, &c);
    if (!err)
        err = apply_stream(ns, tmp, compose ? &c : &d);
    free(d.v);
    free(c.v);
    return err;
}

/* ---- character-wise normalizers ----------------------------------------------------------- */
static int lowercase(tok_ns *ns, tok_ns *tmp)
{
    if (is_ascii(ns->s, ns->len)) {
        for (size_t i = 0; i < ns->len; i++)
            if (ns->s[i] >= 'A' && ns->s[i] <= 'Z')
                ns->s[i] = (char)(ns->s[i] + 32);
        return 0;
    }
    tmp->len = 0;
    tmp->shift = ns->shift;
    if (tok_ns_reserve(tmp, ns->len * 2 + 8) < 0)
        return DSP_ENOMEM;
    for (size_t i = 0; i < ns->len;) {
        size_t cl;
        uint32_t c = tok_utf8_next(ns->s + i, &cl), lo[3];
        int n = tok_lower(c, lo);
        if (tok_ns_reserve(tmp, 12) < 0)
            return DSP_ENOMEM;
        for (int k = 0; k < n; k++)
            ns_put(tmp, lo[k], ns->al[i]);
        i += cl;
    }
    ns_swap(ns, tmp);
    return 0;
}

/* Remove the chars for which drop() is true; the others keep their spans. */
static void filter(tok_ns *ns, int (*drop)(uint32_t))
{
    size_t w = 0;
    for (size_t i = 0; i < ns->len;) {
        size_t cl;
        uint32_t c = tok_utf8_next(ns->s + i, &cl);
        if (!drop(c)) {
            memmove(ns->s + w, ns->s + i, cl);
            memmove(ns->al + w, ns->al + i, cl * sizeof *ns->al);
            w += cl;
        }
        i += cl;
    }
    ns->len = w;
}

/* BertNormalizer: clean text (drop NUL, U+FFFD and control chars, whitespace to ' '), spaces
 * around CJK ideographs, strip accents (NFD, drop Mn), lower case. */
static int bert(const tok_normalizer *n, tok_ns *ns, tok_ns *tmp)
{
    int strip = n->strip_accents < 0 ? n->lowercase : n->strip_accents;
    if (is_ascii(ns->s, ns->len)) {
        size_t w = 0;
        for (size_t i = 0; i < ns->len; i++) {
            unsigned char c = (unsigned char)ns->s[i];
            if (n->clean_text) {
                if (c == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F)
                    continue;
                if (c == '\t' || c == '\n' || c == '\r' || c == 0x0B || c == 0x0C)
                    c = ' ';
            }
            if (n->lowercase && c >= 'A' && c <= 'Z')
                c = (unsigned char)(c + 32);
            ns->s[w] = (char)c;
            ns->al[w++] = ns->al[i];
        }
        ns->len = w;
        return 0;
    }
    if (n->clean_text || n->chinese) {
        tmp->len = 0;
        tmp->shift = ns->shift;
        if (tok_ns_reserve(tmp, ns->len * 3 + 8) < 0)
            return DSP_ENOMEM;
        for (size_t i = 0; i < ns->len;) {
            size_t cl;
            uint32_t c = tok_utf8_next(ns->s + i, &cl);
            tok_span a = ns->al[i];
            i += cl;
            if (n->clean_text) {
                if (c == 0 || c == 0xFFFD || tok_is_bert_control(c))
                    continue;
                if (tok_is_whitespace(c))
                    c = ' ';
            }
            if (n->chinese && tok_is_chinese(c)) {
                tok_span before = tmp->len ? tmp->al[tmp->len - 1] : (tok_span){ ns->shift, ns->shift };
                ns_put(tmp, ' ', before);
                ns_put(tmp, c, a);
                ns_put(tmp, ' ', a);
            } else {
                ns_put(tmp, c, a);
            }
        }
        ns_swap(ns, tmp);
    }
    if (strip) {
        int err = unicode_form(ns, tmp, 0, 0);
        if (err)
            return err;
        filter(ns, tok_is_mn);
    }
    if (n->lowercase)
        return lowercase(ns, tmp);
    return 0;
}

static int strip_ws(tok_ns *ns, int left, int right)
{
    size_t a = 0, b = ns->len;
    if (left)
        while (a < b) {
            size_t cl;
            uint32_t c = tok_utf8_next(ns->s + a, &cl);
            if (!tok_is_whitespace(c))
                break;
            a += cl;
        }
    if (right)
        while (b > a) {
            size_t cl = tok_utf8_prev_len(ns->s, b), l2;
            uint32_t c = tok_utf8_next(ns->s + b - cl, &l2);
            if (!tok_is_whitespace(c))
                break;
            b -= cl;
        }
    if (a > 0) {
        memmove(ns->s, ns->s + a, b - a);
        memmove(ns->al, ns->al + a, (b - a) * sizeof *ns->al);
    }
    ns->len = b - a;
    return 0;
}

/* Replace every match of the pattern by content: the new chars are insertions after the
 * removed match, so they take the span of the match's last char. */
static int replace(tok_tokenizer *t, const tok_normalizer *n, tok_ns *ns, tok_ns *tmp)
{
    tmp->len = 0;
    tmp->shift = ns->shift;
    size_t i = 0;
    for (;;) {
        size_t ms, me;
        int found;
        if (n->is_regex) {
            found = tok_regex_find((tok_regex *)&n->re, ns->s, ns->len, i, &ms, &me);
            if (found < 0)
                return tok_fail(t, DSP_EFORMAT, "Replace normalizer: regex match failed");
            if (found && me == ms) {        /* an empty match replaces nothing here */
                if (ms >= ns->len) {
                    found = 0;
                } else {
                    size_t cl = char_len_at(ns->s, ms);
                    if (tok_ns_reserve(tmp, cl) < 0)
                        return DSP_ENOMEM;
                    memcpy(tmp->s + tmp->len, ns->s + i, ms + cl - i);
                    memcpy(tmp->al + tmp->len, ns->al + i, (ms + cl - i) * sizeof *ns->al);
                    tmp->len += ms + cl - i;
                    i = ms + cl;
                    continue;
                }
            }
        } else {
            found = 0;
            if (n->pattern_len)
                for (size_t k = i; k + n->pattern_len <= ns->len; k++)
                    if (memcmp(ns->s + k, n->pattern, n->pattern_len) == 0) {
                        ms = k;
                        me = k + n->pattern_len;
                        found = 1;
                        break;
                    }
        }
        size_t end = found ? ms : ns->len;
        if (tok_ns_reserve(tmp, end - i + n->content_len) < 0)
            return DSP_ENOMEM;
        memcpy(tmp->s + tmp->len, ns->s + i, end - i);
        memcpy(tmp->al + tmp->len, ns->al + i, (end - i) * sizeof *ns->al);
        tmp->len += end - i;
        if (!found)
            break;
        tok_span a = ns->al[me - 1];
        memcpy(tmp->s + tmp->len, n->content, n->content_len);
        for (size_t k = 0; k < n->content_len; k++)
            tmp->al[tmp->len + k] = a;
        tmp->len += n->content_len;
        i = me;
    }
    ns_swap(ns, tmp);
    return 0;
}

static int prepend(const tok_normalizer *n, tok_ns *ns, tok_ns *tmp)
{
    if (ns->len == 0 || n->content_len == 0)
        return 0;
    tmp->len = 0;
    tmp->shift = ns->shift;
    if (tok_ns_reserve(tmp, ns->len + n->content_len) < 0)
        return DSP_ENOMEM;
    tok_span a = ns->al[0];
    memcpy(tmp->s, n->content, n->content_len);
    for (size_t k = 0; k < n->content_len; k++)
        tmp->al[k] = a;
    memcpy(tmp->s + n->content_len, ns->s, ns->len);
    memcpy(tmp->al + n->content_len, ns->al, ns->len * sizeof *ns->al);
    tmp->len = ns->len + n->content_len;
    ns_swap(ns, tmp);
    return 0;
}

int tok_normalize(tok_tokenizer *t, const tok_normalizer *n, tok_ns *ns)
{
    tok_ns *tmp = &t->w.ns2;
    switch (n->type) {
    case TOK_NORM_BERT:
        return bert(n, ns, tmp);
    case TOK_NORM_NFD:
        return unicode_form(ns, tmp, 0, 0);
    case TOK_NORM_NFKD:
        return unicode_form(ns, tmp, 1, 0);
    case TOK_NORM_NFC:
        return unicode_form(ns, tmp, 0, 1);
    case TOK_NORM_NFKC:
        return unicode_form(ns, tmp, 1, 1);
    case TOK_NORM_LOWER:
        return lowercase(ns, tmp);
    case TOK_NORM_STRIP:
        return strip_ws(ns, n->left, n->right);
    case TOK_NORM_STRIP_ACCENTS:
        filter(ns, tok_is_mn);
        return 0;
    case TOK_NORM_REPLACE:
        return replace(t, n, ns, tmp);
    case TOK_NORM_PREPEND:
        return prepend(n, ns, tmp);
    case TOK_NORM_SEQ:
        for (size_t i = 0; i < n->nseq; i++) {
            int err = tok_normalize(t, &n->seq[i], ns);
            if (err)
                return err;
        }
        return 0;
    default:
        return tok_fail(t, DSP_EUNSUPPORTED, "unknown normalizer");
    }
}

void tok_normalizer_free(tok_normalizer *n)
{
    if (!n)
        return;
    free(n->pattern);
    free(n->content);
    tok_regex_free(&n->re);
    for (size_t i = 0; i < n->nseq; i++)
        tok_normalizer_free(&n->seq[i]);
    free(n->seq);
}
