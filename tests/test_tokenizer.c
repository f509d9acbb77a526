/* test_tokenizer.c - the tokenizer (plugins/text/tok.h) against the Hugging Face `tokenizers` library, and the text.* operators. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "tok.h"

/* Fixtures made by tests/reference/make_tokenizer_fixtures.py with tokenizers 0.23.3. */
static const char *const NAMES[] = { "bert", "gpt2", "roberta", "llama3", "qwen2", "llama2", "unigram" };
#define N_TOKENIZERS 7

static char datadir[1024];
static char *corpus;            /* the raw file */
static char **lines;            /* lines as raw bytes (not NUL-terminated) */
static size_t *lens;
static size_t nlines;

static const char *dpath(const char *name)
{
    static char buf[4][1200];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 1200, "%s/%s", datadir, name);
    return p;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    b[n] = '\0';
    if (len)
        *len = (size_t)n;
    return b;
}

static void load_corpus(void)
{
    const char *src = getenv("TESTS_SRCDIR");
    snprintf(datadir, sizeof datadir, "%s/data/text", src && *src ? src : ".");
    size_t n;
    corpus = slurp(dpath("corpus.txt"), &n);
    lines = malloc((n + 1) * sizeof *lines);
    lens = malloc((n + 1) * sizeof *lens);
    nlines = 0;
    for (size_t i = 0, s = 0; i < n; i++)
        if (corpus[i] == '\n') {
            lines[nlines] = corpus + s;
            lens[nlines++] = i - s;
            s = i + 1;
        }
}

static void free_corpus(void)
{
    free(corpus);
    free(lines);
    free(lens);
    corpus = NULL;
}

/* The line as Python's bytes.decode("utf-8", errors="replace") gives it: an independent
 * oracle for the replacement rule (maximal subparts, Unicode 3-7). Caller frees. */
static char *py_replace(const char *s, size_t len, size_t *olen)
{
    const unsigned char *u = (const unsigned char *)s;
    char *o = malloc(len * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        size_t need = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 9;
        if (need == 0) {
            o[k++] = (char)c;
            i++;
            continue;
        }
        size_t got = 1;
        if (need != 9)
            for (; got <= need && i + got < len; got++) {
                unsigned lo = 0x80, hi = 0xBF, d = u[i + got];
                if (got == 1) {
                    lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
                    hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
                }
                if (d < lo || d > hi)
                    break;
            }
        if (need != 9 && got == need + 1) {
            memcpy(o + k, s + i, got);
            k += got;
            i += got;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += got;
        }
    }
    o[k] = '\0';
    *olen = k;
    return o;
}

static tok_tokenizer *load(const char *file)
{
    tok_tokenizer *t = NULL;
    char err[512];
    int rc = tok_load(dpath(file), 0, &t, err, sizeof err);
    ck_assert_msg(rc == 0, "loading %s: %s", file, err);
    return t;
}

static json_t *parse_line(const char *line)
{
    json_error_t je;
    json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
    ck_assert_msg(j != NULL, "fixture line does not parse: %s", je.text);
    return j;
}

/* Offsets in the fixtures are (start - previous end, end - start) pairs. */
static int offsets_equal(const tok_encoding *e, const json_t *off, size_t *where)
{
    long prev = 0;
    for (size_t k = 0; k < e->n; k++) {
        long s = prev + (long)json_integer_value(json_array_get(off, 2 * k));
        long en = s + (long)json_integer_value(json_array_get(off, 2 * k + 1));
        prev = en;
        if ((long)e->offsets[2 * k] != s || (long)e->offsets[2 * k + 1] != en) {
            *where = k;
            return 0;
        }
    }
    return 1;
}

static int ints_equal_i32(const int32_t *v, size_t n, const json_t *a)
{
    if (json_array_size(a) != n)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (v[k] != json_integer_value(json_array_get(a, k)))
            return 0;
    return 1;
}

static int ints_equal_u8(const uint8_t *v, size_t n, const json_t *a)
{
    if (json_array_size(a) != n)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (v[k] != json_integer_value(json_array_get(a, k)))
            return 0;
    return 1;
}

/* ---- every corpus line: ids, offsets, decoding ---------------------------------------------- */
static void check_corpus(const char *name, const char *file)
{
    char fname[64];
    snprintf(fname, sizeof fname, "expect-%s.jsonl", name);
    tok_tokenizer *t = load(file);
    FILE *fp = fopen(dpath(fname), "r");
    ck_assert_ptr_nonnull(fp);
    tok_options o = tok_default_options();
    o.truncation = 0;
    o.padding = TOK_PAD_NONE;
    tok_encoding e = { 0 };
    char *line = NULL;
    size_t cap = 0, n = 0, bad_ids = 0, bad_off = 0, bad_dec = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_t *j = parse_line(line);
        size_t i = (size_t)json_integer_value(json_object_get(j, "i"));
        ck_assert_uint_lt(i, nlines);
        n++;
        int rc = tok_encode(t, lines[i], lens[i], NULL, 0, &o, &e);
        ck_assert_msg(rc == 0, "%s line %zu: %s", name, i, tok_errmsg(t));
        const json_t *ids = json_object_get(j, "ids");
        size_t where;
        if (!ints_equal_i32(e.ids, e.n, ids)) {
            if (bad_ids++ < 5)
                fprintf(stderr, "%s line %zu: ids differ (%zu tokens, expected %zu)\n", name, i, e.n,
                        json_array_size(ids));
        } else if (!offsets_equal(&e, json_object_get(j, "off"), &where)) {
            if (bad_off++ < 5)
                fprintf(stderr, "%s line %zu: offsets of token %zu differ\n", name, i, where);
        }
        char *dec;
        size_t dl, wl;
        ck_assert_int_eq(tok_decode(t, e.ids, e.n, 1, &dec, &dl), 0);
        const json_t *jd = json_object_get(j, "dec");
        char *want;
        if (jd) {       /* the decoding may hold NUL bytes */
            wl = json_string_length(jd);
            want = malloc(wl + 1);
            memcpy(want, json_string_value(jd), wl + 1);
        } else {
            want = py_replace(lines[i], lens[i], &wl);
        }
        if (dl != wl || memcmp(dec, want, dl) != 0) {
            if (bad_dec++ < 5)
                fprintf(stderr, "%s line %zu: decoding differs: '%s' vs '%s'\n", name, i, dec, want);
        }
        free(dec);
        free(want);
        json_decref(j);
    }
    free(line);
    fclose(fp);
    fprintf(stderr, "%s (%s): %zu lines, %zu id mismatches, %zu offset mismatches, %zu decode mismatches\n",
            name, file, n, bad_ids, bad_off, bad_dec);
    ck_assert_uint_ge(n, 2000);
    ck_assert_uint_eq(bad_ids, 0);
    ck_assert_uint_eq(bad_off, 0);
    ck_assert_uint_eq(bad_dec, 0);
    tok_encoding_clear(&e);
    tok_free(&t);
}

START_TEST(test_corpus)
{
    char file[64];
    snprintf(file, sizeof file, "%s.json", NAMES[_i]);
    check_corpus(NAMES[_i], file);
}
END_TEST

/* Every Unicode code point, with TOKENIZER_SWEEP_DIR set to the output of
 * `make_tokenizer_fixtures.py --sweep DIR` (about 35,000 lines per tokenizer, too big to ship). */
START_TEST(test_sweep)
{
    const char *dir = getenv("TOKENIZER_SWEEP_DIR");
    if (!dir || !*dir)
        return;
    char saved[1024], file[64];
    snprintf(saved, sizeof saved, "%s", datadir);
    free_corpus();
    snprintf(datadir, sizeof datadir, "%s", dir);
    size_t n;
    corpus = slurp(dpath("corpus.txt"), &n);
    lines = malloc((n + 1) * sizeof *lines);
    lens = malloc((n + 1) * sizeof *lens);
    nlines = 0;
    for (size_t i = 0, s = 0; i < n; i++)
        if (corpus[i] == '\n') {
            lines[nlines] = corpus + s;
            lens[nlines++] = i - s;
            s = i + 1;
        }
    snprintf(file, sizeof file, "%s.json", NAMES[_i]);
    check_corpus(NAMES[_i], file);
    free_corpus();
    snprintf(datadir, sizeof datadir, "%s", saved);
    load_corpus();
}
END_TEST

/* BertTokenizerFast built from vocab.txt is the same tokenizer as MiniLM's tokenizer.json. */
START_TEST(test_vocab_txt)
{
    check_corpus("bert", "bert-vocab.txt");
}
END_TEST

/* ---- pairs, truncation, padding, batches, the file's settings, decoding with specials ------- */
static void options_from(const json_t *opts, tok_options *o)
{
    *o = tok_default_options();
    if (json_is_true(json_object_get(opts, "file_defaults")))
        return;
    o->truncation = 0;
    o->padding = TOK_PAD_NONE;
    const json_t *add = json_object_get(opts, "add_special");
    if (json_is_boolean(add))
        o->add_special_tokens = json_is_true(add);
    const json_t *tr = json_object_get(opts, "trunc");
    if (tr) {
        const char *s = json_string_value(json_object_get(tr, "strategy"));
        o->truncation = 1;
        o->max_length = json_integer_value(json_object_get(tr, "max_length"));
        o->trunc_strategy = strcmp(s, "only_first") == 0 ? TOK_TRUNC_ONLY_FIRST
                          : strcmp(s, "only_second") == 0 ? TOK_TRUNC_ONLY_SECOND : TOK_TRUNC_LONGEST_FIRST;
        o->trunc_direction = strcmp(json_string_value(json_object_get(tr, "direction")), "left") == 0 ? TOK_LEFT
                                                                                                    : TOK_RIGHT;
    }
    const json_t *pd = json_object_get(opts, "pad");
    if (pd) {
        const json_t *len = json_object_get(pd, "length"), *mult = json_object_get(pd, "multiple_of");
        o->padding = json_is_integer(len) ? TOK_PAD_FIXED : TOK_PAD_LONGEST;
        o->pad_length = json_is_integer(len) ? json_integer_value(len) : 0;
        o->pad_multiple_of = json_is_integer(mult) ? json_integer_value(mult) : 0;
        o->pad_direction = strcmp(json_string_value(json_object_get(pd, "direction")), "left") == 0 ? TOK_LEFT
                                                                                                   : TOK_RIGHT;
        o->pad_id = json_integer_value(json_object_get(pd, "pad_id"));
        const json_t *pt = json_object_get(pd, "pad_type_id");
        o->pad_type_id = json_is_integer(pt) ? json_integer_value(pt) : 0;
    }
}

/* 1 when e equals the record (ids, type ids, masks, offsets). */
static int encoding_equal(const tok_encoding *e, const json_t *r, char *why, size_t wl)
{
    size_t where;
    if (!ints_equal_i32(e->ids, e->n, json_object_get(r, "ids")))
        return snprintf(why, wl, "ids (%zu tokens, expected %zu)", e->n,
                        json_array_size(json_object_get(r, "ids"))), 0;
    if (!ints_equal_i32(e->type_ids, e->n, json_object_get(r, "tt")))
        return snprintf(why, wl, "type ids"), 0;
    if (!ints_equal_u8(e->attention_mask, e->n, json_object_get(r, "am")))
        return snprintf(why, wl, "attention mask"), 0;
    if (!ints_equal_u8(e->special_mask, e->n, json_object_get(r, "sm")))
        return snprintf(why, wl, "special tokens mask"), 0;
    if (!offsets_equal(e, json_object_get(r, "off"), &where))
        return snprintf(why, wl, "offsets of token %zu", where), 0;
    return 1;
}

START_TEST(test_cases)
{
    const char *name = NAMES[_i];
    char file[64], cases[64];
    snprintf(file, sizeof file, "%s.json", name);
    snprintf(cases, sizeof cases, "cases-%s.jsonl", name);
    tok_tokenizer *t = load(file);
    FILE *fp = fopen(dpath(cases), "r");
    ck_assert_ptr_nonnull(fp);
    char *line = NULL, why[128];
    size_t cap = 0, n = 0, bad = 0, errors = 0;
    tok_encoding e = { 0 }, be[4] = { { 0 } };
    while (getline(&line, &cap, fp) > 0) {
        json_t *j = parse_line(line);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        const json_t *ja = json_object_get(j, "a"), *jb = json_object_get(j, "b");
        tok_options o;
        options_from(json_object_get(j, "opts"), &o);
        n++;
        int ok = 1;
        if (strcmp(kind, "decode") == 0) {
            const json_t *ids = json_object_get(j, "ids");
            int32_t *v = malloc((json_array_size(ids) + 1) * sizeof *v);
            for (size_t k = 0; k < json_array_size(ids); k++)
                v[k] = (int32_t)json_integer_value(json_array_get(ids, k));
            char *dec;
            size_t dl;
            ck_assert_int_eq(tok_decode(t, v, json_array_size(ids), 0, &dec, &dl), 0);
            const json_t *want = json_object_get(j, "dec");
            ok = dl == json_string_length(want) && memcmp(dec, json_string_value(want), dl) == 0;
            snprintf(why, sizeof why, "decoding with special tokens: '%s'", dec);
            free(dec);
            free(v);
        } else if (strcmp(kind, "batch") == 0) {
            const char *txt[4];
            size_t tl[4];
            ck_assert_uint_eq(json_array_size(ja), 4);
            for (size_t k = 0; k < 4; k++) {
                size_t li = (size_t)json_integer_value(json_array_get(ja, k));
                txt[k] = lines[li];
                tl[k] = lens[li];
            }
            ck_assert_int_eq(tok_encode_batch(t, 4, txt, tl, NULL, NULL, &o, be), 0);
            for (size_t k = 0; k < 4 && ok; k++)
                ok = encoding_equal(&be[k], json_array_get(json_object_get(j, "batch"), k), why, sizeof why);
        } else {
            size_t ia = (size_t)json_integer_value(ja), ib = json_is_integer(jb) ? (size_t)json_integer_value(jb) : 0;
            int rc = tok_encode(t, lines[ia], lens[ia], json_is_integer(jb) ? lines[ib] : NULL,
                                json_is_integer(jb) ? lens[ib] : 0, &o, &e);
            const json_t *err = json_object_get(j, "error");
            if (err) {
                errors++;
                ok = rc < 0 && strstr(tok_errmsg(t), "Truncation error") != NULL;
                snprintf(why, sizeof why, "expected the error '%s', got %d '%s'", json_string_value(err), rc,
                         tok_errmsg(t));
            } else if (rc < 0) {
                ok = 0;
                snprintf(why, sizeof why, "error: %s", tok_errmsg(t));
            } else {
                ok = encoding_equal(&e, j, why, sizeof why);
            }
        }
        if (!ok && bad++ < 8)
            fprintf(stderr, "%s case %zu (%s): %s\n", name, n, kind, why);
        json_decref(j);
    }
    free(line);
    fclose(fp);
    fprintf(stderr, "%s: %zu cases (%zu expected errors), %zu mismatches\n", name, n, errors, bad);
    ck_assert_uint_gt(n, 300);
    ck_assert_uint_eq(bad, 0);
    tok_encoding_clear(&e);
    for (int k = 0; k < 4; k++)
        tok_encoding_clear(&be[k]);
    tok_free(&t);
}
END_TEST

/* ---- documented behaviour ---------------------------------------------------------------------- */
static void encode_ok(tok_tokenizer *t, const char *s, size_t len, const tok_options *o, tok_encoding *e)
{
    int rc = tok_encode(t, s, len, NULL, 0, o, e);
    ck_assert_msg(rc == 0, "%s", tok_errmsg(t));
}

START_TEST(test_invalid_utf8)
{
    tok_tokenizer *t = load("gpt2.json");
    tok_encoding a = { 0 }, b = { 0 };
    /* replace (the default): the same as the text with U+FFFD, offsets in its characters */
    encode_ok(t, "caf\xC3 ok \xE2\x82 x", 12, NULL, &a);
    encode_ok(t, "caf\xEF\xBF\xBD ok \xEF\xBF\xBD x", 15, NULL, &b);
    ck_assert_uint_eq(a.n, b.n);
    ck_assert_mem_eq(a.ids, b.ids, a.n * sizeof *a.ids);
    ck_assert_mem_eq(a.offsets, b.offsets, 2 * a.n * sizeof *a.offsets);
    /* error: refused, with the byte position */
    tok_options o = tok_default_options();
    o.invalid_utf8 = TOK_UTF8_ERROR;
    ck_assert_int_eq(tok_encode(t, "caf\xC3 ok", 7, NULL, 0, &o, &a), DSP_EFORMAT);
    ck_assert_uint_eq(a.n, 0);
    ck_assert_ptr_nonnull(strstr(tok_errmsg(t), "invalid UTF-8 at byte 3"));
    /* a NUL byte is text like any other */
    encode_ok(t, "a\0b", 3, &o, &a);
    ck_assert_uint_eq(a.n, 3);
    tok_encoding_clear(&a);
    tok_encoding_clear(&b);
    tok_free(&t);
}
END_TEST

START_TEST(test_byte_offsets)
{
    tok_tokenizer *t = load("bert.json");
    tok_options o = tok_default_options();
    o.padding = TOK_PAD_NONE;
    o.offsets = TOK_OFFSETS_BYTES;
    tok_encoding e = { 0 };
    const char *s = "Héllo 野口!";
    encode_ok(t, s, strlen(s), &o, &e);
    /* [CLS] hello 野 口 ! [SEP] */
    ck_assert_uint_eq(e.n, 6);
    ck_assert_uint_eq(e.offsets[2], 0);
    ck_assert_uint_eq(e.offsets[3], 6);        /* "Héllo" is 6 bytes */
    ck_assert_uint_eq(e.offsets[4], 7);
    ck_assert_uint_eq(e.offsets[5], 10);
    ck_assert_uint_eq(e.offsets[8], 13);
    ck_assert_uint_eq(e.offsets[9], 14);
    o.offsets = TOK_OFFSETS_CHARS;
    encode_ok(t, s, strlen(s), &o, &e);
    ck_assert_uint_eq(e.offsets[3], 5);
    ck_assert_uint_eq(e.offsets[9], 9);
    /* the file's own settings: padded to 128, mask 0 on padding */
    encode_ok(t, s, strlen(s), NULL, &e);
    ck_assert_uint_eq(e.n, 128);
    ck_assert_int_eq(e.attention_mask[5], 1);
    ck_assert_int_eq(e.attention_mask[6], 0);
    ck_assert_int_eq(e.ids[127], 0);
    tok_encoding_clear(&e);
    tok_free(&t);
}
END_TEST

START_TEST(test_vocab_api)
{
    tok_tokenizer *t = load("bert.json");
    size_t len;
    ck_assert_int_eq(tok_token_to_id(t, "[CLS]", 5), 101);
    ck_assert_int_eq(tok_token_to_id(t, "hello", 5), 7592);
    ck_assert_int_eq(tok_token_to_id(t, "no-such-token", 13), -1);
    const char *s = tok_id_to_token(t, 7592, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq((int)len, 5);
    ck_assert_ptr_null(tok_id_to_token(t, 1 << 30, &len));
    ck_assert_uint_eq(tok_vocab_size(t), 30522);
    ck_assert_ptr_nonnull(strstr(tok_describe(t), "WordPiece"));
    /* unknown ids are skipped when decoding */
    int32_t ids[] = { 7592, -5, 1 << 30, 2088 };
    char *dec;
    ck_assert_int_eq(tok_decode(t, ids, 4, 1, &dec, &len), 0);
    ck_assert_str_eq(dec, "hello world");
    free(dec);
    tok_free(&t);
    tok_free(&t);       /* NULL-safe */
}
END_TEST

/* ---- errors ----------------------------------------------------------------------------------- */
static void expect_json_error(const char *json, int code, const char *needle)
{
    tok_tokenizer *t = (tok_tokenizer *)1;
    char err[512] = "";
    int rc = tok_load_json(json, strlen(json), "x.json", &t, err, sizeof err);
    ck_assert_msg(rc == code, "expected %d, got %d (%s) for %s", code, rc, err, json);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, needle) != NULL, "'%s' not in '%s'", needle, err);
}

#define WP_MODEL "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"[UNK]\":0,\"a\":1}}"

START_TEST(test_errors)
{
    tok_tokenizer *t = NULL;
    char err[512];
    ck_assert_int_eq(tok_load("/nonexistent/tokenizer.json", 0, &t, err, sizeof err), DSP_ENOENT);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/tokenizer.json"));
    ck_assert_int_eq(tok_load("/", 0, &t, err, sizeof err), DSP_ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "without tokenizer.json or vocab.txt"));
    ck_assert_int_lt(tok_load(NULL, 0, &t, err, sizeof err), 0);

    expect_json_error("{\"model\": ", DSP_EFORMAT, "not valid JSON");
    expect_json_error("[1, 2]", DSP_EFORMAT, "not a JSON object");
    expect_json_error("{}", DSP_EFORMAT, "model: missing");
    expect_json_error("{\"model\":{\"type\":\"CharLevel\",\"vocab\":{\"a\":0}}}", DSP_EUNSUPPORTED,
                      "model: unsupported model type 'CharLevel'");
    expect_json_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", DSP_EFORMAT,
                      "vocab[0] is not [piece, score]");
    expect_json_error("{" WP_MODEL ",\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}}", DSP_EUNSUPPORTED,
                      "pre_tokenizer: unsupported pre_tokenizer type 'UnicodeScripts'");
    expect_json_error("{" WP_MODEL ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},"
                      "{\"type\":\"Precompiled\"}]}}", DSP_EUNSUPPORTED,
                      "normalizer.normalizers[1]: unsupported normalizer type 'Precompiled'");
    expect_json_error("{" WP_MODEL ",\"decoder\":{\"type\":\"CTC\"}}", DSP_EUNSUPPORTED, "decoder type 'CTC'");
    expect_json_error("{" WP_MODEL ",\"post_processor\":{\"type\":\"Nope\"}}", DSP_EUNSUPPORTED,
                      "post_processor type 'Nope'");
    expect_json_error("{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"a\":1}}}",
                      DSP_EFORMAT, "unk_token '[UNK]' is not in the vocabulary");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                      DSP_EFORMAT, "merges[0]: token 'ab' is not in the vocabulary");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}", DSP_EFORMAT,
                      "not two tokens");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[], \"dropout\":0.1}}",
                      DSP_EUNSUPPORTED, "dropout");
    expect_json_error("{" WP_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                      "\"behavior\":\"Isolated\"}}", DSP_EFORMAT, "does not compile");
    expect_json_error("{" WP_MODEL ",\"added_tokens\":[{\"content\":\"x\"}]}", DSP_EFORMAT, "added_tokens");
    expect_json_error("{" WP_MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":"
                      "[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}}}",
                      DSP_EFORMAT, "special_tokens lacks it");
    expect_json_error("{" WP_MODEL ",\"padding\":{\"strategy\":\"Sometimes\"}}", DSP_EFORMAT, "padding");

    /* a minimal tokenizer works, and runtime errors say why */
    ck_assert_int_eq(tok_load_json("{" WP_MODEL "}", strlen("{" WP_MODEL "}"), "min.json", &t, err, sizeof err), 0);
    tok_encoding e = { 0 };
    tok_options o = tok_default_options();
    ck_assert_int_eq(tok_encode(t, "a b", 3, NULL, 0, &o, &e), 0);
    ck_assert_uint_eq(e.n, 1);      /* no pre-tokenizer: "a b" is one word, unknown */
    ck_assert_int_eq(e.ids[0], 0);
    o.padding = TOK_PAD_FIXED;
    o.pad_length = 4;
    ck_assert_int_eq(tok_encode(t, "a", 1, NULL, 0, &o, &e), DSP_EINVAL);
    ck_assert_ptr_nonnull(strstr(tok_errmsg(t), "pad"));
    o = tok_default_options();
    o.truncation = 1;
    o.max_length = 1;
    o.trunc_strategy = TOK_TRUNC_ONLY_SECOND;
    ck_assert_int_eq(tok_encode(t, "a", 1, NULL, 0, &o, &e), 0);        /* short enough: no error */
    o.max_length = 0;
    ck_assert_int_eq(tok_encode(t, "a", 1, NULL, 0, &o, &e), 0);        /* max_length 0: nothing left */
    ck_assert_uint_eq(e.n, 0);
    o.max_length = 1;                   /* the second sequence would have to lose all its tokens */
    ck_assert_int_eq(tok_encode(t, "a", 1, "a", 1, &o, &e), DSP_EINVAL);
    ck_assert_ptr_nonnull(strstr(tok_errmsg(t), "Sequence to truncate too short"));
    tok_free(&t);
    t = load("gpt2.json");
    ck_assert_int_eq(tok_encode(t, "a b c", 5, NULL, 0, &o, &e), DSP_EINVAL);
    ck_assert_ptr_nonnull(strstr(tok_errmsg(t), "Second sequence not provided"));
    o.trunc_strategy = TOK_TRUNC_LONGEST_FIRST;
    o.trunc_direction = TOK_LEFT;
    ck_assert_int_eq(tok_encode(t, "a b c", 5, NULL, 0, &o, &e), 0);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_uint_eq(e.offsets[0], 3);     /* " c": trimming keeps the first token's space, as the library does */
    tok_encoding_clear(&e);
    tok_free(&t);

    /* vocab.txt problems */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dsp_tok_XXXXXX", getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *fp = fopen(path, "w");
    fputs("[PAD]\nhello\n", fp);
    fclose(fp);
    ck_assert_int_eq(tok_load(dir, 0, &t, err, sizeof err), DSP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err, "no [UNK] token"));
    unlink(path);
    rmdir(dir);
}
END_TEST

/* ---- the operators ------------------------------------------------------------------------------ */
static dsp_context *ctx;

static void op_setup(void)
{
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
}

static void op_teardown(void)
{
    dsp_context_free(&ctx);
}

static dsp_packet *text_packet(int64_t item, const char *text)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    dsp_packet_set_pos(p, item, 0, 1);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "text", text), 0);
    return p;
}

START_TEST(test_op_tokenize)
{
    if (!dsp_context_find_op(ctx, "text.tokenize")) {
        fprintf(stderr, "text.tokenize not loaded (DSPIPE_PLUGIN_PATH?)\n");
        ck_abort_msg("the text plugin is not on the plugin path");
    }
    char tk[1200];
    snprintf(tk, sizeof tk, "tokenizer=%s", dpath("bert.json"));
    const char *params[] = { tk, "padding=none", NULL };
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "text.tokenize", params, 1, &h) == 0, "%s", dsp_context_errmsg(ctx));
    ck_assert_int_eq(dsp_harness_push(h, 0, text_packet(0, "Hello, world!")), 0);
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    const dsp_tensor *ids = dsp_packet_tensor(out, "input_ids");
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(ids->dtype, DSP_DTYPE_I64);
    ck_assert_int_eq(ids->ndim, 1);
    ck_assert_int_eq(ids->shape[0], 6);
    const int64_t *v = dsp_tensor_data(ids);
    int64_t want[] = { 101, 7592, 1010, 2088, 999, 102 };
    ck_assert_mem_eq(v, want, sizeof want);
    const dsp_tensor *off = dsp_packet_tensor(out, "offset_mapping");
    ck_assert_ptr_nonnull(off);
    ck_assert_int_eq(off->ndim, 2);
    ck_assert_int_eq(off->shape[1], 2);
    ck_assert_ptr_nonnull(dsp_packet_tensor(out, "attention_mask"));
    ck_assert_ptr_nonnull(dsp_packet_tensor(out, "token_type_ids"));
    int64_t nt = 0;
    ck_assert_int_eq(dsp_meta_get_int(dsp_packet_meta_const(out), "num_tokens", &nt), 0);
    ck_assert_int_eq(nt, 6);
    dsp_packet_unref(&out);
    /* a packet without the text fails its item alone, saying what it lacks;
     * the other packets of its batch go out */
    dsp_packet *p = NULL, *mix[3];
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    dsp_packet_set_pos(p, 2, 0, 1);
    mix[0] = text_packet(1, "hello");
    mix[1] = p;
    mix[2] = text_packet(3, "world");
    ck_assert_int_eq(dsp_harness_push_batch(h, mix, 3), 0);
    int64_t item = -1;
    const char *msg = NULL;
    ck_assert_int_eq(dsp_harness_item_failures(h), 1);
    ck_assert_int_eq(dsp_harness_item_failure(h, 0, &item, &msg), 0);
    ck_assert_int_eq(item, 2);
    ck_assert_msg(strstr(msg, "no text") && !strstr(msg, "item"), "%s", msg);
    for (int k = 0; k < 2; k++) {
        out = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(out);
        ck_assert_int_eq(dsp_packet_item(out), k == 0 ? 1 : 3);
        dsp_packet_unref(&out);
    }
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    dsp_harness_free(&h);

    /* a batch padded to its longest, with pairs from another field */
    const char *params2[] = { tk, "padding=longest", "pair_field=pair", NULL };
    ck_assert_msg(dsp_harness_new(ctx, "text.tokenize", params2, 1, &h) == 0, "%s", dsp_context_errmsg(ctx));
    dsp_packet *b[2] = { text_packet(0, "a"), text_packet(1, "a b c d") };
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(b[0]), "pair", "x"), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(b[1]), "pair", "y z"), 0);
    ck_assert_int_eq(dsp_harness_push_batch(h, b, 2), 0);
    for (int k = 0; k < 2; k++) {
        out = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(out);
        const dsp_tensor *ti = dsp_packet_tensor(out, "input_ids");
        ck_assert_int_eq(ti->shape[0], 9);         /* [CLS] a b c d [SEP] y z [SEP] */
        const int64_t *tt = dsp_tensor_data(dsp_packet_tensor(out, "token_type_ids"));
        ck_assert_int_eq(tt[k == 0 ? 3 : 6], 1);
        dsp_packet_unref(&out);
    }
    dsp_harness_free(&h);

    /* raw bytes from a u8 tensor; with invalid_utf8=error the bad item fails alone and the
     * items around it in the batch still come out */
    const char *params3[] = { tk, "padding=none", "invalid_utf8=error", NULL };
    ck_assert_int_eq(dsp_harness_new(ctx, "text.tokenize", params3, 1, &h), 0);
    dsp_packet *c3[3] = { text_packet(0, "ok"), text_packet(1, "x"), text_packet(2, "fine") };
    int64_t nb = 4;
    dsp_tensor *raw = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 1, &nb, &raw), 0);
    memcpy(dsp_tensor_data(raw), "ab\xFF ", 4);
    ck_assert_int_eq(dsp_meta_remove(dsp_packet_meta(c3[1]), "text"), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(c3[1], "text", raw), 0);
    ck_assert_int_eq(dsp_harness_push_batch(h, c3, 3), 0);
    ck_assert_int_eq(dsp_harness_item_failures(h), 1);
    ck_assert_int_eq(dsp_harness_item_failure(h, 0, &item, &msg), 0);
    ck_assert_int_eq(item, 1);
    ck_assert_msg(strstr(msg, "invalid UTF-8 at byte 2"), "%s", msg);
    for (int k = 0; k < 2; k++) {
        out = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(out);
        ck_assert_int_eq(dsp_packet_item(out), k == 0 ? 0 : 2);
        dsp_packet_unref(&out);
    }
    dsp_harness_free(&h);

    /* a missing tokenizer fails init with the path */
    const char *bad[] = { "tokenizer=/nonexistent/tok.json", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "text.tokenize", bad, 1, &h), 0);
}
END_TEST

START_TEST(test_op_lines)
{
    char dir[512], path[600], pp[700];
    snprintf(dir, sizeof dir, "%s/dsp_lines_XXXXXX", getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/in.jsonl", dir);
    FILE *fp = fopen(path, "w");
    fputs("{\"text\": \"first\"}\n\n{\"text\": \"caf\\u00e9\", \"id\": 7}\r\n", fp);
    fclose(fp);
    snprintf(pp, sizeof pp, "path=%s", path);
    const char *params[] = { pp, "field=text", "skip_empty=true", NULL };
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "text.lines", params, 0, &h) == 0, "%s", dsp_context_errmsg(ctx));
    ck_assert_int_eq(dsp_harness_step(h), 0);
    ck_assert_int_eq(dsp_harness_step(h), 0);
    ck_assert_int_eq(dsp_harness_step(h), DSP_EOF);
    const char *s;
    dsp_packet *p = dsp_harness_pull(h, 0);
    ck_assert_int_eq(dsp_meta_get_str(dsp_packet_meta_const(p), "text", &s), 0);
    ck_assert_str_eq(s, "first");
    dsp_packet_unref(&p);
    p = dsp_harness_pull(h, 0);
    ck_assert_int_eq(dsp_meta_get_str(dsp_packet_meta_const(p), "text", &s), 0);
    ck_assert_str_eq(s, "caf\xC3\xA9");
    int64_t line = 0;
    ck_assert_int_eq(dsp_meta_get_int(dsp_packet_meta_const(p), "line", &line), 0);
    ck_assert_int_eq(line, 3);
    dsp_packet_unref(&p);
    dsp_harness_free(&h);

    /* plain text: invalid UTF-8 is replaced and flagged */
    fp = fopen(path, "w");
    fputs("ok\nbad \xFF byte\n", fp);
    fclose(fp);
    const char *params2[] = { pp, NULL };
    ck_assert_int_eq(dsp_harness_new(ctx, "text.lines", params2, 0, &h), 0);
    while (dsp_harness_step(h) == 0)
        ;
    p = dsp_harness_pull(h, 0);
    dsp_packet_unref(&p);
    p = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(dsp_meta_get_str(dsp_packet_meta_const(p), "text", &s), 0);
    ck_assert_str_eq(s, "bad \xEF\xBF\xBD byte");
    int rep = 0;
    ck_assert_int_eq(dsp_meta_get_bool(dsp_packet_meta_const(p), "utf8_replaced", &rep), 0);
    ck_assert_int_eq(rep, 1);
    dsp_packet_unref(&p);
    dsp_harness_free(&h);
    unlink(path);
    rmdir(dir);
}
END_TEST

static Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("parity");
    tcase_add_unchecked_fixture(tc, load_corpus, free_corpus);
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_corpus, 0, N_TOKENIZERS);
    tcase_add_test(tc, test_vocab_txt);
    tcase_add_loop_test(tc, test_cases, 0, N_TOKENIZERS);
    tcase_add_loop_test(tc, test_sweep, 0, N_TOKENIZERS);
    suite_add_tcase(s, tc);
    tc = tcase_create("behaviour");
    tcase_add_unchecked_fixture(tc, load_corpus, free_corpus);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_byte_offsets);
    tcase_add_test(tc, test_vocab_api);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("operators");
    tcase_add_unchecked_fixture(tc, load_corpus, free_corpus);
    tcase_add_checked_fixture(tc, op_setup, op_teardown);
    tcase_add_test(tc, test_op_tokenize);
    tcase_add_test(tc, test_op_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokenizer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
