/* progress.c - the progress line on stderr: items done, rate, ETA, failures. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "scheduler.h"

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    return 80;
}

static void format_duration(char *dst, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(dst, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(dst, n, "%ld:%02ld", t / 60, t % 60);
}

/* Items finished: the sink that saw the most (a pipeline with several sinks
 * sees each item several times) plus the items that failed on the way and
 * those an earlier run finished (--resume). */
static int64_t items_done(const dspi_sched *s)
{
    int64_t best = 0;
    for (int i = 0; i < s->n_nodes; i++)
        best = DSPI_MAX(best, s->nodes[i].st.items_done);
    return best + s->n_failed + s->journal.skipped;
}

/* Called with the scheduler lock held, from the monitoring thread only. */
void dspi_progress_draw(dspi_sched *s, int final)
{
    int64_t total = 0, done = items_done(s);
    double elapsed = (dspi_now_ns() - s->t_start_ns) / 1e9;
    double rate = elapsed > 0 ? done / elapsed : 0;
    char tail[160], eta[32] = "", el[32], bar[128];
    int width = term_width(), known = 1, nsrc = 0, len;

    for (int i = 0; i < s->n_nodes; i++) {
        dsp_node *n = &s->nodes[i];
        if (!(n->op->flags & DSP_OP_SOURCE))
            continue;
        nsrc++;
        int64_t t = atomic_load(&n->progress_total);
        if (t <= 0)
            known = 0;
        total = DSPI_MAX(total, t);
    }
    known = known && nsrc && total > 0;
    if (known)
        done = DSPI_MIN(done, total);
    format_duration(el, sizeof(el), elapsed);
    if (known && rate > 0 && done < total && !final)
        format_duration(eta, sizeof(eta), (total - done) / rate);

    if (known)
        len = snprintf(tail, sizeof(tail), " %lld/%lld %3d%%  %.1f/s  %s%s%s", (long long)done,
                       (long long)total, (int)(100.0 * done / total), rate, el,
                       eta[0] ? "  ETA " : "", eta);
    else
        len = snprintf(tail, sizeof(tail), "%lld items  %.1f/s  %s", (long long)done, rate, el);
    if (s->n_failed && len > 0 && len < (int)sizeof(tail))
        snprintf(tail + len, sizeof(tail) - len, "  %d failed", s->n_failed);

    if (known) {
        /* the bar takes what the numbers leave of the line */
        int barw = DSPI_MIN((int)sizeof(bar) - 3, width - 1 - (int)strlen(tail) - 2);
        int fill = barw > 0 ? (int)(barw * (double)done / total) : 0;
        if (barw < 5)
            barw = 0;
        for (int i = 0; i < barw; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[barw] = 0;
        fprintf(stderr, "\r%s%s%s%s\033[K%s", barw ? "[" : "", bar, barw ? "]" : "", tail,
                final ? "\n" : "");
    } else {
        fprintf(stderr, "\r%.*s\033[K%s", width - 1, tail, final ? "\n" : "");
    }
    fflush(stderr);
}
