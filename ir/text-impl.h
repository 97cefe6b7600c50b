/* text-impl.h - what the IR's printer (print.c), parser (parse.c) and DOT
 * writer (dot.c) share: the attribute keys of the text form, which ops take
 * which, and how one node is spelled. Private to ir/. */
#ifndef OODC_TEXT_IMPL_H
#define OODC_TEXT_IMPL_H

#include "ir.h"

/* Attribute keys in print order: a node prints the keys its op takes in this
 * order, then label. */
enum oc_text_key {
    OC_TK_INIT,
    OC_TK_A,
    OC_TK_B,
    OC_TK_SEED,
    OC_TK_PERM,
    OC_TK_START,
    OC_TK_STOP,
    OC_TK_STEP,
    OC_TK_LO,
    OC_TK_HI,
    OC_TK_VALUE,
    OC_TK_AXIS,
    OC_TK_DEPTH,
    OC_TK_AXES,
    OC_TK_KEEPDIMS,
    OC_TK_TRANS_A,
    OC_TK_TRANS_B,
    OC_TK_STRIDE,
    OC_TK_PADDING,
    OC_TK_LABEL, /* any op */
    OC_TK_COUNT
};

extern const char *const oc_text_key_names[OC_TK_COUNT];
/* Bit mask (1u << key) of the keys op takes, label excluded. */
unsigned oc_text_op_keys(enum oc_op op);
/* 1 if s is a bare identifier [A-Za-z_][A-Za-z0-9_.]* */
int oc_text_is_ident(const char *s);

/* s as a double-quoted string with C escapes. */
void oc_text_print_string(FILE *f, const char *s);
/* %.17g, with inf, -inf, nan, -nan spelled the same on every libc. */
void oc_text_print_double(FILE *f, double v);
/* dtype[d0,d1,...] */
void oc_text_print_type(FILE *f, enum oc_dtype dt, const struct oc_shape *s);
/* A node's line without "%id = " and " : type": op name, operands (when
 * with_operands), positional value, attributes, label. Const data longer
 * than max_data values (max_data >= 0) is abbreviated to "[N values]",
 * which is not parseable: for display only. */
void oc_text_print_node(FILE *f, const struct oc_node *n, int with_operands, int64_t max_data);

#endif
