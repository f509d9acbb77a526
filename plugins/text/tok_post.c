/* tok_post.c - encodings: post-processors (template, BERT, RoBERTa, byte-level offset trimming), truncation, padding. */
#include "tok_int.h"

int tok_encoding_reserve(tok_encoding *e, size_t n)
{
    if (n <= e->cap)
        return 0;
    size_t c = e->cap ? e->cap : 64;
    while (c < n)
        c *= 2;
    int32_t *ids = realloc(e->ids, c * sizeof *ids);
    if (!ids)
        return DSP_ENOMEM;
    e->ids = ids;
    int32_t *tt = realloc(e->type_ids, c * sizeof *tt);
    if (!tt)
        return DSP_ENOMEM;
    e->type_ids = tt;
    uint8_t *am = realloc(e->attention_mask, c);
    if (!am)
        return DSP_ENOMEM;
    e->attention_mask = am;
    uint8_t *sm = realloc(e->special_mask, c);
    if (!sm)
        return DSP_ENOMEM;
    e->special_mask = sm;
    uint32_t *off = realloc(e->offsets, c * 2 * sizeof *off);
    if (!off)
        return DSP_ENOMEM;
    e->offsets = off;
    int32_t *tr = realloc(e->trim, c * 2 * sizeof *tr);
    if (!tr)
        return DSP_ENOMEM;
    e->trim = tr;
    e->cap = c;
    return 0;
}

void tok_encoding_clear(tok_encoding *e)
{
    if (!e)
        return;
    free(e->ids);
    free(e->type_ids);
    free(e->attention_mask);
    free(e->special_mask);
    free(e->offsets);
    free(e->trim);
    memset(e, 0, sizeof *e);
}

/* Keep n tokens: the first n (right truncation) or the last n (left). */
static void truncate_to(tok_encoding *e, size_t n, int direction)
{
    if (n >= e->n)
        return;
    if (direction == TOK_LEFT) {
        size_t d = e->n - n;
        memmove(e->ids, e->ids + d, n * sizeof *e->ids);
        memmove(e->type_ids, e->type_ids + d, n * sizeof *e->type_ids);
        memmove(e->attention_mask, e->attention_mask + d, n);
        memmove(e->special_mask, e->special_mask + d, n);
        memmove(e->offsets, e->offsets + 2 * d, 2 * n * sizeof *e->offsets);
        memmove(e->trim, e->trim + 2 * d, 2 * n * sizeof *e->trim);
    }
    e->n = n;
}

/* The library's truncate_encodings (overflowing tokens are not kept). */
static int truncate_pair(tok_tokenizer *t, tok_encoding *a, tok_encoding *b, int64_t max_len,
                         int strategy, int direction)
{
    size_t max = max_len < 0 ? 0 : (size_t)max_len;
    if (max == 0) {
        a->n = 0;
        if (b)
            b->n = 0;
        return 0;
    }
    size_t total = a->n + (b ? b->n : 0);
    if (total <= max)
        return 0;
    size_t to_remove = total - max;
    if (strategy == TOK_TRUNC_LONGEST_FIRST) {
        if (!b) {
            truncate_to(a, total - to_remove, direction);
            return 0;
        }
        size_t n1 = a->n, n2 = b->n;
        int swap = 0;
        if (n1 > n2) {
            swap = 1;
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        if (n1 > max)
            n2 = n1;
        else
            n2 = n1 > max - n1 ? n1 : max - n1;
        if (n1 + n2 > max) {
            n1 = max / 2;
            n2 = n1 + max % 2;
        }
        if (swap) {
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        truncate_to(a, n1, direction);
        truncate_to(b, n2, direction);
        return 0;
    }
    tok_encoding *target = strategy == TOK_TRUNC_ONLY_FIRST ? a : b;
    if (!target)
        return tok_fail(t, DSP_EINVAL, "Truncation error: Second sequence not provided");
    if (target->n > to_remove) {
        truncate_to(target, target->n - to_remove, direction);
        return 0;
    }
    return tok_fail(t, DSP_EINVAL,
                    "Truncation error: Sequence to truncate too short to respect the provided max_length");
}

int tok_truncate(tok_tokenizer *t, tok_encoding *a, tok_encoding *b, int64_t max_len, int strategy,
                 int direction)
{
    return truncate_pair(t, a, b, max_len, strategy, direction);
}

/* ByteLevel's offset trimming: leading and trailing spaces (Ġ or whitespace) of a token's
 * text are left out of its offsets. */
void tok_trim_offsets(tok_encoding *e, int add_prefix_space)
{
    for (size_t i = 0; i < e->n; i++) {
        int32_t lead = e->trim[2 * i], trail = e->trim[2 * i + 1];
        if (lead == 0 && trail == 0)
            continue;
        uint32_t *o = &e->offsets[2 * i];
        if (lead > 0) {
            int first = i == 0 || o[0] == 0;
            if (first && add_prefix_space && lead == 1)
                lead = 0;
            o[0] = o[0] + (uint32_t)lead < o[1] ? o[0] + (uint32_t)lead : o[1];
        }
        if (trail > 0 && o[1] >= (uint32_t)trail)
            o[1] = o[1] - (uint32_t)trail > o[0] ? o[1] - (uint32_t)trail : o[0];
    }
}

int tok_post_added(const tok_post *p, int pair)
{
    if (!p)
        return 0;
    switch (p->type) {
    case TOK_POST_BERT:
        return pair ? 3 : 2;
    case TOK_POST_ROBERTA:
        return pair ? 4 : 2;
    case TOK_POST_BYTELEVEL:
        return 0;
    case TOK_POST_TEMPLATE: {
        int n = 0;
        const tok_piece *pc = pair ? p->pair : p->single;
        size_t np = pair ? p->npair : p->nsingle;
        for (size_t i = 0; i < np; i++)
            if (pc[i].special)
                for (size_t k = 0; k < p->nspecials; k++)
                    if (strcmp(p->specials[k].name, pc[i].name) == 0)
                        n += (int)p->specials[k].n;
        return n;
    }
    case TOK_POST_SEQ: {
        int n = 0;
        for (size_t i = 0; i < p->nseq; i++)
            n += tok_post_added(&p->seq[i], pair);
        return n;
    }
    }
    return 0;
}

/* ---- assembling the final encoding -------------------------------------------------------- */
static int append_special(tok_encoding *out, const int32_t *ids, size_t n, int32_t type_id)
{
    if (tok_encoding_reserve(out, out->n + n) < 0)
        return DSP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t k = out->n++;
        out->ids[k] = ids[i];
        out->type_ids[k] = type_id;
        out->attention_mask[k] = 1;
        out->special_mask[k] = 1;
        out->offsets[2 * k] = out->offsets[2 * k + 1] = 0;
        out->trim[2 * k] = out->trim[2 * k + 1] = 0;
    }
    return 0;
}

/* type_id < 0 keeps the sequence's own type ids */
static int append_seq(tok_encoding *out, const tok_encoding *e, int32_t type_id)
{
    if (!e || e->n == 0)        /* (an empty encoding may have no arrays yet) */
        return 0;
    if (tok_encoding_reserve(out, out->n + e->n) < 0)
        return DSP_ENOMEM;
    size_t k = out->n;
    memcpy(out->ids + k, e->ids, e->n * sizeof *e->ids);
    if (type_id < 0)
        memcpy(out->type_ids + k, e->type_ids, e->n * sizeof *e->type_ids);
    else
        for (size_t i = 0; i < e->n; i++)
            out->type_ids[k + i] = type_id;
    memcpy(out->attention_mask + k, e->attention_mask, e->n);
    memcpy(out->special_mask + k, e->special_mask, e->n);
    memcpy(out->offsets + 2 * k, e->offsets, 2 * e->n * sizeof *e->offsets);
    memcpy(out->trim + 2 * k, e->trim, 2 * e->n * sizeof *e->trim);
    out->n += e->n;
    return 0;
}

static int template_wrap(const tok_post *p, tok_encoding *a, tok_encoding *b, int add_special,
                         tok_encoding *out)
{
    const tok_piece *pc = b ? p->pair : p->single;
    size_t np = b ? p->npair : p->nsingle;
    for (size_t i = 0; i < np; i++) {
        int err = 0;
        if (pc[i].special) {
            if (!add_special)
                continue;
            for (size_t k = 0; k < p->nspecials; k++)
                if (strcmp(p->specials[k].name, pc[i].name) == 0)
                    err = append_special(out, p->specials[k].ids, p->specials[k].n, pc[i].type_id);
        } else {
            err = append_seq(out, pc[i].seq == 0 ? a : b, pc[i].type_id);
        }
        if (err)
            return err;
    }
    return 0;
}

/* The byte-level trimming of every ByteLevel processor (in a Sequence too). Trimming a and b
 * before or after they are wrapped is the same: wrapping changes neither their tokens nor
 * their offsets, and special tokens have (0, 0) offsets that trimming leaves alone. */
static void trim_all(const tok_post *p, tok_encoding *a, tok_encoding *b)
{
    if ((p->type == TOK_POST_BYTELEVEL || p->type == TOK_POST_ROBERTA) && p->trim_offsets) {
        tok_trim_offsets(a, p->add_prefix_space);
        if (b)
            tok_trim_offsets(b, p->add_prefix_space);
    }
    if (p->type == TOK_POST_SEQ)
        for (size_t i = 0; i < p->nseq; i++)
            trim_all(&p->seq[i], a, b);
}

/* The processor that adds special tokens (template, BERT, RoBERTa), or NULL; *many when there
 * are several (not supported). */
static const tok_post *wrapper_of(const tok_post *p, int *many)
{
    if (p->type == TOK_POST_BYTELEVEL)
        return NULL;
    if (p->type != TOK_POST_SEQ)
        return p;
    const tok_post *w = NULL;
    for (size_t i = 0; i < p->nseq; i++) {
        const tok_post *x = wrapper_of(&p->seq[i], many);
        if (x && w)
            *many = 1;
        if (x)
            w = x;
    }
    return w;
}

static int wrap(const tok_post *p, tok_encoding *a, tok_encoding *b, int add_special, tok_encoding *out)
{
    if (p->type == TOK_POST_TEMPLATE)
        return template_wrap(p, a, b, add_special, out);
    int roberta = p->type == TOK_POST_ROBERTA;
    int err = 0;
    if (!add_special) {         /* RoBERTa makes every type id 0, BERT keeps the sequences' */
        err = append_seq(out, a, roberta ? 0 : -1);
        if (!err)
            err = append_seq(out, b, roberta ? 0 : -1);
        return err;
    }
    err = append_special(out, &p->cls_id, 1, 0);
    if (!err)
        err = append_seq(out, a, 0);
    if (!err)
        err = append_special(out, &p->sep_id, 1, 0);
    if (!err && b) {
        int32_t bt = roberta ? 0 : 1;
        if (roberta)
            err = append_special(out, &p->sep_id, 1, bt);
        if (!err)
            err = append_seq(out, b, bt);
        if (!err)
            err = append_special(out, &p->sep_id, 1, bt);
    }
    return err;
}

int tok_post_trims(const tok_post *p)
{
    if (!p)
        return 0;
    if ((p->type == TOK_POST_BYTELEVEL || p->type == TOK_POST_ROBERTA) && p->trim_offsets)
        return 1;
    for (size_t i = 0; i < p->nseq; i++)
        if (tok_post_trims(&p->seq[i]))
            return 1;
    return 0;
}

int tok_post_check(tok_tokenizer *t, const tok_post *p)
{
    int many = 0;
    if (p)
        wrapper_of(p, &many);
    if (many)
        return tok_fail(t, DSP_EUNSUPPORTED,
                        "%s: a post-processor Sequence with more than one processor adding special tokens is not supported",
                        t->name);
    return 0;
}

int tok_post_process(tok_tokenizer *t, const tok_post *p, tok_encoding *a, tok_encoding *b,
                     int add_special, tok_encoding *out)
{
    out->n = 0;
    int many = 0, err;
    const tok_post *w = p ? wrapper_of(p, &many) : NULL;
    if (p)
        trim_all(p, a, b);
    if (w) {
        err = wrap(w, a, b, add_special, out);
    } else {
        err = append_seq(out, a, -1);
        if (!err)
            err = append_seq(out, b, -1);
    }
    if (err)
        return tok_fail(t, DSP_ENOMEM, "out of memory");
    return 0;
}
int tok_pad(tok_encoding *e, size_t target, int direction, int32_t pad_id, int32_t pad_type_id)
{
    if (e->n >= target)
        return 0;
    if (tok_encoding_reserve(e, target) < 0)
        return DSP_ENOMEM;
    size_t d = target - e->n, base = e->n;
    if (direction == TOK_LEFT) {
        memmove(e->ids + d, e->ids, e->n * sizeof *e->ids);
        memmove(e->type_ids + d, e->type_ids, e->n * sizeof *e->type_ids);
        memmove(e->attention_mask + d, e->attention_mask, e->n);
        memmove(e->special_mask + d, e->special_mask, e->n);
        memmove(e->offsets + 2 * d, e->offsets, 2 * e->n * sizeof *e->offsets);
        memmove(e->trim + 2 * d, e->trim, 2 * e->n * sizeof *e->trim);
        base = 0;
    }
    for (size_t i = base; i < base + d; i++) {
        e->ids[i] = pad_id;
        e->type_ids[i] = pad_type_id;
        e->attention_mask[i] = 0;
        e->special_mask[i] = 1;
        e->offsets[2 * i] = e->offsets[2 * i + 1] = 0;
        e->trim[2 * i] = e->trim[2 * i + 1] = 0;
    }
    e->n = target;
    return 0;
}

void tok_post_free(tok_post *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nsingle; i++)
        free(p->single[i].name);
    for (size_t i = 0; i < p->npair; i++)
        free(p->pair[i].name);
    free(p->single);
    free(p->pair);
    for (size_t i = 0; i < p->nspecials; i++) {
        free(p->specials[i].name);
        free(p->specials[i].ids);
        for (size_t k = 0; k < p->specials[i].n; k++)
            free(p->specials[i].tokens ? p->specials[i].tokens[k] : NULL);
        free(p->specials[i].tokens);
    }
    free(p->specials);
    free(p->cls);
    free(p->sep);
    for (size_t i = 0; i < p->nseq; i++)
        tok_post_free(&p->seq[i]);
    free(p->seq);
}
