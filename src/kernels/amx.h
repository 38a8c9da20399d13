/* amx.h - the AMX tile configuration (palette 1) shared by the AMX kernels (q8x16.c: INT8,
 * bf16x3.c: BF16). A kernel fills rows/colsb for the tiles it uses and loads it with
 * _tile_loadconfig in each thread that runs tiles (the configuration is per thread), then
 * _tile_release when done. Availability: rs_cpu_amx_ready() and rs_cpu()'s amx_* flags. */
#ifndef RSMOE_KERNELS_AMX_H
#define RSMOE_KERNELS_AMX_H

#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} rs_amx_tilecfg;

/* palette 1, every tile unused (rows and colsb 0) */
static inline void rs_amx_tilecfg_init(rs_amx_tilecfg *c) {
    memset(c, 0, sizeof *c);
    c->palette = 1;
}

#endif
