/* model.c - Hugging Face model folders: config.json, model.safetensors or an index with shards, validated at open. */
#include "internal.h"
#include "dspipe/model.h"
#include "dspipe/tensorio.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#define MODEL_CONFIG "config.json"
#define MODEL_SINGLE "model.safetensors"
#define MODEL_INDEX  "model.safetensors.index.json"

typedef struct model_tensor {
    const char *name;           /* borrowed from its shard's handle */
    int shard;
    dsp_qweight *q;             /* quantized at open, or NULL */
} model_tensor;

struct dsp_model {
    char *path;                 /* as given, trailing slashes removed */
    json_t *config;             /* NULL when opened from a bare file */
    char *config_text;          /* compact JSON of config */
    int n_shards;
    char **shard_files;         /* names as the index gives them, sorted */
    dsp_safetensors **shards;
    int n;
    model_tensor *t;            /* sorted by name */
    dsp_model_memory mem;
};

static void model_free(dsp_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_shards; i++) {
        dsp_safetensors_close(&m->shards[i]);
        free(m->shard_files[i]);
    }
    free(m->shards);
    free(m->shard_files);
    for (int i = 0; i < m->n; i++)
        dsp_qweight_free(&m->t[i].q);
    free(m->t);
    free(m->config_text);
    json_decref(m->config);
    free(m->path);
    free(m);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- config.json -------------------------------------------------------- */

static int load_config(dsp_model *m, char **errmsg)
{
    char *file = dspi_fmt("%s/%s", m->path, MODEL_CONFIG);
    int err = 0;
    if (!file)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
    if (!file_exists(file)) {
        err = dspi_tio_error(errmsg, DSP_ENOENT,
                             "%s: no %s: not a Hugging Face model folder (it "
                             "holds config.json beside model.safetensors); to "
                             "load weights without a config, pass the "
                             ".safetensors file itself", m->path, MODEL_CONFIG);
        goto out;
    }
    /* Duplicate keys are accepted, the last one winning, as Python's json
     * (which reads these files for transformers) does. */
    json_error_t jerr;
    m->config = json_load_file(file, 0, &jerr);
    if (!m->config) {
        if (jerr.line >= 1)
            err = dspi_tio_error(errmsg, DSP_EFORMAT,
                                 "%s:%d:%d: not valid JSON: %s; fix the file or "
                                 "download it again", file, jerr.line,
                                 jerr.column, jerr.text);
        else
            err = dspi_tio_error(errmsg, DSP_EIO, "%s: cannot read: %s", file,
                                 jerr.text);
        goto out;
    }
    if (!json_is_object(m->config)) {
        err = dspi_tio_error(errmsg, DSP_EFORMAT,
                             "%s: not a JSON object (a model config maps "
                             "names such as \"hidden_size\" to values)", file);
        goto out;
    }
    m->config_text = json_dumps(m->config, JSON_COMPACT);
    if (!m->config_text)
        err = dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", file);
out:
    free(file);
    return err;
}

/* ---- the tensor table ---------------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const model_tensor *)a)->name,
                  ((const model_tensor *)b)->name);
}

static const model_tensor *model_find(const dsp_model *m, const char *name)
{
    model_tensor key = { name, 0 };
    return bsearch(&key, m->t, (size_t)m->n, sizeof key, cmp_tensor_name);
}

/* Every tensor of every shard, sorted by name; a name in two shards is an
 * error (which of the two a caller would get is unknowable). */
static int build_table(dsp_model *m, char **errmsg)
{
    size_t total = 0;
    for (int i = 0; i < m->n_shards; i++)
        total += (size_t)dsp_safetensors_count(m->shards[i]);
    if (total > INT32_MAX)
        return dspi_tio_error(errmsg, DSP_ELIMIT,
                              "%s: %zu tensors: more than dspipe can index",
                              m->path, total);
    m->t = calloc(total ? total : 1, sizeof *m->t);
    if (!m->t)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
    for (int i = 0; i < m->n_shards; i++)
        for (int k = 0; k < dsp_safetensors_count(m->shards[i]); k++) {
            m->t[m->n].name = dsp_safetensors_name(m->shards[i], k);
            m->t[m->n].shard = i;
            m->n++;
        }
    qsort(m->t, (size_t)m->n, sizeof *m->t, cmp_tensor_name);
    for (int i = 1; i < m->n; i++)
        if (strcmp(m->t[i - 1].name, m->t[i].name) == 0)
            return dspi_tio_error(errmsg, DSP_EFORMAT,
                                  "%s: tensor '%s' is in two shards, %s and %s; "
                                  "a name must be unique across shards: the "
                                  "folder mixes two checkpoints, download it "
                                  "again", m->path, m->t[i].name,
                                  m->shard_files[m->t[i - 1].shard],
                                  m->shard_files[m->t[i].shard]);
    return 0;
}

/* ---- weights ------------------------------------------------------------- */

static int open_shard(dsp_model *m, int i, const char *file, char **errmsg)
{
    m->shard_files[i] = strdup(file);
    if (!m->shard_files[i])
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
    char *p = dspi_fmt("%s/%s", m->path, file);
    if (!p)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
    int err = dsp_safetensors_open(p, &m->shards[i], errmsg);
    free(p);
    return err;
}

static int alloc_shards(dsp_model *m, size_t n, char **errmsg)
{
    m->shards = calloc(n ? n : 1, sizeof *m->shards);
    m->shard_files = calloc(n ? n : 1, sizeof *m->shard_files);
    if (!m->shards || !m->shard_files)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
    m->n_shards = (int)n;
    return 0;
}

/* Why a weight_map value cannot name a shard inside the folder, or NULL.
 * Only the text is judged: a symbolic link inside the folder may point
 * anywhere (the Hub cache links snapshots into ../../blobs). */
static const char *shard_name_problem(const char *s)
{
    if (!*s)
        return "is empty";
    if (*s == '/')
        return "is an absolute path";
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return "leaves the model folder (\"..\")";
        p += n;
        if (*p == '/')
            p++;
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first tensor the index puts in shard (for messages). */
static const char *first_tensor_in(json_t *wm, const char *shard)
{
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v)
        if (strcmp(json_string_value(v), shard) == 0)
            return name;
    return "?";
}

static int open_index(dsp_model *m, char **errmsg)
{
    int err = 0;
    json_t *root = NULL, *shard_ids = NULL;
    const char **names = NULL;
    char *index = dspi_fmt("%s/%s", m->path, MODEL_INDEX);
    if (!index)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);

    json_error_t jerr;
    root = json_load_file(index, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line >= 1)
            err = dspi_tio_error(errmsg, DSP_EFORMAT,
                                 "%s:%d:%d: not valid JSON: %s; download the "
                                 "index again", index, jerr.line, jerr.column,
                                 jerr.text);
        else
            err = dspi_tio_error(errmsg, DSP_EIO, "%s: cannot read: %s", index,
                                 jerr.text);
        goto out;
    }
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        err = dspi_tio_error(errmsg, DSP_EFORMAT,
                             "%s: %s; an index is {\"metadata\": {...}, "
                             "\"weight_map\": {tensor name: shard file}}", index,
                             !json_is_object(root) ? "not a JSON object"
                             : !wm ? "no \"weight_map\""
                                   : "\"weight_map\" is not an object");
        goto out;
    }
    if (json_object_size(wm) == 0) {
        err = dspi_tio_error(errmsg, DSP_EFORMAT,
                             "%s: \"weight_map\" is empty: the index names no "
                             "tensors; download the folder again", index);
        goto out;
    }

    /* The distinct shard names, checked, as a set. */
    shard_ids = json_object();
    if (!shard_ids)
        goto oom;
    const char *tname;
    json_t *v;
    json_object_foreach(wm, tname, v) {
        if (!json_is_string(v)) {
            err = dspi_tio_error(errmsg, DSP_EFORMAT,
                                 "%s: weight_map entry '%s' is not a string (it "
                                 "should name the shard file holding the "
                                 "tensor)", index, tname);
            goto out;
        }
        const char *shard = json_string_value(v);
        const char *why = shard_name_problem(shard);
        if (why) {
            err = dspi_tio_error(errmsg, DSP_EFORMAT,
                                 "%s: weight_map puts tensor '%s' in \"%s\", "
                                 "which %s; shards must be files inside %s",
                                 index, tname, shard, why, m->path);
            goto out;
        }
        if (!json_object_get(shard_ids, shard) &&
            json_object_set_new(shard_ids, shard, json_integer(0)) < 0)
            goto oom;
    }

    size_t ns = json_object_size(shard_ids);
    names = calloc(ns, sizeof *names);
    if (!names)
        goto oom;
    size_t k = 0;
    const char *sname;
    json_object_foreach(shard_ids, sname, v)
        names[k++] = sname;
    qsort(names, ns, sizeof *names, cmp_str);
    for (k = 0; k < ns; k++)
        json_integer_set(json_object_get(shard_ids, names[k]), (json_int_t)k);

    /* Every shard exists before any is mapped: a partial download is the
     * common failure, and its message should name the missing file. */
    for (k = 0; k < ns; k++) {
        char *p = dspi_fmt("%s/%s", m->path, names[k]);
        if (!p)
            goto oom;
        struct stat st;
        int missing = stat(p, &st) < 0 && errno == ENOENT;
        int dangling = missing && lstat(p, &st) == 0;
        if (missing)
            err = dspi_tio_error(errmsg, DSP_ENOENT,
                                 "%s: shard %s (holding '%s' and maybe more) "
                                 "%s; the download is incomplete: fetch the "
                                 "missing file or download the folder again",
                                 index, p, first_tensor_in(wm, names[k]),
                                 dangling ? "is a broken symbolic link"
                                          : "does not exist");
        free(p);
        if (err < 0)
            goto out;
    }

    if ((err = alloc_shards(m, ns, errmsg)) < 0)
        goto out;
    for (k = 0; k < ns; k++)
        if ((err = open_shard(m, (int)k, names[k], errmsg)) < 0)
            goto out;
    if ((err = build_table(m, errmsg)) < 0)
        goto out;

    json_object_foreach(wm, tname, v) {
        const char *shard = json_string_value(v);
        int want = (int)json_integer_value(json_object_get(shard_ids, shard));
        const model_tensor *t = model_find(m, tname);
        if (!t || t->shard != want) {
            err = dspi_tio_error(errmsg, DSP_EFORMAT,
                                 "%s: weight_map puts tensor '%s' in %s, but that "
                                 "shard has no such tensor%s%s%s; the index and "
                                 "the shards are from different checkpoints: "
                                 "download the folder again", index, tname, shard,
                                 t ? " (it is in " : "",
                                 t ? m->shard_files[t->shard] : "", t ? ")" : "");
            goto out;
        }
    }

    /* transformers loads every tensor of a shard, listed or not: so do we,
     * but a stale index deserves a word. */
    int unlisted = 0;
    const model_tensor *first = NULL;
    for (int i = 0; i < m->n; i++)
        if (!json_object_get(wm, m->t[i].name)) {
            if (!unlisted++)
                first = &m->t[i];
        }
    if (unlisted)
        dsp_log(DSP_LOG_WARNING, "model",
                "%s: %d tensor%s in the shards %s not listed in %s (first: '%s' "
                "in %s); loading them anyway: regenerate the index with "
                "save_pretrained to silence this", m->path, unlisted,
                unlisted == 1 ? "" : "s", unlisted == 1 ? "is" : "are",
                MODEL_INDEX, first->name, m->shard_files[first->shard]);
    goto out;
oom:
    err = dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", index);
out:
    free(names);
    json_decref(shard_ids);
    json_decref(root);
    free(index);
    return err;
}

static int refuse_pickle(const char *what, const char *dir, char **errmsg)
{
    return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                          "%s: PyTorch pickle weights are not supported: dspipe "
                          "loads only safetensors (unpickling can run arbitrary "
                          "code). Convert the folder once with:\n  python -c "
                          "\"from transformers import AutoModel; d='%s'; "
                          "AutoModel.from_pretrained(d).save_pretrained(d, "
                          "safe_serialization=True)\"", what, dir);
}

/* No weights dspipe can read in the folder: say what is there instead. */
static int explain_no_weights(const dsp_model *m, char **errmsg)
{
    static const char *const pickles[] = {
        "pytorch_model.bin", "pytorch_model.bin.index.json", NULL
    };
    static const char *const foreign[] = {
        "tf_model.h5", "flax_model.msgpack", NULL
    };
    int err = DSP_ENOENT;
    for (int i = 0; pickles[i] && err == DSP_ENOENT; i++) {
        char *p = dspi_fmt("%s/%s", m->path, pickles[i]);
        if (!p)
            return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
        if (file_exists(p))
            err = refuse_pickle(p, m->path, errmsg);
        free(p);
    }
    for (int i = 0; foreign[i] && err == DSP_ENOENT; i++) {
        char *p = dspi_fmt("%s/%s", m->path, foreign[i]);
        if (!p)
            return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
        if (file_exists(p))
            err = dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                                 "%s: TensorFlow/Flax weights are not supported: "
                                 "dspipe loads only safetensors; load them with "
                                 "transformers and save_pretrained(d, "
                                 "safe_serialization=True)", p);
        free(p);
    }
    if (err != DSP_ENOENT)
        return err;

    /* Another .safetensors file (a variant, an adapter) may be what the
     * caller meant. */
    char *other = NULL;
    DIR *d = opendir(m->path);
    struct dirent *de;
    while (d && !other && (de = readdir(d)))
        if (has_suffix(de->d_name, ".safetensors"))
            other = strdup(de->d_name);
    if (d)
        closedir(d);
    if (other)
        err = dspi_tio_error(errmsg, DSP_ENOENT,
                             "%s: no %s or %s; the folder holds %s: pass %s/%s "
                             "to load that file alone", m->path, MODEL_SINGLE,
                             MODEL_INDEX, other, m->path, other);
    else
        err = dspi_tio_error(errmsg, DSP_ENOENT,
                             "%s: no %s or %s: the folder has no weights; "
                             "download them or save the model there with "
                             "save_pretrained", m->path, MODEL_SINGLE,
                             MODEL_INDEX);
    free(other);
    return err;
}

static int open_single(dsp_model *m, const char *file, char **errmsg)
{
    int err = alloc_shards(m, 1, errmsg);
    if (err == 0)
        err = open_shard(m, 0, file, errmsg);
    if (err == 0)
        err = build_table(m, errmsg);
    return err;
}

static int open_folder(dsp_model *m, char **errmsg)
{
    int err = load_config(m, errmsg);
    if (err < 0)
        return err;
    char *single = dspi_fmt("%s/%s", m->path, MODEL_SINGLE);
    char *index = dspi_fmt("%s/%s", m->path, MODEL_INDEX);
    if (!single || !index) {
        err = dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
        goto out;
    }
    int has_single = file_exists(single), has_index = file_exists(index);
    if (has_single && has_index)
        dsp_log(DSP_LOG_WARNING, "model",
                "%s: both %s and %s are present; using %s, as transformers "
                "does (delete the one that is stale)", m->path, MODEL_SINGLE,
                MODEL_INDEX, MODEL_SINGLE);
    if (has_single)
        err = open_single(m, MODEL_SINGLE, errmsg);
    else if (has_index)
        err = open_index(m, errmsg);
    else
        err = explain_no_weights(m, errmsg);
out:
    free(single);
    free(index);
    return err;
}

/* path names a file: one safetensors file, no config. */
static int open_file(dsp_model *m, char **errmsg)
{
    static const char *const pickle_ext[] = { ".bin", ".pt", ".pth", ".ckpt", NULL };
    char *dir = strdup(m->path);
    if (!dir)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
    char *slash = strrchr(dir, '/');
    const char *base = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        strcpy(dir, ".");
    int err = 0;
    for (int i = 0; pickle_ext[i]; i++)
        if (has_suffix(m->path, pickle_ext[i])) {
            err = refuse_pickle(m->path, dir, errmsg);
            goto out;
        }
    if (has_suffix(m->path, ".json")) {
        err = dspi_tio_error(errmsg, DSP_EINVAL,
                             "%s: a JSON file, not weights; pass the model "
                             "folder that holds it (%s)", m->path, dir);
        goto out;
    }
    if ((err = alloc_shards(m, 1, errmsg)) < 0)
        goto out;
    if (!(m->shard_files[0] = strdup(base))) {
        err = dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", m->path);
        goto out;
    }
    if ((err = dsp_safetensors_open(m->path, &m->shards[0], errmsg)) < 0)
        goto out;
    err = build_table(m, errmsg);
out:
    free(dir);
    return err;
}

static int name_skipped(const char *name, const char *const *skip)
{
    for (; *skip; skip++)
        if (fnmatch(*skip, name, 0) == 0)
            return 1;
    return 0;
}

/* Give the pages of a mapped tensor back to the kernel: the mapping stays
 * valid and reads fault them in again from the page cache or the file. */
static void drop_pages(const dsp_tensor *t)
{
    if (dsp_buffer_get_kind(t->buf) != DSP_BUFFER_MAPPED)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)dsp_tensor_data(t);
    uintptr_t hi = lo + dsp_tensor_nbytes(t);
    lo = (lo + page - 1) & ~(page - 1);
    hi &= ~(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static int quantize_model(dsp_model *m, const dsp_model_opts *o, char **errmsg)
{
    static const char *const default_skip[] = DSP_MODEL_QUANT_SKIP;
    const char *const *skip = o->skip ? o->skip : default_skip;
    int group = o->group_size ? o->group_size : 128;
    for (int i = 0; i < m->n; i++) {
        model_tensor *mt = &m->t[i];
        dsp_tensor *w = NULL;
        int err = dsp_safetensors_get(m->shards[mt->shard], mt->name, &w);
        if (err < 0)
            return dspi_tio_error(errmsg, err, "%s: cannot read tensor %s", m->path, mt->name);
        size_t nbytes = dsp_tensor_nbytes(w);
        m->mem.stored_bytes += nbytes;
        size_t len = strlen(mt->name);
        int eligible = len > 7 && !strcmp(mt->name + len - 7, ".weight") && w->ndim == 2 &&
                       (w->dtype == DSP_DTYPE_F32 || w->dtype == DSP_DTYPE_F16 ||
                        w->dtype == DSP_DTYPE_BF16) &&
                       !name_skipped(mt->name, skip);
        if (eligible && w->shape[1] % group != 0) {
            m->mem.n_kept++;
            eligible = 0;
        }
        if (eligible) {
            if ((err = dsp_quantize(w, o->quant, group, &mt->q)) < 0) {
                dsp_tensor_unref(&w);
                return dspi_tio_error(errmsg, err, "%s: cannot quantize %s: %s", m->path,
                                      mt->name, dsp_ops_error());
            }
            m->mem.quantized_from += nbytes;
            m->mem.quantized_bytes += dsp_qweight_bytes(mt->q);
            m->mem.n_quantized++;
            drop_pages(w);
        }
        dsp_tensor_unref(&w);
    }
    m->mem.resident_bytes = m->mem.stored_bytes - m->mem.quantized_from + m->mem.quantized_bytes;
    dsp_log(DSP_LOG_INFO, "model",
            "%s: quantized %d tensors to %s (group %d): %.1f MiB -> %.1f MiB; %d kept as "
            "stored (inputs not a multiple of %d)",
            m->path, m->mem.n_quantized, o->quant == DSP_QUANT_INT4 ? "int4" : "int8", group,
            m->mem.quantized_from / 1048576.0, m->mem.quantized_bytes / 1048576.0,
            m->mem.n_kept, group);
    return 0;
}

int dsp_model_open_opts(const char *path, const dsp_model_opts *opts, dsp_model **out,
                        char **errmsg)
{
    if (out)
        *out = NULL;
    if (opts && opts->quant) {
        if (opts->quant != DSP_QUANT_INT8 && opts->quant != DSP_QUANT_INT4)
            return dspi_tio_error(errmsg, DSP_EINVAL,
                                  "dsp_model_open_opts: quant %d is neither DSP_QUANT_INT8 nor "
                                  "DSP_QUANT_INT4", (int)opts->quant);
        if (opts->group_size != 0 && opts->group_size != 32 && opts->group_size != 128)
            return dspi_tio_error(errmsg, DSP_EINVAL,
                                  "dsp_model_open_opts: group size %d: use 32 or 128",
                                  opts->group_size);
    }
    int err = dsp_model_open(path, out, errmsg);
    if (err < 0 || !opts || !opts->quant)
        return err;
    if ((err = quantize_model(*out, opts, errmsg)) < 0)
        dsp_model_close(out);
    return err;
}

int dsp_model_qweight(const dsp_model *m, const char *name, const dsp_qweight **out)
{
    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!m || !name)
        return DSP_EINVAL;
    const model_tensor *t = model_find(m, name);
    if (!t)
        return DSP_ENOENT;
    *out = t->q;
    return 0;
}

int dsp_model_memory_info(const dsp_model *m, dsp_model_memory *out)
{
    if (!m || !out)
        return DSP_EINVAL;
    *out = m->mem;
    if (!m->mem.stored_bytes) {
        /* opened without quant: sizes are counted on demand */
        for (int i = 0; i < m->n; i++) {
            dsp_tensor *w = NULL;
            if (dsp_safetensors_get(m->shards[m->t[i].shard], m->t[i].name, &w) == 0)
                out->stored_bytes += dsp_tensor_nbytes(w);
            dsp_tensor_unref(&w);
        }
        out->resident_bytes = out->stored_bytes;
    }
    return 0;
}

int dsp_model_open(const char *path, dsp_model **out, char **errmsg)
{
    if (!out)
        return dspi_tio_error(errmsg, DSP_EINVAL, "dsp_model_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return dspi_tio_error(errmsg, DSP_EINVAL,
                              "dsp_model_open: path is NULL or empty");
    dsp_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", path);
    }
    for (size_t n = strlen(m->path); n > 1 && m->path[n - 1] == '/'; n--)
        m->path[n - 1] = '\0';

    int err;
    struct stat st;
    if (stat(m->path, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            err = dspi_tio_error(errmsg, DSP_ENOENT,
                                 "%s: no such file or folder; expected a Hugging "
                                 "Face model folder (config.json + "
                                 "model.safetensors) or a .safetensors file",
                                 m->path);
        else
            err = dspi_tio_error(errmsg, DSP_EIO, "%s: cannot access: %s",
                                 m->path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        err = open_folder(m, errmsg);
    } else if (S_ISREG(st.st_mode)) {
        err = open_file(m, errmsg);
    } else {
        err = dspi_tio_error(errmsg, DSP_EINVAL,
                             "%s: neither a model folder nor a .safetensors "
                             "file", m->path);
    }
    if (err < 0) {
        model_free(m);
        return err;
    }
    *out = m;
    return 0;
}

void dsp_model_close(dsp_model **m)
{
    if (!m)
        return;
    model_free(*m);
    *m = NULL;
}

int dsp_model_tensor(const dsp_model *m, const char *name, dsp_tensor **out)
{
    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!m || !name)
        return DSP_EINVAL;
    const model_tensor *t = model_find(m, name);
    if (!t)
        return DSP_ENOENT;
    return dsp_safetensors_get(m->shards[t->shard], name, out);
}

int dsp_model_tensor_count(const dsp_model *m)
{
    return m ? m->n : 0;
}

const char *dsp_model_tensor_name(const dsp_model *m, int i)
{
    return m && i >= 0 && i < m->n ? m->t[i].name : NULL;
}

/* ---- config access ------------------------------------------------------- */

/* Follow a dotted key path through config. Returns 0 with *out set to a
 * non-null value, DSP_ENOENT or DSP_EINVAL. */
static int config_lookup(const dsp_model *m, const char *key, json_t **out)
{
    if (!m || !key)
        return DSP_EINVAL;
    if (!m->config)
        return DSP_ENOENT;
    json_t *node = m->config;
    char small[128];
    const char *p = key;
    for (;;) {
        size_t n = strcspn(p, ".");
        char *seg = n < sizeof small ? small : malloc(n + 1);
        if (!seg)
            return DSP_ENOMEM;
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (json_is_object(node)) {
            node = json_object_get(node, seg);
        } else if (json_is_array(node) && n > 0 && n < 20 &&
                   strspn(seg, "0123456789") == n) {
            node = json_array_get(node, (size_t)strtoull(seg, NULL, 10));
        } else {
            node = NULL;
        }
        if (seg != small)
            free(seg);
        if (!node || json_is_null(node))
            return DSP_ENOENT;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    *out = node;
    return 0;
}

int dsp_model_config_int(const dsp_model *m, const char *key, int64_t *out)
{
    json_t *v;
    int err = out ? config_lookup(m, key, &v) : DSP_EINVAL;
    if (err < 0)
        return err;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* [-2^63, 2^63): the range where the cast is defined */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
            (double)(int64_t)d == d) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return DSP_EINVAL;
}

int dsp_model_config_float(const dsp_model *m, const char *key, double *out)
{
    json_t *v;
    int err = out ? config_lookup(m, key, &v) : DSP_EINVAL;
    if (err < 0)
        return err;
    if (!json_is_number(v))
        return DSP_EINVAL;
    *out = json_number_value(v);
    return 0;
}

int dsp_model_config_str(const dsp_model *m, const char *key, const char **out)
{
    json_t *v;
    int err = out ? config_lookup(m, key, &v) : DSP_EINVAL;
    if (err < 0)
        return err;
    if (!json_is_string(v))
        return DSP_EINVAL;
    *out = json_string_value(v);
    return 0;
}

const char *dsp_model_config_json(const dsp_model *m)
{
    return m ? m->config_text : NULL;
}
