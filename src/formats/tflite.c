/* tflite.c - bounds-checked flatbuffer reader for TensorFlow Lite models.
 *
 * Flatbuffer binary layout (little-endian):
 *  - the file starts with a uoffset (u32) to the root table, then the 4-byte identifier "TFL3";
 *  - a table starts with an soffset (i32): its vtable is at table - soffset; the vtable is
 *    u16 vtable_bytes, u16 table_bytes, then one u16 per field: the field's offset from the
 *    table start, 0 = absent (default value);
 *  - a reference field (table, vector, string) holds a uoffset relative to the field itself;
 *  - a vector is u32 count followed by the elements (a vector of tables holds uoffsets,
 *    each relative to its own slot); a string is a byte vector (plus a NUL not counted);
 *  - a union takes two field slots: the u8 type, then the reference to the table.
 * Every position computed here is checked against the buffer before it is read. */
#include "formats/tflite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- flatbuffer reading */

typedef struct {
    const uint8_t *d;
    size_t n;
    const char *err;   /* first problem found */
} fb_buf;

static bool fb_fail(fb_buf *b, const char *what) {
    if (!b->err) b->err = what;
    return false;
}

static bool fb_has(const fb_buf *b, size_t pos, size_t len) {
    return pos <= b->n && len <= b->n - pos;
}

static bool fb_read(fb_buf *b, size_t pos, void *out, size_t len, const char *what) {
    if (!fb_has(b, pos, len)) return fb_fail(b, what);
    memcpy(out, b->d + pos, len);
    return true;
}

typedef struct {
    size_t pos;      /* table start */
    size_t vt;       /* vtable start */
    uint16_t vtlen;  /* vtable bytes */
    uint16_t tlen;   /* table bytes (inline part) */
} fb_table;

static bool fb_table_at(fb_buf *b, size_t pos, fb_table *t, const char *what) {
    int32_t soff;
    if (!fb_read(b, pos, &soff, 4, what)) return false;
    int64_t vt = (int64_t)pos - (int64_t)soff;
    if (vt < 0 || (uint64_t)vt > b->n) return fb_fail(b, what);
    uint16_t hdr[2];
    if (!fb_read(b, (size_t)vt, hdr, 4, what)) return false;
    if (hdr[0] < 4 || (hdr[0] & 1) || !fb_has(b, (size_t)vt, hdr[0]) || hdr[1] < 4 ||
        !fb_has(b, pos, hdr[1]))
        return fb_fail(b, what);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vtlen = hdr[0];
    t->tlen = hdr[1];
    return true;
}

/* absolute position of field idx holding `size` bytes, or 0 when absent; a field that does
 * not lie inside the table is an error (returns 0 with b->err set) */
static size_t fb_field(fb_buf *b, const fb_table *t, int idx, size_t size) {
    size_t o = 4 + 2 * (size_t)idx;
    if (o + 2 > t->vtlen) return 0;
    uint16_t fo;
    memcpy(&fo, b->d + t->vt + o, 2);
    if (fo == 0) return 0;
    if ((size_t)fo + size > t->tlen) {
        fb_fail(b, "field outside its table");
        return 0;
    }
    return t->pos + fo;
}

static int64_t fb_int(fb_buf *b, const fb_table *t, int idx, int size, bool is_signed, int64_t dflt) {
    size_t p = fb_field(b, t, idx, (size_t)size);
    if (!p) return dflt;
    uint8_t raw[8] = {0};
    memcpy(raw, b->d + p, (size_t)size);
    switch (size) {
    case 1: return is_signed ? (int64_t)(int8_t)raw[0] : (int64_t)raw[0];
    case 2: { uint16_t v; memcpy(&v, raw, 2); return is_signed ? (int64_t)(int16_t)v : (int64_t)v; }
    case 4: { uint32_t v; memcpy(&v, raw, 4); return is_signed ? (int64_t)(int32_t)v : (int64_t)v; }
    default: { int64_t v; memcpy(&v, raw, 8); return v; }
    }
}

static float fb_f32(fb_buf *b, const fb_table *t, int idx, float dflt) {
    size_t p = fb_field(b, t, idx, 4);
    if (!p) return dflt;
    float v;
    memcpy(&v, b->d + p, 4);
    return v;
}

/* follows the uoffset at pos; 0 on error */
static size_t fb_deref(fb_buf *b, size_t pos, const char *what) {
    uint32_t off;
    if (!fb_read(b, pos, &off, 4, what)) return 0;
    if (off == 0 || (uint64_t)pos + off >= b->n) {
        fb_fail(b, what);
        return 0;
    }
    return pos + off;
}

/* sub-table of field idx; false when absent (present=false) or bad (b->err set) */
static bool fb_subtable(fb_buf *b, const fb_table *t, int idx, fb_table *out, bool *present,
                        const char *what) {
    *present = false;
    size_t p = fb_field(b, t, idx, 4);
    if (!p) return false;
    size_t q = fb_deref(b, p, what);
    if (!q) return false;
    *present = true;
    return fb_table_at(b, q, out, what);
}

/* vector field idx: start of elements and count; absent -> count 0, true */
static bool fb_vector(fb_buf *b, const fb_table *t, int idx, size_t elem, size_t *start,
                      uint32_t *count, const char *what) {
    *start = 0;
    *count = 0;
    size_t p = fb_field(b, t, idx, 4);
    if (b->err) return false;
    if (!p) return true;
    size_t q = fb_deref(b, p, what);
    if (!q) return false;
    uint32_t n;
    if (!fb_read(b, q, &n, 4, what)) return false;
    if (!fb_has(b, q + 4, (size_t)n * elem)) return fb_fail(b, what);
    *start = q + 4;
    *count = n;
    return true;
}

/* element i of a vector of tables */
static bool fb_vec_table(fb_buf *b, size_t start, uint32_t i, fb_table *out, const char *what) {
    size_t q = fb_deref(b, start + 4 * (size_t)i, what);
    if (!q) return false;
    return fb_table_at(b, q, out, what);
}

static bool fb_string(fb_buf *b, const fb_table *t, int idx, char *out, size_t cap, const char *what) {
    size_t start;
    uint32_t n;
    out[0] = 0;
    if (!fb_vector(b, t, idx, 1, &start, &n, what)) return false;
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(out, b->d + start, k);
    out[k] = 0;
    return true;
}

static int32_t rd_i32(const uint8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

/* ---------------------------------------------------------------- model */

static const struct { int code; const char *name; } g_op_names[] = {
    {RS_TFL_OP_ADD, "ADD"}, {RS_TFL_OP_AVERAGE_POOL_2D, "AVERAGE_POOL_2D"},
    {2, "CONCATENATION"}, {RS_TFL_OP_CONV_2D, "CONV_2D"},
    {RS_TFL_OP_DEPTHWISE_CONV_2D, "DEPTHWISE_CONV_2D"}, {6, "DEQUANTIZE"},
    {RS_TFL_OP_FULLY_CONNECTED, "FULLY_CONNECTED"}, {14, "LOGISTIC"}, {17, "MAX_POOL_2D"},
    {18, "MUL"}, {19, "RELU"}, {21, "RELU6"}, {RS_TFL_OP_RESHAPE, "RESHAPE"},
    {23, "RESIZE_BILINEAR"}, {RS_TFL_OP_SOFTMAX, "SOFTMAX"}, {28, "TANH"}, {32, "CUSTOM"},
    {34, "PAD"}, {39, "TRANSPOSE"}, {40, "MEAN"}, {41, "SUB"}, {RS_TFL_OP_SQUEEZE, "SQUEEZE"},
    {45, "STRIDED_SLICE"}, {49, "SPLIT"}, {53, "CAST"}, {83, "PACK"}, {114, "QUANTIZE"},
    {117, "HARD_SWISH"},
};

const char *rs_tflite_op_name(int builtin) {
    for (size_t i = 0; i < sizeof g_op_names / sizeof g_op_names[0]; i++)
        if (g_op_names[i].code == builtin) return g_op_names[i].name;
    return NULL;
}

rsmoe_status rs_tflite_check_ops(const rs_tflite *m) {
    for (int i = 0; i < m->nops; i++) {
        int c = m->ops[i].builtin;
        if (c == RS_TFL_OP_ADD || c == RS_TFL_OP_AVERAGE_POOL_2D || c == RS_TFL_OP_CONV_2D ||
            c == RS_TFL_OP_DEPTHWISE_CONV_2D || c == RS_TFL_OP_FULLY_CONNECTED ||
            c == RS_TFL_OP_RESHAPE || c == RS_TFL_OP_SOFTMAX || c == RS_TFL_OP_SQUEEZE)
            continue;
        const char *nm = rs_tflite_op_name(c);
        if (nm) return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: operator %d is %s, which the CNN encoder does not support",
                                m->path, i, nm);
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: operator %d is builtin code %d, which the CNN encoder does not support",
                        m->path, i, c);
    }
    return RSMOE_OK;
}

static size_t tfl_type_size(int type) {
    switch (type) {
    case RS_TFL_FLOAT32: case RS_TFL_INT32: return 4;
    case RS_TFL_FLOAT16: case RS_TFL_INT16: return 2;
    case RS_TFL_UINT8: case RS_TFL_INT8: case RS_TFL_BOOL: return 1;
    case RS_TFL_INT64: case RS_TFL_COMPLEX64: return 8;
    default: return 0;
    }
}

int64_t rs_tflite_tensor_elements(const rs_tfl_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

void rs_tflite_free(rs_tflite *m) {
    if (!m) return;
    if (m->tensors)
        for (int i = 0; i < m->ntensors; i++) {
            free(m->tensors[i].scale);
            free(m->tensors[i].zero_point);
        }
    free(m->tensors);
    free(m->ops);
    free(m->inputs);
    free(m->outputs);
    free(m->file);
    free(m);
}

/* reads an int vector field into a freshly allocated array */
static bool read_int_vec(fb_buf *b, const fb_table *t, int idx, int **out, int *n, const char *what) {
    size_t s;
    uint32_t c;
    *out = NULL;
    *n = 0;
    if (!fb_vector(b, t, idx, 4, &s, &c, what)) return false;
    if (c > (1u << 24)) return fb_fail(b, what);
    *out = malloc((c ? c : 1) * sizeof(int));
    if (!*out) return fb_fail(b, "out of memory");
    for (uint32_t i = 0; i < c; i++) (*out)[i] = rd_i32(b->d + s + 4 * (size_t)i);
    *n = (int)c;
    return true;
}

static bool parse_tensor(fb_buf *b, const fb_table *tt, rs_tfl_tensor *t, size_t bufvec,
                         uint32_t nbuf) {
    size_t s;
    uint32_t c;
    /* Tensor: 0 shape, 1 type, 2 buffer, 3 name, 4 quantization, 5 is_variable */
    if (!fb_vector(b, tt, 0, 4, &s, &c, "tensor shape")) return false;
    if (c > RS_TFL_MAX_DIMS) return fb_fail(b, "tensor with more than 8 dimensions");
    t->ndim = (int)c;
    int64_t nel = 1;
    for (uint32_t d = 0; d < c; d++) {
        t->shape[d] = rd_i32(b->d + s + 4 * (size_t)d);
        if (t->shape[d] < 0 || t->shape[d] > (1 << 28)) return fb_fail(b, "tensor dimension out of range");
        nel *= t->shape[d];
        if (nel > ((int64_t)1 << 40)) return fb_fail(b, "tensor too large");
    }
    t->type = (int)fb_int(b, tt, 1, 1, true, 0);
    uint32_t bi = (uint32_t)fb_int(b, tt, 2, 4, false, 0);
    if (!fb_string(b, tt, 3, t->name, sizeof t->name, "tensor name")) return false;
    if (b->err) return false;
    if (bi >= nbuf && bi != 0) return fb_fail(b, "tensor buffer index out of range");
    if (bi != 0 || nbuf > 0) {
        fb_table bt;
        if (bi < nbuf) {
            if (!fb_vec_table(b, bufvec, bi, &bt, "buffer table")) return false;
            /* Buffer: 0 data, 1 offset (u64), 2 size (u64) for >2 GB models */
            if (!fb_vector(b, &bt, 0, 1, &s, &c, "buffer data")) return false;
            if (c > 0) {
                t->data = b->d + s;
                t->nbytes = c;
                size_t es = tfl_type_size(t->type);
                if (es == 0 || (uint64_t)nel * es != c)
                    return fb_fail(b, "constant tensor data size does not match its shape and type");
            } else if (fb_int(b, &bt, 1, 8, false, 0) > 1) {
                return fb_fail(b, "external (offset) buffers of >2 GB models are not supported");
            }
        }
    }
    fb_table qt;
    bool present;
    if (fb_subtable(b, tt, 4, &qt, &present, "quantization table")) {
        /* QuantizationParameters: 0 min, 1 max, 2 scale, 3 zero_point, 4 details_type,
         * 5 details, 6 quantized_dimension */
        size_t ss, zs;
        uint32_t sc, zc;
        if (!fb_vector(b, &qt, 2, 4, &ss, &sc, "quantization scale")) return false;
        if (!fb_vector(b, &qt, 3, 8, &zs, &zc, "quantization zero point")) return false;
        if (fb_int(b, &qt, 4, 1, false, 0) != 0)
            return fb_fail(b, "custom quantization details are not supported");
        if (sc > 0) {
            if (zc != 0 && zc != sc) return fb_fail(b, "quantization scale and zero point counts differ");
            if (sc > (1u << 20)) return fb_fail(b, "too many quantization scales");
            t->nq = (int)sc;
            t->scale = malloc(sc * sizeof(float));
            t->zero_point = calloc(sc, sizeof(int64_t));
            if (!t->scale || !t->zero_point) return fb_fail(b, "out of memory");
            memcpy(t->scale, b->d + ss, sc * sizeof(float));
            if (zc) memcpy(t->zero_point, b->d + zs, zc * sizeof(int64_t));
            t->qdim = (int)fb_int(b, &qt, 6, 4, true, 0);
            for (uint32_t k = 0; k < sc; k++)
                if (!(t->scale[k] > 0) || !(t->scale[k] < 1e30f))
                    return fb_fail(b, "quantization scale not a positive finite number");
            if (sc > 1 && (t->qdim < 0 || t->qdim >= t->ndim || t->shape[t->qdim] != (int32_t)sc))
                return fb_fail(b, "per-channel quantization does not match the tensor shape");
        }
    } else if (present || b->err) {
        return false;
    }
    return !b->err;
}

static bool parse_op(fb_buf *b, const fb_table *ot, rs_tfl_op *op, const int *codes, uint32_t ncodes,
                     int ntensors) {
    /* Operator: 0 opcode_index, 1 inputs, 2 outputs, 3 builtin_options_type, 4 builtin_options */
    uint32_t oi = (uint32_t)fb_int(b, ot, 0, 4, false, 0);
    if (oi >= ncodes) return fb_fail(b, "operator code index out of range");
    op->builtin = codes[oi];
    for (int io = 0; io < 2; io++) {
        size_t s;
        uint32_t c;
        if (!fb_vector(b, ot, 1 + io, 4, &s, &c, "operator inputs/outputs")) return false;
        if (c > RS_TFL_MAX_OP_IO) return fb_fail(b, "operator with too many inputs or outputs");
        int *dst = io ? op->outputs : op->inputs;
        for (uint32_t k = 0; k < c; k++) {
            dst[k] = rd_i32(b->d + s + 4 * (size_t)k);
            if (dst[k] < -1 || dst[k] >= ntensors) return fb_fail(b, "operator tensor index out of range");
        }
        if (io) op->noutputs = (int)c; else op->ninputs = (int)c;
    }
    op->dilation_w = op->dilation_h = 1;
    op->depth_multiplier = 1;
    fb_table opt;
    bool present;
    int otype = (int)fb_int(b, ot, 3, 1, false, 0);
    if (!fb_subtable(b, ot, 4, &opt, &present, "operator options")) {
        if (b->err) return false;
        return true;   /* no options: defaults */
    }
    /* union member ids = position in BuiltinOptions + 1 */
    switch (op->builtin) {
    case RS_TFL_OP_CONV_2D:
        if (otype != 1) return fb_fail(b, "CONV_2D without Conv2DOptions");
        op->padding = (int)fb_int(b, &opt, 0, 1, true, 0);
        op->stride_w = (int)fb_int(b, &opt, 1, 4, true, 0);
        op->stride_h = (int)fb_int(b, &opt, 2, 4, true, 0);
        op->activation = (int)fb_int(b, &opt, 3, 1, true, 0);
        op->dilation_w = (int)fb_int(b, &opt, 4, 4, true, 1);
        op->dilation_h = (int)fb_int(b, &opt, 5, 4, true, 1);
        break;
    case RS_TFL_OP_DEPTHWISE_CONV_2D:
        if (otype != 2) return fb_fail(b, "DEPTHWISE_CONV_2D without DepthwiseConv2DOptions");
        op->padding = (int)fb_int(b, &opt, 0, 1, true, 0);
        op->stride_w = (int)fb_int(b, &opt, 1, 4, true, 0);
        op->stride_h = (int)fb_int(b, &opt, 2, 4, true, 0);
        op->depth_multiplier = (int)fb_int(b, &opt, 3, 4, true, 1);
        op->activation = (int)fb_int(b, &opt, 4, 1, true, 0);
        op->dilation_w = (int)fb_int(b, &opt, 5, 4, true, 1);
        op->dilation_h = (int)fb_int(b, &opt, 6, 4, true, 1);
        break;
    case RS_TFL_OP_AVERAGE_POOL_2D:
        if (otype != 5) return fb_fail(b, "AVERAGE_POOL_2D without Pool2DOptions");
        op->padding = (int)fb_int(b, &opt, 0, 1, true, 0);
        op->stride_w = (int)fb_int(b, &opt, 1, 4, true, 0);
        op->stride_h = (int)fb_int(b, &opt, 2, 4, true, 0);
        op->filter_w = (int)fb_int(b, &opt, 3, 4, true, 0);
        op->filter_h = (int)fb_int(b, &opt, 4, 4, true, 0);
        op->activation = (int)fb_int(b, &opt, 5, 1, true, 0);
        break;
    case RS_TFL_OP_FULLY_CONNECTED:
        if (otype != 8) return fb_fail(b, "FULLY_CONNECTED without FullyConnectedOptions");
        op->activation = (int)fb_int(b, &opt, 0, 1, true, 0);
        if (fb_int(b, &opt, 1, 1, true, 0) != 0) return fb_fail(b, "shuffled FULLY_CONNECTED weights are not supported");
        break;
    case RS_TFL_OP_SOFTMAX:
        if (otype != 9) return fb_fail(b, "SOFTMAX without SoftmaxOptions");
        op->beta = fb_f32(b, &opt, 0, 0.f);
        break;
    case RS_TFL_OP_ADD:
        if (otype != 11) return fb_fail(b, "ADD without AddOptions");
        op->activation = (int)fb_int(b, &opt, 0, 1, true, 0);
        break;
    default:
        break;
    }
    return !b->err;
}

rsmoe_status rs_tflite_parse(const void *data, size_t size, const char *name, rs_tflite **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!data || size < 16) return rs_error(RSMOE_ERR_FORMAT, "%s: too short for a TFLite file (%zu bytes)", name, size);
    if (size > ((size_t)1 << 31)) return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: TFLite files over 2 GiB are not supported", name);
    if (memcmp((const uint8_t *)data + 4, "TFL3", 4) != 0)
        return rs_error(RSMOE_ERR_FORMAT, "%s: not a TFLite flatbuffer (identifier is not \"TFL3\")", name);
    rs_tflite *m = calloc(1, sizeof *m);
    if (!m) return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", name);
    snprintf(m->path, sizeof m->path, "%s", name);
    m->file = malloc(size);
    if (!m->file) {
        rs_tflite_free(m);
        return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", name);
    }
    memcpy(m->file, data, size);
    m->size = size;
    fb_buf b = {m->file, size, NULL};
    int *codes = NULL;
    fb_table root, sg;
    size_t s, bufvec;
    uint32_t c, nbuf;
    bool ok = false;

    size_t rp = fb_deref(&b, 0, "root offset");
    if (!rp || !fb_table_at(&b, rp, &root, "root table")) goto done;
    /* Model: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers */
    m->version = (uint32_t)fb_int(&b, &root, 0, 4, false, 0);
    if (m->version != 3) { fb_fail(&b, "schema version is not 3"); goto done; }
    if (!fb_vector(&b, &root, 1, 4, &s, &c, "operator codes")) goto done;
    codes = malloc((c ? c : 1) * sizeof(int));
    if (!codes) { fb_fail(&b, "out of memory"); goto done; }
    uint32_t ncodes = c;
    for (uint32_t i = 0; i < c; i++) {
        fb_table oc;
        if (!fb_vec_table(&b, s, i, &oc, "operator code")) goto done;
        /* OperatorCode: 0 deprecated_builtin_code (byte), 1 custom_code, 2 version,
         * 3 builtin_code (int, newer files); the larger of the two is the code */
        int64_t c0 = fb_int(&b, &oc, 0, 1, true, 0), c3 = fb_int(&b, &oc, 3, 4, true, 0);
        codes[i] = (int)(c3 > c0 ? c3 : c0);
        if (codes[i] < 0) { fb_fail(&b, "negative operator code"); goto done; }
    }
    if (!fb_vector(&b, &root, 4, 4, &bufvec, &nbuf, "buffers")) goto done;
    if (!fb_vector(&b, &root, 2, 4, &s, &c, "subgraphs")) goto done;
    if (c < 1) { fb_fail(&b, "no subgraph"); goto done; }
    if (!fb_vec_table(&b, s, 0, &sg, "subgraph")) goto done;
    /* SubGraph: 0 tensors, 1 inputs, 2 outputs, 3 operators, 4 name */
    if (!fb_vector(&b, &sg, 0, 4, &s, &c, "tensors")) goto done;
    m->ntensors = (int)c;
    m->tensors = calloc(c ? c : 1, sizeof *m->tensors);
    if (!m->tensors) { fb_fail(&b, "out of memory"); goto done; }
    for (uint32_t i = 0; i < c; i++) {
        fb_table tt;
        if (!fb_vec_table(&b, s, i, &tt, "tensor")) goto done;
        if (!parse_tensor(&b, &tt, &m->tensors[i], bufvec, nbuf)) goto done;
    }
    if (!read_int_vec(&b, &sg, 1, &m->inputs, &m->ninputs, "subgraph inputs")) goto done;
    if (!read_int_vec(&b, &sg, 2, &m->outputs, &m->noutputs, "subgraph outputs")) goto done;
    for (int i = 0; i < m->ninputs; i++)
        if (m->inputs[i] < 0 || m->inputs[i] >= m->ntensors) { fb_fail(&b, "subgraph input out of range"); goto done; }
    for (int i = 0; i < m->noutputs; i++)
        if (m->outputs[i] < 0 || m->outputs[i] >= m->ntensors) { fb_fail(&b, "subgraph output out of range"); goto done; }
    if (!fb_vector(&b, &sg, 3, 4, &s, &c, "operators")) goto done;
    m->nops = (int)c;
    m->ops = calloc(c ? c : 1, sizeof *m->ops);
    if (!m->ops) { fb_fail(&b, "out of memory"); goto done; }
    for (uint32_t i = 0; i < c; i++) {
        fb_table ot;
        if (!fb_vec_table(&b, s, i, &ot, "operator")) goto done;
        if (!parse_op(&b, &ot, &m->ops[i], codes, ncodes, m->ntensors)) goto done;
    }
    ok = !b.err;
done:
    free(codes);
    if (!ok) {
        const char *why = b.err ? b.err : "malformed";
        rsmoe_status st = strcmp(why, "out of memory") == 0 ? RSMOE_ERR_NOMEM : RSMOE_ERR_FORMAT;
        if (strstr(why, "not supported")) st = RSMOE_ERR_UNSUPPORTED;
        char nm[256];
        snprintf(nm, sizeof nm, "%s", name);
        rs_tflite_free(m);
        return rs_error(st, "%s: corrupt or truncated TFLite file: %s", nm, why);
    }
    *out = m;
    return RSMOE_OK;
}

rsmoe_status rs_tflite_load(const char *path, rs_tflite **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rs_error(RSMOE_ERR_IO, "%s: cannot open", path);
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : (1 << 20);
            if (nc > ((size_t)1 << 32)) { free(buf); fclose(f); return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: file too large", path); }
            uint8_t *nb = realloc(buf, nc);
            if (!nb) { free(buf); fclose(f); return rs_error(RSMOE_ERR_NOMEM, "%s: out of memory", path); }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) { free(buf); return rs_error(RSMOE_ERR_IO, "%s: read error", path); }
    rsmoe_status st = rs_tflite_parse(buf, n, path, out);
    free(buf);
    return st;
}

rsmoe_status rs_tflite_dequantize(const rs_tflite *m, int i, const float *fallback_scale,
                                  float *out, int64_t n) {
    if (i < 0 || i >= m->ntensors) return rs_error(RSMOE_ERR_INVALID_ARG, "%s: tensor %d out of range", m->path, i);
    const rs_tfl_tensor *t = &m->tensors[i];
    int64_t nel = rs_tflite_tensor_elements(t);
    if (!t->data) return rs_error(RSMOE_ERR_FORMAT, "%s: tensor %d (%s) has no constant data", m->path, i, t->name);
    if (nel != n) return rs_error(RSMOE_ERR_INVALID_ARG, "%s: tensor %s has %lld elements, not %lld", m->path, t->name,
                                  (long long)nel, (long long)n);
    /* index along the quantized dimension: (e / inner) % channels */
    int64_t inner = 1, chans = 1;
    if (t->nq > 1) {
        for (int d = t->qdim + 1; d < t->ndim; d++) inner *= t->shape[d];
        chans = t->shape[t->qdim];
    }
    switch (t->type) {
    case RS_TFL_FLOAT32:
        memcpy(out, t->data, (size_t)n * 4);
        return RSMOE_OK;
    case RS_TFL_UINT8:
    case RS_TFL_INT8:
        if (t->nq < 1) return rs_error(RSMOE_ERR_FORMAT, "%s: quantised tensor %s has no scale", m->path, t->name);
        for (int64_t e = 0; e < n; e++) {
            int64_t c = t->nq > 1 ? (e / inner) % chans : 0;
            int q = t->type == RS_TFL_UINT8 ? (int)t->data[e] : (int)(int8_t)t->data[e];
            out[e] = (float)((double)t->scale[c] * (double)(q - t->zero_point[c]));
        }
        return RSMOE_OK;
    case RS_TFL_INT32: {
        const float *sc = t->nq > 0 ? t->scale : fallback_scale;
        if (!sc) return rs_error(RSMOE_ERR_FORMAT, "%s: int32 tensor %s has no scale", m->path, t->name);
        bool per = t->nq > 1 || (t->nq == 0);
        if (t->nq == 0) { inner = 1; chans = n; }
        for (int64_t e = 0; e < n; e++) {
            int64_t c = per ? (e / inner) % chans : 0;
            int64_t zp = t->nq > 0 ? t->zero_point[c] : 0;
            if (zp != 0) return rs_error(RSMOE_ERR_FORMAT, "%s: int32 tensor %s has a non-zero zero point", m->path, t->name);
            out[e] = (float)((double)sc[c] * (double)rd_i32(t->data + 4 * e));
        }
        return RSMOE_OK;
    }
    default:
        return rs_error(RSMOE_ERR_UNSUPPORTED, "%s: tensor %s of TFLite type %d cannot be dequantised", m->path, t->name, t->type);
    }
}
