/* testutil.h - small file-system helpers shared by the test programs. */
#ifndef DSPIPE_TESTUTIL_H
#define DSPIPE_TESTUTIL_H

/* Remove dir and everything below it (symlinks are removed, not followed).
 * Missing dir: nothing happens. */
void tu_remove_tree(const char *dir);

#endif
