/* tok_json.c - the tokenizer.json pipeline components: normalizers, pre-tokenizers, post-processors, decoders. */
#include "tok_json.h"

int tok_lfail(loader *L, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tok_fail(L->t, code, "%s: %s%s%s", L->t->name, L->path, L->path[0] ? ": " : "", msg);
}

/* A pattern object {"String": "..."} or {"Regex": "..."}. */
static int read_pattern(loader *L, const json_t *pat, char **lit, size_t *lit_len, tok_regex *re, int *is_regex)
{
    const char *s;
    char err[300];
    if ((s = get_str(pat, "Regex"))) {
        *is_regex = 1;
        int e = tok_regex_compile(re, s, err, sizeof err);
        return e ? LFAIL(L, e, "%s", err) : 0;
    }
    if ((s = get_str(pat, "String"))) {
        *is_regex = 0;
        *lit_len = json_string_length(json_object_get(pat, "String"));
        *lit = dupn(s, *lit_len);
        return *lit ? 0 : DSP_ENOMEM;
    }
    return LFAIL(L, DSP_EFORMAT, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

static int split_behavior(loader *L, const char *b, int *out)
{
    static const char *const names[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                         "Contiguous" };
    for (int i = 0; i < 5; i++)
        if (b && strcmp(b, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return LFAIL(L, DSP_EFORMAT, "unknown split behavior '%s'", b ? b : "(none)");
}

static int prepend_scheme(const json_t *o, int def)
{
    const char *s = get_str(o, "prepend_scheme");
    if (!s) {   /* older files: add_prefix_space */
        const json_t *a = json_object_get(o, "add_prefix_space");
        return json_is_boolean(a) ? (json_is_true(a) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER) : def;
    }
    return strcmp(s, "never") == 0 ? TOK_PREPEND_NEVER : strcmp(s, "first") == 0 ? TOK_PREPEND_FIRST
                                                                                 : TOK_PREPEND_ALWAYS;
}

#define PUSH_PATH(L, fmt, ...)                                                    \
    size_t saved_len_ = strlen((L)->path);                                        \
    snprintf((L)->path + saved_len_, sizeof (L)->path - saved_len_, fmt, __VA_ARGS__)
#define POP_PATH(L) ((L)->path[saved_len_] = '\0')

/* ---- normalizers ---------------------------------------------------------------------------- */
static int read_normalizer(loader *L, const json_t *o, tok_normalizer *n)
{
    memset(n, 0, sizeof *n);
    const char *type = get_str(o, "type");
    if (!type)
        return LFAIL(L, DSP_EFORMAT, "no \"type\"");
    if (strcmp(type, "BertNormalizer") == 0) {
        n->type = TOK_NORM_BERT;
        n->clean_text = get_bool(o, "clean_text", 1);
        n->chinese = get_bool(o, "handle_chinese_chars", 1);
        n->lowercase = get_bool(o, "lowercase", 1);
        const json_t *sa = json_object_get(o, "strip_accents");
        n->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : -1;
    } else if (strcmp(type, "NFC") == 0) {
        n->type = TOK_NORM_NFC;
    } else if (strcmp(type, "NFD") == 0) {
        n->type = TOK_NORM_NFD;
    } else if (strcmp(type, "NFKC") == 0) {
        n->type = TOK_NORM_NFKC;
    } else if (strcmp(type, "NFKD") == 0) {
        n->type = TOK_NORM_NFKD;
    } else if (strcmp(type, "Lowercase") == 0) {
        n->type = TOK_NORM_LOWER;
    } else if (strcmp(type, "Strip") == 0) {
        n->type = TOK_NORM_STRIP;
        n->left = get_bool(o, "strip_left", 1);
        n->right = get_bool(o, "strip_right", 1);
    } else if (strcmp(type, "StripAccents") == 0) {
        n->type = TOK_NORM_STRIP_ACCENTS;
    } else if (strcmp(type, "Replace") == 0) {
        n->type = TOK_NORM_REPLACE;
        const char *c = get_str(o, "content");
        if (!c)
            return LFAIL(L, DSP_EFORMAT, "Replace without \"content\"");
        n->content_len = json_string_length(json_object_get(o, "content"));
        n->content = dupn(c, n->content_len);
        if (!n->content)
            return DSP_ENOMEM;
        return read_pattern(L, json_object_get(o, "pattern"), &n->pattern, &n->pattern_len, &n->re, &n->is_regex);
    } else if (strcmp(type, "Prepend") == 0) {
        n->type = TOK_NORM_PREPEND;
        const char *c = get_str(o, "prepend");
        if (!c)
            return LFAIL(L, DSP_EFORMAT, "Prepend without \"prepend\"");
        n->content_len = strlen(c);
        n->content = dupn(c, n->content_len);
        if (!n->content)
            return DSP_ENOMEM;
    } else if (strcmp(type, "Sequence") == 0) {
        n->type = TOK_NORM_SEQ;
        const json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr))
            return LFAIL(L, DSP_EFORMAT, "Sequence without \"normalizers\"");
        n->seq = calloc(json_array_size(arr) + 1, sizeof *n->seq);
        if (!n->seq)
            return DSP_ENOMEM;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            PUSH_PATH(L, ".normalizers[%zu]", i);
            int err = read_normalizer(L, json_array_get(arr, i), &n->seq[i]);
            n->nseq = i + 1;
            if (err)
                return err;
            POP_PATH(L);
        }
    } else {
        return LFAIL(L, DSP_EUNSUPPORTED, "unsupported normalizer type '%s' (supported: BertNormalizer, NFC, NFD, "
                     "NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, Sequence)", type);
    }
    return 0;
}

/* ---- pre-tokenizers ------------------------------------------------------------------------- */
#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static int read_pretok(loader *L, const json_t *o, tok_pretok *p)
{
    memset(p, 0, sizeof *p);
    const char *type = get_str(o, "type");
    char err[300];
    if (!type)
        return LFAIL(L, DSP_EFORMAT, "no \"type\"");
    if (strcmp(type, "BertPreTokenizer") == 0) {
        p->type = TOK_PRE_BERT;
    } else if (strcmp(type, "ByteLevel") == 0) {
        p->type = TOK_PRE_BYTELEVEL;
        p->add_prefix_space = get_bool(o, "add_prefix_space", 1);
        p->use_regex = get_bool(o, "use_regex", 1);
        if (p->use_regex) {
            int e = tok_regex_compile(&p->re, GPT2_REGEX, err, sizeof err);
            if (e)
                return LFAIL(L, e, "%s", err);
            p->is_regex = 1;
        }
    } else if (strcmp(type, "Split") == 0) {
        p->type = TOK_PRE_SPLIT;
        int e = read_pattern(L, json_object_get(o, "pattern"), &p->literal, &p->literal_len, &p->re, &p->is_regex);
        if (e)
            return e;
        if ((e = split_behavior(L, get_str(o, "behavior"), &p->behavior)))
            return e;
        p->invert = get_bool(o, "invert", 0);
    } else if (strcmp(type, "Whitespace") == 0) {
        p->type = TOK_PRE_WHITESPACE;
        p->is_regex = 1;
        int e = tok_regex_compile(&p->re, "\\w+|[^\\w\\s]+", err, sizeof err);
        if (e)
            return LFAIL(L, e, "%s", err);
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        p->type = TOK_PRE_WHITESPACE_SPLIT;
    } else if (strcmp(type, "Punctuation") == 0) {
        p->type = TOK_PRE_PUNCT;
        p->behavior = TOK_SPLIT_ISOLATED;
        if (get_str(o, "behavior")) {
            int e = split_behavior(L, get_str(o, "behavior"), &p->behavior);
            if (e)
                return e;
        }
    } else if (strcmp(type, "Digits") == 0) {
        p->type = TOK_PRE_DIGITS;
        p->individual_digits = get_bool(o, "individual_digits", 0);
    } else if (strcmp(type, "Metaspace") == 0) {
        p->type = TOK_PRE_METASPACE;
        p->replacement = first_char(get_str(o, "replacement"));
        if (!p->replacement)
            p->replacement = 0x2581;
        p->prepend_scheme = prepend_scheme(o, TOK_PREPEND_ALWAYS);
        p->split = get_bool(o, "split", 1);
    } else if (strcmp(type, "Sequence") == 0) {
        p->type = TOK_PRE_SEQ;
        const json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr))
            return LFAIL(L, DSP_EFORMAT, "Sequence without \"pretokenizers\"");
        p->seq = calloc(json_array_size(arr) + 1, sizeof *p->seq);
        if (!p->seq)
            return DSP_ENOMEM;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            PUSH_PATH(L, ".pretokenizers[%zu]", i);
            int e = read_pretok(L, json_array_get(arr, i), &p->seq[i]);
            p->nseq = i + 1;
            if (e)
                return e;
            POP_PATH(L);
        }
    } else {
        return LFAIL(L, DSP_EUNSUPPORTED, "unsupported pre_tokenizer type '%s' (supported: BertPreTokenizer, "
                     "ByteLevel, Split, Whitespace, WhitespaceSplit, Punctuation, Digits, Metaspace, Sequence)",
                     type);
    }
    return 0;
}


/* ---- post-processors --------------------------------------------------------------------------- */
static int read_template(loader *L, const json_t *arr, tok_piece **out, size_t *n)
{
    if (!json_is_array(arr))
        return LFAIL(L, DSP_EFORMAT, "TemplateProcessing: single/pair must be lists");
    *out = calloc(json_array_size(arr) + 1, sizeof **out);
    if (!*out)
        return DSP_ENOMEM;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i), *x;
        tok_piece *p = &(*out)[i];
        *n = i + 1;
        if ((x = json_object_get(e, "SpecialToken"))) {
            p->special = 1;
            const char *id = get_str(x, "id");
            p->name = strdup(id ? id : "");
            if (!p->name)
                return DSP_ENOMEM;
            p->type_id = (int32_t)get_int(x, "type_id", 0);
        } else if ((x = json_object_get(e, "Sequence"))) {
            const char *id = get_str(x, "id");
            p->seq = id && strcmp(id, "B") == 0;
            p->type_id = (int32_t)get_int(x, "type_id", 0);
        } else {
            return LFAIL(L, DSP_EFORMAT, "TemplateProcessing piece %zu is neither SpecialToken nor Sequence", i);
        }
    }
    return 0;
}

static int read_post(loader *L, const json_t *o, tok_post *p)
{
    memset(p, 0, sizeof *p);
    const char *type = get_str(o, "type");
    if (!type)
        return LFAIL(L, DSP_EFORMAT, "no \"type\"");
    if (strcmp(type, "TemplateProcessing") == 0) {
        p->type = TOK_POST_TEMPLATE;
        int err = read_template(L, json_object_get(o, "single"), &p->single, &p->nsingle);
        if (!err)
            err = read_template(L, json_object_get(o, "pair"), &p->pair, &p->npair);
        if (err)
            return err;
        const json_t *sp = json_object_get(o, "special_tokens");
        if (!json_is_object(sp))
            return LFAIL(L, DSP_EFORMAT, "TemplateProcessing without \"special_tokens\"");
        p->specials = calloc(json_object_size(sp) + 1, sizeof *p->specials);
        if (!p->specials)
            return DSP_ENOMEM;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)sp, key, v) {
            tok_special *s = &p->specials[p->nspecials++];
            const json_t *ids = json_object_get(v, "ids"), *toks = json_object_get(v, "tokens");
            s->name = strdup(key);
            if (!s->name)
                return DSP_ENOMEM;
            if (!json_is_array(ids))
                return LFAIL(L, DSP_EFORMAT, "special token '%s' without \"ids\"", key);
            s->n = json_array_size(ids);
            s->ids = calloc(s->n + 1, sizeof *s->ids);
            s->tokens = calloc(s->n + 1, sizeof *s->tokens);
            if (!s->ids || !s->tokens)
                return DSP_ENOMEM;
            for (size_t i = 0; i < s->n; i++) {
                s->ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
                const char *tk = json_string_value(json_array_get(toks, i));
                s->tokens[i] = strdup(tk ? tk : "");
                if (!s->tokens[i])
                    return DSP_ENOMEM;
            }
        }
        /* every special token of the templates must be defined */
        for (int pass = 0; pass < 2; pass++) {
            tok_piece *pc = pass ? p->pair : p->single;
            size_t np = pass ? p->npair : p->nsingle;
            for (size_t i = 0; i < np; i++) {
                if (!pc[i].special)
                    continue;
                size_t k = 0;
                while (k < p->nspecials && strcmp(p->specials[k].name, pc[i].name) != 0)
                    k++;
                if (k == p->nspecials)
                    return LFAIL(L, DSP_EFORMAT, "TemplateProcessing uses '%s' but special_tokens lacks it",
                                 pc[i].name);
            }
        }
    } else if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        p->type = type[0] == 'B' ? TOK_POST_BERT : TOK_POST_ROBERTA;
        const json_t *sep = json_object_get(o, "sep"), *cls = json_object_get(o, "cls");
        if (!json_is_array(sep) || !json_is_array(cls) || json_array_size(sep) != 2 || json_array_size(cls) != 2)
            return LFAIL(L, DSP_EFORMAT, "%s needs \"sep\" and \"cls\" as [token, id]", type);
        p->sep_id = (int32_t)json_integer_value(json_array_get(sep, 1));
        p->cls_id = (int32_t)json_integer_value(json_array_get(cls, 1));
        p->sep = strdup(json_string_value(json_array_get(sep, 0)) ? json_string_value(json_array_get(sep, 0)) : "");
        p->cls = strdup(json_string_value(json_array_get(cls, 0)) ? json_string_value(json_array_get(cls, 0)) : "");
        if (!p->sep || !p->cls)
            return DSP_ENOMEM;
        p->trim_offsets = get_bool(o, "trim_offsets", 1);
        p->add_prefix_space = get_bool(o, "add_prefix_space", 1);
    } else if (strcmp(type, "ByteLevel") == 0) {
        p->type = TOK_POST_BYTELEVEL;
        p->trim_offsets = get_bool(o, "trim_offsets", 1);
        p->add_prefix_space = get_bool(o, "add_prefix_space", 1);
    } else if (strcmp(type, "Sequence") == 0) {
        p->type = TOK_POST_SEQ;
        const json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr))
            return LFAIL(L, DSP_EFORMAT, "Sequence without \"processors\"");
        p->seq = calloc(json_array_size(arr) + 1, sizeof *p->seq);
        if (!p->seq)
            return DSP_ENOMEM;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            PUSH_PATH(L, ".processors[%zu]", i);
            int err = read_post(L, json_array_get(arr, i), &p->seq[i]);
            p->nseq = i + 1;
            if (err)
                return err;
            POP_PATH(L);
        }
    } else {
        return LFAIL(L, DSP_EUNSUPPORTED, "unsupported post_processor type '%s' (supported: TemplateProcessing, "
                     "BertProcessing, RobertaProcessing, ByteLevel, Sequence)", type);
    }
    return 0;
}

/* ---- decoders ---------------------------------------------------------------------------------- */
static int read_decoder(loader *L, const json_t *o, tok_decoder *d)
{
    memset(d, 0, sizeof *d);
    const char *type = get_str(o, "type");
    if (!type)
        return LFAIL(L, DSP_EFORMAT, "no \"type\"");
    if (strcmp(type, "WordPiece") == 0) {
        d->type = TOK_DEC_WORDPIECE;
        const char *pre = get_str(o, "prefix");
        d->prefix = strdup(pre ? pre : "##");
        d->cleanup = get_bool(o, "cleanup", 1);
        if (!d->prefix)
            return DSP_ENOMEM;
    } else if (strcmp(type, "ByteLevel") == 0) {
        d->type = TOK_DEC_BYTELEVEL;
    } else if (strcmp(type, "Metaspace") == 0) {
        d->type = TOK_DEC_METASPACE;
        d->replacement = first_char(get_str(o, "replacement"));
        if (!d->replacement)
            d->replacement = 0x2581;
        d->prepend_scheme = prepend_scheme(o, TOK_PREPEND_ALWAYS);
    } else if (strcmp(type, "BPEDecoder") == 0) {
        d->type = TOK_DEC_BPE;
        const char *suf = get_str(o, "suffix");
        d->suffix = strdup(suf ? suf : "</w>");
        if (!d->suffix)
            return DSP_ENOMEM;
    } else if (strcmp(type, "Replace") == 0) {
        d->type = TOK_DEC_REPLACE;
        const char *pat = get_str(json_object_get(o, "pattern"), "String"), *c = get_str(o, "content");
        if (!pat || !c)
            return LFAIL(L, DSP_EUNSUPPORTED, "Replace decoder: only a {\"String\": ...} pattern is supported");
        d->pattern = strdup(pat);
        d->content = strdup(c);
        if (!d->pattern || !d->content)
            return DSP_ENOMEM;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->type = TOK_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->type = TOK_DEC_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        d->type = TOK_DEC_STRIP;
        const char *c = get_str(o, "content");
        snprintf(d->strip_content, sizeof d->strip_content, "%s", c ? c : " ");
        d->start = get_int(o, "start", 0);
        d->stop = get_int(o, "stop", 0);
    } else if (strcmp(type, "Sequence") == 0) {
        d->type = TOK_DEC_SEQ;
        const json_t *arr = json_object_get(o, "decoders");
        if (!json_is_array(arr))
            return LFAIL(L, DSP_EFORMAT, "Sequence without \"decoders\"");
        d->seq = calloc(json_array_size(arr) + 1, sizeof *d->seq);
        if (!d->seq)
            return DSP_ENOMEM;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            PUSH_PATH(L, ".decoders[%zu]", i);
            int err = read_decoder(L, json_array_get(arr, i), &d->seq[i]);
            d->nseq = i + 1;
            if (err)
                return err;
            POP_PATH(L);
        }
    } else {
        return LFAIL(L, DSP_EUNSUPPORTED, "unsupported decoder type '%s' (supported: WordPiece, ByteLevel, "
                     "Metaspace, BPEDecoder, Replace, ByteFallback, Fuse, Strip, Sequence)", type);
    }
    return 0;
}

int tok_read_normalizer(loader *L, const json_t *o, tok_normalizer *n)
{
    return read_normalizer(L, o, n);
}

int tok_read_pretok(loader *L, const json_t *o, tok_pretok *p)
{
    return read_pretok(L, o, p);
}

int tok_read_post(loader *L, const json_t *o, tok_post *p)
{
    return read_post(L, o, p);
}

int tok_read_decoder(loader *L, const json_t *o, tok_decoder *d)
{
    return read_decoder(L, o, d);
}
