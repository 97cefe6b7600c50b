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

/* SGD with Nesterov momentum (PyTorch's torch.optim.SGD(nesterov=True,
 * dampening=0)): d = grad + wd * p; buf = mu * buf + d; p -= lr * (d + mu * buf).
 * Appends assigns for every param and its momentum state ("<name>.momentum_buffer").
 * lr is a scalar input of the param dtype, so one compiled step serves the
 * whole schedule. wd_mask[i] = 0 exempts param i from weight decay (NULL: all). */
void oc_sgd_nesterov(struct oc_graph *g, const oc_tensor *params, const oc_tensor *grads, int n,
                     oc_tensor lr, double momentum, double weight_decay, const int *wd_mask);

#endif
