/* tok_int.h - internal structures of the tokenizer shared between its files (not API). */
#ifndef DSP_TEXT_TOK_INT_H
#define DSP_TEXT_TOK_INT_H

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok.h"

#if defined(__GNUC__)
#define TOK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TOK_LIKELY(x) __builtin_expect(!!(x), 1)
#define TOK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TOK_PRINTF(f, a)
#define TOK_LIKELY(x) (x)
#define TOK_UNLIKELY(x) (x)
#endif

/* ---- growable arrays ------------------------------------------------------------------- */
/* Make room for n more elements of size sz in *p (capacity *cap, used *len). */
int tok_grow(void **p, size_t *cap, size_t len, size_t n, size_t sz);
#define TOK_RESERVE(arr, cap, len, n) tok_grow((void **)&(arr), &(cap), (len), (n), sizeof *(arr))

/* ---- string -> id map (open addressing) -------------------------------------------------- */
typedef struct tok_strmap {
    char *pool;
    size_t pool_len, pool_cap;
    struct tok_strent { uint32_t off, len, hash; int32_t val; } *ent;
    size_t n, cap;
    int32_t *slot;          /* -1 empty, else index into ent */
    size_t mask;
} tok_strmap;

uint32_t tok_hash(const void *s, size_t len);
int tok_strmap_put(tok_strmap *m, const char *s, size_t len, int32_t val);
int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t len);
int32_t tok_strmap_get_h(const tok_strmap *m, const char *s, size_t len, uint32_t h);
const struct tok_strent *tok_strmap_ent(const tok_strmap *m, const char *s, size_t len);
void tok_strmap_free(tok_strmap *m);

/* ---- (id, id) -> (rank, new id): BPE merges ---------------------------------------------- */
typedef struct tok_pairmap {
    uint64_t *key;          /* UINT64_MAX empty */
    int32_t *rank, *newid;
    size_t n, mask;
} tok_pairmap;

int tok_pairmap_init(tok_pairmap *m, size_t expect);
int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t newid);
/* rank or -1 */
static inline int32_t tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *newid)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & m->mask;
    for (;;) {
        if (m->key[i] == k) {
            *newid = m->newid[i];
            return m->rank[i];
        }
        if (m->key[i] == UINT64_MAX)
            return -1;
        i = (i + 1) & m->mask;
    }
}
void tok_pairmap_free(tok_pairmap *m);

/* ---- UTF-8 and Unicode ---------------------------------------------------------------- */
/* Decode one code point of valid UTF-8 at s (n bytes left, n >= 1); *cl gets its length. */
static inline uint32_t tok_utf8_next(const char *s, size_t *cl)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *cl = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *cl = 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *cl = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *cl = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
           ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
}
static inline size_t tok_utf8_len(uint32_t c)
{
    return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
}
size_t tok_utf8_put(char *dst, uint32_t c);       /* dst has room for 4 bytes */
/* Length of the previous character ending at s[pos] (pos > 0). */
static inline size_t tok_utf8_prev_len(const char *s, size_t pos)
{
    size_t k = 1;
    while (k < pos && ((unsigned char)s[pos - k] & 0xC0) == 0x80)
        k++;
    return k;
}
/* Length of the valid UTF-8 prefix of s, and in *bad the number of bytes of the maximal
 * invalid subsequence that follows (0 at the end). */
size_t tok_utf8_valid_prefix(const char *s, size_t len, size_t *bad);

int tok_is_whitespace(uint32_t c);      /* Unicode White_Space (Rust char::is_whitespace) */
int tok_is_bert_control(uint32_t c);    /* Cc, Cf, Co, Cs except \t \n \r */
int tok_is_punct(uint32_t c);           /* ASCII punctuation or Unicode P* */
int tok_is_mn(uint32_t c);              /* Mn: nonspacing mark */
int tok_is_chinese(uint32_t c);         /* CJK ideograph blocks as BERT defines them */
int tok_is_word_char(uint32_t c);       /* regex \w: alphabetic, marks, Nd, Pc, join controls */
/* 1 for a char the library's (older) normalization data does not decompose */
int tok_no_decomposition(uint32_t c, int compat);
/* Lower case as Rust's char::to_lowercase: up to 3 code points into out, count returned. */
int tok_lower(uint32_t c, uint32_t *out);

/* ---- normalized strings with alignments ------------------------------------------------- */
/* A piece of text being normalized: its bytes and, for each byte, the span of the original
 * text (absolute byte offsets) it came from. */
typedef struct tok_span { uint32_t s, e; } tok_span;

typedef struct tok_ns {
    char *s;
    tok_span *al;
    size_t len, cap;
    uint32_t shift;         /* original offset of the piece: what an insertion at 0 aligns to */
} tok_ns;

int tok_ns_reserve(tok_ns *n, size_t more);
void tok_ns_free(tok_ns *n);

/* A transformation (Hugging Face's NormalizedString::transform): the new string is built from
 * (char, change) pairs, change 0 replacing the next source char, +1 inserting a char, -k
 * replacing the next char and removing the k chars after it. */
typedef struct tok_xf {
    const tok_ns *src;
    tok_ns *dst;
    size_t pos;             /* byte position in src */
} tok_xf;

int tok_xf_begin(tok_xf *x, const tok_ns *src, tok_ns *dst, size_t initial_removed_chars);
int tok_xf_push(tok_xf *x, uint32_t c, int change);

/* ---- regular expressions (PCRE2, with Oniguruma's \s) ----------------------------------- */
typedef struct tok_regex {
    pcre2_code *code;
    pcre2_match_data *md;
    int jit;
} tok_regex;

int tok_regex_compile(tok_regex *r, const char *pattern, char *err, size_t errlen);
/* Next match at or after start: 1 with [*ms, *me), 0 when none, negative on a match error. */
int tok_regex_find(tok_regex *r, const char *s, size_t len, size_t start, size_t *ms, size_t *me);
void tok_regex_free(tok_regex *r);

/* ---- pipeline components -------------------------------------------------------------- */
enum tok_norm_type {
    TOK_NORM_BERT, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD, TOK_NORM_LOWER,
    TOK_NORM_STRIP, TOK_NORM_STRIP_ACCENTS, TOK_NORM_REPLACE, TOK_NORM_PREPEND, TOK_NORM_SEQ
};

typedef struct tok_normalizer {
    int type;
    int clean_text, chinese, strip_accents, lowercase;     /* BertNormalizer */
    int left, right;                                       /* Strip */
    char *pattern;                                         /* Replace: literal pattern */
    size_t pattern_len;
    tok_regex re;                                          /* Replace: regex pattern */
    int is_regex;
    char *content;                                         /* Replace, Prepend */
    size_t content_len;
    struct tok_normalizer *seq;
    size_t nseq;
} tok_normalizer;

enum tok_pre_type {
    TOK_PRE_BERT, TOK_PRE_BYTELEVEL, TOK_PRE_SPLIT, TOK_PRE_SEQ, TOK_PRE_WHITESPACE,
    TOK_PRE_WHITESPACE_SPLIT, TOK_PRE_METASPACE, TOK_PRE_DIGITS, TOK_PRE_PUNCT
};
enum tok_split_behavior {
    TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS
};
enum tok_prepend_scheme { TOK_PREPEND_ALWAYS, TOK_PREPEND_NEVER, TOK_PREPEND_FIRST };

typedef struct tok_pretok {
    int type;
    int add_prefix_space, use_regex;                       /* ByteLevel */
    tok_regex re;                                          /* Split (regex), ByteLevel */
    int is_regex;
    char *literal;                                         /* Split (string pattern) */
    size_t literal_len;
    int behavior, invert;                                  /* Split, Punctuation */
    uint32_t replacement;                                  /* Metaspace */
    int prepend_scheme, split;                             /* Metaspace */
    int individual_digits;                                 /* Digits */
    struct tok_pretok *seq;
    size_t nseq;
} tok_pretok;

enum tok_model_type { TOK_MODEL_WORDPIECE, TOK_MODEL_BPE, TOK_MODEL_WORDLEVEL, TOK_MODEL_UNIGRAM };

typedef struct tok_model {
    int type;
    tok_strmap vocab;               /* token -> id */
    uint32_t *id_off, *id_len;      /* id -> token in vocab.pool (UINT32_MAX: no token) */
    size_t n_ids;
    int32_t unk_id;                 /* -1: none */
    /* WordPiece */
    tok_strmap cont;                /* token without the prefix -> id, for "##..." tokens */
    char *prefix;                   /* continuing_subword_prefix (WordPiece and BPE) */
    size_t prefix_len;
    int64_t max_chars;
    size_t max_token_len;           /* longest vocabulary entry in bytes */
    /* BPE */
    tok_pairmap merges;
    char *suffix;                   /* end_of_word_suffix */
    size_t suffix_len;
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256];           /* <0xXX> tokens for byte_fallback, -1 when absent */
    int32_t char_id[512];           /* single byte-level chars (U+0000..U+01FF) -> id, -1 */
    /* Unigram */
    double *score;                  /* per id */
    double min_score;
    tok_strmap prefixes;            /* every prefix (at char boundaries) of a piece: id, or -2 */
} tok_model;

typedef struct tok_added {
    char *content;
    size_t len;
    char *norm;                     /* content after the normalizer (normalized tokens) */
    size_t norm_len;
    int32_t id;
    uint8_t special, single_word, lstrip, rstrip, normalized;
} tok_added;

/* Leftmost-longest matching of a set of added tokens. */
typedef struct tok_matcher {
    uint8_t first[256];             /* 1 when some pattern starts with that byte */
    int32_t *idx;                   /* indices into the added-token table, by first byte */
    uint32_t start[257];            /* idx[start[b] .. start[b+1]) start with byte b, longest first */
    int normalized;                 /* match the normalized contents */
} tok_matcher;

enum tok_post_type { TOK_POST_TEMPLATE, TOK_POST_BERT, TOK_POST_ROBERTA, TOK_POST_BYTELEVEL, TOK_POST_SEQ };

typedef struct tok_piece {
    int special;                    /* 1: special token named name, 0: sequence seq */
    int seq;                        /* 0: A, 1: B */
    char *name;
    int32_t type_id;
} tok_piece;

typedef struct tok_special {
    char *name;
    int32_t *ids;
    char **tokens;
    size_t n;
} tok_special;

typedef struct tok_post {
    int type;
    tok_piece *single, *pair;
    size_t nsingle, npair;
    tok_special *specials;
    size_t nspecials;
    int32_t cls_id, sep_id;
    char *cls, *sep;
    int trim_offsets, add_prefix_space;
    struct tok_post *seq;
    size_t nseq;
} tok_post;

enum tok_dec_type {
    TOK_DEC_WORDPIECE, TOK_DEC_BYTELEVEL, TOK_DEC_METASPACE, TOK_DEC_BPE, TOK_DEC_SEQ,
    TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP
};

typedef struct tok_decoder {
    int type;
    char *prefix;                   /* WordPiece */
    int cleanup;
    char *suffix;                   /* BPEDecoder */
    uint32_t replacement;           /* Metaspace */
    int prepend_scheme;
    char *pattern, *content;        /* Replace (string pattern only) */
    char strip_content[8];          /* Strip */
    int64_t start, stop;
    struct tok_decoder *seq;
    size_t nseq;
} tok_decoder;

/* ---- per-sequence scratch: splits of the text being pre-tokenized ------------------------ */
typedef struct tok_split {
    uint32_t off, len;              /* bytes in work.buf / work.al */
    uint32_t shift;                 /* original offset for insertions at 0 */
    int32_t id;                     /* >= 0: an added token already (no tokenizing) */
} tok_split;

/* One token of a sequence before post-processing. */
typedef struct tok_raw {
    int32_t id;
    uint32_t s, e;                  /* original byte offsets */
    int32_t lead, trail;            /* leading/trailing spaces of the token's text (trim_offsets) */
} tok_raw;

typedef struct tok_cache_ent {
    uint32_t key_off, key_len, hash;
    uint32_t tok_off, ntok;         /* into cache.toks */
} tok_cache_ent;

typedef struct tok_work {
    char *text;                     /* the sequence as valid UTF-8 */
    size_t text_len, text_cap;
    char *buf;                      /* arena of split texts */
    tok_span *al;
    size_t blen, bcap;
    tok_split *sp, *sp2;
    size_t nsp, spcap, nsp2, sp2cap;
    tok_ns ns, ns2;                 /* normalizer scratch */
    tok_raw *raw;
    size_t nraw, rawcap;
    uint32_t *cmap;                 /* byte -> char index of text */
    size_t cmapcap;
    /* BPE scratch */
    struct tok_sym { int32_t id; int32_t prev, next; uint32_t s, e; } *sym;
    size_t symcap;
    struct tok_heap { int32_t rank; int32_t pos; } *heap;
    size_t heapcap;
    struct tok_best { double score; int32_t id; int32_t start; } *best;   /* Unigram Viterbi */
    size_t bestcap;
    char *tmp;
    size_t tmpcap;
    struct tok_seg { uint32_t s, e; int32_t id; } *seg, *seg2;
    size_t nseg, segcap, nseg2, seg2cap;
    tok_encoding ea, eb;            /* the two sequences before post-processing */
} tok_work;

typedef struct tok_cache {
    tok_cache_ent *ent;             /* open addressing, key_len == UINT32_MAX: empty */
    size_t mask, n;
    char *keys;
    size_t keys_len, keys_cap;
    struct tok_cache_tok { int32_t id; uint32_t s, e; } *toks;
    size_t toks_len, toks_cap;
} tok_cache;

struct tok_tokenizer {
    char name[256];
    char desc[256];
    char err[512];
    tok_normalizer *normalizer;
    tok_pretok *pretok;
    tok_model model;
    tok_post *post;
    tok_decoder *decoder;
    tok_added *added;               /* in file order */
    size_t nadded;
    int32_t *added_by_id;           /* indices into added, sorted by id */
    tok_strmap added_map;           /* content -> index into added */
    tok_matcher raw_match, norm_match;
    int32_t *lead_trail;            /* per model id: leading, trailing spaces (2 each) */
    /* the file's truncation and padding */
    int trunc_on;
    int64_t trunc_max;
    int trunc_strategy, trunc_direction, trunc_stride;
    int pad_mode;                   /* TOK_PAD_NONE / LONGEST / FIXED */
    int64_t pad_length, pad_multiple, pad_id, pad_type_id;
    int pad_direction;
    char *pad_token;
    int need_trim;                  /* some post-processor trims offsets */
    tok_work w;
    tok_cache cache;
};

int tok_fail(tok_tokenizer *t, int code, const char *fmt, ...) TOK_PRINTF(3, 4);

/* pipeline stages (tok_normalize.c, tok_pretok.c, tok_wordpiece.c, tok_bpe.c, tok_added.c,
 * tok_post.c, tok_decode.c) */
int tok_normalize(tok_tokenizer *t, const tok_normalizer *n, tok_ns *ns);
int tok_pretokenize(tok_tokenizer *t, const tok_pretok *p);
int tok_wordpiece_tokenize(tok_tokenizer *t, const tok_split *sp);
int tok_bpe_tokenize(tok_tokenizer *t, const tok_split *sp);
int tok_wordlevel_tokenize(tok_tokenizer *t, const tok_split *sp);
int tok_unigram_tokenize(tok_tokenizer *t, const tok_split *sp);
/* Cut s into added tokens (id >= 0) and the text between them (id -1), as the library's
 * AddedVocabulary::find_matches does; segments go to t->w.seg. */
int tok_added_segments(tok_tokenizer *t, const tok_matcher *m, const char *s, size_t len);
int tok_matcher_build(tok_tokenizer *t, tok_matcher *m, int normalized);
void tok_matcher_free(tok_matcher *m);
int tok_post_added(const tok_post *p, int pair);
int tok_post_process(tok_tokenizer *t, const tok_post *p, tok_encoding *a, tok_encoding *b,
                     int add_special, tok_encoding *out);
void tok_trim_offsets(tok_encoding *e, int add_prefix_space);
int tok_post_check(tok_tokenizer *t, const tok_post *p);
int tok_post_trims(const tok_post *p);
int tok_truncate(tok_tokenizer *t, tok_encoding *a, tok_encoding *b, int64_t max_len, int strategy,
                 int direction);
int tok_pad(tok_encoding *e, size_t target, int direction, int32_t pad_id, int32_t pad_type_id);
typedef struct tok_str { char *s; size_t n; } tok_str;
/* Run the decoder over n tokens (each malloc'd, NUL-terminated after n bytes); may change n. */
int tok_decode_tokens(tok_tokenizer *t, const tok_decoder *d, tok_str *toks, size_t *n);
void tok_cache_free(tok_cache *c);
void tok_cache_clear(tok_cache *c);
int tok_encoding_reserve(tok_encoding *e, size_t n);

void tok_normalizer_free(tok_normalizer *n);
void tok_pretok_free(tok_pretok *p);
void tok_post_free(tok_post *p);
void tok_decoder_free(tok_decoder *d);

/* Add a split of work.buf to the output list (work.sp2). */
int tok_emit_split(tok_work *w, uint32_t off, uint32_t len, uint32_t shift, int32_t id);
/* Append n bytes with alignments to the arena; returns the offset or -1 on OOM. */
int64_t tok_arena_append(tok_work *w, const char *s, const tok_span *al, size_t n);

/* The byte-level alphabet (GPT-2's bytes_to_unicode). */
static inline uint32_t tok_byte_char(unsigned b)
{
    if (b <= 0x20)
        return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0)
        return 0x121 + (b - 0x7F);
    if (b == 0xAD)
        return 0x143;
    return b;
}
int tok_char_to_byte(uint32_t c);       /* -1 when c is not in the alphabet */

#endif /* DSP_TEXT_TOK_INT_H */
