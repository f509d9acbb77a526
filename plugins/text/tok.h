/* tok.h - a Hugging Face compatible tokenizer (tokenizer.json, vocab.txt): WordPiece, BPE, Unigram. */
#ifndef DSP_TEXT_TOK_H
#define DSP_TEXT_TOK_H

/*
 * A small library, independent of libdspipe, that gives the same ids, type ids, masks and
 * offsets as the Hugging Face `tokenizers` library for the tokenizer.json files it supports
 * (see docs/text.md for the list):
 *
 *     tok_tokenizer *t;
 *     char err[256];
 *     if (tok_load("model/tokenizer.json", 0, &t, err, sizeof err) < 0)
 *         fprintf(stderr, "%s\n", err);
 *     tok_encoding e = { 0 };
 *     tok_options o = tok_default_options();          // the file's truncation and padding
 *     if (tok_encode(t, "Hello world", 11, NULL, 0, &o, &e) == 0)
 *         for (size_t i = 0; i < e.n; i++)
 *             printf("%d [%u, %u)\n", e.ids[i], e.offsets[2 * i], e.offsets[2 * i + 1]);
 *     tok_encoding_clear(&e);
 *     tok_free(&t);
 *
 * Errors: functions return 0 or a negative DSP_E* code (dspipe/common.h); the message is
 * kept on the tokenizer (tok_errmsg) or written to err for tok_load. Invalid input never
 * crashes: bad UTF-8 is replaced (U+FFFD, as Python's errors="replace") or refused
 * (TOK_UTF8_ERROR), as the options say.
 *
 * Threads: a tokenizer is not thread-safe (encode uses scratch space and a word cache kept
 * on it). Use one per thread; loading is cheap next to the work.
 */
#include <stddef.h>
#include <stdint.h>

#include <dspipe/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tok_tokenizer tok_tokenizer;

/* The result of one encode: n tokens. Arrays are owned by the encoding (reused and grown by
 * the next encode into it); free them with tok_encoding_clear. offsets holds 2n values,
 * start and end of each token in the input text: in Unicode code points (characters of a
 * Python str, the library's default) or in bytes (TOK_OFFSETS_BYTES). Special and padding
 * tokens have (0, 0); offsets of the second sequence of a pair are relative to it. */
typedef struct tok_encoding {
    size_t n;
    int32_t *ids;
    int32_t *type_ids;
    uint8_t *attention_mask;    /* 1 for tokens, 0 for padding */
    uint8_t *special_mask;      /* 1 for special tokens added by the post-processor and padding */
    uint32_t *offsets;
    size_t cap;
    int32_t *trim;              /* internal: leading/trailing spaces of each token, 2n */
} tok_encoding;

enum tok_trunc_strategy { TOK_TRUNC_LONGEST_FIRST, TOK_TRUNC_ONLY_FIRST, TOK_TRUNC_ONLY_SECOND };
enum tok_direction { TOK_RIGHT, TOK_LEFT };
enum tok_padding_mode {
    TOK_PAD_FILE = -1,          /* as the tokenizer.json says (the library's behaviour) */
    TOK_PAD_NONE = 0,
    TOK_PAD_LONGEST = 1,        /* to the longest encoding of the batch (itself, for one) */
    TOK_PAD_FIXED = 2           /* to pad_length */
};
enum tok_offsets_unit { TOK_OFFSETS_CHARS, TOK_OFFSETS_BYTES };
enum tok_utf8_policy { TOK_UTF8_REPLACE, TOK_UTF8_ERROR };

typedef struct tok_options {
    int add_special_tokens;     /* 1: run the post-processor's template ([CLS] A [SEP]) */
    int truncation;             /* -1: as the file says, 0: off, 1: on with the fields below */
    int64_t max_length;
    int trunc_strategy;         /* enum tok_trunc_strategy */
    int trunc_direction;        /* enum tok_direction */
    int padding;                /* enum tok_padding_mode */
    int64_t pad_length;         /* TOK_PAD_FIXED */
    int64_t pad_multiple_of;    /* 0: none */
    int pad_direction;          /* enum tok_direction */
    int64_t pad_id;             /* -1: the file's pad id, or the id of pad_token */
    int64_t pad_type_id;
    const char *pad_token;      /* used when pad_id < 0; NULL: the file's pad token, else the first
                                   of [PAD], <pad>, <|padding|>, <|endoftext|> in the vocabulary */
    int offsets;                /* enum tok_offsets_unit */
    int invalid_utf8;           /* enum tok_utf8_policy */
} tok_options;

/* Options that do what the Hugging Face library does with the file as it is. */
tok_options tok_default_options(void);

/* Load a tokenizer. path: a tokenizer.json, a BERT vocab.txt (one token per line: WordPiece
 * with BERT's normaliser, pre-tokeniser and [CLS]/[SEP] template, as BertTokenizerFast
 * builds it), or a folder holding one of them (tokenizer.json preferred). flags:
 * TOK_LOAD_CASED keeps case and accents for a vocab.txt (do_lower_case=False).
 * On failure *out is NULL and err (if not NULL) says what and where. */
#define TOK_LOAD_CASED 1
int tok_load(const char *path, int flags, tok_tokenizer **out, char *err, size_t errlen);
/* The same from a tokenizer.json held in memory (name is used in messages). */
int tok_load_json(const char *json, size_t len, const char *name, tok_tokenizer **out,
                  char *err, size_t errlen);
void tok_free(tok_tokenizer **t);       /* NULL-safe, sets *t to NULL */

/* Encode text a (len bytes, need not be NUL-terminated) or the pair (a, b) (b NULL for one
 * sequence) into *enc. o NULL means tok_default_options(). On error enc->n is 0. */
int tok_encode(tok_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
               const tok_options *o, tok_encoding *enc);
/* Encode n texts (and n pair texts when b is not NULL) into enc[0..n-1]; padding to the
 * longest pads every encoding to the longest of the batch. */
int tok_encode_batch(tok_tokenizer *t, size_t n, const char *const *a, const size_t *alen,
                     const char *const *b, const size_t *blen, const tok_options *o,
                     tok_encoding *enc);
void tok_encoding_clear(tok_encoding *e);

/* Decode ids to text as the library's decode(ids, skip_special_tokens) does. *out is a new
 * NUL-terminated UTF-8 string (free it with free()), *outlen its length. Unknown ids are
 * skipped, as the library does. */
int tok_decode(tok_tokenizer *t, const int32_t *ids, size_t n, int skip_special_tokens,
               char **out, size_t *outlen);

/* The last error's message (never NULL). */
const char *tok_errmsg(const tok_tokenizer *t);

/* Vocabulary: the model's tokens and the added tokens. -1 when absent / NULL when unknown. */
int32_t tok_token_to_id(const tok_tokenizer *t, const char *token, size_t len);
const char *tok_id_to_token(const tok_tokenizer *t, int32_t id, size_t *len);
size_t tok_vocab_size(const tok_tokenizer *t);   /* with added tokens: largest id + 1 */
/* A one-line description: model type, pipeline parts, vocabulary size. */
const char *tok_describe(const tok_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif /* DSP_TEXT_TOK_H */
