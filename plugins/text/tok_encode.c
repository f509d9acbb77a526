/* tok_encode.c - the encode pipeline (added tokens, normalizer, pre-tokenizer, model, post-processor, truncation, padding) and decode. */
#include <stdio.h>

#include "tok_int.h"

tok_options tok_default_options(void)
{
    return (tok_options){
        .add_special_tokens = 1,
        .truncation = -1,
        .trunc_strategy = TOK_TRUNC_LONGEST_FIRST,
        .trunc_direction = TOK_RIGHT,
        .padding = TOK_PAD_FILE,
        .pad_direction = TOK_RIGHT,
        .pad_id = -1,
        .offsets = TOK_OFFSETS_CHARS,
        .invalid_utf8 = TOK_UTF8_REPLACE,
    };
}

const char *tok_errmsg(const tok_tokenizer *t)
{
    return t ? t->err : "no tokenizer";
}

const char *tok_describe(const tok_tokenizer *t)
{
    return t->desc;
}

/* ---- input text ------------------------------------------------------------------------------ */
/* The text as valid UTF-8: itself, or a copy with each maximal invalid subsequence replaced by
 * U+FFFD (Python's errors="replace"). */
static int valid_text(tok_tokenizer *t, const char *s, size_t len, int policy, const char **out, size_t *olen)
{
    size_t bad, good = tok_utf8_valid_prefix(s, len, &bad);
    if (good == len) {
        *out = s;
        *olen = len;
        return 0;
    }
    if (policy == TOK_UTF8_ERROR)
        return tok_fail(t, DSP_EFORMAT, "invalid UTF-8 at byte %zu (0x%02X); decode the text first or use "
                        "invalid_utf8=replace", good, (unsigned char)s[good]);
    tok_work *w = &t->w;
    w->text_len = 0;
    size_t i = 0;
    while (i < len) {
        good = tok_utf8_valid_prefix(s + i, len - i, &bad);
        if (TOK_RESERVE(w->text, w->text_cap, w->text_len, good + 3) < 0)
            return tok_fail(t, DSP_ENOMEM, "out of memory");
        memcpy(w->text + w->text_len, s + i, good);
        w->text_len += good;
        i += good;
        if (bad) {
            memcpy(w->text + w->text_len, "\xEF\xBF\xBD", 3);
            w->text_len += 3;
            i += bad;
        }
    }
    *out = w->text;
    *olen = w->text_len;
    return 0;
}

/* ---- splitting out added tokens and normalizing ------------------------------------------------ */
/* Append text[s, e) to the arena, each byte aligned with its char. */
static int64_t arena_identity(tok_work *w, const char *text, size_t s, size_t e)
{
    int64_t o = tok_arena_append(w, NULL, NULL, e - s);
    if (o < 0)
        return o;
    memcpy(w->buf + o, text + s, e - s);
    tok_span *al = w->al + o;
    for (size_t i = s; i < e;) {
        unsigned char b = (unsigned char)text[i];
        size_t cl = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        for (size_t k = 0; k < cl; k++)
            al[i - s + k] = (tok_span){ (uint32_t)i, (uint32_t)(i + cl) };
        i += cl;
    }
    return o;
}

static int matcher_empty(const tok_matcher *m)
{
    return m->start[256] == 0;
}

/* The piece text[s, e) between added tokens: normalized, then cut at normalized added tokens. */
static int normalize_piece(tok_tokenizer *t, const char *text, size_t s, size_t e)
{
    tok_work *w = &t->w;
    int err;
    if (!t->normalizer && matcher_empty(&t->norm_match)) {
        int64_t o = arena_identity(w, text, s, e);
        if (o < 0)
            return tok_fail(t, (int)o, "out of memory");
        return tok_emit_split(w, (uint32_t)o, (uint32_t)(e - s), (uint32_t)s, -1);
    }
    if (!t->normalizer) {       /* nothing changes the text: cut it where the added tokens are */
        if ((err = tok_added_segments(t, &t->norm_match, text + s, e - s)))
            return tok_fail(t, err, "out of memory");
        for (size_t k = 0; k < w->nseg; k++) {
            struct tok_seg g = w->seg[k];
            int64_t o = arena_identity(w, text, s + g.s, s + g.e);
            if (o < 0)
                return tok_fail(t, (int)o, "out of memory");
            if ((err = tok_emit_split(w, (uint32_t)o, g.e - g.s, (uint32_t)(s + g.s), g.id)))
                return tok_fail(t, err, "out of memory");
        }
        return 0;
    }
    tok_ns *ns = &w->ns;
    ns->len = 0;
    ns->shift = (uint32_t)s;
    if (tok_ns_reserve(ns, e - s + 1) < 0)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    memcpy(ns->s, text + s, e - s);
    for (size_t i = s; i < e;) {
        unsigned char b = (unsigned char)text[i];
        size_t cl = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        for (size_t k = 0; k < cl; k++)
            ns->al[i - s + k] = (tok_span){ (uint32_t)i, (uint32_t)(i + cl) };
        i += cl;
    }
    ns->len = e - s;
    if (t->normalizer && (err = tok_normalize(t, t->normalizer, ns)))
        return err == DSP_ENOMEM ? tok_fail(t, err, "out of memory") : err;
    if (ns->len == 0)
        return 0;
    if (matcher_empty(&t->norm_match)) {
        int64_t o = tok_arena_append(w, ns->s, ns->al, ns->len);
        if (o < 0)
            return tok_fail(t, (int)o, "out of memory");
        return tok_emit_split(w, (uint32_t)o, (uint32_t)ns->len, ns->al[0].s, -1);
    }
    if ((err = tok_added_segments(t, &t->norm_match, ns->s, ns->len)))
        return tok_fail(t, err, "out of memory");
    for (size_t k = 0; k < w->nseg; k++) {
        struct tok_seg g = w->seg[k];
        if (g.e <= g.s)
            continue;
        int64_t o = tok_arena_append(w, ns->s + g.s, ns->al + g.s, g.e - g.s);
        if (o < 0)
            return tok_fail(t, (int)o, "out of memory");
        if ((err = tok_emit_split(w, (uint32_t)o, g.e - g.s, ns->al[g.s].s, g.id)))
            return tok_fail(t, err, "out of memory");
    }
    return 0;
}

/* The leading and trailing spaces of a token's text (ByteLevel's trim_offsets). */
static void spaces_of(const char *s, size_t len, int32_t *lead, int32_t *trail)
{
    int32_t l = 0, run = 0;
    int in_lead = 1;
    for (size_t i = 0; i < len;) {
        size_t cl;
        uint32_t c = tok_utf8_next(s + i, &cl);
        int sp = c == 0x120 || tok_is_whitespace(c);
        if (in_lead && sp)
            l++;
        else
            in_lead = 0;
        run = sp ? run + 1 : 0;
        i += cl;
    }
    *lead = l;
    *trail = run;
}

/* One sequence (HF's encode_single_sequence) into e: offsets in the sequence's text. */
static int encode_seq(tok_tokenizer *t, const char *s, size_t len, int32_t type_id, const tok_options *o,
                      tok_encoding *e)
{
    tok_work *w = &t->w;
    const char *text = NULL;
    size_t tlen = 0;
    int err;
    e->n = 0;
    if ((err = valid_text(t, s, len, o->invalid_utf8, &text, &tlen)))
        return err;
    if (tlen > UINT32_MAX / 4)
        return tok_fail(t, DSP_ELIMIT, "text of %zu bytes is too long to tokenize at once", tlen);
    w->blen = 0;
    w->nsp = w->nsp2 = 0;
    w->nraw = 0;
    /* 1. added tokens matched in the raw text, then the pieces between them normalized */
    if (tlen > 0) {
        if (matcher_empty(&t->raw_match)) {
            err = normalize_piece(t, text, 0, tlen);
        } else {
            if ((err = tok_added_segments(t, &t->raw_match, text, tlen)))
                return tok_fail(t, err, "out of memory");
            struct tok_seg *sg = w->seg;        /* keep this list while normalize_piece reuses seg */
            size_t nsg = w->nseg, sgcap = w->segcap;
            w->seg = w->seg2;
            w->segcap = w->seg2cap;
            for (size_t k = 0; k < nsg && !err; k++) {
                if (sg[k].id >= 0) {
                    int64_t off = arena_identity(w, text, sg[k].s, sg[k].e);
                    err = off < 0 ? tok_fail(t, (int)off, "out of memory")
                                  : tok_emit_split(w, (uint32_t)off, sg[k].e - sg[k].s, sg[k].s, sg[k].id);
                } else {
                    err = normalize_piece(t, text, sg[k].s, sg[k].e);
                }
            }
            w->seg2 = w->seg;
            w->seg2cap = w->segcap;
            w->seg = sg;
            w->segcap = sgcap;
        }
        if (err)
            return err;
    }
    /* the pieces become the input of the pre-tokenizer */
    tok_split *x = w->sp;
    size_t xc = w->spcap;
    w->sp = w->sp2;
    w->spcap = w->sp2cap;
    w->nsp = w->nsp2;
    w->sp2 = x;
    w->sp2cap = xc;
    w->nsp2 = 0;
    /* 2. pre-tokenizer */
    if (t->pretok && w->nsp && (err = tok_pretokenize(t, t->pretok)))
        return err;
    /* 3. model */
    for (size_t k = 0; k < w->nsp; k++) {
        const tok_split *sp = &w->sp[k];
        if (sp->id >= 0) {
            if (TOK_RESERVE(w->raw, w->rawcap, w->nraw, 1) < 0)
                return tok_fail(t, DSP_ENOMEM, "out of memory");
            tok_raw *r = &w->raw[w->nraw++];
            r->id = sp->id;
            r->s = w->al[sp->off].s;
            r->e = w->al[sp->off + sp->len - 1].e;
            if (t->need_trim)
                spaces_of(w->buf + sp->off, sp->len, &r->lead, &r->trail);
            else
                r->lead = r->trail = 0;
            continue;
        }
        size_t first = w->nraw;
        switch (t->model.type) {
        case TOK_MODEL_WORDPIECE:
            err = tok_wordpiece_tokenize(t, sp);
            break;
        case TOK_MODEL_BPE:
            err = tok_bpe_tokenize(t, sp);
            break;
        case TOK_MODEL_UNIGRAM:
            err = tok_unigram_tokenize(t, sp);
            break;
        default:
            err = tok_wordlevel_tokenize(t, sp);
        }
        if (err)
            return err;
        if (t->need_trim)
            for (size_t i = first; i < w->nraw; i++) {
                int32_t id = w->raw[i].id;
                if (id >= 0 && (size_t)id < t->model.n_ids) {
                    w->raw[i].lead = t->lead_trail[2 * id];
                    w->raw[i].trail = t->lead_trail[2 * id + 1];
                }
            }
    }
    /* 4. the encoding, offsets in characters (Python str) or bytes */
    if (tok_encoding_reserve(e, w->nraw) < 0)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    int chars = o->offsets == TOK_OFFSETS_CHARS;
    if (chars) {
        size_t i = 0;
        for (; i < tlen && (unsigned char)text[i] < 0x80; i++)
            ;
        chars = i < tlen;       /* ASCII: chars are bytes */
    }
    if (chars) {
        if (TOK_RESERVE(w->cmap, w->cmapcap, 0, tlen + 1) < 0)
            return tok_fail(t, DSP_ENOMEM, "out of memory");
        uint32_t c = 0;
        for (size_t i = 0; i < tlen; i++) {
            if (((unsigned char)text[i] & 0xC0) != 0x80 && i > 0)
                c++;
            w->cmap[i] = c;
        }
    }
    for (size_t i = 0; i < w->nraw; i++) {
        const tok_raw *r = &w->raw[i];
        uint32_t a = r->s, b = r->e;
        if (chars && a < tlen) {
            uint32_t ca = w->cmap[a];
            b = b < tlen ? w->cmap[b] : (b >= 1 && b - 1 < tlen ? w->cmap[b - 1] + 1 : ca + 2);
            a = ca;
        }
        e->ids[i] = r->id;
        e->type_ids[i] = type_id;
        e->attention_mask[i] = 1;
        e->special_mask[i] = 0;
        e->offsets[2 * i] = a;
        e->offsets[2 * i + 1] = b;
        e->trim[2 * i] = r->lead;
        e->trim[2 * i + 1] = r->trail;
    }
    e->n = w->nraw;
    return 0;
}

/* ---- truncation, post-processing and padding --------------------------------------------------- */
static int resolve_pad(tok_tokenizer *t, const tok_options *o, int *mode, int64_t *len, int64_t *mult,
                       int *dir, int32_t *id, int32_t *type_id)
{
    if (o->padding == TOK_PAD_FILE) {
        *mode = t->pad_mode;
        *len = t->pad_length;
        *mult = t->pad_multiple;
        *dir = t->pad_direction;
        *id = (int32_t)t->pad_id;
        *type_id = (int32_t)t->pad_type_id;
        return 0;
    }
    *mode = o->padding;
    *len = o->pad_length;
    *mult = o->pad_multiple_of;
    *dir = o->pad_direction;
    *type_id = (int32_t)o->pad_type_id;
    if (*mode == TOK_PAD_NONE)
        return 0;
    if (*mode == TOK_PAD_FIXED && *len < 0)
        return tok_fail(t, DSP_EINVAL, "padding to a negative length (%lld)", (long long)*len);
    if (o->pad_id >= 0) {
        *id = (int32_t)o->pad_id;
        return 0;
    }
    const char *names[] = { o->pad_token, t->pad_token, "[PAD]", "<pad>", "<|padding|>", "<|endoftext|>" };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (!names[k])
            continue;
        int32_t v = tok_token_to_id(t, names[k], strlen(names[k]));
        if (v >= 0) {
            *id = v;
            return 0;
        }
        if (k == 0)
            return tok_fail(t, DSP_EINVAL, "pad_token '%s' is not in the vocabulary", names[k]);
    }
    return tok_fail(t, DSP_EINVAL, "padding needs a pad token: the tokenizer has none of [PAD], <pad>; give pad_id");
}

static size_t pad_target(int mode, int64_t len, int64_t mult, size_t longest)
{
    size_t target = mode == TOK_PAD_FIXED ? (size_t)len : longest;
    if (mult > 0 && target % (size_t)mult)
        target += (size_t)mult - target % (size_t)mult;
    return target;
}

static int encode_one(tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                      const tok_options *o, tok_encoding *enc)
{
    tok_work *w = &t->w;
    int err;
    enc->n = 0;
    if (!a && alen)
        return tok_fail(t, DSP_EINVAL, "no text");
    if ((err = encode_seq(t, a ? a : "", alen, 0, o, &w->ea)))
        return err;
    if (b && (err = encode_seq(t, b, blen, 1, o, &w->eb)))
        return err;
    int on = o->truncation < 0 ? t->trunc_on : o->truncation;
    if (on) {
        int64_t max = o->truncation < 0 ? t->trunc_max : o->max_length;
        int strategy = o->truncation < 0 ? t->trunc_strategy : o->trunc_strategy;
        int dir = o->truncation < 0 ? t->trunc_direction : o->trunc_direction;
        int added = o->add_special_tokens ? tok_post_added(t->post, b != NULL) : 0;
        if (max < 0)
            return tok_fail(t, DSP_EINVAL, "truncation to a negative max_length (%lld)", (long long)max);
        if ((err = tok_truncate(t, &w->ea, b ? &w->eb : NULL, max > added ? max - added : 0, strategy, dir)))
            return err;
    }
    if ((err = tok_encoding_reserve(enc, w->ea.n + (b ? w->eb.n : 0) + 8)))
        return tok_fail(t, err, "out of memory");
    return tok_post_process(t, t->post, &w->ea, b ? &w->eb : NULL, o->add_special_tokens, enc);
}

int tok_encode(tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, const tok_options *o,
               tok_encoding *enc)
{
    tok_options def = tok_default_options();
    if (!o)
        o = &def;
    t->err[0] = '\0';
    int err = encode_one(t, a, alen, b, blen, o, enc);
    if (err) {
        enc->n = 0;
        return err;
    }
    int mode, dir;
    int64_t len, mult;
    int32_t id, type_id;
    if ((err = resolve_pad(t, o, &mode, &len, &mult, &dir, &id, &type_id))) {
        enc->n = 0;
        return err;
    }
    if (mode != TOK_PAD_NONE && (err = tok_pad(enc, pad_target(mode, len, mult, enc->n), dir, id, type_id))) {
        enc->n = 0;
        return tok_fail(t, err, "out of memory");
    }
    return 0;
}

int tok_encode_batch(tok_tokenizer *t, size_t n, const char *const *a, const size_t *alen,
                     const char *const *b, const size_t *blen, const tok_options *o, tok_encoding *enc)
{
    tok_options def = tok_default_options();
    if (!o)
        o = &def;
    t->err[0] = '\0';
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        int err = encode_one(t, a[i], alen[i], b ? b[i] : NULL, b ? blen[i] : 0, o, &enc[i]);
        if (err) {
            for (size_t k = 0; k <= i; k++)
                enc[k].n = 0;
            return err;
        }
        if (enc[i].n > longest)
            longest = enc[i].n;
    }
    int mode, dir, err;
    int64_t len, mult;
    int32_t id, type_id;
    if ((err = resolve_pad(t, o, &mode, &len, &mult, &dir, &id, &type_id))) {
        for (size_t k = 0; k < n; k++)
            enc[k].n = 0;
        return err;
    }
    if (mode == TOK_PAD_NONE)
        return 0;
    size_t target = pad_target(mode, len, mult, longest);
    for (size_t i = 0; i < n; i++)
        if ((err = tok_pad(&enc[i], target, dir, id, type_id)))
            return tok_fail(t, err, "out of memory");
    return 0;
}

/* ---- vocabulary and decoding ------------------------------------------------------------------ */
static const tok_added *added_by_id(const tok_tokenizer *t, int32_t id)
{
    size_t lo = 0, hi = t->nadded;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const tok_added *a = &t->added[t->added_by_id[mid]];
        if (a->id == id)
            return a;
        if (a->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int32_t tok_token_to_id(const tok_tokenizer *t, const char *token, size_t len)
{
    int32_t k = tok_strmap_get(&t->added_map, token, len);
    if (k >= 0)
        return t->added[k].id;
    return tok_strmap_get(&t->model.vocab, token, len);
}

const char *tok_id_to_token(const tok_tokenizer *t, int32_t id, size_t *len)
{
    const tok_added *a = added_by_id(t, id);
    if (a) {
        if (len)
            *len = a->len;
        return a->content;
    }
    if (id < 0 || (size_t)id >= t->model.n_ids || t->model.id_off[id] == UINT32_MAX)
        return NULL;
    if (len)
        *len = t->model.id_len[id];
    return t->model.vocab.pool + t->model.id_off[id];
}

size_t tok_vocab_size(const tok_tokenizer *t)
{
    size_t n = t->model.n_ids;
    for (size_t i = 0; i < t->nadded; i++)
        if ((size_t)t->added[i].id + 1 > n)
            n = (size_t)t->added[i].id + 1;
    return n;
}

int tok_decode(tok_tokenizer *t, const int32_t *ids, size_t n, int skip_special_tokens, char **out,
               size_t *outlen)
{
    *out = NULL;
    if (outlen)
        *outlen = 0;
    tok_str *toks = calloc(n + 1, sizeof *toks);
    size_t nt = 0;
    int err = 0;
    if (!toks)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = tok_id_to_token(t, ids[i], &len);
        if (!s)
            continue;       /* unknown ids are skipped, as the library does */
        if (skip_special_tokens) {
            int32_t k = tok_strmap_get(&t->added_map, s, len);
            if (k >= 0 && t->added[k].special)
                continue;
        }
        toks[nt].s = malloc(len + 1);
        if (!toks[nt].s) {
            err = DSP_ENOMEM;
            break;
        }
        memcpy(toks[nt].s, s, len);
        toks[nt].s[len] = '\0';
        toks[nt].n = len;
        nt++;
    }
    if (!err && t->decoder)
        err = tok_decode_tokens(t, t->decoder, toks, &nt);
    size_t total = 1;
    for (size_t i = 0; i < nt; i++)
        total += toks[i].n + 1;
    char *s = err ? NULL : malloc(total);
    if (s) {
        size_t k = 0;
        for (size_t i = 0; i < nt; i++) {
            if (!t->decoder && i > 0)
                s[k++] = ' ';
            memcpy(s + k, toks[i].s, toks[i].n);
            k += toks[i].n;
        }
        s[k] = '\0';
        *out = s;
        if (outlen)
            *outlen = k;
    } else if (!err) {
        err = DSP_ENOMEM;
    }
    for (size_t i = 0; i < nt; i++)
        free(toks[i].s);
    free(toks);
    return err ? tok_fail(t, err, "out of memory") : 0;
}
