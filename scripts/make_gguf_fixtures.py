#!/usr/bin/env python3
"""Write the small GGUF fixtures of tests/fixtures/gguf/ with llama.cpp's own `gguf`
package (PyPI `gguf`, 0.19.0 made them). Run by hand, never by CI; the files are
committed.

    pip install gguf numpy
    python3 scripts/make_gguf_fixtures.py          # both parts
    python3 scripts/make_gguf_fixtures.py quant    # only quant/

header.gguf: every metadata type GGUFWriter writes (strings, integers of each width,
floats, a bool, arrays of strings and of integers), general.alignment 64, and tensors
of types F32, F16, Q8_0 and Q4_K, the quantized ones as raw block bytes (shapes given
in values, as the writer takes them for quantized data). header.json lists what the
reader must find: each key's value and each tensor's shape, type, offset and bytes (hex).

quant/{type}.blocks and quant/{type}.f32: for each quantized type the library reads, 40
blocks (random bytes; the f16 scales of the first ones set to extremes: the largest
finite, its negative, the smallest and largest subnormals, +0, -0 and 1; the rest random
finite; one block whose quant bytes count 0, 1, ..., so every quant value appears) and
the little-endian f32 values the package's `gguf.quants.dequantize` gives for them.
"""

import json
from pathlib import Path

import gguf
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gguf"


# (name, GGML type, block bytes, byte offsets of the f16 scale fields, the quant bytes)
QUANT = [
    ("q8_0", gguf.GGMLQuantizationType.Q8_0, 34, [0], (2, 34)),
    ("q4_0", gguf.GGMLQuantizationType.Q4_0, 18, [0], (2, 18)),
    ("q4_1", gguf.GGMLQuantizationType.Q4_1, 20, [0, 2], (4, 20)),
    ("q5_0", gguf.GGMLQuantizationType.Q5_0, 22, [0], (2, 22)),
    ("q4_k", gguf.GGMLQuantizationType.Q4_K, 144, [0, 2], (4, 144)),
    ("q5_k", gguf.GGMLQuantizationType.Q5_K, 176, [0, 2], (4, 176)),
    ("q6_k", gguf.GGMLQuantizationType.Q6_K, 210, [208], (0, 208)),
]
EXTREMES = [0x7BFF, 0xFBFF, 0x0001, 0x03FF, 0x0000, 0x8000, 0x3C00]


def quant():
    out = OUT / "quant"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(23)
    for name, qtype, size, scales, (q0, q1) in QUANT:
        blocks = rng.integers(0, 256, (40, size), dtype=np.uint8)
        for b in range(40):
            for j, at in enumerate(scales):
                if b < len(EXTREMES):
                    bits = EXTREMES[(b + j) % len(EXTREMES)]
                else:
                    # A random finite f16: any sign and mantissa, exponent below 31.
                    bits = int(rng.integers(0, 1 << 16)) & 0xFBFF
                blocks[b, at:at + 2] = np.frombuffer(np.uint16(bits).tobytes(), dtype=np.uint8)
        # Every quant value: the quant bytes of block 7 count up.
        blocks[7, q0:q1] = np.arange(q1 - q0, dtype=np.uint8)
        values = gguf.quants.dequantize(blocks, qtype).astype("<f4")
        assert values.size == 40 * gguf.GGML_QUANT_SIZES[qtype][0]
        (out / f"{name}.blocks").write_bytes(blocks.tobytes())
        (out / f"{name}.f32").write_bytes(values.tobytes())
        print(name, blocks.nbytes, values.nbytes, "bytes")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "header.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_custom_alignment(64)
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_name("tiny")
    w.add_float32("test.f32", 0.25)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_int8("test.i8", -3)
    w.add_uint16("test.u16", 65000)
    w.add_int64("test.i64", -(1 << 40))
    w.add_array("test.strings", ["a", "héllo", "🦀"])
    w.add_array("test.ints", [1, 2, 3])
    rng = np.random.default_rng(0)
    tensors = {
        "token_embd.weight": (rng.standard_normal((2, 8)).astype(np.float32), None),
        "blk.0.attn_norm.weight": (rng.standard_normal(8).astype(np.float16), None),
        # Raw Q8_0 blocks: 2 rows of 64 values, 34 bytes a block of 32.
        "blk.0.attn_q.weight": (rng.integers(0, 256, (2, 68), dtype=np.uint8), gguf.GGMLQuantizationType.Q8_0),
        # Raw Q4_K: one row of 256 values, one super-block of 144 bytes.
        "blk.0.ffn_down.weight": (rng.integers(0, 256, (1, 144), dtype=np.uint8), gguf.GGMLQuantizationType.Q4_K),
    }
    for name, (data, raw_type) in tensors.items():
        if raw_type is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=raw_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(str(path))
    expect = {"metadata": {}, "tensors": []}
    for key in ["general.architecture", "general.name", "llama.block_count", "llama.context_length",
                "general.alignment", "test.f32", "test.f64", "test.bool", "test.i8", "test.u16",
                "test.i64", "test.strings", "test.ints"]:
        f = r.fields[key]
        expect["metadata"][key] = f.contents()
    for t in r.tensors:
        expect["tensors"].append({
            "name": t.name,
            "dims": [int(d) for d in t.shape],
            "type": t.tensor_type.name,
            "hex": bytes(t.data.tobytes()).hex(),
            "offset": int(t.data_offset),
        })
    expect["gguf_version"] = "0.19.0"
    (OUT / "header.json").write_text(json.dumps(expect, indent=1, ensure_ascii=False) + "\n")
    print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["quant"]:
        main()
    quant()
