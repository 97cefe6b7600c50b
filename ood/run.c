/* run.c - the whole experiment of `oodc run` (what `make run` does): train
 * the paper's five models (Baseline, BIN, BINC, VIB, VIBY) on one Wide
 * ResNet configuration, or reuse their checkpoints, evaluate every scorer
 * on every OOD set, print Table 1 and Table 2 and write the report.
 *
 * Data flow: preset -> per head: runs/<head>/checkpoint.safetensors
 * (oc_train, or reused when its configuration matches) -> oc_eval_run
 * (eval.c) on the in-distribution test split, the trainer's validation
 * split and the OOD sets -> oc_report_tables (stdout) + oc_report_write
 * (report/).
 *
 * The OOD sets are Gaussian and uniform noise and two sets of real
 * photographs made like TinyImageNet (crop) and (resize). With a folder of
 * at least 1500 photographs (e.g. TinyImageNet's test images, --preset
 * paper) they are the folder's images cropped or downsampled, as in the
 * paper. A smaller folder (the default: the 15 photographs of the Debian
 * package lomiri-wallpapers-16.04) first becomes a pool of 1500 "tiny
 * images": random square windows (sides 80..320 px) of the photographs,
 * each photograph first downsampled to 320 x 320 (aspect not kept),
 * resampled to twice the model's input size, as TinyImageNet's 64 px
 * images are twice CIFAR's 32; the crop set takes a random input-size
 * window of each, the resize set downsamples each by two.
 */
#include "eval.h"
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int oc_run_cfg_preset(const char *preset, struct oc_run_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->runs_dir = "runs";
    c->report_dir = "report";
    c->batch = 128;
    c->heads = "baseline,bin,binc,vib,viby";
    if (!preset || !strcmp(preset, "cpu")) {
        /* sized so that the whole run takes well under 20 minutes on 2 cores */
        c->preset = "cpu";
        c->arch = "wrn-10-2";
        c->data = "fashion-mnist";
        c->device = "cpu";
        c->photos = "/usr/share/backgrounds";
        c->epochs = 4;
        c->train_limit = 16000;
        c->test_n = 3000;
        c->tune_n = 200;
        c->fit_n = 6000;
        return 1;
    }
    if (!strcmp(preset, "paper")) {
        /* section 5: WRN-28-10, CIFAR-10 (45k/5k/10k), 200 epochs, TinyImageNet */
        c->preset = "paper";
        c->arch = "wrn-28-10";
        c->data = NULL; /* cifar10:DIR from --cifar */
        c->device = "cuda";
        c->photos = NULL; /* TinyImageNet images from --tiny */
        c->epochs = 200;
        return 1;
    }
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- photographs */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* A uniform double in [0, 1) from (seed, purpose, index). */
static double unit(uint64_t seed, uint64_t purpose, uint64_t i)
{
    return (double)(mix64(seed ^ mix64(purpose ^ mix64(i))) >> 11) * 0x1.0p-53;
}

static int is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    char ext[8];
    size_t n = strlen(dot + 1);
    if (n >= sizeof ext) return 0;
    for (size_t i = 0; i <= n; i++) ext[i] = (char)(dot[1 + i] >= 'A' && dot[1 + i] <= 'Z' ? dot[1 + i] + 32 : dot[1 + i]);
    return !strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
}

/* Image files under dir, recursively (the folder loader's rule); -1 if
 * dir cannot be read. */
static int64_t count_images(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb)) continue;
        if (S_ISDIR(sb.st_mode) && depth < 16) {
            int64_t k = count_images(p, depth + 1);
            n += k > 0 ? k : 0;
        } else if (S_ISREG(sb.st_mode) && is_image(e->d_name)) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* The area average of the square window (x0, y0, side) of one w x w
 * plane, resampled to out x out (rounding can put a window's edge a hair
 * past the plane: those slivers are left out). */
static void area_window(const float *src, int w, double x0, double y0, double side, int out,
                        float *dst)
{
    double step = side / out;
    for (int i = 0; i < out; i++) {
        double a = y0 + i * step, b = a + step;
        for (int j = 0; j < out; j++) {
            double c = x0 + j * step, d = c + step, acc = 0, area = 0;
            int p1 = (int)ceil(b) < w ? (int)ceil(b) : w, q1 = (int)ceil(d) < w ? (int)ceil(d) : w;
            for (int p = (int)floor(a); p < p1; p++) {
                double wy = fmin(b, p + 1.0) - fmax(a, (double)p);
                if (wy <= 0) continue;
                const float *row = src + (size_t)p * (size_t)w;
                for (int q = (int)floor(c); q < q1; q++) {
                    double wx = fmin(d, q + 1.0) - fmax(c, (double)q);
                    if (wx <= 0) continue;
                    acc += wy * wx * row[q];
                    area += wy * wx;
                }
            }
            dst[i * out + j] = (float)(area > 0 ? acc / area : 0);
        }
    }
}

#define SET_N 1500 /* images per OOD set, as in the paper */
#define PHOTO_SIDE 320

/* The crop and resize sets of c x size x size images from a small folder
 * of photographs, through the pool of tiny images described at the top. */
static enum oc_status photo_pool_sets(const char *dir, int c, int size, int64_t n, uint64_t seed,
                                      struct oc_dataset *crop, struct oc_dataset *resize,
                                      struct oc_err *err)
{
    struct oc_dataset ph;
    enum oc_status st =
        oc_data_load_folder(dir, OC_FOLDER_RESIZE, c, PHOTO_SIDE, PHOTO_SIDE, 0, seed, &ph, err);
    if (st) return st;
    int tiny = 2 * size;
    int64_t isz = (int64_t)c * size * size;
    memset(crop, 0, sizeof *crop);
    memset(resize, 0, sizeof *resize);
    crop->images = malloc(sizeof(float) * (size_t)(n * isz));
    resize->images = malloc(sizeof(float) * (size_t)(n * isz));
    float *t = malloc(sizeof(float) * (size_t)c * (size_t)tiny * (size_t)tiny);
    if (!crop->images || !resize->images || !t) {
        free(t);
        oc_dataset_free(crop);
        oc_dataset_free(resize);
        oc_dataset_free(&ph);
        return oc_err_set(err, OC_ERR_NOMEM, "photographs: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t p = i % ph.n;
        double side = PHOTO_SIDE / 4.0 + unit(seed, 1, (uint64_t)i) * (PHOTO_SIDE * 3.0 / 4.0);
        double x0 = unit(seed, 2, (uint64_t)i) * (PHOTO_SIDE - side);
        double y0 = unit(seed, 3, (uint64_t)i) * (PHOTO_SIDE - side);
        const float *img = ph.images + p * oc_dataset_image_size(&ph);
        for (int ch = 0; ch < c; ch++)
            area_window(img + (size_t)ch * PHOTO_SIDE * PHOTO_SIDE, PHOTO_SIDE, x0, y0, side, tiny,
                        t + (size_t)ch * tiny * tiny);
        int cx = (int)(unit(seed, 4, (uint64_t)i) * (tiny - size + 1));
        int cy = (int)(unit(seed, 5, (uint64_t)i) * (tiny - size + 1));
        for (int ch = 0; ch < c; ch++) {
            float *dc = crop->images + i * isz + (int64_t)ch * size * size;
            const float *tc = t + (size_t)ch * tiny * tiny;
            for (int y = 0; y < size; y++)
                memcpy(dc + y * size, tc + (size_t)(cy + y) * tiny + cx, sizeof(float) * (size_t)size);
            area_window(tc, tiny, 0, 0, tiny, size, resize->images + i * isz + (int64_t)ch * size * size);
        }
    }
    free(t);
    char src[600];
    snprintf(src, sizeof src, "photographs %s (%lld files, crop)", dir, (long long)ph.n);
    crop->source = strdup(src);
    snprintf(src, sizeof src, "photographs %s (%lld files, resize)", dir, (long long)ph.n);
    resize->source = strdup(src);
    oc_dataset_free(&ph);
    for (int k = 0; k < 2; k++) {
        struct oc_dataset *d = k ? resize : crop;
        d->n = n;
        d->c = c;
        d->h = d->w = size;
    }
    return OC_OK;
}

static enum oc_status split_set(struct oc_dataset *all, uint64_t seed, struct oc_ood_set *out,
                                struct oc_err *err)
{
    enum oc_status st = oc_data_split(all, all->n * 2 / 3, seed, &out->test, &out->val, err);
    oc_dataset_free(all);
    return st;
}

/* The run's OOD sets: Gaussian, uniform, photographs (crop), (resize). */
static enum oc_status load_ood_sets(const struct oc_run_cfg *c, int ch, int size,
                                    struct oc_ood_set *sets, int *nsets, struct oc_err *err)
{
    *nsets = 0;
    enum oc_status st;
    static const char *const noise[2][2] = {{"gaussian", "Gaussian Noise"}, {"uniform", "Uniform Noise"}};
    for (int k = 0; k < 2; k++) {
        if ((st = oc_ood_set_load(noise[k][0], ch, size, size, c->ood_n, c->seed + 11, &sets[*nsets], err)))
            return st;
        snprintf(sets[*nsets].label, sizeof sets[*nsets].label, "%s", noise[k][1]);
        (*nsets)++;
    }
    const char *dir = c->photos;
    int64_t nfiles = dir ? count_images(dir, 0) : -1;
    if (nfiles <= 0)
        return oc_err_set(err, OC_ERR_IO,
                          "no photographs in %s: install the Debian package lomiri-wallpapers-16.04 "
                          "(scripts/deps.sh does) or pass --photos DIR (--tiny DIR with --preset paper)",
                          dir ? dir : "(none given)");
    const char *name = !strcmp(c->preset, "paper") ? "TinyImageNet" : "Photos";
    const char *slug = !strcmp(c->preset, "paper") ? "tinyimagenet" : "photos";
    int64_t n = c->ood_n > 0 ? c->ood_n : SET_N;
    if (nfiles >= n) {
        for (int k = 0; k < 2; k++) {
            char spec[4200];
            snprintf(spec, sizeof spec, "%s-%s=folder:%s:%s", slug, k ? "resize" : "crop", dir,
                     k ? "resize" : "crop");
            if ((st = oc_ood_set_load(spec, ch, size, size, c->ood_n, c->seed + 13, &sets[*nsets], err)))
                return st;
            snprintf(sets[*nsets].label, sizeof sets[*nsets].label, "%s (%s)", name, k ? "resize" : "crop");
            (*nsets)++;
        }
        return OC_OK;
    }
    struct oc_dataset crop, resize;
    if ((st = photo_pool_sets(dir, ch, size, n, c->seed + 17, &crop, &resize, err))) return st;
    for (int k = 0; k < 2; k++) {
        struct oc_ood_set *s = &sets[*nsets];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s-%s", slug, k ? "resize" : "crop");
        snprintf(s->label, sizeof s->label, "%s (%s)", name, k ? "resize" : "crop");
        snprintf(s->spec, sizeof s->spec, "pool of %lld windows of %s", (long long)n, dir);
        if ((st = split_set(k ? &resize : &crop, c->seed + 19 + (uint64_t)k, s, err))) {
            if (!k) oc_dataset_free(&resize);
            return st;
        }
        (*nsets)++;
    }
    return OC_OK;
}

/* ---------------------------------------------------------------- checkpoints */

static enum oc_status bind_checkpoint(void *ctx, struct oc_exec *ex, const struct oc_graph *g,
                                      struct oc_err *err)
{
    return oc_checkpoint_bind(ctx, ex, g, err);
}

/* 1 if ck was trained with c's configuration; why (for the log) otherwise. */
static int same_config(const struct oc_checkpoint *ck, const struct oc_train_cfg *c, char *why,
                       size_t n)
{
    if (ck->foreign) return snprintf(why, n, "not an oodc checkpoint"), 0;
    if (strcmp(ck->arch, c->model)) return snprintf(why, n, "model %s, want %s", ck->arch, c->model), 0;
    if (strcmp(ck->head, c->head)) return snprintf(why, n, "head %s, want %s", ck->head, c->head), 0;
    if (strcmp(ck->data, c->data)) return snprintf(why, n, "data %s, want %s", ck->data, c->data), 0;
    if (ck->epochs != c->epochs) return snprintf(why, n, "%d epochs planned, want %d", ck->epochs, c->epochs), 0;
    if (ck->seed != c->seed) return snprintf(why, n, "another seed"), 0;
    if (ck->batch != c->batch) return snprintf(why, n, "batch %d, want %d", ck->batch, c->batch), 0;
    if (ck->train_limit != (c->train_limit > 0 ? c->train_limit : 0))
        return snprintf(why, n, "%lld training images, want %lld", (long long)ck->train_limit,
                        (long long)c->train_limit), 0;
    if (ck->lr != c->lr || ck->momentum != c->momentum || ck->weight_decay != c->weight_decay ||
        ck->augment != c->augment)
        return snprintf(why, n, "other optimizer settings"), 0;
    return 1;
}

/* Trains the model of one head into runs/<head>/, or reuses (resumes) a
 * checkpoint trained with the same configuration. */
static enum oc_status train_or_reuse(const struct oc_run_cfg *c, const char *head, char *ck_path,
                                     size_t n, int *input_error, struct oc_err *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", c->runs_dir, head);
    snprintf(ck_path, n, "%s/%s", dir, OC_CHECKPOINT_FILE);
    struct oc_train_cfg tc = oc_train_cfg_default();
    tc.model = c->arch;
    tc.head = head;
    tc.data = c->data;
    tc.device = c->device;
    tc.out_dir = dir;
    tc.epochs = c->epochs;
    tc.batch = c->batch;
    tc.seed = c->seed;
    tc.train_limit = c->train_limit;
    tc.log = c->log;
    struct stat sb;
    if (!stat(ck_path, &sb)) {
        struct oc_checkpoint *ck = NULL;
        struct oc_err e = {0};
        char why[700] = "";
        int ok = !oc_checkpoint_load(ck_path, &ck, &e);
        int same = ok && same_config(ck, &tc, why, sizeof why);
        int done = same && ck->epoch >= c->epochs;
        if (ck) oc_checkpoint_free(ck);
        if (done && !c->retrain) {
            fprintf(c->log, "[%s] reusing %s (same configuration, %d epochs done)\n", head, ck_path,
                    c->epochs);
            return OC_OK;
        }
        if (same && !c->retrain) {
            tc.resume = 1;
        } else {
            /* keep the old checkpoint beside the new run rather than delete it */
            char old[1300];
            snprintf(old, sizeof old, "%s.old", ck_path);
            fprintf(c->log, "[%s] %s: %s; training anew (the old file is now %s)\n", head, ck_path,
                    c->retrain ? "--retrain" : ok ? why : e.msg, old);
            if (rename(ck_path, old))
                return oc_err_set(err, OC_ERR_IO, "cannot move %s aside: %s", ck_path, strerror(errno));
        }
    }
    struct oc_train_result res;
    double t0 = now_s();
    fprintf(c->log, "[%s] training %s on %s (%lld images, %d epochs)\n", head, c->arch, c->data,
            (long long)c->train_limit, c->epochs);
    enum oc_status st = oc_train(&tc, &res, err);
    if (st) {
        *input_error = !res.started;
        return st;
    }
    fprintf(c->log, "[%s] trained in %.0f s: validation accuracy %.2f%%\n", head, now_s() - t0,
            res.val_acc);
    return OC_OK;
}

/* ---------------------------------------------------------------- the run */

enum oc_status oc_run(const struct oc_run_cfg *c0, int *input_error, struct oc_err *err)
{
    struct oc_run_cfg cfg = *c0;
    struct oc_run_cfg *c = &cfg;
    if (!c->log) c->log = stderr;
    *input_error = 1;
    double t0 = now_s();
    if (!c->data) return oc_err_set(err, OC_ERR_INVALID, "no in-distribution data (--data, or --cifar DIR for --preset paper)");
    /* the heads, checked before anything runs */
    char heads[8][32];
    int nheads = 0;
    for (const char *p = c->heads; p && *p && nheads < 8;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len || len >= sizeof heads[0]) return oc_err_set(err, OC_ERR_INVALID, "bad head list '%s'", c->heads);
        memcpy(heads[nheads], p, len);
        heads[nheads][len] = 0;
        if (!oc_head_find(heads[nheads])) return oc_err_set(err, OC_ERR_INVALID, "unknown head '%s'", heads[nheads]);
        nheads++;
        p = e ? e + 1 : p + len;
    }
    if (!nheads) return oc_err_set(err, OC_ERR_INVALID, "no heads given");
    if (c->methods && *c->methods) {
        /* every method must exist; each head gets the ones that apply to it */
        char item[64];
        for (const char *p = c->methods; *p;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (!len || len >= sizeof item) return oc_err_set(err, OC_ERR_INVALID, "bad method list '%s'", c->methods);
            memcpy(item, p, len);
            item[len] = 0;
            if (!oc_scorer_find(item)) return oc_eval_check_methods(item, "baseline", err);
            p = e ? e + 1 : p + len;
        }
    }
    int ch, size, k;
    enum oc_status st = oc_train_data_shape(c->data, &ch, &size, &k, err);
    if (st) return st;
    struct oc_wrn_config wc;
    if ((st = oc_wrn_parse(c->arch, &wc, err))) return st;

    /* the OOD sets first (a missing folder of photographs is reported
     * before anything slow), then the test split and the trainer's
     * validation split */
    struct oc_ood_set sets[8];
    int nsets = 0;
    memset(sets, 0, sizeof sets);
    struct oc_dataset full, test, test_sub, train, val;
    memset(&test, 0, sizeof test);
    memset(&test_sub, 0, sizeof test_sub);
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    fprintf(c->log, "oodc run (%s preset): %s on %s, %d epochs on %lld images, device %s\n",
            c->preset ? c->preset : "custom", c->arch, c->data, c->epochs, (long long)c->train_limit,
            c->device);
    double t1 = now_s();
    if ((st = load_ood_sets(c, ch, size, sets, &nsets, err))) goto free_sets;
    fprintf(c->log, "OOD sets (%.1f s):", now_s() - t1);
    for (int j = 0; j < nsets; j++)
        fprintf(c->log, " %s %lld/%lld", sets[j].name, (long long)sets[j].test.n, (long long)sets[j].val.n);
    fprintf(c->log, " (test/validation)\n");
    if ((st = oc_train_data_load(c->data, 1, &full, err))) goto free_sets;
    st = oc_train_data_split(&full, c->train_limit, c->seed, &train, &val, err);
    oc_dataset_free(&full);
    if (st) goto free_sets;
    if ((st = oc_train_data_load(c->data, 0, &test, err))) goto free_sets;
    const struct oc_dataset *tp = &test;
    if (c->test_n > 0 && c->test_n < test.n) {
        if ((st = oc_data_split(&test, c->test_n, c->seed ^ 0x74657374ull, &test_sub, NULL, err))) goto free_sets;
        tp = &test_sub;
    }

    struct oc_rt *rt = NULL;
    if ((st = oc_rt_new(&rt, 0, 0, err))) goto free_sets;
    struct oc_eval_result results[8];
    int nres = 0;
    char scores[1100];
    snprintf(scores, sizeof scores, "%s/scores", c->report_dir);
    for (int h = 0; h < nheads; h++) {
        char ck_path[1200];
        *input_error = 0;
        int ie = 0;
        if ((st = train_or_reuse(c, heads[h], ck_path, sizeof ck_path, &ie, err))) {
            *input_error = ie;
            break;
        }
        struct oc_checkpoint *ck;
        if ((st = oc_checkpoint_load(ck_path, &ck, err))) break;
        struct oc_eval_model m = {.name = heads[h], .cfg = ck->model, .bind = bind_checkpoint, .bind_ctx = ck};
        struct oc_eval_data d = {tp, &val, &train, sets, nsets};
        struct oc_eval_opts o = oc_eval_opts_default();
        o.device = c->device;
        o.tune_in_n = c->tune_n;
        o.tune_ood_n = c->tune_n;
        o.fit_n = c->fit_n;
        o.log = c->log;
        o.rt = rt;
        o.scores_dir = scores;
        /* the methods named that apply to this head (all when none are named) */
        char mine[512] = "";
        if (c->methods && *c->methods) {
            char item[64];
            for (const char *p = c->methods; *p;) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                memcpy(item, p, len);
                item[len] = 0;
                if (oc_scorer_applies(oc_scorer_find(item), heads[h])) {
                    if (*mine) strncat(mine, ",", sizeof mine - strlen(mine) - 1);
                    strncat(mine, item, sizeof mine - strlen(mine) - 1);
                }
                p = e ? e + 1 : p + len;
            }
            if (!*mine) {
                oc_checkpoint_free(ck);
                fprintf(c->log, "[%s] no named method applies: skipped\n", heads[h]);
                continue;
            }
            o.methods = mine;
        }
        fprintf(c->log, "[%s] evaluating (%lld test images, tuning on %lld validation images per set)\n",
                heads[h], (long long)tp->n, (long long)(c->tune_n > 0 ? c->tune_n : val.n));
        st = oc_eval_run(&m, &d, &o, &results[nres], err);
        oc_checkpoint_free(ck);
        if (st) {
            *input_error = !results[nres].started;
            break;
        }
        nres++;
    }
    oc_rt_free(rt);
    if (!st && nres) {
        char config[700], tune[64] = "all";
        if (c->tune_n > 0) snprintf(tune, sizeof tune, "at most %lld", (long long)c->tune_n);
        snprintf(config, sizeof config,
                 "In-distribution %s, %s, %d epochs on %lld training images, batch %d, device %s; "
                 "%lld test images; T and eps tuned on %s validation images per set; %.0f s in all.",
                 c->data, c->arch, c->epochs, (long long)train.n, c->batch, c->device,
                 (long long)tp->n, tune, now_s() - t0);
        struct oc_report rep = {.title = "Out-of-distribution detection with oodc",
                                .config = config,
                                .nmodels = nres,
                                .models = results,
                                .nood = nsets,
                                .ood = sets};
        FILE *tf = c->tables ? c->tables : stdout;
        fprintf(tf, "\n");
        oc_report_tables(tf, &rep);
        fflush(tf);
        if (!(st = oc_report_write(c->report_dir, &rep, err)))
            fprintf(c->log, "\nwrote %s/results.md, results.csv, results.json, index.html and %s/*.npy "
                            "(%.0f s in all)\n",
                    c->report_dir, scores, now_s() - t0);
    }
    for (int i = 0; i < nres; i++) oc_eval_result_free(&results[i]);
free_sets:
    for (int j = 0; j < nsets; j++) oc_ood_set_free(&sets[j]);
    oc_dataset_free(&test_sub);
    oc_dataset_free(&test);
    oc_dataset_free(&train);
    oc_dataset_free(&val);
    return st;
}
