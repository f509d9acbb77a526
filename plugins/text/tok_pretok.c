/* tok_pretok.c - pre-tokenizers (BERT, ByteLevel, Split, Whitespace, Punctuation, Digits, Metaspace) and the regex wrapper. */
#include <stdio.h>
#include <utf8proc.h>

#include "tok_int.h"

/* ---- regular expressions ------------------------------------------------------------------ */
/* tokenizer.json regexes are Oniguruma's; PCRE2 differs in a few classes. \s is Unicode
 * White_Space in Oniguruma (PCRE2 adds U+180E), \w is letters, marks, decimal digits and
 * connector punctuation, \h a hex digit: write them out as explicit classes. */
#define WS_CLASS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WORD_CLASS "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"
#define HEX_CLASS "0-9a-fA-F"

static char *translate_regex(const char *p)
{
    size_t n = strlen(p), cap = n * 8 + 256, o = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 200 > cap) {
            cap *= 2;
            char *q = realloc(out, cap);
            if (!q) {
                free(out);
                return NULL;
            }
            out = q;
        }
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *cls = e == 's' || e == 'S' ? WS_CLASS : e == 'w' || e == 'W' ? WORD_CLASS
                            : e == 'h' || e == 'H' ? HEX_CLASS : NULL;
            int neg = e == 'S' || e == 'W' || e == 'H';
            if (cls && !(in_class && neg)) {
                o += (size_t)sprintf(out + o, "%s%s%s", in_class ? "" : neg ? "[^" : "[", cls,
                                     in_class ? "" : "]");
                i++;
                continue;
            }
            out[o++] = c;
            out[o++] = e;
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            out[o++] = c;
            if (i + 1 < n && p[i + 1] == '^')
                out[o++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']')
                out[o++] = p[++i];
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {   /* [:alpha:] */
            const char *end = strstr(p + i, ":]");
            if (end) {
                size_t k = (size_t)(end - (p + i)) + 2;
                memcpy(out + o, p + i, k);
                o += k;
                i += k - 1;
                continue;
            }
        }
        if (in_class && c == ']')
            in_class = 0;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

int tok_regex_compile(tok_regex *r, const char *pattern, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    char *pat = translate_regex(pattern);
    if (!pat) {
        snprintf(err, errlen, "out of memory");
        return DSP_ENOMEM;
    }
    int ec;
    PCRE2_SIZE eo;
    r->code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    free(pat);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, errlen, "regex /%s/ does not compile: %s", pattern, (const char *)msg);
        return DSP_EFORMAT;
    }
    r->jit = pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE) == 0;
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    if (!r->md) {
        pcre2_code_free(r->code);
        r->code = NULL;
        snprintf(err, errlen, "out of memory");
        return DSP_ENOMEM;
    }
    return 0;
}

int tok_regex_find(tok_regex *r, const char *s, size_t len, size_t start, size_t *ms, size_t *me)
{
    if (start > len)
        return 0;
    int rc = r->jit ? pcre2_jit_match(r->code, (PCRE2_SPTR)s, len, start, 0, r->md, NULL)
                    : pcre2_match(r->code, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, r->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0)
        return DSP_EFORMAT;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

void tok_regex_free(tok_regex *r)
{
    if (r->md)
        pcre2_match_data_free(r->md);
    if (r->code)
        pcre2_code_free(r->code);
    memset(r, 0, sizeof *r);
}

/* ---- the split arena ------------------------------------------------------------------------ */
int64_t tok_arena_append(tok_work *w, const char *s, const tok_span *al, size_t n)
{
    if (w->blen + n > UINT32_MAX)
        return DSP_ELIMIT;
    if (w->blen + n > w->bcap) {
        size_t c = w->bcap ? w->bcap : 1024;
        while (c < w->blen + n)
            c *= 2;
        char *b = realloc(w->buf, c);
        if (!b)
            return DSP_ENOMEM;
        w->buf = b;
        tok_span *a = realloc(w->al, c * sizeof *a);
        if (!a)
            return DSP_ENOMEM;
        w->al = a;
        w->bcap = c;
    }
    int64_t off = (int64_t)w->blen;
    if (s) {
        memcpy(w->buf + w->blen, s, n);
        memcpy(w->al + w->blen, al, n * sizeof *al);
    }
    w->blen += n;
    return off;
}

int tok_emit_split(tok_work *w, uint32_t off, uint32_t len, uint32_t shift, int32_t id)
{
    if (len == 0 && id < 0)
        return 0;
    if (TOK_RESERVE(w->sp2, w->sp2cap, w->nsp2, 1) < 0)
        return DSP_ENOMEM;
    w->sp2[w->nsp2++] = (tok_split){ off, len, shift, id };
    return 0;
}

/* A slice [a, b) of split sp (byte offsets within it). */
static inline int emit_slice(tok_work *w, const tok_split *sp, size_t a, size_t b)
{
    if (b <= a)
        return 0;
    return tok_emit_split(w, sp->off + (uint32_t)a, (uint32_t)(b - a), w->al[sp->off + a].s, -1);
}

/* ---- matches and split behaviours --------------------------------------------------------- */
typedef struct match { uint32_t s, e; int m; } match;
typedef struct mlist { match *v; size_t n, cap; } mlist;

static int mpush(mlist *l, size_t s, size_t e, int m)
{
    if (TOK_RESERVE(l->v, l->cap, l->n, 1) < 0)
        return DSP_ENOMEM;
    l->v[l->n++] = (match){ (uint32_t)s, (uint32_t)e, m };
    return 0;
}

/* The pieces of s covered by matches and the gaps between them (the library's
 * Pattern::find_matches). */
static int regex_matches(tok_tokenizer *t, tok_regex *re, const char *s, size_t len, mlist *l)
{
    size_t prev = 0, pos = 0;
    l->n = 0;
    while (pos <= len) {
        size_t ms, me;
        int r = tok_regex_find(re, s, len, pos, &ms, &me);
        if (r < 0)
            return tok_fail(t, DSP_EFORMAT, "regex match failed (pattern too complex for the input?)");
        if (r == 0)
            break;
        if (me == ms) {             /* empty match: skip a char */
            if (ms >= len)
                break;
            pos = ms + (size_t)((unsigned char)s[ms] < 0x80 ? 1 : (unsigned char)s[ms] < 0xE0 ? 2
                                : (unsigned char)s[ms] < 0xF0 ? 3 : 4);
            continue;
        }
        if (prev != ms && mpush(l, prev, ms, 0) < 0)
            return DSP_ENOMEM;
        if (mpush(l, ms, me, 1) < 0)
            return DSP_ENOMEM;
        prev = pos = me;
    }
    if (prev != len && mpush(l, prev, len, 0) < 0)
        return DSP_ENOMEM;
    return 0;
}

static int literal_matches(const char *pat, size_t plen, const char *s, size_t len, mlist *l)
{
    size_t prev = 0;
    l->n = 0;
    if (plen == 0)
        return len ? mpush(l, 0, len, 0) : 0;
    for (size_t i = 0; i + plen <= len;) {
        if (memcmp(s + i, pat, plen) == 0) {
            if (prev != i && mpush(l, prev, i, 0) < 0)
                return DSP_ENOMEM;
            if (mpush(l, i, i + plen, 1) < 0)
                return DSP_ENOMEM;
            i += plen;
            prev = i;
        } else {
            i++;
        }
    }
    if (prev != len && mpush(l, prev, len, 0) < 0)
        return DSP_ENOMEM;
    return 0;
}

/* Every char for which pred() holds is a match of its own. */
static int char_matches(int (*pred)(uint32_t), const char *s, size_t len, mlist *l)
{
    size_t prev = 0;
    l->n = 0;
    for (size_t i = 0; i < len;) {
        size_t cl;
        uint32_t c = tok_utf8_next(s + i, &cl);
        if (pred(c)) {
            if (prev != i && mpush(l, prev, i, 0) < 0)
                return DSP_ENOMEM;
            if (mpush(l, i, i + cl, 1) < 0)
                return DSP_ENOMEM;
            prev = i + cl;
        }
        i += cl;
    }
    if (prev != len && mpush(l, prev, len, 0) < 0)
        return DSP_ENOMEM;
    return 0;
}

/* Cut split sp along the matches, as NormalizedString::split does with each behaviour. */
static int split_by(tok_work *w, const tok_split *sp, mlist *l, int behavior, int invert)
{
    if (invert)
        for (size_t i = 0; i < l->n; i++)
            l->v[i].m = !l->v[i].m;
    size_t n = 0;
    match *v = l->v;
    switch (behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < l->n; i++)
            v[i].m = 0;
        n = l->n;
        break;
    case TOK_SPLIT_REMOVED:
        n = l->n;
        break;
    case TOK_SPLIT_CONTIGUOUS: {
        int prevm = 0;
        for (size_t i = 0; i < l->n; i++) {
            int m = v[i].m;
            if (m == prevm && n > 0)
                v[n - 1].e = v[i].e;
            else
                v[n++] = (match){ v[i].s, v[i].e, 0 };
            prevm = m;
        }
        break;
    }
    case TOK_SPLIT_MERGED_PREV: {
        int prevm = 0;
        for (size_t i = 0; i < l->n; i++) {
            int m = v[i].m;
            if (m && !prevm && n > 0)
                v[n - 1].e = v[i].e;
            else
                v[n++] = (match){ v[i].s, v[i].e, 0 };
            prevm = m;
        }
        break;
    }
    case TOK_SPLIT_MERGED_NEXT: {
        /* right to left, then the result is reversed */
        int prevm = 0;
        size_t k = l->n;
        for (size_t i = l->n; i-- > 0;) {
            int m = v[i].m;
            if (m && !prevm && k < l->n)
                v[k].s = v[i].s;
            else
                v[--k] = (match){ v[i].s, v[i].e, 0 };
            prevm = m;
        }
        memmove(v, v + k, (l->n - k) * sizeof *v);
        n = l->n - k;
        break;
    }
    default:
        return DSP_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (!v[i].m) {
            int err = emit_slice(w, sp, v[i].s, v[i].e);
            if (err)
                return err;
        }
    return 0;
}

/* ---- the pre-tokenizers ---------------------------------------------------------------------- */
static int bert_split(tok_work *w, const tok_split *sp)
{
    const char *s = w->buf + sp->off;
    size_t start = 0, i = 0;
    while (i < sp->len) {
        size_t cl;
        uint32_t c;
        if ((unsigned char)s[i] < 0x80) {
            c = (unsigned char)s[i];
            cl = 1;
        } else {
            c = tok_utf8_next(s + i, &cl);
        }
        int ws = tok_is_whitespace(c);
        if (ws || tok_is_punct(c)) {
            int err = emit_slice(w, sp, start, i);
            if (!err && !ws)
                err = emit_slice(w, sp, i, i + cl);
            if (err)
                return err;
            start = i + cl;
        }
        i += cl;
    }
    return emit_slice(w, sp, start, sp->len);
}

/* Map a split's bytes to the byte-level alphabet: each byte becomes one char aligned with the
 * original char it belongs to. */
static int bytelevel_map(tok_work *w, uint32_t off, uint32_t len, uint32_t shift)
{
    /* at most two output bytes per input byte */
    int64_t o = tok_arena_append(w, NULL, NULL, (size_t)len * 2);
    if (o < 0)
        return (int)o;
    char *d = w->buf + o;
    tok_span *da = w->al + o;
    const char *s = w->buf + off;
    const tok_span *al = w->al + off;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = tok_byte_char((unsigned char)s[i]);
        if (c < 0x80) {
            d[k] = (char)c;
            da[k++] = al[i];
        } else {
            d[k] = (char)(0xC0 | (c >> 6));
            d[k + 1] = (char)(0x80 | (c & 0x3F));
            da[k] = da[k + 1] = al[i];
            k += 2;
        }
    }
    w->blen = (size_t)o + k;
    return tok_emit_split(w, (uint32_t)o, (uint32_t)k, shift, -1);
}

static int digits_pred(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

static int swap_splits(tok_work *w)
{
    tok_split *t = w->sp;
    size_t c = w->spcap;
    w->sp = w->sp2;
    w->spcap = w->sp2cap;
    w->nsp = w->nsp2;
    w->sp2 = t;
    w->sp2cap = c;
    w->nsp2 = 0;
    return 0;
}

static int pretok_one(tok_tokenizer *t, const tok_pretok *p)
{
    tok_work *w = &t->w;
    mlist l = { 0 };
    int err = 0;
    w->nsp2 = 0;
    for (size_t k = 0; k < w->nsp && !err; k++) {
        tok_split sp = w->sp[k];
        if (sp.id >= 0) {
            err = tok_emit_split(w, sp.off, sp.len, sp.shift, sp.id);
            continue;
        }
        switch (p->type) {
        case TOK_PRE_BERT:
            err = bert_split(w, &sp);
            break;
        case TOK_PRE_WHITESPACE_SPLIT:
            err = char_matches(tok_is_whitespace, w->buf + sp.off, sp.len, &l);
            if (!err)
                err = split_by(w, &sp, &l, TOK_SPLIT_REMOVED, 0);
            break;
        case TOK_PRE_PUNCT:
            err = char_matches(tok_is_punct, w->buf + sp.off, sp.len, &l);
            if (!err)
                err = split_by(w, &sp, &l, p->behavior, 0);
            break;
        case TOK_PRE_DIGITS:
            err = char_matches(digits_pred, w->buf + sp.off, sp.len, &l);
            if (!err)
                err = split_by(w, &sp, &l, p->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, 0);
            break;
        case TOK_PRE_WHITESPACE:
        case TOK_PRE_SPLIT:
            if (p->is_regex)
                err = regex_matches(t, (tok_regex *)&p->re, w->buf + sp.off, sp.len, &l);
            else
                err = literal_matches(p->literal, p->literal_len, w->buf + sp.off, sp.len, &l);
            if (!err)
                err = split_by(w, &sp, &l, p->type == TOK_PRE_WHITESPACE ? TOK_SPLIT_REMOVED : p->behavior,
                               p->type == TOK_PRE_WHITESPACE ? 1 : p->invert);
            break;
        case TOK_PRE_BYTELEVEL: {
            if (p->add_prefix_space && w->buf[sp.off] != ' ') {
                tok_span a = w->al[sp.off];
                int64_t o = tok_arena_append(w, NULL, NULL, (size_t)sp.len + 1);
                if (o < 0) {
                    err = (int)o;
                    break;
                }
                w->buf[o] = ' ';
                w->al[o] = a;
                memcpy(w->buf + o + 1, w->buf + sp.off, sp.len);
                memcpy(w->al + o + 1, w->al + sp.off, sp.len * sizeof *w->al);
                sp.off = (uint32_t)o;
                sp.len++;
            }
            size_t first = w->nsp2;
            if (p->use_regex) {
                err = regex_matches(t, (tok_regex *)&p->re, w->buf + sp.off, sp.len, &l);
                if (!err)
                    err = split_by(w, &sp, &l, TOK_SPLIT_ISOLATED, 0);
            } else {
                err = tok_emit_split(w, sp.off, sp.len, sp.shift, -1);
            }
            /* then every new split is mapped to the byte-level alphabet */
            size_t last = w->nsp2;
            for (size_t i = first; i < last && !err; i++) {
                tok_split s2 = w->sp2[i];
                err = bytelevel_map(w, s2.off, s2.len, s2.shift);
                if (!err) {
                    w->sp2[i] = w->sp2[w->nsp2 - 1];
                    w->nsp2--;
                }
            }
            break;
        }
        case TOK_PRE_METASPACE: {
            /* spaces become the replacement char (aligned with the space), then the
             * replacement is prepended, then the split is cut before each replacement */
            char rep[4];
            size_t rl = tok_utf8_put(rep, p->replacement);
            size_t nsp = 0;
            for (size_t i = 0; i < sp.len; i++)
                nsp += w->buf[sp.off + i] == ' ';
            int pre = p->prepend_scheme == TOK_PREPEND_ALWAYS ||
                      (p->prepend_scheme == TOK_PREPEND_FIRST && sp.shift == 0);
            size_t need = sp.len + nsp * (rl - 1) + (pre ? rl : 0);
            int64_t o = tok_arena_append(w, NULL, NULL, need);
            if (o < 0) {
                err = (int)o;
                break;
            }
            size_t q = (size_t)o;
            for (size_t i = 0; i < sp.len; i++) {
                if (w->buf[sp.off + i] == ' ') {
                    memcpy(w->buf + q, rep, rl);
                    for (size_t j = 0; j < rl; j++)
                        w->al[q + j] = w->al[sp.off + i];
                    q += rl;
                } else {
                    w->buf[q] = w->buf[sp.off + i];
                    w->al[q++] = w->al[sp.off + i];
                }
            }
            size_t body = q - (size_t)o;
            if (pre && !(body >= rl && memcmp(w->buf + o, rep, rl) == 0)) {
                memmove(w->buf + o + rl, w->buf + o, body);
                memmove(w->al + o + rl, w->al + o, body * sizeof *w->al);
                memcpy(w->buf + o, rep, rl);
                for (size_t j = 0; j < rl; j++)
                    w->al[o + j] = w->al[o + rl];
                body += rl;
            }
            w->blen = (size_t)o + body;
            tok_split ns = { (uint32_t)o, (uint32_t)body, sp.shift, -1 };
            if (p->split) {
                err = literal_matches(rep, rl, w->buf + ns.off, ns.len, &l);
                if (!err)
                    err = split_by(w, &ns, &l, TOK_SPLIT_MERGED_NEXT, 0);
            } else {
                err = tok_emit_split(w, ns.off, ns.len, ns.shift, -1);
            }
            break;
        }
        default:
            err = tok_fail(t, DSP_EUNSUPPORTED, "unknown pre-tokenizer");
        }
    }
    free(l.v);
    if (err)
        return err == DSP_ENOMEM ? tok_fail(t, err, "out of memory") : err;
    return swap_splits(w);
}

int tok_pretokenize(tok_tokenizer *t, const tok_pretok *p)
{
    if (p->type == TOK_PRE_SEQ) {
        for (size_t i = 0; i < p->nseq; i++) {
            int err = tok_pretokenize(t, &p->seq[i]);
            if (err)
                return err;
        }
        return 0;
    }
    return pretok_one(t, p);
}

void tok_pretok_free(tok_pretok *p)
{
    if (!p)
        return;
    tok_regex_free(&p->re);
    free(p->literal);
    for (size_t i = 0; i < p->nseq; i++)
        tok_pretok_free(&p->seq[i]);
    free(p->seq);
}
