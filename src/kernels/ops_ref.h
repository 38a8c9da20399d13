/* ops_ref.h - plain double-precision reference twins of the kernels in ops.h.
 * Same shapes and meaning as the float kernels, written as the obvious loops (no
 * threading, no tricks) so that tests can compare the optimised kernels with them and
 * take central finite differences through them. Forward only: backward kernels are
 * tested against finite differences of these. Outputs never alias inputs. */
#ifndef RSMOE_KERNELS_OPS_REF_H
#define RSMOE_KERNELS_OPS_REF_H

#include "kernels/ops.h"

void rs_linear_ref(double *y, const double *x, const double *W, const double *b, int64_t T,
                   int64_t in, int64_t out);
/* rs_lora_rows_fwd's twin (float in and out, double sums) */
void rs_lora_rows_fwd_ref(const float *x, int64_t in, int R, const rs_lora_rows_target *tg, int n_targets);
void rs_lora_ref(double *y, const double *x, const double *W, const double *b,
                 const double *A, const double *B, double alpha, int64_t T, int64_t in,
                 int64_t out, int64_t r);
void rs_layernorm_ref(double *y, const double *x, const double *w, const double *b,
                      int64_t T, int64_t C, double eps);
void rs_rmsnorm_ref(double *y, const double *x, const double *w, int64_t T, int64_t C,
                    double eps);
double rs_gelu_ref(double x);
double rs_gelu_tanh_ref(double x);
double rs_silu_ref(double x);
void rs_softmax_ref(double *y, const double *x, int64_t rows, int64_t cols, double scale);
/* probs [Hq,Tq,Tk] may be NULL; Tk <= 4096 (larger: out is all NaN) */
void rs_attn_ref(double *out, double *probs, const double *q, const double *k,
                 const double *v, const rs_attn_desc *a);
/* y = rope(x), not in place; dense [T, H*d] */
void rs_rope_ref(double *y, const double *x, const int32_t *pos, int64_t pos0, int64_t T,
                 int64_t H, int64_t d, const rs_rope_cfg *c);
void rs_embedding_ref(double *y, const double *table, const int32_t *ids, int64_t T,
                      int64_t C);
/* direct convolution loops (no unfolding) */
void rs_patch_embed_ref(double *out, const double *img, int64_t B, int64_t Cin, int64_t H,
                        int64_t W, int64_t P, int64_t width, const double *Wt,
                        const double *b);
/* mean loss over non-ignored rows, 0 when all are ignored */
double rs_cross_entropy_ref(const double *logits, const int32_t *targets, int64_t T,
                            int64_t V, int32_t ignore_index);
void rs_adamw_ref(double *p, const double *g, double *m, double *v, int64_t n, int64_t step,
                  const rs_adamw_cfg *c);

#endif
