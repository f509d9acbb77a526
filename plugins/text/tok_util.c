/* tok_util.c - growable arrays, hash maps, UTF-8 and Unicode character classes for the tokenizer. */
#include <stdio.h>
#include <utf8proc.h>

#include "tok_int.h"

int tok_grow(void **p, size_t *cap, size_t len, size_t n, size_t sz)
{
    if (len + n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < len + n)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q)
        return DSP_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

int tok_fail(tok_tokenizer *t, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- hashing ------------------------------------------------------------------------------ */
uint32_t tok_hash(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        len -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, len);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static int strmap_rehash(tok_strmap *m, size_t nslots)
{
    int32_t *slot = malloc(nslots * sizeof *slot);
    if (!slot)
        return DSP_ENOMEM;
    for (size_t i = 0; i < nslots; i++)
        slot[i] = -1;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = m->ent[k].hash & (nslots - 1);
        while (slot[i] >= 0)
            i = (i + 1) & (nslots - 1);
        slot[i] = (int32_t)k;
    }
    free(m->slot);
    m->slot = slot;
    m->mask = nslots - 1;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const char *s, size_t len, int32_t val)
{
    uint32_t h = tok_hash(s, len);
    if (m->slot) {
        size_t i = h & m->mask;
        while (m->slot[i] >= 0) {
            struct tok_strent *e = &m->ent[m->slot[i]];
            if (e->hash == h && e->len == len && memcmp(m->pool + e->off, s, len) == 0) {
                e->val = val;
                return 0;
            }
            i = (i + 1) & m->mask;
        }
    }
    if (len > UINT32_MAX / 2 || m->pool_len + len + 1 > UINT32_MAX)
        return DSP_ELIMIT;
    if (TOK_RESERVE(m->ent, m->cap, m->n, 1) < 0 ||
        TOK_RESERVE(m->pool, m->pool_cap, m->pool_len, len + 1) < 0)
        return DSP_ENOMEM;
    struct tok_strent *e = &m->ent[m->n];
    e->off = (uint32_t)m->pool_len;
    e->len = (uint32_t)len;
    e->hash = h;
    e->val = val;
    memcpy(m->pool + m->pool_len, s, len);
    m->pool[m->pool_len + len] = '\0';
    m->pool_len += len + 1;
    m->n++;
    if (!m->slot || m->n * 2 > m->mask + 1)
        return strmap_rehash(m, m->slot ? (m->mask + 1) * 2 : 64);
    size_t i = h & m->mask;
    while (m->slot[i] >= 0)
        i = (i + 1) & m->mask;
    m->slot[i] = (int32_t)(m->n - 1);
    return 0;
}

int32_t tok_strmap_get_h(const tok_strmap *m, const char *s, size_t len, uint32_t h)
{
    if (!m->slot)
        return -1;
    size_t i = h & m->mask;
    while (m->slot[i] >= 0) {
        const struct tok_strent *e = &m->ent[m->slot[i]];
        if (e->hash == h && e->len == len && memcmp(m->pool + e->off, s, len) == 0)
            return e->val;
        i = (i + 1) & m->mask;
    }
    return -1;
}

const struct tok_strent *tok_strmap_ent(const tok_strmap *m, const char *s, size_t len)
{
    if (!m->slot)
        return NULL;
    uint32_t h = tok_hash(s, len);
    size_t i = h & m->mask;
    while (m->slot[i] >= 0) {
        const struct tok_strent *e = &m->ent[m->slot[i]];
        if (e->hash == h && e->len == len && memcmp(m->pool + e->off, s, len) == 0)
            return e;
        i = (i + 1) & m->mask;
    }
    return NULL;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t len)
{
    return tok_strmap_get_h(m, s, len, tok_hash(s, len));
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->pool);
    free(m->ent);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

int tok_pairmap_init(tok_pairmap *m, size_t expect)
{
    size_t n = 64;
    while (n < expect * 2 + 2)
        n *= 2;
    m->key = malloc(n * sizeof *m->key);
    m->rank = malloc(n * sizeof *m->rank);
    m->newid = malloc(n * sizeof *m->newid);
    if (!m->key || !m->rank || !m->newid)
        return DSP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        m->key[i] = UINT64_MAX;
    m->mask = n - 1;
    m->n = 0;
    return 0;
}

/* A pair given twice in a merges list takes the later rank, as the library's map does. */
int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t newid)
{
    if ((m->n + 1) * 2 > m->mask + 1)
        return DSP_ELIMIT;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & m->mask;
    while (m->key[i] != UINT64_MAX) {
        if (m->key[i] == k) {
            m->rank[i] = rank;
            m->newid[i] = newid;
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    m->key[i] = k;
    m->rank[i] = rank;
    m->newid[i] = newid;
    m->n++;
    return 0;
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->key);
    free(m->rank);
    free(m->newid);
    memset(m, 0, sizeof *m);
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */
size_t tok_utf8_put(char *dst, uint32_t c)
{
    unsigned char *d = (unsigned char *)dst;
    if (c < 0x80) {
        d[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        d[0] = (unsigned char)(0xC0 | (c >> 6));
        d[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (c >> 12));
        d[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | (c >> 18));
    d[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* Well-formed UTF-8 (Unicode table 3-7). At an ill-formed sequence, *bad is the length of its
 * maximal subpart (at least 1): the bytes that Python's errors="replace" turns into one
 * U+FFFD. */
size_t tok_utf8_valid_prefix(const char *str, size_t len, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    *bad = 0;
    while (i < len) {
        /* 8 ASCII bytes at a time */
        while (i + 8 <= len) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            *bad = 1;
            return i;
        }
        size_t k = 1;
        for (; k <= need; k++) {
            if (i + k >= len) {
                *bad = k;
                return i;
            }
            unsigned char d = s[i + k];
            unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (d < l || d > h) {
                *bad = k;
                return i;
            }
        }
        i += need + 1;
    }
    return len;
}

/* ---- character classes -------------------------------------------------------------------- */
/* utf8proc's Unicode data, corrected where the tokenizers library's older tables disagree
 * (generated by tests/reference/make_tokenizer_fixtures.py --unicode-table). */
#include "tok_ucompat.h"

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}
#define IN(table, c) in_ranges(table, sizeof table / sizeof table[0], c)

/* The class from utf8proc (yes), flipped where the library's tables say otherwise. */
#define COMPAT(yes, c, table_yes, table_no) ((yes) ? !IN(table_no, c) : IN(table_yes, c))
int tok_is_whitespace(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D);
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

int tok_is_bert_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    if (c < 0x80)
        return c < 0x20 || c == 0x7F;
    int cat = utf8proc_category((utf8proc_int32_t)c);
    int yes = cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CO ||
              cat == UTF8PROC_CATEGORY_CS;
    return COMPAT(yes, c, tok_ucompat_control_yes, tok_ucompat_control_no);
}

int tok_is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    int cat = utf8proc_category((utf8proc_int32_t)c);
    int yes = cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
    return COMPAT(yes, c, tok_ucompat_punct_yes, tok_ucompat_punct_no);
}

int tok_is_mn(uint32_t c)
{
    if (c < 0x300)
        return 0;
    int yes = utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN;
    return COMPAT(yes, c, tok_ucompat_mn_yes, tok_ucompat_mn_no);
}

int tok_no_decomposition(uint32_t c, int compat)
{
    return IN(tok_ucompat_nfd_none, c) || (compat && IN(tok_ucompat_nfkd_none, c));
}

int tok_is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int tok_is_word_char(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (c == 0x200C || c == 0x200D)
        return 1;
    /* Other_Alphabetic symbols: circled and squared letters */
    if ((c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) ||
        (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189))
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

int tok_lower(uint32_t c, uint32_t *out)
{
    if (c < 0x80) {
        out[0] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) {               /* the one unconditional multi-char lower case mapping */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    if (out[0] == c && c >= tok_ucompat_lower[0][0]) {     /* newer than utf8proc's data */
        size_t lo = 0, hi = sizeof tok_ucompat_lower / sizeof tok_ucompat_lower[0];
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (tok_ucompat_lower[mid][0] == c) {
                out[0] = tok_ucompat_lower[mid][1];
                break;
            }
            if (tok_ucompat_lower[mid][0] < c)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return 1;
}

/* ---- GPT-2's byte-level alphabet ---------------------------------------------------------- */
/* The bytes that are not printable (0x00-0x20, 0x7F-0xA0, 0xAD) map, in order, to U+0100..U+0143;
 * the others to themselves. */
int tok_char_to_byte(uint32_t c)
{
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))
        return (int)c;
    if (c >= 0x100 && c <= 0x120)
        return (int)(c - 0x100);
    if (c >= 0x121 && c <= 0x142)
        return (int)(0x7F + c - 0x121);
    if (c == 0x143)
        return 0xAD;
    return -1;
}
