/* ood.h - the experiment layer: datasets, metrics (and later the trainer,
 * evaluation and report). */
#ifndef OODC_OOD_H
#define OODC_OOD_H

#include "data.h"
#include "eval.h"
#include "metrics.h"
#include "train.h"

#endif
