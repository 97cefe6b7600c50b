/* train.h - training a Wide ResNet with a head (the paper's recipe) and its
 * checkpoints. The training step (forward, autodiff, SGD-Nesterov update, BN
 * statistics) is one compiled graph; checkpoints are safetensors files
 * written atomically.
 *
 * Data flow of oc_train:
 *   data spec -> oc_train_data_load (train split) -> oc_train_data_split
 *     (train / validation, seeded; --limit) -> per-channel statistics ->
 *     "normalize.mean"/"normalize.std" state of the model (the batcher does
 *     NOT normalize: raw [0,1] pixels enter the graph)
 *   model spec -> oc_train_step_graph (model train=1, autodiff of the loss
 *     w.r.t. every PARAM, oc_sgd_nesterov, outputs "loss" and "correct",
 *     simplify) -> oc_compile; oc_train_eval_graph (train=0, "logits")
 *   every step: batcher -> bind x, labels, lr (schedule), step -> run
 *   every epoch: validation accuracy -> checkpoint + train.json (atomic)
 *
 * Checkpoint layout (safetensors, every tensor F32 unless noted): every
 * PARAM and STATE of the training-step graph under its graph name, which is
 * the PyTorch state_dict name of bench/peer/wrn.py (conv1.weight,
 * block1.layer.0.bn1.weight, ..., bn1.running_var, fc.weight, fc.bias), the
 * SGD momentum of each parameter as "<param>.momentum_buffer" (PyTorch keeps
 * the same tensor in optimizer.state[p]["momentum_buffer"]), the input
 * normalization "normalize.mean" / "normalize.std" ([C]; the PyTorch module
 * has none: feed it (x - mean) / std), and for PyTorch's strict
 * load_state_dict one I64 scalar "<bn>.num_batches_tracked" per BN layer
 * (= optimizer steps taken; oodc does not read it). Layouts are PyTorch's:
 * conv weights [out, in, kh, kw], linear weights [out, in], row-major.
 * Metadata (all strings): "oodc.checkpoint" = "1", arch, head, head.* (the
 * head's hyperparameters), in_ch, size, nclasses, data, epoch (completed),
 * step (optimizer steps taken), epochs (planned), seed, batch, lr,
 * lr_schedule, momentum, weight_decay, train_limit, augment, history (JSON
 * array of per-epoch statistics) and checksum (64-bit hash of every other
 * metadata value and every tensor's name, dtype, shape and bytes: detects
 * corruption that keeps the file well-formed, such as a flipped bit).
 *
 * A safetensors file without "oodc.checkpoint" (e.g. a PyTorch state_dict
 * saved as safetensors) is "foreign": the architecture is inferred from the
 * tensors (conv1.weight gives in_ch, fc.weight the classes and the width,
 * the number of block1.layer.N the depth), the size defaults to 28 for one
 * channel and 32 for three, and a missing normalization is the identity.
 */
#ifndef OODC_TRAIN_H
#define OODC_TRAIN_H

#include <stdio.h>

#include "../models/models.h"
#include "../runtime/runtime.h"
#include "../runtime/safetensors.h"
#include "data.h"

struct oc_train_cfg {
    const char *model;    /* "wrn-16-4" */
    const char *head;     /* a registry name: "baseline", "bin", "binc", "vib", "viby" */
    const char *data;     /* "fashion-mnist[:DIR]" or "cifar10:DIR" */
    const char *device;   /* "cpu" (default) or "cuda" */
    const char *out_dir;  /* writes checkpoint.safetensors and train.json here */
    int epochs;           /* default 5 */
    int batch;            /* default 128 */
    double lr;            /* default 0.1, dropped x0.1 at 50% and 75% of training */
    double momentum;      /* default 0.9 (Nesterov) */
    double weight_decay;  /* default 5e-4 */
    uint64_t seed;        /* default 0 */
    int resume;           /* continue from out_dir/checkpoint.safetensors */
    int64_t train_limit;  /* > 0: use only this many training images (tests, budgets) */
    int augment;          /* default 1: random crop + horizontal flip */
    int quiet;            /* no progress output */
    /* Added by the trainer's owner: */
    int threads;          /* executor threads; <= 0 (default): all online cores */
    int fusion;           /* default 1; 0 compiles one kernel per primitive */
    int stop_after;       /* > 0: return after this many epochs of this call, as an
                           * interrupted run would (tests of --resume) */
    int progress;         /* -1 (default): a bar on a terminal, log lines otherwise;
                           * 0: log lines; 1: bar */
    FILE *log;            /* progress and messages; NULL: stderr */
};
struct oc_train_cfg oc_train_cfg_default(void);

struct oc_train_result {
    int epochs_done;
    double final_loss, train_acc, val_acc, images_per_s;
    /* Added: */
    int64_t steps_done; /* optimizer steps taken in total (resumed runs included) */
    int started;        /* 1 once the run got past checking its input (data loaded,
                         * graphs compiled, output folder made): an error before
                         * that is the caller's input (CLI exit 2), after it a
                         * failure while running (exit 1) */
};

/* Trains as configured. On resume the checkpoint's model, head, data, batch,
 * seed, limit, momentum, weight decay and augmentation must equal c's
 * (NULL strings, batch <= 0, lr <= 0, epochs <= 0 take the checkpoint's).
 * A different lr or number of epochs is allowed (the schedule then follows
 * them, and the run no longer equals an uninterrupted one). A NaN or Inf loss stops with OC_ERR_NUMERIC and a message naming
 * the epoch and step; the last checkpoint written stays as it was. */
enum oc_status oc_train(const struct oc_train_cfg *c, struct oc_train_result *r,
                        struct oc_err *err);

/* ---------------------------------------------------------------- building blocks
 * (also used by evaluation, benchmarks and tests) */

/* The model configuration: arch "wrn-D-W", a registered head with its
 * default hyperparameters, the input's channels and size, the classes. */
enum oc_status oc_train_model_cfg(const char *arch, const char *head, int in_ch, int size,
                                  int nclasses, struct oc_model_cfg *out, struct oc_err *err);

/* Channels, size and classes of a training data spec without loading it:
 * fashion-mnist[:DIR] (1, 28, 10), cifar10:DIR (3, 32, 10). */
enum oc_status oc_train_data_shape(const char *spec, int *in_ch, int *size, int *nclasses,
                                   struct oc_err *err);
/* Loads the train (train != 0) or test split named by a training data spec. */
enum oc_status oc_train_data_load(const char *spec, int train, struct oc_dataset *out,
                                  struct oc_err *err);
/* The standard train/validation split: 5000 validation images (55k/5k for
 * Fashion-MNIST, 45k/5k for CIFAR-10); a set of fewer than 10000 images
 * keeps a tenth for validation. limit > 0 then keeps a seeded subset of
 * limit training images and at most limit validation images. */
enum oc_status oc_train_data_split(const struct oc_dataset *full, int64_t limit, uint64_t seed,
                                   struct oc_dataset *train, struct oc_dataset *val,
                                   struct oc_err *err);

/* The learning rate of the paper's schedule at optimizer step `step` of
 * `total`: lr, x0.1 from 50% of the steps, x0.01 from 75%. */
double oc_train_lr_at(double lr, int64_t step, int64_t total);

/* The training step for batches of `batch` images. Inputs: "x" f32
 * [B,C,H,W] raw pixels in [0,1], "labels" i32 [B], "lr" f32 scalar, "step"
 * i32 scalar (the RNG counter of sampling heads: the global step). Outputs:
 * "loss" (f32 scalar, the batch mean) and "correct" (i32 scalar, how many
 * argmax(logits) == label). Assigns: every param (SGD with Nesterov
 * momentum, weight decay on every param as torch.optim.SGD), its momentum
 * buffer and the BN running statistics. Simplified, ready to compile. */
enum oc_status oc_train_step_graph(const struct oc_model_cfg *m, int batch, double momentum,
                                   double weight_decay, struct oc_graph **out, struct oc_err *err);
/* Inference: inputs "x" and "step" as above, output "logits" f32 [B,K]. */
enum oc_status oc_train_eval_graph(const struct oc_model_cfg *m, int batch, struct oc_graph **out,
                                   struct oc_err *err);
/* Binds every param and state of g in ex from its initializer with `seed`
 * (oc_init_fill: the same values whichever graph holds the node). */
enum oc_status oc_train_init_params(struct oc_exec *ex, const struct oc_graph *g, uint64_t seed,
                                    struct oc_err *err);
/* Copies every param and state of `to_g` from executable `from` into `to`
 * (e.g. the training step's current weights into the evaluation graph). */
enum oc_status oc_train_copy_params(struct oc_exec *from, struct oc_exec *to,
                                    const struct oc_graph *to_g, struct oc_err *err);

/* Accuracy of an evaluation executable (made from oc_train_eval_graph with
 * batch `batch`, params bound) over a labelled dataset: the last partial
 * batch is zero-padded. per_class (nclasses entries, may be NULL) and
 * accuracy are percentages; counts (may be NULL) receives per-class
 * totals. */
enum oc_status oc_train_accuracy(struct oc_exec *ev, int batch, const struct oc_dataset *ds,
                                 double *accuracy, double *per_class, int64_t *counts,
                                 struct oc_err *err);

/* ---------------------------------------------------------------- checkpoints */

/* A checkpoint: the model configuration and every param and state tensor
 * (named as in the graph, PyTorch-compatible), plus training progress. */
struct oc_checkpoint {
    struct oc_model_cfg model;
    char arch[32], head[32], data[256];
    int epoch;                 /* epochs completed */
    struct oc_safetensors *st; /* the tensors */
    /* Added (zero for a foreign file): */
    int64_t step;              /* optimizer steps taken */
    int epochs;                /* epochs planned (the lr schedule's length) */
    uint64_t seed;
    int batch;
    double lr, momentum, weight_decay;
    int64_t train_limit;
    int augment;
    const char *history;       /* JSON array of per-epoch statistics, or NULL */
    int foreign;               /* 1: no oodc metadata, architecture inferred */
    const char *path;          /* the file it was loaded from (NULL for save) */
};
/* Reads and checks a checkpoint (format, checksum, metadata, architecture).
 * Errors name the file and what is wrong. */
enum oc_status oc_checkpoint_load(const char *path, struct oc_checkpoint **out,
                                  struct oc_err *err);
void oc_checkpoint_free(struct oc_checkpoint *ck);
/* Binds every param/state of the executable's graph from the checkpoint;
 * a missing tensor or a shape/dtype mismatch is an error naming it. Extra
 * tensors (optimizer state) are ignored. */
enum oc_status oc_checkpoint_bind(const struct oc_checkpoint *ck, struct oc_exec *ex,
                                  const struct oc_graph *g, struct oc_err *err);
/* Writes every param and state of g, as held by ex now, to `path`
 * atomically, with the metadata of `meta` (model, arch, head, data, epoch,
 * step, epochs, seed, batch, lr, momentum, weight_decay, train_limit,
 * augment, history; meta->st is not used). On failure an existing file at
 * `path` is untouched. */
enum oc_status oc_checkpoint_save(const char *path, const struct oc_checkpoint *meta,
                                  struct oc_exec *ex, const struct oc_graph *g,
                                  struct oc_err *err);
/* The file name of the latest checkpoint in an output folder. */
#define OC_CHECKPOINT_FILE "checkpoint.safetensors"

#endif
