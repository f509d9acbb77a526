/* probe.c - video.probe: what a video file is (codec, size, fps, duration, frames) without decoding it. */
#include "video.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct probe_ctx {
    int count;
    int64_t max_pixels, max_frames, max_bytes;
} probe_ctx;

static const dsp_param_def probe_params[] = {
    { .name = "count", .type = DSP_PARAM_BOOL, .def = "false", .offset = offsetof(probe_ctx, count),
      .doc = "count the frames by reading every packet (exact; the header's count may be "
             "missing)" },
    { .name = "max_pixels", .type = DSP_PARAM_INT, .def = "268435456", .min = 1, .max = 1e12,
      .offset = offsetof(probe_ctx, max_pixels), .doc = "refuse larger frames" },
    { .name = "max_frames", .type = DSP_PARAM_INT, .def = "50000000", .min = 1, .max = 1e15,
      .offset = offsetof(probe_ctx, max_frames), .doc = "refuse videos with more frames" },
    { .name = "max_bytes", .type = DSP_PARAM_INT, .def = "1099511627776", .min = 1, .max = 1e18,
      .offset = offsetof(probe_ctx, max_bytes), .doc = "refuse larger files" },
    { NULL }
};
static const dsp_port_def probe_in[] = {
    { "in", "any", "records with meta \"path\" (files.list)" },
    { NULL }
};
static const dsp_port_def probe_out[] = {
    { "out", "record", "the input plus meta codec, container, width, height, fps, duration, "
      "num_frames" },
    { NULL }
};

static int probe_process(dsp_node *node, dsp_packet **in)
{
    probe_ctx *c = dsp_node_priv(node);
    const char *path = NULL;
    if (dsp_meta_get_str(dsp_packet_meta_const(in[0]), "path", &path) < 0)
        return dsp_node_fail(node, DSP_EINVAL, "item %" PRId64 " has no string meta \"path\"; "
                             "connect video.probe to files.list", dsp_packet_item(in[0]));
    dsp_buffer *file = NULL;
    int err = dsp_buffer_map_file(path, &file);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: cannot read: %s", path,
                             err == DSP_EINVAL ? "not a regular file" : strerror(errno));
    size_t size = dsp_buffer_size(file);
    video_reader r;
    char why[VIDEO_WHY];
    video_open_opts o = { .threads = 1, .max_pixels = c->max_pixels, .max_frames = c->max_frames };
    int64_t frames = 0;
    dsp_packet *out = NULL;
    if (size == 0)
        err = dsp_node_fail(node, DSP_EFORMAT, "%s: empty (0 bytes): not a video", path);
    else if ((uint64_t)size > (uint64_t)c->max_bytes)
        err = dsp_node_fail(node, DSP_ELIMIT, "%s: %zu bytes exceed max_bytes=%" PRId64, path,
                            size, c->max_bytes);
    else if ((err = video_open(&r, dsp_buffer_data(file), size, &o, why)) < 0)
        err = dsp_node_fail(node, err, "%s: %s", path, why);
    else {
        frames = r.declared_frames;
        video_scan_result scan;
        if (c->count && (err = video_scan(&r, &scan, why)) < 0)
            err = dsp_node_fail(node, err, "%s: %s", path, why);
        else if (c->count)
            frames = scan.packets;
        if (!err && (err = dsp_packet_derive(in[0], &out)) == 0) {
            dsp_meta *m = dsp_packet_meta(out);
            err = dsp_meta_set_str(m, "codec", r.codec);
            if (!err)
                err = dsp_meta_set_str(m, "container", r.container);
            if (!err)
                err = dsp_meta_set_int(m, "width", r.width);
            if (!err)
                err = dsp_meta_set_int(m, "height", r.height);
            if (!err)
                err = dsp_meta_set_float(m, "fps", r.fps);
            if (!err)
                err = dsp_meta_set_float(m, "duration", r.duration);
            if (!err && frames > 0)
                err = dsp_meta_set_int(m, "num_frames", frames);
            if (err < 0)
                err = dsp_node_fail(node, err, "%s: out of memory", path);
        }
        video_close(&r);
    }
    dsp_buffer_unref(&file);
    if (err < 0) {
        dsp_packet_unref(&out);
        return err;
    }
    return dsp_node_emit(node, 0, out);
}

const dsp_op_def video_probe_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "video.probe",
    .doc = "read a video's header: codec, container, size, fps, duration, frame count",
    .inputs = probe_in,
    .outputs = probe_out,
    .params = probe_params,
    .priv_size = sizeof(probe_ctx),
    .process = probe_process,
};
