/* tok_json.h - helpers shared by the tokenizer.json readers, tok_load.c and tok_json.c (not API). */
#ifndef DSP_TEXT_TOK_JSON_H
#define DSP_TEXT_TOK_JSON_H

#include <stdio.h>

#include <jansson.h>

#include "tok_int.h"

/* Loading errors name the file and the JSON path: "tokenizer.json: pre_tokenizer.pretokenizers[0]:
 * unsupported pre_tokenizer type 'UnicodeScripts'". */
typedef struct loader {
    tok_tokenizer *t;
    char path[160];             /* where in the JSON we are */
} loader;

/* Record "FILE: PATH: message" on the tokenizer; returns code. */
int tok_lfail(loader *L, int code, const char *fmt, ...) TOK_PRINTF(3, 4);
#define LFAIL(L, code, ...) tok_lfail((L), (code), __VA_ARGS__)

/* The pipeline components (tok_json.c); each fills a zeroed struct, freed by its *_free. */
int tok_read_normalizer(loader *L, const json_t *o, tok_normalizer *n);
int tok_read_pretok(loader *L, const json_t *o, tok_pretok *p);
int tok_read_post(loader *L, const json_t *o, tok_post *p);
int tok_read_decoder(loader *L, const json_t *o, tok_decoder *d);

static inline int get_bool(const json_t *o, const char *key, int def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static inline int64_t get_int(const json_t *o, const char *key, int64_t def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

static inline const char *get_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static inline char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static inline uint32_t first_char(const char *s)
{
    size_t cl;
    if (!s || !*s)
        return 0;
    size_t bad;
    if (tok_utf8_valid_prefix(s, strlen(s), &bad) == 0)
        return 0;
    return tok_utf8_next(s, &cl);
}

#endif /* DSP_TEXT_TOK_JSON_H */
