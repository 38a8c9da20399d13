"""A small, independent GGUF v3 reader in NumPy for the reference scripts (not a port of the
C reader): metadata as a dict, tensors as float64 arrays in PyTorch order ([out, in])."""
import struct

import numpy as np

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class GGUF:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        b = self.buf
        assert b[:4] == b"GGUF", "not a GGUF file"
        version, n_t, n_kv = struct.unpack_from("<IQQ", b, 4)
        assert version == 3
        self.o = 24
        self.kv = {}
        for _ in range(n_kv):
            k = self._str()
            t = self._u32()
            self.kv[k] = self._val(t)
        infos = []
        for _ in range(n_t):
            name = self._str()
            nd = self._u32()
            dims = [self._u64() for _ in range(nd)]
            typ = self._u32()
            off = self._u64()
            infos.append((name, dims, typ, off))
        align = self.kv.get("general.alignment", 32)
        data = (self.o + align - 1) // align * align
        self.tensors = {}
        for name, dims, typ, off in infos:
            self.tensors[name] = (dims, typ, data + off)

    def _u32(self):
        v = struct.unpack_from("<I", self.buf, self.o)[0]
        self.o += 4
        return v

    def _u64(self):
        v = struct.unpack_from("<Q", self.buf, self.o)[0]
        self.o += 8
        return v

    def _str(self):
        n = self._u64()
        s = self.buf[self.o:self.o + n]
        self.o += n
        return s.decode("utf-8", errors="surrogateescape")

    def _val(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            et = self._u32()
            n = self._u64()
            return [self._val(et) for _ in range(n)]
        fmt = _SCALAR[t]
        v = struct.unpack_from(fmt, self.buf, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def has(self, name):
        return name in self.tensors

    def get(self, name):
        """float64 array shaped like PyTorch: ggml ne = (ne0, ne1) -> (ne1, ne0)."""
        dims, typ, off = self.tensors[name]
        n = int(np.prod(dims))
        if typ == 0:
            a = np.frombuffer(self.buf, "<f4", n, off).astype(np.float64)
        elif typ == 1:
            a = np.frombuffer(self.buf, "<f2", n, off).astype(np.float64)
        elif typ == 30:
            u = np.frombuffer(self.buf, "<u2", n, off).astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        elif typ == 8:
            nb = n // 32
            raw = np.frombuffer(self.buf, np.uint8, nb * 34, off).reshape(nb, 34)
            d = raw[:, :2].copy().view("<f2").astype(np.float64)
            q = raw[:, 2:].copy().view(np.int8).astype(np.float64)
            a = (q * d).reshape(-1)
        else:
            raise ValueError("tensor type %d" % typ)
        return a.reshape(list(reversed(dims)))
