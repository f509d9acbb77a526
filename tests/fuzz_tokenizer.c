/* fuzz_tokenizer.c - random bytes and mutated corpus lines through every fixture tokenizer: no crash, sane encodings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"

/* Bounded and seeded: FUZZ_TOKENIZER_ITERS (default 2000 per tokenizer) and
 * FUZZ_TOKENIZER_SEED change them. Run under valgrind by make check-valgrind. */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static char *corpus_buf;
static char **lines;
static size_t *lens, nlines;

static int load_lines(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        free(b);
        return -1;
    }
    fclose(fp);
    corpus_buf = b;
    lines = malloc(((size_t)n + 1) * sizeof *lines);
    lens = malloc(((size_t)n + 1) * sizeof *lens);
    for (size_t i = 0, s = 0; i < (size_t)n; i++)
        if (b[i] == '\n') {
            lines[nlines] = b + s;
            lens[nlines++] = i - s;
            s = i + 1;
        }
    return 0;
}

/* Pieces that exercise the edges: special tokens, multi-byte chars, marks, invalid bytes. */
static const char *const PIECES[] = {
    "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>", "<mask>", "<sep>", "<s>", "</s>", "<|begin_of_text|>",
    " hello world", "dspipe", "[NEW]", "\xC3", "\xE2\x82", "\xF0\x9F\x98", "\xFF", "\x80", "\xED\xA0\x80",
    "e\xCC\x81", "\xCC\x81", "\xE3\x80\x80", "\xC2\xA0", "\r\n", "\t", "  ", "\xF0\x9F\x91\xA8\xE2\x80\x8D",
    "\xE9\x87\x8E", "'s", "'LL", "123456", "\xEF\xBF\xBD", "\xE2\x80\x8B", "\x00", "\xC4\xB0",
    "\xE2\x96\x81", "<0x41>", "<unk>", "<pad>", "\xEF\xBC\xA1", "\xEF\xAC\x81",
};
#define NPIECES (sizeof PIECES / sizeof PIECES[0])

static size_t make_input(char *buf, size_t cap)
{
    size_t n = 0;
    switch (rnd() % 4) {
    case 0:     /* random bytes */
        n = rnd() % 200;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)rnd();
        return n;
    case 1: {   /* a corpus line with bytes flipped, inserted or removed */
        size_t li = rnd() % nlines;
        n = lens[li] < cap / 2 ? lens[li] : cap / 2;
        memcpy(buf, lines[li], n);
        for (int k = (int)(rnd() % 4); k >= 0 && n > 0; k--) {
            size_t at = rnd() % n;
            switch (rnd() % 3) {
            case 0:
                buf[at] = (char)rnd();
                break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default:
                if (n + 1 < cap) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = (char)rnd();
                    n++;
                }
            }
        }
        return n;
    }
    default:    /* pieces glued together */
        for (int k = (int)(rnd() % 12); k >= 0; k--) {
            const char *p = PIECES[rnd() % NPIECES];
            size_t l = strlen(p) ? strlen(p) : 1;      /* "\x00" is one NUL byte */
            if (n + l >= cap)
                break;
            memcpy(buf + n, p, l);
            n += l;
        }
        return n;
    }
}

static int check(const tok_encoding *e, size_t alen, size_t blen, const char *what)
{
    for (size_t i = 0; i < e->n; i++) {
        uint32_t s = e->offsets[2 * i], en = e->offsets[2 * i + 1];
        size_t lim = (alen > blen ? alen : blen) * 3 + 3;   /* U+FFFD may triple a byte */
        if (s > en || en > lim) {
            fprintf(stderr, "%s: token %zu has offsets (%u, %u) for a text of %zu bytes\n", what, i, s, en, alen);
            return 1;
        }
        if (e->attention_mask[i] > 1 || e->special_mask[i] > 1) {
            fprintf(stderr, "%s: bad mask at %zu\n", what, i);
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    const char *src = getenv("TESTS_SRCDIR");
    const char *it = getenv("FUZZ_TOKENIZER_ITERS"), *sd = getenv("FUZZ_TOKENIZER_SEED");
    long iters = it ? atol(it) : 2000;
    rng_state = sd ? strtoull(sd, NULL, 10) | 1 : 0x9E3779B97F4A7C15ull;
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/data/text", src && *src ? src : ".");
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    if (load_lines(path) < 0 || nlines == 0) {
        fprintf(stderr, "fuzz_tokenizer: cannot read %s\n", path);
        return 1;
    }
    static const char *const files[] = { "bert.json", "bert-vocab.txt", "gpt2.json", "roberta.json",
                                         "llama3.json", "qwen2.json", "llama2.json", "unigram.json" };
    char *a = malloc(4096), *b = malloc(4096);
    int fails = 0;
    long encodes = 0, errors = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        tok_tokenizer *t;
        char err[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        if (tok_load(path, 0, &t, err, sizeof err) < 0) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err);
            return 1;
        }
        tok_encoding e = { 0 }, be[3] = { { 0 } };
        for (long k = 0; k < iters; k++) {
            size_t al = make_input(a, 4096), bl = make_input(b, 4096);
            tok_options o = tok_default_options();
            o.add_special_tokens = (int)(rnd() % 4 != 0);
            o.offsets = rnd() % 3 == 0 ? TOK_OFFSETS_BYTES : TOK_OFFSETS_CHARS;
            o.invalid_utf8 = rnd() % 5 == 0 ? TOK_UTF8_ERROR : TOK_UTF8_REPLACE;
            if (rnd() % 2) {
                o.truncation = 1;
                o.max_length = (int64_t)(rnd() % 40);
                o.trunc_strategy = (int)(rnd() % 3);
                o.trunc_direction = (int)(rnd() % 2);
            }
            if (rnd() % 2) {
                o.padding = (int)(rnd() % 3);
                o.pad_length = (int64_t)(rnd() % 64);
                o.pad_multiple_of = (int64_t)(rnd() % 3) * 4;
                o.pad_direction = (int)(rnd() % 2);
            }
            int pair = rnd() % 3 == 0;
            int rc = tok_encode(t, a, al, pair ? b : NULL, bl, &o, &e);
            encodes++;
            if (rc < 0) {
                errors++;
                if (e.n != 0 || !tok_errmsg(t)[0]) {
                    fprintf(stderr, "%s: an error left %zu tokens or no message\n", files[f], e.n);
                    fails++;
                }
                continue;
            }
            fails += check(&e, al, pair ? bl : 0, files[f]);
            char *dec;
            size_t dl;
            if (tok_decode(t, e.ids, e.n, (int)(rnd() % 2), &dec, &dl) < 0) {
                fprintf(stderr, "%s: decode failed: %s\n", files[f], tok_errmsg(t));
                fails++;
            } else {
                free(dec);
            }
            if (k % 50 == 0) {
                size_t li = (size_t)(rnd() % nlines);
                const char *txt[3] = { a, b, lines[li] };
                size_t tl[3] = { al, bl, lens[li] < 300 ? lens[li] : 300 };
                o.padding = TOK_PAD_LONGEST;
                if (tok_encode_batch(t, 3, txt, tl, NULL, NULL, &o, be) == 0)
                    fails += be[0].n != be[1].n || be[1].n != be[2].n;
            }
        }
        tok_encoding_clear(&e);
        for (int k = 0; k < 3; k++)
            tok_encoding_clear(&be[k]);
        tok_free(&t);
    }
    /* malformed tokenizer.json: a real file cut short and with bytes changed */
    snprintf(path, sizeof path, "%s/gpt2.json", dir);
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *json = malloc((size_t)n + 1);
    if (fread(json, 1, (size_t)n, fp) != (size_t)n)
        return 1;
    fclose(fp);
    long loads = 0, bad_loads = 0;
    for (int k = 0; k < 40; k++) {
        char *copy = malloc((size_t)n + 1);
        memcpy(copy, json, (size_t)n);
        size_t len = k < 20 ? (size_t)(rnd() % (uint64_t)n) : (size_t)n;
        for (int m = 0; m < 3 && k >= 20; m++)
            copy[rnd() % (uint64_t)n] = (char)" :,\"{}[]0a\\"[rnd() % 11];
        tok_tokenizer *t = NULL;
        char err[512];
        loads++;
        if (tok_load_json(copy, len, "mutated.json", &t, err, sizeof err) < 0) {
            bad_loads++;
            if (t || !err[0]) {
                fprintf(stderr, "a failed load left a tokenizer or no message\n");
                fails++;
            }
        } else {
            tok_encoding e = { 0 };
            tok_encode(t, lines[k], lens[k], NULL, 0, NULL, &e);
            tok_encoding_clear(&e);
            tok_free(&t);
        }
        free(copy);
    }
    free(json);
    free(a);
    free(b);
    free(corpus_buf);
    free(lines);
    free(lens);
    /* "N%:" first, like check's summary: make check-valgrind greps for it */
    printf("%d%%: fuzz_tokenizer: %ld encodes (%ld refused with a message), %ld mutated files (%ld refused), "
           "%d failures\n", fails ? 0 : 100, encodes, errors, loads, bad_loads, fails);
    return fails ? 1 : 0;
}
