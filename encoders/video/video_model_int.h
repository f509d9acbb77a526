/* video_model_int.h - what video_model.c shares with the two architectures (not API). */
#ifndef DSPIPE_ENC_VIDEO_MODEL_INT_H
#define DSPIPE_ENC_VIDEO_MODEL_INT_H

#include <dspipe/model.h>

#include "video_model.h"

/* A folder being opened: failures go to *errmsg prefixed with the folder. */
typedef struct vm_loader {
    const dsp_model *model;
    const char *dir;
    char **errmsg;
} vm_loader;

int vm_load_fail(vm_loader *ld, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Tensor name, f32, with ndim dims; shape[d] < 0 is not checked. The
 * message names the tensor, what it is and what was expected. */
int vm_get_tensor(vm_loader *ld, const char *name, int ndim, const int64_t *shape, dsp_tensor **out);
/* Whether the folder has a tensor called name (no message). */
int vm_has_tensor(const vm_loader *ld, const char *name);
/* config.json integer key; def < 0: required. */
int vm_read_int(vm_loader *ld, const char *key, int64_t def, int64_t *out);
/* config.json top-level boolean key; def when absent or not a boolean. */
int vm_read_bool(const vm_loader *ld, const char *key, int def);

typedef struct video_model_arch {
    int (*forward)(video_model *m, const dsp_tensor *x, dsp_tensor **logits);
    void (*free)(void *priv);
} video_model_arch;

struct video_model {
    video_model_info info;
    char **labels;                      /* [num_classes] */
    const video_model_arch *impl;
    void *priv;                         /* the architecture's weights */
    char err[512];
};

/* Fill m->info (sizes, num_classes), m->impl and m->priv from the folder;
 * on failure m->impl->free(m->priv) frees what was loaded. */
int videomae_load(vm_loader *ld, video_model *m);
int video_resnet_load(vm_loader *ld, video_model *m);

/* Records the message for video_model_errmsg() and returns code. */
int vm_set_err(video_model *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The failed operator's message, prefixed with what the model was doing. */
int vm_ops_err(video_model *m, int code, const char *what);
/* dsp_tensor_unref on each of n tensors. */
void vm_unref_all(dsp_tensor **t, size_t n);

#endif
