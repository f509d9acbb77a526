/* test_video_encoder.c - VideoMAE and torchvision video ResNets (encoders/video) against transformers / torchvision, and video.classify. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>
#include <dspipe/tensorio.h>

#include "testutil.h"
#include "video_model.h"

/* Tolerances, f32 everywhere, errors as max |got - want| / max |want| over
 * a batch's logits:
 *  - against transformers / torchvision: 1e-4. Both sides compute in f32
 *    but sum in other orders (im2col GEMM vs. oneDNN / MKL convolutions,
 *    tiled online-softmax attention vs. eager softmax); through 18 conv +
 *    batch-norm layers, or 2 transformer blocks, that leaves errors around
 *    1e-6 of the largest logit (printed), so 1e-4 catches a wrong weight,
 *    layout, stride or activation (a 1% leaky ReLU: 1e-2) while not failing
 *    on summation order (nor on an eps of 1e-12 for 1e-5: see the docs);
 *  - a clip in a batch against the same clip alone: 1e-5 (only BLAS
 *    blocking changes with the batch size). */
#define TOL_REF 1e-4
#define TOL_BATCH 1e-5

/* The committed fixtures, or with VIDEO_ENCODER_FIXTURES=DIR the real-size
 * models `make_video_fixtures.py --full DIR` writes (parity, batch and
 * operator checks only: the error checks keep the committed ones). */
static const char *const small_fixtures[] = { "videomae_mean", "videomae_cls", "r3d_18", "mc3_18", "r2plus1d_18" };
static const char *const full_fixtures[] = { "videomae_base", "r3d_18", "mc3_18", "r2plus1d_18" };
static const char *const *fixtures = small_fixtures;
static int nfix = 5;

typedef struct fixture {
    video_model *m;
    dsp_safetensors *io;
    dsp_tensor *clips, *pixels, *logits;
    int64_t B, classes;
} fixture;

static const char *fixture_dir(const char *name)
{
    return tu_fixture("video_encoder", name);
}

/* where fixtures[i] lives */
static const char *parity_dir(const char *name)
{
    const char *full = getenv("VIDEO_ENCODER_FIXTURES");
    return full && *full ? tu_join(full, name) : fixture_dir(name);
}

static dsp_tensor *get(dsp_safetensors *st, const char *name)
{
    dsp_tensor *t = NULL;
    ck_assert_msg(dsp_safetensors_get(st, name, &t) == 0, "io.safetensors has no %s", name);
    return t;
}

/* the model and io.safetensors of a fixture folder */
static void fixture_open(fixture *f, const char *dir)
{
    memset(f, 0, sizeof *f);
    char *why = NULL;
    ck_assert_msg(video_model_open(dir, &f->m, &why) == 0, "video_model_open %s: %s", dir, why ? why : "?");
    ck_assert_int_eq(dsp_safetensors_open(tu_join(dir, "io.safetensors"), &f->io, NULL), 0);
    f->clips = get(f->io, "clips");
    f->pixels = get(f->io, "pixel_values");
    f->logits = get(f->io, "logits");
    f->B = f->logits->shape[0];
    f->classes = f->logits->shape[1];
    ck_assert_int_eq(f->classes, video_model_get_info(f->m)->num_classes);
}

static void fixture_close(fixture *f)
{
    dsp_tensor_unref(&f->clips);
    dsp_tensor_unref(&f->pixels);
    dsp_tensor_unref(&f->logits);
    dsp_safetensors_close(&f->io);
    video_model_close(&f->m);
}

/* max |got - want| / max |want| over n values (NaN counts as failure) */
static double rel_err(const float *got, const float *want, int64_t n)
{
    double err = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        err = e > err || isnan(e) ? e : err;
        mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
    }
    return mx > 0 ? err / mx : err;
}

/* clip b of a [B, ...] tensor as a [1, ...] view */
static dsp_tensor *one_clip(const dsp_tensor *t, int64_t b)
{
    int64_t shape[DSP_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = 1;
    dsp_tensor *v = NULL;
    ck_assert_int_eq(dsp_tensor_from_buffer(t->dtype, t->ndim, shape, t->stride, t->buf,
                                            t->offset + (size_t)(b * t->stride[0]) * dsp_dtype_size(t->dtype), &v), 0);
    return v;
}

START_TEST(test_logits_match_reference)
{
    fixture f;
    fixture_open(&f, parity_dir(fixtures[_i]));
    dsp_tensor *out = NULL;
    ck_assert_msg(video_model_forward(f.m, f.pixels, &out) == 0, "%s", video_model_errmsg(f.m));
    ck_assert_int_eq(out->ndim, 2);
    ck_assert_int_eq(out->shape[0], f.B);
    ck_assert_int_eq(out->shape[1], f.classes);
    double e = rel_err(dsp_tensor_data(out), dsp_tensor_data(f.logits), f.B * f.classes);
    printf("%s: logits rel err %.2e (tol %.0e)\n", fixtures[_i], e, TOL_REF);
    ck_assert_msg(e <= TOL_REF, "%s: logits error %.3e", fixtures[_i], e);
    dsp_tensor_unref(&out);
    fixture_close(&f);
}
END_TEST

/* The video ResNets fold each batch norm into its convolution at load;
 * DSPIPE_VIDEO_NO_FOLD=1 keeps them two steps. Both give the reference's
 * logits, and each other's to 1e-5, so neither path hides behind the other
 * (a fold that dropped the bias or the scale is far off both). */
START_TEST(test_bn_fold_equals_two_steps)
{
    const char *name = fixtures[_i];
    if (strncmp(name, "videomae", 8) == 0)
        return;                         /* no batch norm */
    fixture f;
    fixture_open(&f, parity_dir(name));
    dsp_tensor *folded = NULL, *steps = NULL;
    ck_assert_msg(video_model_forward(f.m, f.pixels, &folded) == 0, "%s", video_model_errmsg(f.m));
    video_model *m2 = NULL;
    char *why = NULL;
    setenv("DSPIPE_VIDEO_NO_FOLD", "1", 1);
    int rc = video_model_open(parity_dir(name), &m2, &why);
    unsetenv("DSPIPE_VIDEO_NO_FOLD");
    ck_assert_msg(rc == 0, "%s", why ? why : "?");
    ck_assert_msg(video_model_forward(m2, f.pixels, &steps) == 0, "%s", video_model_errmsg(m2));
    int64_t n = f.B * f.classes;
    double e_fold = rel_err(dsp_tensor_data(folded), dsp_tensor_data(f.logits), n);
    double e_steps = rel_err(dsp_tensor_data(steps), dsp_tensor_data(f.logits), n);
    double e_both = rel_err(dsp_tensor_data(folded), dsp_tensor_data(steps), n);
    printf("%s: folded %.2e, two steps %.2e against the reference; %.2e apart\n", name, e_fold, e_steps, e_both);
    ck_assert_msg(e_fold <= TOL_REF && e_steps <= TOL_REF, "%s: %.3e / %.3e", name, e_fold, e_steps);
    ck_assert_msg(e_both <= 1e-5, "%s: folded and two-step logits %.3e apart", name, e_both);
    dsp_tensor_unref(&folded);
    dsp_tensor_unref(&steps);
    video_model_close(&m2);
    fixture_close(&f);
}
END_TEST

START_TEST(test_batch_equals_single)
{
    fixture f;
    fixture_open(&f, parity_dir(fixtures[_i]));
    dsp_tensor *all = NULL;
    ck_assert_int_eq(video_model_forward(f.m, f.pixels, &all), 0);
    double worst = 0;
    for (int64_t b = 0; b < f.B; b++) {
        dsp_tensor *x = one_clip(f.pixels, b), *one = NULL;
        ck_assert_msg(video_model_forward(f.m, x, &one) == 0, "%s", video_model_errmsg(f.m));
        ck_assert_int_eq(one->shape[0], 1);
        double e = rel_err(dsp_tensor_data(one), (const float *)dsp_tensor_data(all) + b * f.classes, f.classes);
        worst = e > worst ? e : worst;
        dsp_tensor_unref(&one);
        dsp_tensor_unref(&x);
    }
    printf("%s: batch vs single rel err %.2e (tol %.0e)\n", fixtures[_i], worst, TOL_BATCH);
    ck_assert_msg(worst <= TOL_BATCH, "%s: batch vs single %.3e", fixtures[_i], worst);
    dsp_tensor_unref(&all);
    fixture_close(&f);
}
END_TEST

/* VideoMAE's position table fixes the clip size; the ResNets take any */
START_TEST(test_wrong_clip_size)
{
    fixture f;
    fixture_open(&f, fixture_dir("videomae_mean"));
    const video_model_info *in = video_model_get_info(f.m);
    int64_t shape[5] = { 1, 3, in->frames + 2, in->height, in->width };
    dsp_tensor *x = NULL, *out = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 5, shape, &x), 0);
    memset(dsp_tensor_data(x), 0, dsp_tensor_nbytes(x));
    ck_assert_int_eq(video_model_forward(f.m, x, &out), DSP_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(video_model_errmsg(f.m), "takes [batch, 3, 4, 32, 32]"), "%s", video_model_errmsg(f.m));
    dsp_tensor_unref(&x);
    fixture_close(&f);

    fixture_open(&f, fixture_dir("r3d_18"));
    int64_t odd[5] = { 2, 3, 5, 17, 9 };
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 5, odd, &x), 0);
    memset(dsp_tensor_data(x), 0, dsp_tensor_nbytes(x));
    ck_assert_msg(video_model_forward(f.m, x, &out) == 0, "%s", video_model_errmsg(f.m));
    ck_assert_int_eq(out->shape[0], 2);
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&x);
    fixture_close(&f);
}
END_TEST

/* Copy fixture src into a temporary folder with config.json replaced (NULL:
 * kept) and tensor `drop` left out (NULL: all kept); returns the folder. */
static const char *bad_folder(char *tmp, size_t n, const char *src, const char *config, const char *drop)
{
    ck_assert_ptr_nonnull(tu_make_tmpdir(tmp, n, "videoenc"));
    dsp_safetensors *st = NULL;
    ck_assert_int_eq(dsp_safetensors_open(tu_join(fixture_dir(src), "model.safetensors"), &st, NULL), 0);
    int count = dsp_safetensors_count(st), k = 0;
    const char **names = calloc((size_t)count, sizeof *names);
    dsp_tensor **ts = calloc((size_t)count, sizeof *ts);
    for (int i = 0; i < count; i++) {
        const char *name = dsp_safetensors_name(st, i);
        if (drop && strcmp(name, drop) == 0)
            continue;
        names[k] = name;
        ck_assert_int_eq(dsp_safetensors_get(st, name, &ts[k]), 0);
        k++;
    }
    ck_assert_int_eq(k, drop ? count - 1 : count);
    ck_assert_int_eq(dsp_safetensors_write(tu_join(tmp, "model.safetensors"), names, ts, k, NULL, NULL), 0);
    for (int i = 0; i < k; i++)
        dsp_tensor_unref(&ts[i]);
    free(ts);
    free(names);
    dsp_safetensors_close(&st);
    FILE *in = fopen(tu_join(fixture_dir(src), "config.json"), "r"), *out = fopen(tu_join(tmp, "config.json"), "w");
    ck_assert(in && out);
    if (config) {
        fputs(config, out);
    } else {
        int ch;
        while ((ch = fgetc(in)) != EOF)
            fputc(ch, out);
    }
    fclose(in);
    fclose(out);
    return tmp;
}

static void expect_open_error(const char *dir, int code, const char *needle)
{
    video_model *m = NULL;
    char *why = NULL;
    ck_assert_int_eq(video_model_open(dir, &m, &why), code);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, needle) && strstr(why, dir), "'%s' lacks '%s' or the folder", why, needle);
    free(why);
}

START_TEST(test_bad_folders)
{
    static const char mae_config[] =
        "{\"model_type\": \"videomae\", \"hidden_size\": 48, \"num_attention_heads\": 3, \"image_size\": 32, "
        "\"num_frames\": 4, \"tubelet_size\": 2, \"patch_size\": 8, ";
    static const struct {
        const char *src, *config_tail, *drop;
        int code;
        const char *needle;
    } cases[] = {
        /* a missing tensor, named */
        { "r3d_18", NULL, "layer3.1.conv2.1.running_var", DSP_ENOENT, "'layer3.1.conv2.1.running_var' is missing" },
        { "videomae_cls", NULL, "videomae.encoder.layer.0.attention.attention.q_bias", DSP_EFORMAT,
          "attention.attention.q_bias" },
        /* shapes that disagree with config.json */
        { "videomae_mean", "\"num_hidden_layers\": 2, \"intermediate_size\": 64}", NULL, DSP_EFORMAT,
          "intermediate.dense.weight' is f32[96,48], expected f32[64, 48]" },
        { "videomae_mean", "\"num_hidden_layers\": 1, \"intermediate_size\": 96}", NULL, DSP_EFORMAT,
          "more layers than config.json's num_hidden_layers 1" },
        /* unknown architectures */
        { "r3d_18", "{\"model_type\": \"torchvision_video_resnet\", \"arch\": \"r3d_50\"}", NULL, DSP_EUNSUPPORTED,
          "arch 'r3d_50' is not supported" },
        { "r3d_18", "{\"model_type\": \"timesformer\"}", NULL, DSP_EUNSUPPORTED, "model_type 'timesformer'" },
        /* r3d_18 weights under mc3_18's name: layer2's 3x3x3 kernels are not 1x3x3 */
        { "r3d_18", "{\"model_type\": \"torchvision_video_resnet\", \"arch\": \"mc3_18\"}", NULL, DSP_EFORMAT,
          "layer2.0.conv1.0.weight' is f32[8,4,3,3,3], expected f32[*, 4, 1, 3, 3]" },
    };
    expect_open_error("/nonexistent/video-model", DSP_ENOENT, "/nonexistent/video-model");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char tmp[512], config[1024];
        const char *tail = cases[i].config_tail;
        /* a tail starting with "{" is a whole config; otherwise it completes VideoMAE's */
        snprintf(config, sizeof config, "%s%s", tail && tail[0] != '{' ? mae_config : "", tail ? tail : "");
        bad_folder(tmp, sizeof tmp, cases[i].src, tail ? config : NULL, cases[i].drop);
        expect_open_error(tmp, cases[i].code, cases[i].needle);
        tu_remove_tree(tmp);
    }
}
END_TEST

static dsp_context *plugin_context(void)
{
    dsp_context *ctx = NULL;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "video.classify") != NULL, "video.classify not found: plugin path?");
    return ctx;
}

/* video.classify under the harness with the model of fixture folder dir
 * (opened into *f) and the params in extra (NULL-terminated, up to 6) */
static dsp_harness *classify_op(dsp_context *ctx, const char *dir, fixture *f, const char *const *extra)
{
    char param[1200];
    const char *params[8] = { param };
    fixture_open(f, dir);
    snprintf(param, sizeof param, "model=%s", dir);
    for (int i = 0; extra && extra[i]; i++) {
        ck_assert_int_lt(i, 6);
        params[i + 1] = extra[i];
    }
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "video.classify", params, 1, &h) == 0, "%s", dsp_context_errmsg(ctx));
    return h;
}

/* clip b of the fixture's u8 clips as a packet (item b) */
static dsp_packet *clip_packet(const fixture *f, int64_t b)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    dsp_packet_set_pos(p, b, 0, 1);
    const dsp_tensor *c = f->clips;
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 4, c->shape + 1, &t), 0);
    memcpy(dsp_tensor_data(t), (const uint8_t *)dsp_tensor_data(c) + b * c->stride[0], dsp_tensor_nbytes(t));
    ck_assert_int_eq(dsp_packet_set_tensor(p, "frames", t), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "source", "clip.mp4"), 0);
    return p;
}

/* Output packet p of clip b: logits (tensor `name`) as the reference;
 * label and score the reference's argmax and its softmax; topk that label
 * first, min(top_k, classes) entries long. */
static void check_prediction(const fixture *f, const dsp_packet *p, int64_t b, const char *name, int top_k)
{
    const float *want = (const float *)dsp_tensor_data(f->logits) + b * f->classes;
    const dsp_tensor *l = dsp_packet_tensor(p, name);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->shape[0], f->classes);
    double e = rel_err(dsp_tensor_data(l), want, f->classes);
    ck_assert_msg(e <= TOL_REF, "clip %lld: %.3e", (long long)b, e);
    int64_t best = 0;
    double sum = 0;
    for (int64_t i = 0; i < f->classes; i++)
        best = want[i] > want[best] ? i : best;
    for (int64_t i = 0; i < f->classes; i++)
        sum += exp((double)want[i] - want[best]);
    const dsp_meta *meta = dsp_packet_meta_const(p);
    const char *label = NULL;
    double score = 0;
    ck_assert_int_eq(dsp_meta_get_str(meta, "label", &label), 0);
    ck_assert_str_eq(label, video_model_label(f->m, best));
    ck_assert_int_eq(dsp_meta_get_float(meta, "score", &score), 0);
    ck_assert_msg(fabs(score - 1.0 / sum) < 1e-4, "score %g, softmax %g", score, 1.0 / sum);
    char *json = dsp_meta_to_json(meta), first[256];
    snprintf(first, sizeof first, "\"topk\":[{\"label\":\"%s\",", label);
    ck_assert_msg(strstr(json, first), "%s", json);
    int entries = 0;
    for (const char *s = strstr(json, "\"topk\""); s && (s = strstr(s, "\"score\"")); s++)
        entries++;
    ck_assert_int_eq(entries, f->classes < top_k ? (int)f->classes : top_k);
    free(json);
}

/* video.classify on u8 clips as video.decode emits them: the normalisation
 * of the model folder, logits as the reference, label/score/topk agreeing
 * with the logits */
START_TEST(test_op_u8_clips)
{
    dsp_context *ctx = plugin_context();
    fixture f;
    dsp_harness *h = classify_op(ctx, parity_dir(fixtures[_i]), &f, (const char *[]){ "top_k=3", NULL });
    dsp_packet **pk = calloc((size_t)f.B, sizeof *pk);
    for (int64_t b = 0; b < f.B; b++)
        pk[b] = clip_packet(&f, b);
    ck_assert_msg(dsp_harness_push_batch(h, pk, (int)f.B) == 0, "%s", dsp_harness_errmsg(h));
    for (int64_t b = 0; b < f.B; b++) {
        dsp_packet *p = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(dsp_packet_item(p), b);
        ck_assert_ptr_null(dsp_packet_tensor(p, "frames"));
        check_prediction(&f, p, b, "logits", 3);
        dsp_packet_unref(&p);
    }
    free(pk);
    dsp_harness_free(&h);
    fixture_close(&f);
    dsp_context_free(&ctx);
}
END_TEST

/* f32 clips [3, T, H, W], already normalised (a strided view into the
 * fixture's batch), under another tensor name, kept with keep_input */
START_TEST(test_op_f32_clips)
{
    dsp_context *ctx = plugin_context();
    fixture f;
    const char *params[] = { "input=pixels", "output=scores", "keep_input=true", "top_k=50", NULL };
    dsp_harness *h = classify_op(ctx, fixture_dir("r2plus1d_18"), &f, params);
    dsp_packet **pk = calloc((size_t)f.B, sizeof *pk);
    for (int64_t b = 0; b < f.B; b++) {
        ck_assert_int_eq(dsp_packet_new(&pk[b]), 0);
        dsp_packet_set_pos(pk[b], b, 0, 1);
        dsp_tensor *one = one_clip(f.pixels, b), *clip = NULL;
        /* [1, 3, T, H, W] -> [3, T, H, W] on the same storage */
        ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, one->shape + 1, one->stride + 1, one->buf,
                                                one->offset, &clip), 0);
        dsp_tensor_unref(&one);
        ck_assert_int_eq(dsp_packet_set_tensor(pk[b], "pixels", clip), 0);
    }
    ck_assert_msg(dsp_harness_push_batch(h, pk, (int)f.B) == 0, "%s", dsp_harness_errmsg(h));
    for (int64_t b = 0; b < f.B; b++) {
        dsp_packet *p = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(p);
        ck_assert_ptr_nonnull(dsp_packet_tensor(p, "pixels"));
        check_prediction(&f, p, b, "scores", 50);   /* top_k above the number of classes: each class once */
        dsp_packet_unref(&p);
    }
    free(pk);
    dsp_harness_free(&h);
    fixture_close(&f);
    dsp_context_free(&ctx);
}
END_TEST

/* a batch with a clip of the wrong size: the good clips go out, the bad one
 * fails its item alone, saying what the model takes; then a clip without frames */
START_TEST(test_op_bad_clip)
{
    dsp_context *ctx = plugin_context();
    fixture f;
    dsp_harness *h = classify_op(ctx, fixture_dir("videomae_mean"), &f, NULL);
    dsp_packet *pk[3] = { clip_packet(&f, 0), NULL, clip_packet(&f, 2) };
    ck_assert_int_eq(dsp_packet_new(&pk[1]), 0);
    dsp_packet_set_pos(pk[1], 1, 0, 1);
    int64_t shape[4] = { 8, 32, 32, 3 };
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 4, shape, &t), 0);
    memset(dsp_tensor_data(t), 7, dsp_tensor_nbytes(t));
    ck_assert_int_eq(dsp_packet_set_tensor(pk[1], "frames", t), 0);
    ck_assert_int_eq(dsp_harness_push_batch(h, pk, 3), 0);
    int64_t item = -1;
    const char *why = NULL;
    ck_assert_int_eq(dsp_harness_item_failures(h), 1);
    ck_assert_int_eq(dsp_harness_item_failure(h, 0, &item, &why), 0);
    ck_assert_int_eq(item, 1);
    ck_assert_msg(strstr(why, "u8[8,32,32,3]") && strstr(why, "takes 4 frames of 32 x 32"), "%s", why);
    for (int k = 0; k < 2; k++) {
        dsp_packet *p = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(dsp_packet_item(p), k == 0 ? 0 : 2);
        dsp_packet_unref(&p);
    }
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    /* no clip tensor at all */
    dsp_packet *bare = NULL;
    ck_assert_int_eq(dsp_packet_new(&bare), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, bare), 0);
    ck_assert_int_eq(dsp_harness_item_failures(h), 2);
    ck_assert_int_eq(dsp_harness_item_failure(h, 1, NULL, &why), 0);
    ck_assert_msg(strstr(why, "no tensor 'frames'"), "%s", why);
    dsp_harness_free(&h);
    fixture_close(&f);
    dsp_context_free(&ctx);
}
END_TEST

/* aggregate=mean: the clips of one item (parts 0..B-1) give one result, the
 * mean of their logits and of their softmax scores, with meta clips and the
 * first clip's start; a one-clip item is that clip's result; an item with
 * a bad clip in the middle gets none, and only that item fails */
START_TEST(test_op_mean_clips)
{
    dsp_context *ctx = plugin_context();
    fixture f;
    dsp_harness *h = classify_op(ctx, fixture_dir("r3d_18"), &f, (const char *[]){ "aggregate=mean", "top_k=2", NULL });
    ck_assert_int_ge(f.B, 2);
    int n = (int)f.B + 1 + 3;
    dsp_packet **pk = calloc((size_t)n, sizeof *pk);
    for (int64_t b = 0; b < f.B; b++) {         /* item 0: every clip, 1 s apart */
        pk[b] = clip_packet(&f, b);
        dsp_packet_set_pos(pk[b], 0, b, b == f.B - 1);
        ck_assert_int_eq(dsp_meta_set_float(dsp_packet_meta(pk[b]), "clip_start", 1.0 * (double)b + 0.5), 0);
        ck_assert_int_eq(dsp_meta_set_int(dsp_packet_meta(pk[b]), "clip_index", b), 0);
    }
    pk[f.B] = clip_packet(&f, 1);                /* item 1: clip 1 alone */
    for (int k = 0; k < 3; k++) {               /* item 2: good, bad, good */
        int i = (int)f.B + 1 + k;
        if (k == 1) {
            /* a video ResNet takes any clip size: a clip in two channels fails */
            int64_t shape[4] = { 2, 8, 8, 2 };
            dsp_tensor *t = NULL;
            ck_assert_int_eq(dsp_packet_new(&pk[i]), 0);
            ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 4, shape, &t), 0);
            memset(dsp_tensor_data(t), 9, dsp_tensor_nbytes(t));
            ck_assert_int_eq(dsp_packet_set_tensor(pk[i], "frames", t), 0);
        } else {
            pk[i] = clip_packet(&f, 0);
        }
        dsp_packet_set_pos(pk[i], 2, k, k == 2);
    }
    /* item 0's clips over two batches, so the sums cross calls */
    ck_assert_msg(dsp_harness_push_batch(h, pk, 1) == 0, "%s", dsp_harness_errmsg(h));
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    ck_assert_msg(dsp_harness_push_batch(h, pk + 1, n - 1) == 0, "%s", dsp_harness_errmsg(h));

    dsp_packet *p = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(dsp_packet_item(p), 0);
    ck_assert_int_eq(dsp_packet_part(p), 0);
    ck_assert(dsp_packet_last(p));
    /* the mean of the reference logits, and the mean of their softmax scores */
    float *want = calloc((size_t)f.classes, sizeof *want);
    double *prob = calloc((size_t)f.classes, sizeof *prob);
    for (int64_t b = 0; b < f.B; b++) {
        const float *l = (const float *)dsp_tensor_data(f.logits) + b * f.classes;
        double mx = l[0], sum = 0;
        for (int64_t i = 0; i < f.classes; i++)
            mx = l[i] > mx ? l[i] : mx;
        for (int64_t i = 0; i < f.classes; i++)
            sum += exp((double)l[i] - mx);
        for (int64_t i = 0; i < f.classes; i++) {
            want[i] += l[i] / (float)f.B;
            prob[i] += exp((double)l[i] - mx) / sum / (double)f.B;
        }
    }
    const dsp_tensor *got = dsp_packet_tensor(p, "logits");
    ck_assert_ptr_nonnull(got);
    double e = rel_err(dsp_tensor_data(got), want, f.classes);
    ck_assert_msg(e <= TOL_REF, "mean logits: %.3e", e);
    int64_t best = 0, clips = 0;
    for (int64_t i = 0; i < f.classes; i++)
        best = prob[i] > prob[best] ? i : best;
    const dsp_meta *m = dsp_packet_meta_const(p);
    const char *label = NULL;
    double score = 0, start = 0;
    ck_assert_int_eq(dsp_meta_get_str(m, "label", &label), 0);
    ck_assert_str_eq(label, video_model_label(f.m, best));
    ck_assert_int_eq(dsp_meta_get_float(m, "score", &score), 0);
    ck_assert_msg(fabs(score - prob[best]) < 1e-4, "score %g, mean softmax %g", score, prob[best]);
    ck_assert_int_eq(dsp_meta_get_int(m, "clips", &clips), 0);
    ck_assert_int_eq(clips, f.B);
    ck_assert_int_eq(dsp_meta_get_float(m, "clip_start", &start), 0);
    ck_assert_msg(start == 0.5, "clip_start %g: the first clip's", start);
    ck_assert(!dsp_meta_has(m, "clip_index"));
    dsp_packet_unref(&p);
    free(want);
    free(prob);

    p = dsp_harness_pull(h, 0);                 /* item 1: clip 1's own result */
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(dsp_packet_item(p), 1);
    check_prediction(&f, p, 1, "logits", 2);
    dsp_packet_unref(&p);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));  /* item 2: none */
    int64_t item = -1;
    ck_assert_int_eq(dsp_harness_item_failures(h), 1);
    ck_assert_int_eq(dsp_harness_item_failure(h, 0, &item, NULL), 0);
    ck_assert_int_eq(item, 2);
    free(pk);
    dsp_harness_free(&h);
    fixture_close(&f);
    dsp_context_free(&ctx);
}
END_TEST

static Suite *encoder_suite(void)
{
    Suite *s = suite_create("video_encoder");
    TCase *tc = tcase_create("video");
    tcase_add_loop_test(tc, test_logits_match_reference, 0, nfix);
    tcase_add_loop_test(tc, test_batch_equals_single, 0, nfix);
    tcase_add_loop_test(tc, test_bn_fold_equals_two_steps, 0, nfix);
    tcase_add_test(tc, test_wrong_clip_size);
    tcase_add_test(tc, test_bad_folders);
    tcase_add_loop_test(tc, test_op_u8_clips, 0, nfix);
    tcase_add_test(tc, test_op_f32_clips);
    tcase_add_test(tc, test_op_bad_clip);
    tcase_add_test(tc, test_op_mean_clips);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *full = getenv("VIDEO_ENCODER_FIXTURES");
    if (full && *full) {
        fixtures = full_fixtures;
        nfix = (int)(sizeof full_fixtures / sizeof full_fixtures[0]);
    }
    SRunner *sr = srunner_create(encoder_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
