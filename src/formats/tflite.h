/* tflite.h - a TensorFlow Lite flatbuffer reader (schema: tensorflow/lite/schema/schema.fbs),
 * hand-written in C, for importing quantised CNNs (MobileNet v1/v2) as float weights.
 *
 * Every offset of the flatbuffer (root, tables, vtables, vectors, strings, unions) is checked
 * against the file size before use: a truncated or corrupted file gives RSMOE_ERR_FORMAT with
 * a message naming the file and what is wrong, never a crash. Only the first subgraph is read.
 * Operators are parsed whatever their kind; rs_tflite_check_ops() refuses, by name, the ones
 * the CNN encoder cannot run. */
#ifndef RSMOE_FORMATS_TFLITE_H
#define RSMOE_FORMATS_TFLITE_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TensorType values of the schema */
enum {
    RS_TFL_FLOAT32 = 0, RS_TFL_FLOAT16 = 1, RS_TFL_INT32 = 2, RS_TFL_UINT8 = 3,
    RS_TFL_INT64 = 4, RS_TFL_STRING = 5, RS_TFL_BOOL = 6, RS_TFL_INT16 = 7,
    RS_TFL_COMPLEX64 = 8, RS_TFL_INT8 = 9,
};

/* BuiltinOperator values used by the CNN importer */
enum {
    RS_TFL_OP_ADD = 0, RS_TFL_OP_AVERAGE_POOL_2D = 1, RS_TFL_OP_CONV_2D = 3,
    RS_TFL_OP_DEPTHWISE_CONV_2D = 4, RS_TFL_OP_FULLY_CONNECTED = 9, RS_TFL_OP_RESHAPE = 22,
    RS_TFL_OP_SOFTMAX = 25, RS_TFL_OP_SQUEEZE = 43,
};

/* ActivationFunctionType values (also used by kernels/conv.h) */
enum { RS_TFL_ACT_NONE = 0, RS_TFL_ACT_RELU = 1, RS_TFL_ACT_RELU_N1_TO_1 = 2, RS_TFL_ACT_RELU6 = 3 };

#define RS_TFL_MAX_DIMS 8
#define RS_TFL_MAX_OP_IO 8

typedef struct {
    char name[RS_NAME_MAX];      /* truncated copy of the tensor's name */
    int type;                    /* RS_TFL_FLOAT32, ... */
    int ndim;
    int32_t shape[RS_TFL_MAX_DIMS];
    const uint8_t *data;         /* constant data inside the model (unaligned), or NULL */
    size_t nbytes;               /* bytes of data (== elements * element size when data) */
    int nq;                      /* number of (scale, zero point) pairs: 0, 1, or per channel */
    float *scale;                /* nq scales */
    int64_t *zero_point;         /* nq zero points */
    int qdim;                    /* quantized_dimension when nq > 1 */
} rs_tfl_tensor;

typedef struct {
    int builtin;                 /* BuiltinOperator */
    int ninputs, noutputs;
    int inputs[RS_TFL_MAX_OP_IO];    /* tensor indices; -1 = optional input absent */
    int outputs[RS_TFL_MAX_OP_IO];
    /* options (0 when not applicable) */
    int padding;                 /* 0 SAME, 1 VALID */
    int stride_w, stride_h, dilation_w, dilation_h;
    int depth_multiplier;
    int filter_w, filter_h;
    int activation;              /* RS_TFL_ACT_* */
    float beta;                  /* SOFTMAX */
} rs_tfl_op;

typedef struct {
    char path[256];
    uint8_t *file;               /* the whole file (owned) */
    size_t size;
    uint32_t version;
    int ntensors, nops, ninputs, noutputs;
    rs_tfl_tensor *tensors;
    rs_tfl_op *ops;
    int *inputs, *outputs;       /* subgraph input/output tensor indices */
} rs_tflite;

/* Reads and parses a .tflite file. On failure *out = NULL and an error is recorded. */
rsmoe_status rs_tflite_load(const char *path, rs_tflite **out);
/* Parses a buffer (copied); name is used in messages. */
rsmoe_status rs_tflite_parse(const void *data, size_t size, const char *name, rs_tflite **out);
void rs_tflite_free(rs_tflite *m);   /* NULL is fine */

/* "CONV_2D", ... for the known builtins, else NULL */
const char *rs_tflite_op_name(int builtin);
/* RSMOE_ERR_UNSUPPORTED naming the first operator that is not one of ADD, AVERAGE_POOL_2D,
 * CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, RESHAPE, SOFTMAX, SQUEEZE. */
rsmoe_status rs_tflite_check_ops(const rs_tflite *m);

int64_t rs_tflite_tensor_elements(const rs_tfl_tensor *t);

/* Dequantises constant tensor i into out (n floats, n must equal its element count):
 * uint8/int8: scale[c]*(q - zero_point[c]) with c the index along qdim when per channel;
 * int32 (biases): q * scale[c] (zero point must be 0), or q * fallback_scale[c] when the
 * tensor has no quantisation (fallback_scale may be NULL: then that is an error);
 * float32: copied. */
rsmoe_status rs_tflite_dequantize(const rs_tflite *m, int i, const float *fallback_scale,
                                  float *out, int64_t n);

#endif
