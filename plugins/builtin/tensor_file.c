/* tensor_file.c - reading a .npy or .safetensors file into a packet, shared by tensor.read and tensor.source. */
#include "builtin.h"

#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/tensorio.h>

typedef enum { FILE_UNKNOWN, FILE_NPY, FILE_SAFETENSORS } tensor_file_kind;

/* Sniff the format from the first bytes: .npy starts with "\x93NUMPY";
 * safetensors with an 8-byte little-endian length followed by '{'. */
static int sniff(dsp_node *node, const char *path, tensor_file_kind *kind)
{
    unsigned char head[9];
    struct stat st;
    FILE *fp;

    /* a FIFO would block the read below, a device reads forever */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return dsp_node_fail(node, DSP_EINVAL, "%s: not a regular file (a %s)", path,
                             S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode)
                             ? "FIFO" : "device or socket");
    if (!(fp = fopen(path, "rb")))
        return dsp_node_fail(node, errno == ENOENT ? DSP_ENOENT : DSP_EIO,
                             "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head, fp);
    fclose(fp);
    *kind = FILE_UNKNOWN;
    if (n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0)
        *kind = FILE_NPY;
    else if (n == 9 && head[8] == '{')
        *kind = FILE_SAFETENSORS;
    if (*kind == FILE_UNKNOWN)
        return dsp_node_fail(node, DSP_EFORMAT,
                             "%s: not a tensor file: neither .npy (\\x93NUMPY "
                             "magic) nor .safetensors (length + JSON header)%s",
                             path, n == 0 ? "; the file is empty" : "");
    return 0;
}

static int read_npy(dsp_node *node, const char *path, const char *name,
                    dsp_packet *pkt)
{
    dsp_tensor *t = NULL;
    char *why = NULL;
    int err = dsp_npy_read(path, &t, &why);
    if (err < 0) {
        err = dsp_node_fail(node, err, "%s", why ? why : dsp_strerror(err));
        free(why);
        return err;
    }
    if ((err = dsp_packet_set_tensor(pkt, name, t)) < 0)
        return dsp_node_fail(node, err, "%s: cannot attach tensor '%s': %s", path,
                             name, dsp_strerror(err));
    return 0;
}

static int read_safetensors(dsp_node *node, const char *path, dsp_packet *pkt)
{
    dsp_safetensors *st = NULL;
    char *why = NULL;
    int err = dsp_safetensors_open(path, &st, &why);
    if (err < 0) {
        err = dsp_node_fail(node, err, "%s", why ? why : dsp_strerror(err));
        free(why);
        return err;
    }
    for (int i = 0; i < dsp_safetensors_count(st) && err == 0; i++) {
        const char *name = dsp_safetensors_name(st, i);
        dsp_tensor *t = NULL;
        if ((err = dsp_safetensors_get(st, name, &t)) == 0)
            err = dsp_packet_set_tensor(pkt, name, t);
        if (err < 0)
            err = dsp_node_fail(node, err, "%s: tensor '%s': %s", path, name,
                                dsp_strerror(err));
    }
    if (err == 0 && dsp_safetensors_metadata_count(st) > 0) {
        dsp_meta *md = dsp_meta_dict(dsp_packet_meta(pkt), "safetensors_metadata");
        if (!md)
            err = DSP_ENOMEM;
        for (int i = 0; md && i < dsp_safetensors_metadata_count(st) && !err; i++) {
            const char *key = dsp_safetensors_metadata_key(st, i);
            err = dsp_meta_set_str(md, key, dsp_safetensors_metadata(st, key));
        }
        if (err < 0)
            err = dsp_node_fail(node, err, "%s: cannot copy __metadata__: %s",
                                path, dsp_strerror(err));
    }
    dsp_safetensors_close(&st);
    return err;
}

int builtin_read_tensor_file(dsp_node *node, const char *path,
                             const char *npy_name, dsp_packet *pkt)
{
    tensor_file_kind kind;
    int err = sniff(node, path, &kind);
    if (err < 0)
        return err;
    return kind == FILE_NPY ? read_npy(node, path, npy_name, pkt)
                            : read_safetensors(node, path, pkt);
}
