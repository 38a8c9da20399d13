#!/usr/bin/python3
"""Independent NumPy reference for the TFLite MobileNet importer (tests/test_tflite.c).

Reads a uint8-quantised TFLite flatbuffer with its own little flatbuffer reader (written
from tensorflow/lite/schema/schema.fbs and the flatbuffers binary format, no TensorFlow),
then runs the network twice on a few JPEG images:

  * float semantics: weights w = s_w*(q - z_w) (per channel where present), biases
    b = s_in*s_w*q_b, the input pixel read with the input tensor's own scale/zero point,
    everything else in float64, no requantisation (what src/model/encoder_cnn.c does);
  * integer semantics of TFLite's uint8 reference kernels: int32 accumulation of
    (q_in - z_in)*(q_w - z_w) + q_b, fixed-point requantisation (Q31 multiplier + rounding
    right shift), output zero point, clamp to the fused activation's range; ADD with the
    20-bit left shift rescaling; AVERAGE_POOL with rounded integer mean.

It writes, per image, the float logits (input of the final RESHAPE/SOFTMAX, i.e. the last
layer's output before the softmax), their top-5, and the integer model's dequantised logits
and top-5, to a small text file that the C test reads.

usage: tflite_mobilenet.py MODEL.tflite OUT.txt IMAGE.jpg [IMAGE.jpg ...]
"""
import struct
import sys

import numpy as np
from PIL import Image

# ------------------------------------------------------------------ flatbuffer reading

class Buf:
    def __init__(self, data):
        self.d = data

    def _chk(self, pos, n):
        if pos < 0 or pos + n > len(self.d):
            raise ValueError("offset %d+%d outside the file (%d bytes)" % (pos, n, len(self.d)))

    def u8(self, p):
        self._chk(p, 1); return self.d[p]

    def i8(self, p):
        self._chk(p, 1); return struct.unpack_from("<b", self.d, p)[0]

    def u16(self, p):
        self._chk(p, 2); return struct.unpack_from("<H", self.d, p)[0]

    def i32(self, p):
        self._chk(p, 4); return struct.unpack_from("<i", self.d, p)[0]

    def u32(self, p):
        self._chk(p, 4); return struct.unpack_from("<I", self.d, p)[0]


class Table:
    """A flatbuffer table at absolute position pos."""

    def __init__(self, buf, pos):
        self.b = buf
        self.pos = pos
        self.vt = pos - buf.i32(pos)
        self.vtlen = buf.u16(self.vt)

    def _slot(self, idx):
        o = 4 + 2 * idx
        if o + 2 > self.vtlen:
            return 0
        return self.b.u16(self.vt + o)

    def has(self, idx):
        return self._slot(idx) != 0

    def scalar(self, idx, fmt, default=0):
        o = self._slot(idx)
        if not o:
            return default
        p = self.pos + o
        self.b._chk(p, struct.calcsize(fmt))
        return struct.unpack_from("<" + fmt, self.b.d, p)[0]

    def _indirect(self, idx):
        o = self._slot(idx)
        if not o:
            return None
        p = self.pos + o
        return p + self.b.u32(p)

    def table(self, idx):
        p = self._indirect(idx)
        return None if p is None else Table(self.b, p)

    def vector_raw(self, idx):
        """(start, length) of a vector field, or None."""
        p = self._indirect(idx)
        if p is None:
            return None
        n = self.b.u32(p)
        return p + 4, n

    def vector(self, idx, fmt):
        v = self.vector_raw(idx)
        if v is None:
            return []
        start, n = v
        size = struct.calcsize(fmt)
        self.b._chk(start, n * size)
        return list(struct.unpack_from("<%d%s" % (n, fmt), self.b.d, start))

    def tables(self, idx):
        v = self.vector_raw(idx)
        if v is None:
            return []
        start, n = v
        return [Table(self.b, start + 4 * i + self.b.u32(start + 4 * i)) for i in range(n)]

    def string(self, idx):
        v = self.vector_raw(idx)
        if v is None:
            return ""
        start, n = v
        self.b._chk(start, n)
        return bytes(self.b.d[start:start + n]).decode("utf-8", "replace")

    def bytes_(self, idx):
        v = self.vector_raw(idx)
        if v is None:
            return b""
        start, n = v
        self.b._chk(start, n)
        return bytes(self.b.d[start:start + n])


OPS = {0: "ADD", 1: "AVERAGE_POOL_2D", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED",
       22: "RESHAPE", 25: "SOFTMAX", 43: "SQUEEZE"}
NP_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8}


def load_model(path):
    data = open(path, "rb").read()
    b = Buf(data)
    if data[4:8] != b"TFL3":
        raise ValueError("not a TFLite file (identifier %r)" % data[4:8])
    model = Table(b, b.u32(0))
    # OperatorCode: 0 deprecated_builtin_code (byte), 1 custom_code, 2 version, 3 builtin_code (int)
    opcodes = []
    for oc in model.tables(1):
        code = max(oc.scalar(0, "b", 0), oc.scalar(3, "i", 0))
        opcodes.append(code)
    buffers = [bt.bytes_(0) for bt in model.tables(4)]
    sg = model.tables(2)[0]
    tensors = []
    for t in sg.tables(0):
        q = t.table(4)
        quant = None
        if q is not None and q.has(2):
            quant = {"scale": np.array(q.vector(2, "f"), np.float64),
                     "zp": np.array(q.vector(3, "q"), np.int64),
                     "dim": q.scalar(6, "i", 0)}
        tensors.append({"shape": t.vector(0, "i"), "type": t.scalar(1, "b", 0),
                        "buffer": t.scalar(2, "I", 0), "name": t.string(3), "q": quant})
    ops = []
    for o in sg.tables(3):
        code = opcodes[o.scalar(0, "I", 0)]
        opt_type = o.scalar(3, "B", 0)
        opt = o.table(4)
        ops.append({"code": code, "name": OPS.get(code, "op%d" % code),
                    "inputs": o.vector(1, "i"), "outputs": o.vector(2, "i"),
                    "opt_type": opt_type, "opt": opt})
    return {"tensors": tensors, "buffers": buffers, "ops": ops,
            "inputs": sg.vector(1, "i"), "outputs": sg.vector(2, "i")}


def tensor_q(m, i):
    """the raw stored values of a constant tensor, shaped"""
    t = m["tensors"][i]
    raw = m["buffers"][t["buffer"]]
    a = np.frombuffer(raw, dtype=NP_TYPES[t["type"]])
    return a.reshape(t["shape"])


def dequant(m, i):
    t = m["tensors"][i]
    q = tensor_q(m, i).astype(np.float64)
    s, z = t["q"]["scale"], t["q"]["zp"]
    if len(s) > 1:
        shp = [1] * q.ndim
        shp[t["q"]["dim"]] = len(s)
        return (q - z.reshape(shp)) * s.reshape(shp)
    return (q - z[0]) * s[0]


def conv_options(op):
    o = op["opt"]
    if op["name"] == "CONV_2D":
        # Conv2DOptions: padding, stride_w, stride_h, fused_activation, dilation_w, dilation_h
        return dict(pad=o.scalar(0, "b"), sw=o.scalar(1, "i"), sh=o.scalar(2, "i"),
                    act=o.scalar(3, "b"), dm=1, dw=o.scalar(4, "i", 1), dh=o.scalar(5, "i", 1))
    if op["name"] == "DEPTHWISE_CONV_2D":
        # padding, stride_w, stride_h, depth_multiplier, fused_activation, dilation_w, dilation_h
        return dict(pad=o.scalar(0, "b"), sw=o.scalar(1, "i"), sh=o.scalar(2, "i"),
                    dm=o.scalar(3, "i"), act=o.scalar(4, "b"),
                    dw=o.scalar(5, "i", 1), dh=o.scalar(6, "i", 1))
    if op["name"] == "AVERAGE_POOL_2D":
        # Pool2DOptions: padding, stride_w, stride_h, filter_w, filter_h, fused_activation
        return dict(pad=o.scalar(0, "b"), sw=o.scalar(1, "i"), sh=o.scalar(2, "i"),
                    fw=o.scalar(3, "i"), fh=o.scalar(4, "i"), act=o.scalar(5, "b"))
    if op["name"] == "ADD":
        return dict(act=o.scalar(0, "b") if o is not None else 0)
    return {}


def out_size_and_pad(n, k, s, d, same):
    ek = (k - 1) * d + 1
    if same:
        out = (n + s - 1) // s
        pad = max((out - 1) * s + ek - n, 0) // 2
    else:
        out = (n - ek + s) // s
        pad = 0
    return out, pad


def patches(x, kh, kw, sh, sw, dh, dw, same, padval):
    """x [H,W,C] -> [OH,OW,kh,kw,C] windows with padding value padval"""
    H, W, C = x.shape
    OH, ph = out_size_and_pad(H, kh, sh, dh, same)
    OW, pw = out_size_and_pad(W, kw, sw, dw, same)
    big = np.full((H + 2 * (kh * dh) + 2 * sh * OH, W + 2 * (kw * dw) + 2 * sw * OW, C), padval, x.dtype)
    big[ph:ph + H, pw:pw + W] = x
    out = np.empty((OH, OW, kh, kw, C), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j, :] = big[i * dh:i * dh + sh * OH:sh, j * dw:j * dw + sw * OW:sw][:OH, :OW]
    valid = np.zeros((OH, OW, kh, kw), bool)
    mask = np.zeros((big.shape[0], big.shape[1]), bool)
    mask[ph:ph + H, pw:pw + W] = True
    for i in range(kh):
        for j in range(kw):
            valid[:, :, i, j] = mask[i * dh:i * dh + sh * OH:sh, j * dw:j * dw + sw * OW:sw][:OH, :OW]
    return out, valid


# ------------------------------------------------------------------ float forward

def act_float(y, act):
    if act == 0:
        return y
    if act == 1:
        return np.maximum(y, 0)
    if act == 3:
        return np.clip(y, 0, 6)
    raise ValueError("activation %d" % act)


def forward_float(m, img_u8, want):
    tn = m["tensors"]
    vals = {}
    i0 = m["inputs"][0]
    qi = tn[i0]["q"]
    vals[i0] = (img_u8.astype(np.float64) - qi["zp"][0]) * qi["scale"][0]
    for op in m["ops"]:
        name, ins, outs = op["name"], op["inputs"], op["outputs"]
        o = conv_options(op)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x = vals[ins[0]]
            w = dequant(m, ins[1])
            bq = tensor_q(m, ins[2]).astype(np.float64)
            ws = tn[ins[1]]["q"]["scale"]
            b = bq * (qi_scale(tn, ins[0]) * ws)
            if name == "CONV_2D":
                OC, KH, KW, IC = w.shape
                p, _ = patches(x, KH, KW, o["sh"], o["sw"], o["dh"], o["dw"], o["pad"] == 0, 0.0)
                y = np.tensordot(p, w, axes=([2, 3, 4], [1, 2, 3])) + b
            else:
                _, KH, KW, OCm = w.shape
                C = x.shape[2]
                dm = o["dm"]
                p, _ = patches(x, KH, KW, o["sh"], o["sw"], o["dh"], o["dw"], o["pad"] == 0, 0.0)
                p = np.repeat(p, dm, axis=4) if dm > 1 else p  # output channel c*dm+k reads input c
                y = np.einsum("hwijc,ijc->hwc", p, w[0]) + b
                assert y.shape[2] == C * dm == OCm
            vals[outs[0]] = act_float(y, o["act"])
        elif name == "AVERAGE_POOL_2D":
            x = vals[ins[0]]
            p, valid = patches(x, o["fh"], o["fw"], o["sh"], o["sw"], 1, 1, o["pad"] == 0, 0.0)
            cnt = valid.sum(axis=(2, 3))[:, :, None]
            vals[outs[0]] = act_float(p.sum(axis=(2, 3)) / cnt, o["act"])
        elif name == "ADD":
            vals[outs[0]] = act_float(vals[ins[0]] + vals[ins[1]], o["act"])
        elif name in ("RESHAPE", "SQUEEZE"):
            vals[outs[0]] = vals[ins[0]].reshape(-1)
        elif name == "SOFTMAX":
            want["logits"] = vals[ins[0]].reshape(-1)
            z = want["logits"] - want["logits"].max()
            vals[outs[0]] = np.exp(z) / np.exp(z).sum()
        else:
            raise ValueError("unsupported op " + name)
    return vals


def qi_scale(tn, i):
    return tn[i]["q"]["scale"][0]


# ------------------------------------------------------------------ integer (uint8) forward

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real):
    """real in (0, 1) -> (Q31 multiplier, right shift), as TFLite's QuantizeMultiplier"""
    assert 0 < real < 1, real
    mant, exp = np.frexp(real)
    q = int(round(mant * (1 << 31)))
    if q == (1 << 31):
        q //= 2
        exp += 1
    assert exp <= 0
    return q, -exp


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values; b scalar"""
    a = a.astype(np.int64)
    ab = a * np.int64(b)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C integer division by 2^31 truncates toward zero
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    q = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)
    return q


def rdbypot(x, e):
    """RoundingDivideByPOT: round-half-away-from-zero division by 2^e"""
    if e == 0:
        return x
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> e) + (rem > thr).astype(np.int64)


def requant(acc, real_mult):
    qm, rs = quantize_multiplier(real_mult)
    return rdbypot(srdhm(acc, qm), rs)


def act_range_q(act, scale, zp):
    lo, hi = 0, 255
    if act == 1:
        lo = max(lo, zp)
    elif act == 3:
        lo = max(lo, zp)
        hi = min(hi, zp + int(np.floor(6.0 / scale + 0.5)))
    elif act != 0:
        raise ValueError("activation %d" % act)
    return lo, hi


def qparams(tn, i):
    q = tn[i]["q"]
    return float(q["scale"][0]), int(q["zp"][0])


def forward_int(m, img_u8, want):
    tn = m["tensors"]
    vals = {m["inputs"][0]: img_u8.astype(np.int64)}
    for op in m["ops"]:
        name, ins, outs = op["name"], op["inputs"], op["outputs"]
        o = conv_options(op)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            si, zi = qparams(tn, ins[0])
            so, zo = qparams(tn, outs[0])
            wq = tn[ins[1]]["q"]
            if len(wq["scale"]) != 1:
                raise ValueError("per-channel integer path not implemented in the reference")
            sw, zw = float(wq["scale"][0]), int(wq["zp"][0])
            x = vals[ins[0]] - zi
            w = tensor_q(m, ins[1]).astype(np.int64) - zw
            bias = tensor_q(m, ins[2]).astype(np.int64)
            if name == "CONV_2D":
                OC, KH, KW, IC = w.shape
                p, _ = patches(x, KH, KW, o["sh"], o["sw"], o["dh"], o["dw"], o["pad"] == 0, 0)
                acc = np.tensordot(p, w, axes=([2, 3, 4], [1, 2, 3])) + bias
            else:
                _, KH, KW, _ = w.shape
                p, _ = patches(x, KH, KW, o["sh"], o["sw"], o["dh"], o["dw"], o["pad"] == 0, 0)
                if o["dm"] > 1:
                    p = np.repeat(p, o["dm"], axis=4)
                acc = np.einsum("hwijc,ijc->hwc", p, w[0]) + bias
            # (the zero-offset input padding: padded input value is z_in, i.e. 0 after -z_in)
            y = requant(acc, si * sw / so) + zo
            lo, hi = act_range_q(o["act"], so, zo)
            vals[outs[0]] = np.clip(y, lo, hi)
        elif name == "ADD":
            s1, z1 = qparams(tn, ins[0])
            s2, z2 = qparams(tn, ins[1])
            so, zo = qparams(tn, outs[0])
            left = 20
            twice = 2 * max(s1, s2)
            a = requant((vals[ins[0]] - z1) << left, s1 / twice)
            b = requant((vals[ins[1]] - z2) << left, s2 / twice)
            y = requant(a + b, twice / ((1 << left) * so)) + zo
            lo, hi = act_range_q(o["act"], so, zo)
            vals[outs[0]] = np.clip(y, lo, hi)
        elif name == "AVERAGE_POOL_2D":
            x = vals[ins[0]]
            p, valid = patches(x, o["fh"], o["fw"], o["sh"], o["sw"], 1, 1, o["pad"] == 0, 0)
            cnt = valid.sum(axis=(2, 3))[:, :, None].astype(np.int64)
            y = (p.sum(axis=(2, 3)) + cnt // 2) // cnt
            so, zo = qparams(tn, outs[0])
            lo, hi = act_range_q(o["act"], so, zo)
            vals[outs[0]] = np.clip(y, lo, hi)
        elif name in ("RESHAPE", "SQUEEZE"):
            vals[outs[0]] = vals[ins[0]].reshape(-1)
        elif name == "SOFTMAX":
            s, z = qparams(tn, ins[0])
            want["logits"] = (vals[ins[0]].reshape(-1) - z) * s
            vals[outs[0]] = want["logits"]  # (the softmax itself is not needed for the test)
        else:
            raise ValueError("unsupported op " + name)
    return vals


def top5(v):
    return list(np.argsort(-v, kind="stable")[:5])


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        sys.exit(2)
    m = load_model(sys.argv[1])
    tn = m["tensors"]
    names = sorted(set(op["name"] for op in m["ops"]))
    shp = tn[m["inputs"][0]]["shape"]
    H, W = shp[1], shp[2]
    with open(sys.argv[2], "w") as f:
        f.write("# written by tests/ref/tflite_mobilenet.py %s (ops: %s)\n"
                % (sys.argv[1].split("/")[-1], " ".join(names)))
        f.write("# per image: image NAME PIXEL_SUM; float_top5; int_top5; float logits; int logits\n")
        for path in sys.argv[3:]:
            img = Image.open(path).convert("RGB")
            if img.size != (W, H):
                img = img.resize((W, H), Image.BICUBIC)   # = rs_image_resize_bicubic_u8
            a = np.asarray(img, dtype=np.uint8)
            wf, wi = {}, {}
            vf = forward_float(m, a, wf)
            forward_int(m, a, wi)
            lf, li = wf["logits"], wi["logits"]
            f.write("image %s %d\n" % (path.split("/")[-1], int(a.astype(np.int64).sum())))
            f.write("float_top5 %s\n" % " ".join(str(i) for i in top5(lf)))
            f.write("int_top5 %s\n" % " ".join(str(i) for i in top5(li)))
            f.write("float_logits %d %s\n" % (len(lf), " ".join("%.6g" % v for v in lf)))
            f.write("int_logits %d %s\n" % (len(li), " ".join("%.6g" % v for v in li)))
            rng = lf.max() - lf.min()
            print("%s: float top5 %s, int top5 %s, max|float-int| = %.4f (%.2f%% of range %.2f)"
                  % (path.split("/")[-1], top5(lf), top5(li), np.abs(lf - li).max(),
                     100 * np.abs(lf - li).max() / rng, rng), file=sys.stderr)
        del vf


if __name__ == "__main__":
    main()
