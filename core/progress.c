/* progress.c - the progress line on stderr: items done, rate, ETA, failures. */
#include "config.h"

#include <stdio.h>
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

/* Called with the scheduler lock held, from the monitoring thread only. */
void dspi_progress_draw(dspi_sched *s, int final)
{
    int64_t total = 0, done = s->items_done;
    double elapsed = (dspi_now_ns() - s->t_start_ns) / 1e9;
    double rate = elapsed > 0 ? done / elapsed : 0;
    char line[512], eta[32] = "", el[32];
    int width = term_width(), len, known = 1, nsrc = 0;

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
    format_duration(el, sizeof(el), elapsed);
    if (known && rate > 0 && done < total)
        format_duration(eta, sizeof(eta), (total - done) / rate);

    if (known) {
        int barw = DSPI_MAX(10, DSPI_MIN(40, width - 60));
        int fill = (int)(barw * (double)DSPI_MIN(done, total) / total);
        char bar[64];
        for (int i = 0; i < barw; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[barw] = 0;
        len = snprintf(line, sizeof(line), "[%s] %lld/%lld items %3d%%  %.1f items/s  %s%s%s",
                       bar, (long long)done, (long long)total,
                       (int)(100.0 * DSPI_MIN(done, total) / total), rate, el,
                       eta[0] ? "  ETA " : "", eta);
    } else {
        len = snprintf(line, sizeof(line), "%lld items  %.1f items/s  %s", (long long)done,
                       rate, el);
    }
    if (s->n_failed && len > 0 && len < (int)sizeof(line))
        len += snprintf(line + len, sizeof(line) - len, "  %d failed", s->n_failed);
    if (len > width - 1)
        line[width - 1] = 0;
    fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    fflush(stderr);
}
