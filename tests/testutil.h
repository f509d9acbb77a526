/* testutil.h - small file-system helpers shared by the test programs. */
#ifndef DSPIPE_TESTUTIL_H
#define DSPIPE_TESTUTIL_H

#include <stddef.h>

/* Remove dir and everything below it (symlinks are removed, not followed).
 * Missing dir: nothing happens. */
void tu_remove_tree(const char *dir);

/* Make a fresh directory $TMPDIR/dsp_<tag>_XXXXXX (/tmp without TMPDIR) in
 * buf (n bytes); buf, or NULL when it cannot be made. */
char *tu_make_tmpdir(char *buf, size_t n, const char *tag);

/* dir/name, and $TESTS_SRCDIR/data/<subdir>/name (. without TESTS_SRCDIR),
 * in one of 8 rotating static buffers: valid until 8 more calls. */
const char *tu_join(const char *dir, const char *name);
const char *tu_fixture(const char *subdir, const char *name);

/* Copy src to dst, at most max_bytes of it (all when negative; a cut copy
 * makes a truncated file), creating dst's missing parent directories.
 * 0, or -1 when either file cannot be opened or written. */
int tu_copy_file(const char *src, const char *dst, long max_bytes);

#endif
