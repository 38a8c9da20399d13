/* dtype.c - element types, half/bfloat16 conversion, tensor shapes. */
#include "core/core.h"

#include <string.h>

const char *rs_dtype_name(rs_dtype t) {
    switch (t) {
    case RS_F32: return "f32";
    case RS_F16: return "f16";
    case RS_BF16: return "bf16";
    case RS_Q8_0: return "q8_0";
    }
    return NULL;
}

bool rs_dtype_valid(int t) { return t == RS_F32 || t == RS_F16 || t == RS_BF16 || t == RS_Q8_0; }

size_t rs_dtype_block(rs_dtype t) { return t == RS_Q8_0 ? RS_QK8_0 : 1; }

size_t rs_dtype_block_bytes(rs_dtype t) {
    switch (t) {
    case RS_F32: return 4;
    case RS_F16: case RS_BF16: return 2;
    case RS_Q8_0: return sizeof(rs_block_q8_0);
    }
    return 0;
}

size_t rs_row_bytes(rs_dtype t, int64_t n) {
    return (size_t)(n / (int64_t)rs_dtype_block(t)) * rs_dtype_block_bytes(t);
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float rs_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return u2f(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (man << 13));
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t rs_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {                                   /* below 2^-14: subnormal or 0 */
        /* value / 2^-24, rounded to nearest even */
        float v = u2f(ax) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t e = ((ax >> 23) - 112) << 10;
    uint32_t m = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

uint16_t rs_f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

rsmoe_status rs_tensor_init(rs_tensor *t, const char *name, rs_dtype type, int ndim,
                            const int64_t *ne, void *data) {
    memset(t, 0, sizeof *t);
    if (name) {
        if (strlen(name) >= RS_NAME_MAX)
            return rs_error(RSMOE_ERR_INVALID_ARG, "tensor name too long: %.40s...", name);
        strcpy(t->name, name);
    }
    if (!rs_dtype_valid((int)type))
        return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: unknown dtype %d", t->name, (int)type);
    if (ndim < 1 || ndim > RS_MAX_DIMS)
        return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: %d dimensions (1..%d allowed)",
                        t->name, ndim, RS_MAX_DIMS);
    t->type = type;
    t->ndim = ndim;
    for (int i = 0; i < RS_MAX_DIMS; i++) t->ne[i] = i < ndim ? ne[i] : 1;
    for (int i = 0; i < ndim; i++)
        if (ne[i] <= 0 || ne[i] > ((int64_t)1 << 40))
            return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: bad dimension %d = %lld", t->name,
                            i, (long long)ne[i]);
    if (ne[0] % (int64_t)rs_dtype_block(type))
        return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: row of %lld not a multiple of %zu for %s",
                        t->name, (long long)ne[0], rs_dtype_block(type), rs_dtype_name(type));
    t->nb[0] = rs_dtype_block_bytes(type);
    t->nb[1] = rs_row_bytes(type, t->ne[0]);
    for (int i = 2; i < RS_MAX_DIMS; i++) {
        if (t->nb[i - 1] > ((size_t)1 << 50) / (size_t)t->ne[i - 1])
            return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: size overflows", t->name);
        t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
    }
    if (t->nb[3] > ((size_t)1 << 50) / (size_t)t->ne[3])
        return rs_error(RSMOE_ERR_INVALID_ARG, "tensor %s: size overflows", t->name);
    t->data = data;
    return RSMOE_OK;
}

int64_t rs_tensor_nelements(const rs_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

size_t rs_tensor_nbytes(const rs_tensor *t) { return t->nb[3] * (size_t)t->ne[3]; }

bool rs_tensor_is_contiguous(const rs_tensor *t) {
    if (t->nb[0] != rs_dtype_block_bytes(t->type)) return false;
    if (t->nb[1] != rs_row_bytes(t->type, t->ne[0])) return false;
    for (int i = 2; i < RS_MAX_DIMS; i++)
        if (t->nb[i] != t->nb[i - 1] * (size_t)t->ne[i - 1]) return false;
    return true;
}
