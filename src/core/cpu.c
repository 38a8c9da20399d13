/* cpu.c - runtime CPU feature detection (cpuid + xgetbv) and the system-info line. */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static rs_cpu_features g_cpu;
static int g_cpu_done;

static void detect(void) {
    memset(&g_cpu, 0, sizeof g_cpu);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        char v[13];
        memcpy(v, &b, 4), memcpy(v + 4, &d, 4), memcpy(v + 8, &c, 4), v[12] = 0;
        g_cpu.amd = !strcmp(v, "AuthenticAMD") || !strcmp(v, "HygonGenuine");
    }
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1;
    bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    uint64_t xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((uint64_t)hi << 32) | lo;
    }
    bool ymm_ok = (xcr0 & 6) == 6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
    if (!avx || !ymm_ok) return;
    g_cpu.fma = fma;
    g_cpu.f16c = f16c;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        g_cpu.avx2 = (b >> 5) & 1;
        if (zmm_ok) {
            g_cpu.avx512f = (b >> 16) & 1;
            g_cpu.avx512bw = (b >> 30) & 1;
            g_cpu.avx512vl = (b >> 31) & 1;
            g_cpu.avx512_vnni = (c >> 11) & 1;
        }
        /* AMX-TILE (edx 24) and AMX-INT8 (edx 25), with XTILECFG and XTILEDATA (bits 17, 18)
         * enabled in XCR0 */
        g_cpu.amx_int8 = ((d >> 24) & 1) && ((d >> 25) & 1) && ((xcr0 >> 17) & 3) == 3;
        /* AMX-BF16: edx 22 */
        g_cpu.amx_bf16 = ((d >> 24) & 1) && ((d >> 22) & 1) && ((xcr0 >> 17) & 3) == 3;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        g_cpu.avx_vnni = (a >> 4) & 1;
        if (zmm_ok) g_cpu.avx512_bf16 = (a >> 5) & 1;
    }
#endif
}

const rs_cpu_features *rs_cpu(void) {
    if (!__atomic_load_n(&g_cpu_done, __ATOMIC_ACQUIRE)) {
        detect();
        __atomic_store_n(&g_cpu_done, 1, __ATOMIC_RELEASE);
    }
    return &g_cpu;
}

static int g_amx; /* 0 = not asked yet, 1 = ready, 2 = refused or absent */

bool rs_cpu_amx_ready(void) {
    int v = __atomic_load_n(&g_amx, __ATOMIC_ACQUIRE);
    if (v) return v == 1;
    v = 2;
#if defined(__linux__) && defined(__x86_64__)
    const char *off = getenv("RSMOE_NO_AMX");
    if ((rs_cpu()->amx_int8 || rs_cpu()->amx_bf16) && !(off && *off && strcmp(off, "0"))) {
        /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18); Linux >= 5.16 */
        if (syscall(SYS_arch_prctl, 0x1023, 18) == 0) v = 1;
    }
#endif
    __atomic_store_n(&g_amx, v, __ATOMIC_RELEASE);
    return v == 1;
}

const char *rsmoe_system_info(void) {
    static char buf[256];
    const rs_cpu_features *f = rs_cpu();
    snprintf(buf, sizeof buf,
             "rsmoe %d.%d.%d | BLAS = %d | AVX2 = %d | FMA = %d | F16C = %d | AVX512 = %d | "
             "AVX512_VNNI = %d | AVX512_BF16 = %d | AMX_INT8 = %d | AMX_BF16 = %d | threads = %d",
             RSMOE_VERSION_MAJOR, RSMOE_VERSION_MINOR, RSMOE_VERSION_PATCH,
#ifdef RSMOE_USE_BLAS
             1,
#else
             0,
#endif
             f->avx2, f->fma, f->f16c, f->avx512f && f->avx512bw && f->avx512vl, f->avx512_vnni,
             f->avx512_bf16, rs_cpu_amx_ready() && f->amx_int8, rs_cpu_amx_ready() && f->amx_bf16,
             rs_default_threads());
    return buf;
}
