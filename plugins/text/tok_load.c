/* tok_load.c - loading a tokenizer: tokenizer.json (model, added tokens, truncation, padding) or a BERT vocab.txt. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tok_json.h"

/* ---- model ------------------------------------------------------------------------------------ */
static int set_id_token(tok_model *m, int32_t id, uint32_t off, uint32_t len)
{
    if (id < 0)
        return DSP_EFORMAT;
    if ((size_t)id >= m->n_ids) {
        size_t n = (size_t)id + 1, old = m->n_ids;
        uint32_t *o = realloc(m->id_off, n * sizeof *o);
        if (!o)
            return DSP_ENOMEM;
        m->id_off = o;
        uint32_t *l = realloc(m->id_len, n * sizeof *l);
        if (!l)
            return DSP_ENOMEM;
        m->id_len = l;
        for (size_t i = old; i < n; i++)
            m->id_off[i] = UINT32_MAX;
        m->n_ids = n;
    }
    m->id_off[id] = off;
    m->id_len[id] = len;
    return 0;
}

static int vocab_add(loader *L, tok_model *m, const char *s, size_t len, int32_t id)
{
    if (id < 0 || id > INT32_MAX - 1)
        return LFAIL(L, DSP_EFORMAT, "token id %d out of range", (int)id);
    int err = tok_strmap_put(&m->vocab, s, len, id);
    if (err)
        return err;
    const struct tok_strent *e = tok_strmap_ent(&m->vocab, s, len);
    return e ? set_id_token(m, id, e->off, e->len) : DSP_EINVAL;
}

static int read_vocab_object(loader *L, tok_model *m, const json_t *vocab)
{
    if (!json_is_object(vocab))
        return LFAIL(L, DSP_EFORMAT, "\"vocab\" must be an object of token -> id");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v))
            return LFAIL(L, DSP_EFORMAT, "vocab entry '%s' is not an integer id", key);
        int err = vocab_add(L, m, key, strlen(key), (int32_t)json_integer_value(v));
        if (err)
            return err == DSP_ENOMEM ? LFAIL(L, err, "out of memory") : err;
    }
    return 0;
}

/* Unigram: [[piece, score], ...], ids in list order. */
static int read_unigram_vocab(loader *L, tok_model *m, const json_t *vocab)
{
    if (!json_is_array(vocab) || json_array_size(vocab) == 0)
        return LFAIL(L, DSP_EFORMAT, "Unigram \"vocab\" must be a non-empty list of [piece, score]");
    size_t n = json_array_size(vocab);
    if (n > INT32_MAX / 2)
        return LFAIL(L, DSP_ELIMIT, "vocabulary too large");
    m->score = malloc(n * sizeof *m->score);
    if (!m->score)
        return DSP_ENOMEM;
    m->min_score = 1e300;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(vocab, i);
        const json_t *p = json_array_get(e, 0), *sc = json_array_get(e, 1);
        if (!json_is_string(p) || !json_is_number(sc))
            return LFAIL(L, DSP_EFORMAT, "vocab[%zu] is not [piece, score]", i);
        int err = vocab_add(L, m, json_string_value(p), json_string_length(p), (int32_t)i);
        if (err)
            return err;
        m->score[i] = json_number_value(sc);
        if (m->score[i] < m->min_score)
            m->min_score = m->score[i];
    }
    /* the prefixes of the pieces let the Viterbi search stop as soon as no piece can match */
    for (size_t k = 0; k < m->vocab.n; k++) {
        const struct tok_strent *e = &m->vocab.ent[k];
        const char *p = m->vocab.pool + e->off;
        for (size_t l = 1; l < e->len; l++) {
            if (((unsigned char)p[l] & 0xC0) == 0x80 || tok_strmap_get(&m->prefixes, p, l) != -1)
                continue;
            int err = tok_strmap_put(&m->prefixes, p, l, -2);
            if (err)
                return err;
        }
    }
    for (size_t k = 0; k < m->vocab.n; k++) {
        const struct tok_strent *e = &m->vocab.ent[k];
        int err = tok_strmap_put(&m->prefixes, m->vocab.pool + e->off, e->len, e->val);
        if (err)
            return err;
    }
    return 0;
}

static int finish_model(tok_model *m)
{
    for (int i = 0; i < 256; i++)
        m->byte_id[i] = -1;
    for (int i = 0; i < 512; i++)
        m->char_id[i] = -1;
    m->max_token_len = 1;
    for (size_t k = 0; k < m->vocab.n; k++) {
        const struct tok_strent *e = &m->vocab.ent[k];
        const char *s = m->vocab.pool + e->off;
        if (e->len > m->max_token_len)
            m->max_token_len = e->len;
        if (e->len >= 1 && e->len <= 2) {
            size_t cl, bad;
            if (tok_utf8_valid_prefix(s, e->len, &bad) == e->len) {
                uint32_t c = tok_utf8_next(s, &cl);
                if (cl == e->len && c < 512)
                    m->char_id[c] = e->val;
            }
        }
        if (e->len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>') {
            int v = 0, ok = 1;
            for (int i = 3; i < 5; i++) {
                char c = s[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                ok &= d >= 0;
                v = v * 16 + d;
            }
            if (ok)
                m->byte_id[v] = e->val;
        }
        if (m->prefix_len && e->len >= m->prefix_len && memcmp(s, m->prefix, m->prefix_len) == 0) {
            int err = tok_strmap_put(&m->cont, s + m->prefix_len, e->len - m->prefix_len, e->val);
            if (err)
                return err;
        }
    }
    return 0;
}

static int read_merges(loader *L, tok_model *m, const json_t *merges)
{
    if (!json_is_array(merges))
        return LFAIL(L, DSP_EFORMAT, "BPE model without a \"merges\" list");
    size_t n = json_array_size(merges);
    int err = tok_pairmap_init(&m->merges, n);
    if (err)
        return LFAIL(L, err, "out of memory");
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(e)) {        /* "a b" */
            a = json_string_value(e);
            const char *sp = strchr(a, ' ');
            if (!sp) {
                free(buf);
                return LFAIL(L, DSP_EFORMAT, "merges[%zu] '%s' is not two tokens separated by a space", i, a);
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            al = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            bl = json_string_length(json_array_get(e, 1));
        } else {
            free(buf);
            return LFAIL(L, DSP_EFORMAT, "merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
        }
        int32_t ia = tok_strmap_get(&m->vocab, a, al), ib = tok_strmap_get(&m->vocab, b, bl);
        size_t skip = m->prefix_len < bl ? m->prefix_len : bl;
        if (TOK_RESERVE(buf, cap, 0, al + bl + 1) < 0) {
            free(buf);
            return LFAIL(L, DSP_ENOMEM, "out of memory");
        }
        memcpy(buf, a, al);
        memcpy(buf + al, b + skip, bl - skip);
        int32_t inew = tok_strmap_get(&m->vocab, buf, al + bl - skip);
        if (ia < 0 || ib < 0 || inew < 0) {
            err = LFAIL(L, DSP_EFORMAT, "merges[%zu]: token '%.*s' is not in the vocabulary", i,
                        (int)(ia < 0 ? al : ib < 0 ? bl : al + bl - skip), ia < 0 ? a : ib < 0 ? b : buf);
            free(buf);
            return err;
        }
        if ((err = tok_pairmap_put(&m->merges, ia, ib, (int32_t)i, inew))) {
            free(buf);
            return LFAIL(L, err, "cannot store merges[%zu]", i);
        }
    }
    free(buf);
    return 0;
}

static int read_model(loader *L, const json_t *o, tok_model *m)
{
    const char *type = get_str(o, "type");
    strcpy(L->path, "model");
    if (!json_is_object(o))
        return LFAIL(L, DSP_EFORMAT, "missing or not an object");
    if (!type) {    /* files written before "type" existed */
        if (json_object_get(o, "merges"))
            type = "BPE";
        else if (json_object_get(o, "continuing_subword_prefix") && json_object_get(o, "max_input_chars_per_word"))
            type = "WordPiece";
        else if (json_object_get(o, "unk_token") && json_is_object(json_object_get(o, "vocab")))
            type = "WordLevel";
        else
            return LFAIL(L, DSP_EFORMAT, "no \"type\" and the fields do not say which model this is");
    }
    const char *unk = get_str(o, "unk_token");
    m->unk_id = -1;
    if (strcmp(type, "WordPiece") == 0) {
        m->type = TOK_MODEL_WORDPIECE;
        const char *pre = get_str(o, "continuing_subword_prefix");
        m->prefix = strdup(pre ? pre : "##");
        m->prefix_len = strlen(m->prefix);
        m->max_chars = get_int(o, "max_input_chars_per_word", 100);
    } else if (strcmp(type, "BPE") == 0) {
        m->type = TOK_MODEL_BPE;
        const char *pre = get_str(o, "continuing_subword_prefix"), *suf = get_str(o, "end_of_word_suffix");
        m->prefix = strdup(pre ? pre : "");
        m->prefix_len = strlen(m->prefix);
        m->suffix = strdup(suf ? suf : "");
        m->suffix_len = strlen(m->suffix);
        m->fuse_unk = get_bool(o, "fuse_unk", 0);
        m->byte_fallback = get_bool(o, "byte_fallback", 0);
        m->ignore_merges = get_bool(o, "ignore_merges", 0);
        const json_t *dp = json_object_get(o, "dropout");
        if (json_is_number(dp) && json_number_value(dp) > 0)
            return LFAIL(L, DSP_EUNSUPPORTED, "BPE dropout (%g) is random; only dropout null or 0 is supported",
                         json_number_value(dp));
    } else if (strcmp(type, "WordLevel") == 0) {
        m->type = TOK_MODEL_WORDLEVEL;
    } else if (strcmp(type, "Unigram") == 0) {
        m->type = TOK_MODEL_UNIGRAM;
        m->byte_fallback = get_bool(o, "byte_fallback", 0);
        const json_t *uid = json_object_get(o, "unk_id");
        m->unk_id = json_is_integer(uid) ? (int32_t)json_integer_value(uid) : -1;
        int err = read_unigram_vocab(L, m, json_object_get(o, "vocab"));
        if (!err)
            err = finish_model(m);
        if (err)
            return err < 0 && err != DSP_ENOMEM ? err : LFAIL(L, err, "out of memory");
        if (m->unk_id >= (int32_t)m->n_ids)
            return LFAIL(L, DSP_EFORMAT, "unk_id %d is not in the vocabulary", (int)m->unk_id);
        return 0;
    } else {
        return LFAIL(L, DSP_EUNSUPPORTED, "unsupported model type '%s' (supported: WordPiece, BPE, WordLevel, "
                     "Unigram)", type);
    }
    if (!m->prefix && m->type != TOK_MODEL_WORDLEVEL)
        return LFAIL(L, DSP_ENOMEM, "out of memory");
    int err = read_vocab_object(L, m, json_object_get(o, "vocab"));
    if (!err)
        err = finish_model(m);
    if (err)
        return err < 0 && err != DSP_ENOMEM ? err : LFAIL(L, err, "out of memory");
    if (unk) {
        m->unk_id = tok_strmap_get(&m->vocab, unk, strlen(unk));
        if (m->unk_id < 0 && m->type == TOK_MODEL_WORDPIECE)
            return LFAIL(L, DSP_EFORMAT, "unk_token '%s' is not in the vocabulary", unk);
    } else if (m->type == TOK_MODEL_WORDPIECE) {
        return LFAIL(L, DSP_EFORMAT, "WordPiece model without \"unk_token\"");
    }
    if (m->type == TOK_MODEL_BPE)
        return read_merges(L, m, json_object_get(o, "merges"));
    return 0;
}

/* ---- added tokens ------------------------------------------------------------------------------ */
static int add_token(tok_tokenizer *t, const char *content, size_t len, int32_t id, int special,
                     int single_word, int lstrip, int rstrip, int normalized)
{
    tok_added *v = realloc(t->added, (t->nadded + 1) * sizeof *v);
    if (!v)
        return DSP_ENOMEM;
    t->added = v;
    tok_added *a = &v[t->nadded];
    memset(a, 0, sizeof *a);
    a->content = dupn(content, len);
    if (!a->content)
        return DSP_ENOMEM;
    a->len = len;
    a->id = id;
    a->special = (uint8_t)special;
    a->single_word = (uint8_t)single_word;
    a->lstrip = (uint8_t)lstrip;
    a->rstrip = (uint8_t)rstrip;
    a->normalized = (uint8_t)normalized;
    t->nadded++;
    return tok_strmap_put(&t->added_map, content, len, (int32_t)(t->nadded - 1));
}

static int read_added(loader *L, const json_t *arr)
{
    tok_tokenizer *t = L->t;
    if (!arr || json_is_null(arr))
        return 0;
    strcpy(L->path, "added_tokens");
    if (!json_is_array(arr))
        return LFAIL(L, DSP_EFORMAT, "must be a list");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *o = json_array_get(arr, i);
        const char *content = get_str(o, "content");
        const json_t *id = json_object_get(o, "id");
        if (!content || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX - 1)
            return LFAIL(L, DSP_EFORMAT, "entry %zu needs \"content\" and a valid \"id\"", i);
        int special = get_bool(o, "special", 0);
        int err = add_token(t, content, json_string_length(json_object_get(o, "content")),
                            (int32_t)json_integer_value(id), special, get_bool(o, "single_word", 0),
                            get_bool(o, "lstrip", 0), get_bool(o, "rstrip", 0),
                            get_bool(o, "normalized", !special));
        if (err)
            return LFAIL(L, err, "out of memory");
    }
    return 0;
}

/* ---- truncation and padding -------------------------------------------------------------------- */
static int read_trunc_pad(loader *L, const json_t *root)
{
    tok_tokenizer *t = L->t;
    const json_t *tr = json_object_get(root, "truncation"), *pd = json_object_get(root, "padding");
    if (json_is_object(tr)) {
        strcpy(L->path, "truncation");
        t->trunc_on = 1;
        t->trunc_max = get_int(tr, "max_length", 512);
        const char *s = get_str(tr, "strategy"), *d = get_str(tr, "direction");
        t->trunc_strategy = !s || strcmp(s, "LongestFirst") == 0 ? TOK_TRUNC_LONGEST_FIRST
                          : strcmp(s, "OnlyFirst") == 0 ? TOK_TRUNC_ONLY_FIRST
                          : strcmp(s, "OnlySecond") == 0 ? TOK_TRUNC_ONLY_SECOND : -1;
        if (t->trunc_strategy < 0)
            return LFAIL(L, DSP_EFORMAT, "unknown strategy '%s'", s);
        t->trunc_direction = d && strcmp(d, "Left") == 0 ? TOK_LEFT : TOK_RIGHT;
        t->trunc_stride = (int)get_int(tr, "stride", 0);
    }
    if (json_is_object(pd)) {
        strcpy(L->path, "padding");
        const json_t *st = json_object_get(pd, "strategy");
        if (json_is_string(st) && strcmp(json_string_value(st), "BatchLongest") == 0) {
            t->pad_mode = TOK_PAD_LONGEST;
        } else if (json_is_object(st) && json_is_integer(json_object_get(st, "Fixed"))) {
            t->pad_mode = TOK_PAD_FIXED;
            t->pad_length = get_int(st, "Fixed", 0);
        } else {
            return LFAIL(L, DSP_EFORMAT, "strategy must be \"BatchLongest\" or {\"Fixed\": n}");
        }
        const char *d = get_str(pd, "direction");
        t->pad_direction = d && strcmp(d, "Left") == 0 ? TOK_LEFT : TOK_RIGHT;
        t->pad_multiple = get_int(pd, "pad_to_multiple_of", 0);
        t->pad_id = get_int(pd, "pad_id", 0);
        t->pad_type_id = get_int(pd, "pad_type_id", 0);
        const char *tk = get_str(pd, "pad_token");
        t->pad_token = strdup(tk ? tk : "[PAD]");
        if (!t->pad_token)
            return DSP_ENOMEM;
    }
    L->path[0] = '\0';
    return 0;
}

/* ---- the whole tokenizer ------------------------------------------------------------------------ */
static void count_spaces(const char *s, size_t len, int32_t *lead, int32_t *trail)
{
    /* the chars of a token that trim_offsets leaves out: Ġ (U+0120) and whitespace */
    size_t i = 0;
    *lead = *trail = 0;
    int in_lead = 1;
    int32_t run = 0;
    while (i < len) {
        size_t cl;
        uint32_t c = tok_utf8_next(s + i, &cl);
        int sp = c == 0x120 || tok_is_whitespace(c);
        if (in_lead && sp)
            (*lead)++;
        else
            in_lead = 0;
        run = sp ? run + 1 : 0;
        i += cl;
    }
    *trail = run;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int tok_finish(tok_tokenizer *t)
{
    /* normalized forms of the normalized added tokens */
    for (size_t i = 0; i < t->nadded; i++) {
        tok_added *a = &t->added[i];
        if (!a->normalized || !t->normalizer) {
            a->norm = dupn(a->content, a->len);
            a->norm_len = a->len;
        } else {
            tok_ns ns = { 0 };
            if (tok_ns_reserve(&ns, a->len + 1) < 0)
                return DSP_ENOMEM;
            memcpy(ns.s, a->content, a->len);
            for (size_t k = 0; k < a->len; k++)
                ns.al[k] = (tok_span){ (uint32_t)k, (uint32_t)k + 1 };
            ns.len = a->len;
            int err = tok_normalize(t, t->normalizer, &ns);
            if (err) {
                tok_ns_free(&ns);
                return err;
            }
            a->norm = dupn(ns.s ? ns.s : "", ns.len);
            a->norm_len = ns.len;
            tok_ns_free(&ns);
        }
        if (!a->norm)
            return DSP_ENOMEM;
    }
    t->added_by_id = malloc((t->nadded + 1) * sizeof *t->added_by_id);
    int64_t *keys = malloc((t->nadded + 1) * sizeof *keys);
    if (!t->added_by_id || !keys) {
        free(keys);
        return DSP_ENOMEM;
    }
    for (size_t i = 0; i < t->nadded; i++)
        keys[i] = ((int64_t)t->added[i].id << 32) | (int64_t)i;
    qsort(keys, t->nadded, sizeof *keys, cmp_i64);
    for (size_t i = 0; i < t->nadded; i++)
        t->added_by_id[i] = (int32_t)(keys[i] & 0xFFFFFFFF);
    free(keys);
    int err = tok_matcher_build(t, &t->raw_match, 0);
    if (!err)
        err = tok_matcher_build(t, &t->norm_match, 1);
    if (err)
        return err;
    if (t->post && (err = tok_post_check(t, t->post)))
        return err;
    t->need_trim = tok_post_trims(t->post);
    /* leading/trailing spaces of every model token, for ByteLevel's offset trimming */
    t->lead_trail = calloc(t->model.n_ids * 2 + 2, sizeof *t->lead_trail);
    if (!t->lead_trail)
        return DSP_ENOMEM;
    for (size_t id = 0; id < t->model.n_ids; id++)
        if (t->model.id_off[id] != UINT32_MAX)
            count_spaces(t->model.vocab.pool + t->model.id_off[id], t->model.id_len[id],
                         &t->lead_trail[2 * id], &t->lead_trail[2 * id + 1]);
    static const char *const mtype[] = { "WordPiece", "BPE", "WordLevel", "Unigram" };
    snprintf(t->desc, sizeof t->desc, "%s, %zu tokens + %zu added, normalizer %s, pre-tokenizer %s, "
             "post-processor %s, decoder %s", mtype[t->model.type], t->model.vocab.n, t->nadded,
             t->normalizer ? "yes" : "none", t->pretok ? "yes" : "none", t->post ? "yes" : "none",
             t->decoder ? "yes" : "none");
    return 0;
}

static int load_root(loader *L, const json_t *root)
{
    tok_tokenizer *t = L->t;
    int err;
    if (!json_is_object(root))
        return LFAIL(L, DSP_EFORMAT, "not a JSON object");
    const json_t *x;
    if ((err = read_model(L, json_object_get(root, "model"), &t->model)))
        return err;
    L->path[0] = '\0';
    if ((x = json_object_get(root, "normalizer")) && !json_is_null(x)) {
        strcpy(L->path, "normalizer");
        t->normalizer = calloc(1, sizeof *t->normalizer);
        if (!t->normalizer)
            return DSP_ENOMEM;
        if ((err = tok_read_normalizer(L, x, t->normalizer)))
            return err;
    }
    if ((x = json_object_get(root, "pre_tokenizer")) && !json_is_null(x)) {
        strcpy(L->path, "pre_tokenizer");
        t->pretok = calloc(1, sizeof *t->pretok);
        if (!t->pretok)
            return DSP_ENOMEM;
        if ((err = tok_read_pretok(L, x, t->pretok)))
            return err;
    }
    if ((x = json_object_get(root, "post_processor")) && !json_is_null(x)) {
        strcpy(L->path, "post_processor");
        t->post = calloc(1, sizeof *t->post);
        if (!t->post)
            return DSP_ENOMEM;
        if ((err = tok_read_post(L, x, t->post)))
            return err;
    }
    if ((x = json_object_get(root, "decoder")) && !json_is_null(x)) {
        strcpy(L->path, "decoder");
        t->decoder = calloc(1, sizeof *t->decoder);
        if (!t->decoder)
            return DSP_ENOMEM;
        if ((err = tok_read_decoder(L, x, t->decoder)))
            return err;
    }
    if ((err = read_added(L, json_object_get(root, "added_tokens"))))
        return err;
    if ((err = read_trunc_pad(L, root)))
        return err;
    L->path[0] = '\0';
    return 0;
}

static tok_tokenizer *tok_new(const char *name)
{
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    const char *base = strrchr(name, '/');
    snprintf(t->name, sizeof t->name, "%s", base && base[1] ? base + 1 : name);
    return t;
}

static int finish_or_fail(tok_tokenizer *t, int err, tok_tokenizer **out, char *errbuf, size_t errlen)
{
    if (!err) {
        err = tok_finish(t);
        if (err && !t->err[0])
            tok_fail(t, err, "%s: out of memory", t->name);
    }
    if (err) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", t->err[0] ? t->err : "cannot load the tokenizer");
        tok_free(&t);
        return err;
    }
    t->err[0] = '\0';
    *out = t;
    return 0;
}

int tok_load_json(const char *json, size_t len, const char *name, tok_tokenizer **out, char *errbuf,
                  size_t errlen)
{
    *out = NULL;
    tok_tokenizer *t = tok_new(name ? name : "tokenizer.json");
    if (!t) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "out of memory");
        return DSP_ENOMEM;
    }
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    int err;
    if (!root) {
        err = tok_fail(t, DSP_EFORMAT, "%s:%d:%d: not valid JSON: %s", t->name, je.line, je.column, je.text);
    } else {
        loader L = { t, "" };
        err = load_root(&L, root);
        if (err == DSP_ENOMEM && !t->err[0])
            tok_fail(t, err, "%s: out of memory", t->name);
        json_decref(root);
    }
    return finish_or_fail(t, err, out, errbuf, errlen);
}

static int read_file(const char *path, char **data, size_t *len, char *errbuf, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? DSP_ENOENT : DSP_EIO;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *b = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!buf || bad) {
        free(buf);
        snprintf(errbuf, errlen, "%s: %s", path, bad ? "read error" : "out of memory");
        return bad ? DSP_EIO : DSP_ENOMEM;
    }
    *data = buf;
    *len = n;
    return 0;
}

/* A BERT vocab.txt: the pipeline BertTokenizerFast builds from it. */
static int load_vocab_txt(const char *path, const char *data, size_t len, int flags, tok_tokenizer **out,
                          char *errbuf, size_t errlen)
{
    *out = NULL;
    tok_tokenizer *t = tok_new(path);
    if (!t) {
        snprintf(errbuf, errlen, "out of memory");
        return DSP_ENOMEM;
    }
    loader L = { t, "" };
    tok_model *m = &t->model;
    int err = 0;
    m->type = TOK_MODEL_WORDPIECE;
    m->prefix = strdup("##");
    m->prefix_len = 2;
    m->max_chars = 100;
    m->unk_id = -1;
    if (!m->prefix)
        err = DSP_ENOMEM;
    size_t bad;
    if (!err && tok_utf8_valid_prefix(data, len, &bad) != len)
        err = LFAIL(&L, DSP_EFORMAT, "not valid UTF-8");
    int32_t id = 0;
    for (size_t i = 0; i < len && !err; id++) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - data) : len;
        err = vocab_add(&L, m, data + i, e - i, id);
        i = e + 1;
    }
    if (!err && m->vocab.n == 0)
        err = LFAIL(&L, DSP_EFORMAT, "empty vocabulary");
    if (!err)
        err = finish_model(m);
    int lower = !(flags & TOK_LOAD_CASED);
    static const char *const specials[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
    for (int i = 0; i < 5 && !err; i++) {
        int32_t sid = tok_strmap_get(&m->vocab, specials[i], strlen(specials[i]));
        if (sid < 0) {
            if (i == 0 || i == 4)
                continue;
            err = LFAIL(&L, DSP_EFORMAT, "the vocabulary has no %s token", specials[i]);
            break;
        }
        err = add_token(t, specials[i], strlen(specials[i]), sid, 1, 0, 0, 0, 0);
    }
    if (!err) {
        m->unk_id = tok_strmap_get(&m->vocab, "[UNK]", 5);
        t->normalizer = calloc(1, sizeof *t->normalizer);
        t->pretok = calloc(1, sizeof *t->pretok);
        t->post = calloc(1, sizeof *t->post);
        t->decoder = calloc(1, sizeof *t->decoder);
        if (!t->normalizer || !t->pretok || !t->post || !t->decoder)
            err = DSP_ENOMEM;
    }
    if (!err) {
        *t->normalizer = (tok_normalizer){ .type = TOK_NORM_BERT, .clean_text = 1, .chinese = 1,
                                           .strip_accents = -1, .lowercase = lower };
        t->pretok->type = TOK_PRE_BERT;
        *t->post = (tok_post){ .type = TOK_POST_BERT,
                               .cls_id = tok_strmap_get(&m->vocab, "[CLS]", 5),
                               .sep_id = tok_strmap_get(&m->vocab, "[SEP]", 5),
                               .cls = strdup("[CLS]"), .sep = strdup("[SEP]") };
        t->decoder->type = TOK_DEC_WORDPIECE;
        t->decoder->prefix = strdup("##");
        t->decoder->cleanup = 1;
        if (!t->post->cls || !t->post->sep || !t->decoder->prefix)
            err = DSP_ENOMEM;
    }
    if (err == DSP_ENOMEM)
        tok_fail(t, err, "%s: out of memory", t->name);
    return finish_or_fail(t, err, out, errbuf, errlen);
}

int tok_load(const char *path, int flags, tok_tokenizer **out, char *errbuf, size_t errlen)
{
    char tmp[1] = { 0 };
    if (!errbuf || !errlen) {
        errbuf = tmp;
        errlen = sizeof tmp;
    }
    *out = NULL;
    if (!path || !*path) {
        snprintf(errbuf, errlen, "no tokenizer path given");
        return DSP_EINVAL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return DSP_ENOENT;
    }
    char file[4096];
    snprintf(file, sizeof file, "%s", path);
    if (S_ISDIR(st.st_mode)) {
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
        if (stat(file, &st) != 0) {
            snprintf(file, sizeof file, "%s/vocab.txt", path);
            if (stat(file, &st) != 0) {
                snprintf(errbuf, errlen, "%s: a folder without tokenizer.json or vocab.txt", path);
                return DSP_ENOENT;
            }
        }
    }
    char *data;
    size_t len;
    int err = read_file(file, &data, &len, errbuf, errlen);
    if (err)
        return err;
    size_t n = strlen(file);
    if (n >= 4 && strcmp(file + n - 4, ".txt") == 0)
        err = load_vocab_txt(file, data, len, flags, out, errbuf, errlen);
    else
        err = tok_load_json(data, len, file, out, errbuf, errlen);
    free(data);
    return err;
}

void tok_free(tok_tokenizer **tp)
{
    tok_tokenizer *t = tp ? *tp : NULL;
    if (!t)
        return;
    if (t->normalizer) {
        tok_normalizer_free(t->normalizer);
        free(t->normalizer);
    }
    if (t->pretok) {
        tok_pretok_free(t->pretok);
        free(t->pretok);
    }
    if (t->post) {
        tok_post_free(t->post);
        free(t->post);
    }
    if (t->decoder) {
        tok_decoder_free(t->decoder);
        free(t->decoder);
    }
    tok_model *m = &t->model;
    tok_strmap_free(&m->vocab);
    tok_strmap_free(&m->cont);
    tok_pairmap_free(&m->merges);
    free(m->id_off);
    free(m->id_len);
    free(m->prefix);
    free(m->suffix);
    free(m->score);
    tok_strmap_free(&m->prefixes);
    for (size_t i = 0; i < t->nadded; i++) {
        free(t->added[i].content);
        free(t->added[i].norm);
    }
    free(t->added);
    tok_strmap_free(&t->added_map);
    tok_matcher_free(&t->raw_match);
    tok_matcher_free(&t->norm_match);
    free(t->lead_trail);
    free(t->pad_token);
    tok_work *w = &t->w;
    free(w->text);
    free(w->buf);
    free(w->al);
    free(w->sp);
    free(w->sp2);
    tok_ns_free(&w->ns);
    tok_ns_free(&w->ns2);
    free(w->raw);
    free(w->cmap);
    free(w->sym);
    free(w->heap);
    free(w->best);
    free(w->tmp);
    free(w->seg);
    free(w->seg2);
    free(t->added_by_id);
    tok_encoding_clear(&w->ea);
    tok_encoding_clear(&w->eb);
    tok_cache_free(&t->cache);
    free(t);
    *tp = NULL;
}
