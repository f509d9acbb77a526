/* tok_decode.c - decoding ids to text: WordPiece, ByteLevel, Metaspace, BPE, Replace, ByteFallback, Fuse, Strip. */
#include <stdio.h>

#include "tok_int.h"

/* Tokens are byte strings with a length: decoded text may hold NUL bytes. */

static int sb_add(tok_str *b, size_t *cap, const char *s, size_t n)
{
    if (TOK_RESERVE(b->s, *cap, b->n, n + 1) < 0)
        return DSP_ENOMEM;
    if (n)
        memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return 0;
}

static const char *find(const char *s, size_t n, const char *pat, size_t pl)
{
    if (pl == 0 || pl > n)
        return NULL;
    for (size_t i = 0; i + pl <= n; i++)
        if (s[i] == pat[0] && memcmp(s + i, pat, pl) == 0)
            return s + i;
    return NULL;
}

/* x with every occurrence of pat replaced by rep, into *out. */
static int replace_str(const tok_str *x, const char *pat, size_t pl, const char *rep, size_t rl, tok_str *out)
{
    tok_str b = { 0 };
    size_t cap = 0;
    const char *s = x->s, *end = x->s + x->n;
    int err = sb_add(&b, &cap, "", 0);
    while (!err && s < end) {
        const char *m = find(s, (size_t)(end - s), pat, pl);
        if (!m) {
            err = sb_add(&b, &cap, s, (size_t)(end - s));
            break;
        }
        err = sb_add(&b, &cap, s, (size_t)(m - s));
        if (!err)
            err = sb_add(&b, &cap, rep, rl);
        s = m + pl;
    }
    if (err) {
        free(b.s);
        return err;
    }
    *out = b;
    return 0;
}

static int replace_tok(tok_str *x, const char *pat, const char *rep)
{
    tok_str r;
    int err = replace_str(x, pat, strlen(pat), rep, strlen(rep), &r);
    if (err)
        return err;
    free(x->s);
    *x = r;
    return 0;
}

/* The library's WordPiece cleanup of detokenized text. */
static int cleanup(tok_str *x)
{
    static const char *const pairs[][2] = {
        { " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
        { " n't", "n't" }, { " 'm", "'m" }, { " do not", " don't" }, { " 's", "'s" },
        { " 've", "'ve" }, { " 're", "'re" },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (!find(x->s, x->n, pairs[i][0], strlen(pairs[i][0])))
            continue;
        int err = replace_tok(x, pairs[i][0], pairs[i][1]);
        if (err)
            return err;
    }
    return 0;
}

static void free_toks(tok_str *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].s);
}

/* Byte-level chars back to bytes; a token with a char outside the alphabet keeps its UTF-8.
 * Invalid UTF-8 in the result becomes U+FFFD (from_utf8_lossy). */
static int bytelevel(tok_str *v, size_t *n)
{
    tok_str raw = { 0 }, out = { 0 };
    size_t rcap = 0, ocap = 0;
    int err = sb_add(&out, &ocap, "", 0);
    for (size_t i = 0; i < *n && !err; i++) {
        const char *t = v[i].s;
        size_t len = v[i].n, mark = raw.n, bad;
        int ok = tok_utf8_valid_prefix(t, len, &bad) == len;
        for (size_t k = 0; k < len && ok && !err;) {
            size_t cl;
            int b = tok_char_to_byte(tok_utf8_next(t + k, &cl));
            if (b < 0) {
                ok = 0;
                break;
            }
            char c = (char)b;
            err = sb_add(&raw, &rcap, &c, 1);
            k += cl;
        }
        if (!ok && !err) {
            raw.n = mark;
            err = sb_add(&raw, &rcap, t, len);
        }
    }
    for (size_t k = 0; k < raw.n && !err;) {
        size_t bad, good = tok_utf8_valid_prefix(raw.s + k, raw.n - k, &bad);
        err = sb_add(&out, &ocap, raw.s + k, good);
        k += good;
        if (bad && !err) {
            err = sb_add(&out, &ocap, "\xEF\xBF\xBD", 3);
            k += bad;
        }
    }
    free(raw.s);
    if (err) {
        free(out.s);
        return err;
    }
    free_toks(v, *n);
    v[0] = out;
    *n = 1;
    return 0;
}

/* <0xAB> -> 0xAB, or -1 */
static int byte_token(const tok_str *t)
{
    const char *s = t->s;
    if (t->n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Runs of <0xAB> tokens become their bytes when those are valid UTF-8, else one U+FFFD per
 * byte token. */
static int byte_fallback(tok_str *v, size_t *n)
{
    size_t w = 0;
    for (size_t i = 0; i < *n;) {
        if (byte_token(&v[i]) < 0) {
            v[w++] = v[i++];
            continue;
        }
        size_t j = i, cap = 0, bad;
        tok_str b = { 0 };
        int err = sb_add(&b, &cap, "", 0);
        while (!err && j < *n && byte_token(&v[j]) >= 0) {
            char c = (char)byte_token(&v[j]);
            err = sb_add(&b, &cap, &c, 1);
            j++;
        }
        if (!err && tok_utf8_valid_prefix(b.s, b.n, &bad) != b.n) {
            b.n = 0;
            for (size_t k = i; k < j && !err; k++)
                err = sb_add(&b, &cap, "\xEF\xBF\xBD", 3);
        }
        if (err) {
            free(b.s);
            return err;
        }
        free_toks(v + i, j - i);
        v[w++] = b;
        i = j;
    }
    *n = w;
    return 0;
}

static int decode_one(const tok_decoder *d, tok_str *v, size_t *n)
{
    int err = 0;
    switch (d->type) {
    case TOK_DEC_WORDPIECE: {
        size_t pl = strlen(d->prefix);
        for (size_t i = 0; i < *n && !err; i++) {
            if (i != 0) {
                tok_str nt = { 0 };
                size_t cap = 0;
                if (pl && v[i].n >= pl && memcmp(v[i].s, d->prefix, pl) == 0) {
                    err = sb_add(&nt, &cap, v[i].s + pl, v[i].n - pl);
                } else {
                    err = sb_add(&nt, &cap, " ", 1);
                    if (!err)
                        err = sb_add(&nt, &cap, v[i].s, v[i].n);
                }
                if (err) {
                    free(nt.s);
                    break;
                }
                free(v[i].s);
                v[i] = nt;
            }
            if (d->cleanup)
                err = cleanup(&v[i]);
        }
        return err;
    }
    case TOK_DEC_BYTELEVEL:
        return *n ? bytelevel(v, n) : 0;
    case TOK_DEC_METASPACE: {
        char rep[5] = { 0 };
        tok_utf8_put(rep, d->replacement);
        for (size_t i = 0; i < *n && !err; i++)
            err = replace_tok(&v[i], rep, i == 0 && d->prepend_scheme != TOK_PREPEND_NEVER ? "" : " ");
        return err;
    }
    case TOK_DEC_BPE:
        for (size_t i = 0; i < *n && !err; i++)
            err = replace_tok(&v[i], d->suffix, i + 1 == *n ? "" : " ");
        return err;
    case TOK_DEC_REPLACE:
        for (size_t i = 0; i < *n && !err; i++)
            err = replace_tok(&v[i], d->pattern, d->content);
        return err;
    case TOK_DEC_BYTEFALLBACK:
        return byte_fallback(v, n);
    case TOK_DEC_FUSE: {
        if (*n == 0)
            return 0;
        tok_str b = { 0 };
        size_t cap = 0;
        err = sb_add(&b, &cap, "", 0);
        for (size_t i = 0; i < *n && !err; i++)
            err = sb_add(&b, &cap, v[i].s, v[i].n);
        if (err) {
            free(b.s);
            return err;
        }
        free_toks(v, *n);
        v[0] = b;
        *n = 1;
        return 0;
    }
    case TOK_DEC_STRIP: {
        size_t cl = strlen(d->strip_content);
        for (size_t i = 0; i < *n && cl; i++) {
            char *s = v[i].s;
            size_t a = 0, b = v[i].n;
            for (int64_t k = 0; k < d->start && a + cl <= b && memcmp(s + a, d->strip_content, cl) == 0; k++)
                a += cl;
            for (int64_t k = 0; k < d->stop && b >= a + cl && memcmp(s + b - cl, d->strip_content, cl) == 0; k++)
                b -= cl;
            memmove(s, s + a, b - a);
            s[b - a] = '\0';
            v[i].n = b - a;
        }
        return 0;
    }
    case TOK_DEC_SEQ:
        for (size_t i = 0; i < d->nseq && !err; i++)
            err = decode_one(&d->seq[i], v, n);
        return err;
    }
    return DSP_EINVAL;
}

int tok_decode_tokens(tok_tokenizer *t, const tok_decoder *d, tok_str *toks, size_t *n)
{
    (void)t;
    return decode_one(d, toks, n);
}

void tok_decoder_free(tok_decoder *d)
{
    if (!d)
        return;
    free(d->prefix);
    free(d->suffix);
    free(d->pattern);
    free(d->content);
    for (size_t i = 0; i < d->nseq; i++)
        tok_decoder_free(&d->seq[i]);
    free(d->seq);
}
