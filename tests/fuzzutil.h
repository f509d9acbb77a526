/* fuzzutil.h - what the mutation fuzzers share: a deterministic PRNG, seed files, the byte-level mutations every format gets. */
#ifndef DSP_FUZZUTIL_H
#define DSP_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Start the PRNG (xorshift64*: the same sequence on every platform) at the
 * fuzzer's own value, mixed with $FUZZ_SEED when that is set. */
void fz_seed(uint64_t start);
uint64_t fz_rng(void);
/* A number in [0, n); 0 for n = 0. */
size_t fz_below(size_t n);

/* The fuzzer's budget: $FUZZ_ITERATIONS (default iterations) and
 * $FUZZ_SECONDS (default seconds). fz_time_up is true once the seconds are
 * spent (it reads the clock every 64 calls). */
void fz_budget(long iterations, double seconds, long *iter_out);
int fz_time_up(long it);
/* Seconds since fz_budget. */
double fz_elapsed(void);

/* A whole file, malloc'd with one spare byte; NULL when unreadable. */
unsigned char *fz_read_file(const char *path, size_t *size);

/* The generic mutations, by kind: flip a bit, write an interesting byte
 * (from the format's list), truncate (half the time only the tail, since
 * early cuts stop at the header), append garbage, copy a chunk over another
 * place, insert bytes, delete bytes. b holds *size bytes with room for cap;
 * a kind that would pass cap does nothing. */
enum { FZ_FLIP, FZ_INTERESTING, FZ_TRUNCATE, FZ_APPEND, FZ_COPY, FZ_INSERT, FZ_DELETE,
       FZ_KINDS };
void fz_mutate(unsigned char *b, size_t *size, size_t cap, int kind,
               const unsigned char *interesting, size_t n_interesting);

/* Big-endian stores for header fields. */
void fz_put32be(unsigned char *p, uint32_t v);

/* Read every byte of a tensor, so valgrind / ASan see an uninitialised or
 * out-of-bounds one. */
struct dsp_tensor;
void fz_touch(const struct dsp_tensor *t);

/* A packet holding b[0..n) as a 1-D u8 tensor "bytes", with meta source
 * (what readers that take bytes decode); exits on out of memory. */
struct dsp_packet;
struct dsp_packet *fz_bytes_packet(const unsigned char *b, size_t n, const char *source);

#endif /* DSP_FUZZUTIL_H */
