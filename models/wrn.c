/* wrn.c - the Wide ResNet trunk as a DSL graph (Zagoruyko & Komodakis 2016,
 * the configuration the paper trains): pre-activation basic blocks
 * BN-ReLU-conv3x3-BN-ReLU-conv3x3 with a 1x1 shortcut convolution where the
 * shape changes, a final BN-ReLU and global average pooling. */
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum oc_status oc_wrn_parse(const char *spec, struct oc_wrn_config *c, struct oc_err *err)
{
    int d = 0, w = 0, n = 0;
    if (sscanf(spec, "wrn-%d-%d%n", &d, &w, &n) != 2 || spec[n] != 0)
        return oc_err_set(err, OC_ERR_INVALID, "unknown model '%s' (expected wrn-DEPTH-WIDTH, e.g. wrn-16-4)", spec);
    if (d < 10 || (d - 4) % 6 != 0 || w < 1 || w > 64)
        return oc_err_set(err, OC_ERR_INVALID,
                          "model '%s': depth must be 6n+4 >= 10 and width in 1..64", spec);
    c->depth = d;
    c->width = w;
    return OC_OK;
}

int oc_wrn_features(const struct oc_wrn_config *c) { return 64 * c->width; }

/* A conv weight [out, in, k, k] with the WRN reference initialization:
 * normal(0, sqrt(2 / (k*k*out))) (Kaiming, fan-out). */
static oc_tensor conv_weight(struct oc_graph *g, const char *name, enum oc_dtype dt, int out, int in,
                             int k)
{
    return oc_param(g, name, dt, OC_SHAPE(out, in, k, k), OC_INIT_KAIMING_NORMAL,
                    (double)(k * k * out), 0);
}

static oc_tensor block(struct oc_graph *g, const char *p, oc_tensor x, int in, int out,
                       int stride, int train)
{
    enum oc_dtype dt = g->nodes[x.id]->dtype;
    char n[256];
    snprintf(n, sizeof n, "%s.bn1", p);
    oc_tensor o1 = oc_relu(g, oc_batchnorm_layer(g, n, x, train));
    snprintf(n, sizeof n, "%s.conv1.weight", p);
    oc_tensor y = oc_conv2d(g, o1, conv_weight(g, n, dt, out, in, 3), stride, 1);
    snprintf(n, sizeof n, "%s.bn2", p);
    oc_tensor o2 = oc_relu(g, oc_batchnorm_layer(g, n, y, train));
    snprintf(n, sizeof n, "%s.conv2.weight", p);
    oc_tensor z = oc_conv2d(g, o2, conv_weight(g, n, dt, out, out, 3), 1, 1);
    oc_tensor shortcut = x;
    if (in != out || stride != 1) {
        /* as in the reference code, the projection reads the activated input */
        snprintf(n, sizeof n, "%s.convShortcut.weight", p);
        shortcut = oc_conv2d(g, o1, conv_weight(g, n, dt, out, in, 1), stride, 0);
    }
    return oc_add(g, z, shortcut);
}

oc_tensor oc_wrn_trunk(struct oc_graph *g, const struct oc_wrn_config *c, oc_tensor x, int train)
{
    if (!oc_valid(x) || g->err.code) return OC_NONE;
    enum oc_dtype dt = g->nodes[x.id]->dtype;
    int nb = (c->depth - 4) / 6;
    int widths[4] = {16, 16 * c->width, 32 * c->width, 64 * c->width};
    oc_tensor h = oc_conv2d(g, x, conv_weight(g, "conv1.weight", dt, 16, c->in_ch, 3), 1, 1);
    for (int gi = 0; gi < 3; gi++) {
        for (int b = 0; b < nb; b++) {
            char p[64];
            snprintf(p, sizeof p, "block%d.layer.%d", gi + 1, b);
            int in = b == 0 ? widths[gi] : widths[gi + 1];
            int stride = (b == 0 && gi > 0) ? 2 : 1;
            h = block(g, p, h, in, widths[gi + 1], stride, train);
        }
    }
    h = oc_relu(g, oc_batchnorm_layer(g, "bn1", h, train));
    return oc_global_avg_pool(g, h);
}
