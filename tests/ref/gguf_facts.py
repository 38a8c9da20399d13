#!/usr/bin/env python3
"""Independent GGUF v3 header parser (only `struct`) used as a reference by
tests/test_gguf.c. For each file it prints one line per fact:
    FILE n_tensors N
    FILE n_kv N
    FILE kv KEY TYPE [N]           (N = array length for arrays)
    FILE str KEY VALUE             (string scalars, repr-escaped: only printable ASCII kept)
    FILE u32 KEY VALUE             (u32 scalars)
    FILE tok KEY INDEX HEXBYTES    (elements 0, 1, n/2 and n-1 of string arrays)
    FILE f32sum KEY SUM            (sum of an f32 array, %.6e)
    FILE i32sum KEY SUM            (sum of an i32 array)
    FILE data_offset N
usage: gguf_facts.py FILE...
"""
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"]


def facts(path):
    b = open(path, "rb").read()
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(b):
            raise ValueError("truncated")
        v = b[pos:pos + n]
        pos += n
        return v

    def u32():
        return struct.unpack("<I", take(4))[0]

    def u64():
        return struct.unpack("<Q", take(8))[0]

    def s():
        return take(u64())

    out = []
    name = path.rsplit("/", 1)[-1]
    assert take(4) == b"GGUF"
    assert u32() == 3
    nt, nkv = u64(), u64()
    out.append(f"{name} n_tensors {nt}")
    out.append(f"{name} n_kv {nkv}")
    align = 32
    for _ in range(nkv):
        key = s().decode()
        t = u32()
        if t == 8:
            v = s()
            out.append(f"{name} kv {key} string")
            out.append(f"{name} str {key} {v.hex()}")
        elif t == 9:
            et, n = u32(), u64()
            out.append(f"{name} kv {key} array {n}")
            if et == 8:
                items = [s() for _ in range(n)]
                for i in sorted({0, 1, n // 2, n - 1}):
                    if 0 <= i < n:
                        out.append(f"{name} tok {key} {i} {items[i].hex() or '-'}")
            else:
                vals = [struct.unpack(FMT[et], take(SIZES[et]))[0] for _ in range(n)]
                if et == 6:
                    out.append(f"{name} f32sum {key} {sum(vals):.6e}")
                elif et == 5:
                    out.append(f"{name} i32sum {key} {sum(vals)}")
        else:
            v = struct.unpack(FMT[t], take(SIZES[t]))[0]
            out.append(f"{name} kv {key} {NAMES[t]}")
            if t == 4:
                out.append(f"{name} u32 {key} {v}")
                if key == "general.alignment":
                    align = v
    for _ in range(nt):
        s()
        nd = u32()
        take(8 * nd + 4 + 8)
    out.append(f"{name} data_offset {(pos + align - 1) // align * align}")
    return out


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print("\n".join(facts(p)))
