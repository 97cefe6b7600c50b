/* models.h - graphs written in the DSL: the Wide ResNet trunk and the
 * optimizer update. Nothing here knows about devices, CUDA or LLVM. */
#ifndef OODC_MODELS_H
#define OODC_MODELS_H

#include "../frontend/frontend.h"

/* Wide ResNet WRN-depth-width (Zagoruyko & Komodakis 2016), pre-activation
 * basic blocks, no dropout. depth = 6n + 4. */
struct oc_wrn_config {
    int depth, width;
    int in_ch;    /* 1 or 3 */
    int size;     /* input height = width, e.g. 28 or 32 */
    int nclasses;
};

/* Parses "wrn-28-10" (depth-width). */
enum oc_status oc_wrn_parse(const char *spec, struct oc_wrn_config *c, struct oc_err *err);
/* The trunk: conv -> 3 groups of n blocks -> BN-ReLU -> global average pool.
 * x is [B, in_ch, size, size]; returns features [B, 64*width]. Parameter names
 * follow the reference PyTorch implementation (conv1, block1.layer.0.bn1,
 * block1.layer.0.conv1, ..., block1.layer.0.convShortcut, bn1), so checkpoints
 * load into the equivalent PyTorch module. */
oc_tensor oc_wrn_trunk(struct oc_graph *g, const struct oc_wrn_config *c, oc_tensor x, int train);
/* Feature width of the trunk. */
int oc_wrn_features(const struct oc_wrn_config *c);

/* ---------------------------------------------------------------- heads */

/* Hyperparameters of the heads (the paper's values are the defaults of
 * oc_head_cfg_default: z = 64, zeta = 0.05, lambda = 0.5, beta = 0.005 for
 * VIB and 0.01 for VIBY). */
struct oc_head_cfg {
    int nclasses;
    int zdim;         /* bottleneck width (BINC, VIB, VIBY) */
    double zeta;      /* weight of the negative terms of the BIN loss */
    double lambda;    /* weight of MMCE in BINC */
    double mmce_bw;   /* MMCE kernel bandwidth */
    double beta;      /* weight of the KL term (VIB, VIBY) */
    int test_samples; /* latent samples averaged at test time (VIB, VIBY) */
};
struct oc_head_cfg oc_head_cfg_default(const char *head, int nclasses);

/* What a head exposes to losses and scorers. Tensors a head does not have
 * are OC_NONE. */
struct oc_head_out {
    oc_tensor logits;     /* [B,K] softmax-classifier logits: prediction = argmax */
    oc_tensor loss;       /* scalar training loss (when labels are given) */
    oc_tensor bin_logits; /* [B,K] sigmoid one-vs-rest logits (BIN, BINC) */
    oc_tensor mu, sd;     /* [B,Z] Gaussian posterior q(z|x) (VIB, VIBY) */
    oc_tensor prior_mu, prior_sd; /* [P,Z]: P = 1 (VIB) or K class priors (VIBY) */
    oc_tensor features;   /* [B,F] trunk features (Mahalanobis) */
};

/* A head is one registry entry: it builds its layers on the trunk's
 * features. labels (i32 [B]) is OC_NONE when no loss is wanted; step (i32
 * scalar) is the RNG counter for sampling heads. */
struct oc_head {
    const char *name;
    const char *summary;
    void (*build)(struct oc_graph *g, oc_tensor features, oc_tensor labels, oc_tensor step,
                  const struct oc_head_cfg *c, int train, struct oc_head_out *out);
};
/* NULL-terminated registry (models/heads.c) and lookup by name. */
extern const struct oc_head *const oc_heads[];
const struct oc_head *oc_head_find(const char *name);

/* ---------------------------------------------------------------- models */

/* A whole classifier: input normalization, Wide ResNet trunk, head. */
struct oc_model_cfg {
    struct oc_wrn_config wrn;
    const struct oc_head *head;
    struct oc_head_cfg hc;
};

/* Builds the model on raw images x (f32 [B,C,H,W] in [0,1]). The first op
 * normalizes per channel with the non-trained state "normalize.mean" and
 * "normalize.std" ([C], saved with the checkpoint), so every gradient w.r.t.
 * x, such as ODIN's, is in pixel units, and a deployed scorer takes raw
 * pixels. */
void oc_model_build(struct oc_graph *g, const struct oc_model_cfg *c, oc_tensor x,
                    oc_tensor labels, oc_tensor step, int train, struct oc_head_out *out);

/* ---------------------------------------------------------------- optimizer */

/* SGD with Nesterov momentum (PyTorch's torch.optim.SGD(nesterov=True,
 * dampening=0)): d = grad + wd * p; buf = mu * buf + d; p -= lr * (d + mu * buf).
 * Appends assigns for every param and its momentum state ("<name>.momentum_buffer").
 * lr is a scalar input of the param dtype, so one compiled step serves the
 * whole schedule. wd_mask[i] = 0 exempts param i from weight decay (NULL: all). */
void oc_sgd_nesterov(struct oc_graph *g, const oc_tensor *params, const oc_tensor *grads, int n,
                     oc_tensor lr, double momentum, double weight_decay, const int *wd_mask);

#endif
