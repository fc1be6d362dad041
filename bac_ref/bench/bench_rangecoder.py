"""Speed of the pure-Python range coder (bac_ref.rangecoder) and integer models.

Run:  python -m bac_ref.bench.bench_rangecoder [--symbols 300000] [--repeat 3] [--clock wall]

Prints one row per case: symbols per second for encoding and decoding (best
of --repeat runs), payload bits per symbol and the overhead over the
information content sum(-log2 p).  Every case also checks the round trip.
Timings depend on the machine and its load; they are not part of any test.
The default clock is the process's CPU time (``time.process_time``), which
a loaded machine disturbs less than wall time (``--clock wall``).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random

import time

from bac_ref import rangecoder as rc  # noqa: E402
from bac_ref.intmodels import AdaptiveBinaryModel, AdaptiveModel, cdf_from_counts  # noqa: E402

TOTAL = 1 << 24

CLOCK = time.process_time


def best_time(fn, repeat):
    best, result = math.inf, None
    for _ in range(repeat):
        start = CLOCK()
        result = fn()
        best = min(best, CLOCK() - start)
    return best, result


def info_bits(symbols, table):
    return sum(-math.log2((table[s + 1] - table[s]) / TOTAL) for s in symbols)


def case_static(name, table, symbols, repeat):
    n = len(symbols)

    def enc():
        e = rc.Encoder()
        e.encode_many(symbols, table)
        return e.finish()

    t_enc, data = best_time(enc, repeat)
    t_dec, out = best_time(lambda: rc.Decoder(data).decode_many(n, table), repeat)
    assert out == symbols
    return name, n, t_enc, t_dec, data, info_bits(symbols, table)


def case_one_call(name, table, symbols, repeat):
    n = len(symbols)
    tables = [table] * n
    t_enc, data = best_time(lambda: rc.encode(symbols, tables), repeat)
    t_dec, out = best_time(lambda: rc.decode(data, tables), repeat)
    assert out == symbols
    return name, n, t_enc, t_dec, data, info_bits(symbols, table)


def case_alternating(name, tables, symbols, repeat):
    n = len(symbols)
    t_enc, data = best_time(lambda: rc.encode(symbols, tables), repeat)
    t_dec, out = best_time(lambda: rc.decode(data, tables), repeat)
    assert out == symbols
    info = sum(-math.log2((t[s + 1] - t[s]) / TOTAL) for s, t in zip(symbols, tables))
    return name, n, t_enc, t_dec, data, info


def case_uniform(name, bits, values, repeat):
    n = len(values)

    def enc():
        e = rc.Encoder()
        e.encode_uniform_many(values, bits)
        return e.finish()

    t_enc, data = best_time(enc, repeat)
    t_dec, out = best_time(lambda: rc.Decoder(data).decode_uniform_many(n, bits), repeat)
    assert out == values
    return name, n, t_enc, t_dec, data, float(bits * n)


def case_per_call(name, table, symbols, repeat):
    n = len(symbols)

    def enc():
        e = rc.Encoder()
        code = e.encode
        for s in symbols:
            code(s, table)
        return e.finish()

    def dec():
        d = rc.Decoder(data)
        code = d.decode
        return [code(table) for _ in range(n)]

    t_enc, data = best_time(enc, repeat)
    t_dec, out = best_time(dec, repeat)
    assert out == symbols
    return name, n, t_enc, t_dec, data, info_bits(symbols, table)


def case_adaptive(name, make_model, symbols, repeat):
    n = len(symbols)

    def enc():
        e = rc.Encoder()
        model = make_model()
        for s in symbols:
            model.encode(e, s)
        return e.finish()

    def dec():
        d = rc.Decoder(data)
        model = make_model()
        return [model.decode(d) for _ in range(n)]

    t_enc, data = best_time(enc, repeat)
    t_dec, out = best_time(dec, repeat)
    assert out == symbols
    model, bits = make_model(), 0.0
    for s in symbols:                          # information under the adaptive model
        table = model.cdf()
        bits += -math.log2((table[s + 1] - table[s]) / TOTAL)
        model.update(s)
    return name, n, t_enc, t_dec, data, bits


def case_constriction(name, table, symbols, repeat):
    import numpy as np
    import constriction
    model = constriction.stream.model.Categorical(
        np.array(table.masses(), dtype=np.float64) / TOTAL, perfect=True)
    arr = np.array(symbols, dtype=np.int32)

    def enc():
        e = constriction.stream.queue.RangeEncoder()
        e.encode(arr, model)
        return e.get_compressed()

    t_enc, words = best_time(enc, repeat)
    t_dec, out = best_time(
        lambda: constriction.stream.queue.RangeDecoder(words).decode(model, len(symbols)), repeat)
    assert out.tolist() == symbols
    data = rc.words_to_bytes(words.tolist())
    return name, len(symbols), t_enc, t_dec, data, info_bits(symbols, table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=["process", "wall"], default="process",
                        help="time.process_time (default) or time.perf_counter")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    n, repeat = args.symbols, args.repeat
    rnd = random.Random(args.seed)

    t11 = cdf_from_counts([2, 9, 40, 180, 900, 3000, 900, 180, 40, 9, 2])
    s11 = rnd.choices(range(11), weights=t11.masses(), k=n)
    t2047 = cdf_from_counts([int(1e6 * math.exp(-abs(i - 1023) / 60)) for i in range(2047)])
    s2047 = rnd.choices(range(2047), weights=t2047.masses(), k=n)
    u8 = [rnd.randrange(256) for _ in range(n)]
    u24 = [rnd.randrange(1 << 24) for _ in range(n)]
    bits = [int(rnd.random() < 0.1) for _ in range(n)]
    s17 = [min(16, int(rnd.expovariate(0.5))) for _ in range(n)]

    rows = [
        case_static("static 11-symbol table, batch (encode_many/decode_many)", t11, s11, repeat),
        case_one_call("static 11, one-call encode/decode([cdf] * n)", t11, s11, repeat),
        case_static("static 2047-symbol table, batch", t2047, s2047, repeat),
        case_alternating("tables 11 and 2047 alternating, one-call encode/decode",
                         [t2047, t11] * (n // 2), [x for pair in zip(s2047, s11)
                                                    for x in pair][: 2 * (n // 2)], repeat),
        case_uniform("uniform 8-bit fast path, batch", 8, u8, repeat),
        case_uniform("uniform 24-bit fast path, batch", 24, u24, repeat),
        case_per_call("static 11, per-call Encoder.encode/Decoder.decode", t11, s11, repeat),
        case_adaptive("AdaptiveBinaryModel, per call (p1 = 0.1)", AdaptiveBinaryModel, bits,
                      repeat),
        case_adaptive("AdaptiveModel(17), per call", lambda: AdaptiveModel(17), s17[: n // 3],
                      repeat),
    ]
    try:
        rows.append(case_constriction("constriction 0.5.0 (Rust), static 11, for scale",
                                      t11, s11, repeat))
    except ImportError:
        pass

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f}; best of {repeat}, "
          f"{args.clock} time")
    header = f"{'case':58} {'symbols':>8} {'enc M/s':>8} {'dec M/s':>8} {'bits/sym':>9} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    for name, count, t_enc, t_dec, data, info in rows:
        bits_total = 8 * len(data)
        overhead = (bits_total - info) / info if info else 0.0
        print(f"{name:58} {count:>8} {count / t_enc / 1e6:>8.2f} {count / t_dec / 1e6:>8.2f} "
              f"{bits_total / count:>9.4f} {100 * overhead:>8.4f}%")


if __name__ == "__main__":
    main()
