"""``bench plots``: the figures of docs/benchmarks.md drawn as PNGs in docs/benchmarks/.

    uv run python -m bench plots

The figures are the ones the benches printed on the dates docs/benchmarks.md gives (each
table there names its command); they are data here, not re-measured, so the plots stay
reproducible on a loaded machine. After a new run, change the numbers below and the page's
tables together, and run this again. Images are written without a timestamp or a version, so
an unchanged figure gives an unchanged file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"

# bench compression, 2026-11-29: bytes per record on the wire, CPU µs to compress per record.
COMPRESSION_BATCH = [1, 4, 16]
COMPRESSION_BYTES = {
    "none": [935, 889, 878],
    "gzip": [501, 277, 200],
    "snappy": [653, 398, 307],
    "lz4": [641, 374, 273],
    "zstd": [509, 281, 201],
}
COMPRESSION_CPU_US = {
    "gzip": [27, 13, 12],
    "snappy": [8, 3, 2],
    "lz4": [14, 5, 6],
    "zstd": [20, 7, 4],
}

# bench local-model, 2026-11-29: CPU s per track by length (minutes), 4 windows; whole track.
LOCAL_MINUTES = [1, 3, 10, 30]
LOCAL_CPU_S = [0.299, 0.278, 0.311, 0.345]
LOCAL_RSS_MB = [164, 157, 157, 155]
LOCAL_WHOLE_3_MIN_CPU_S = 4.01
LOCAL_BUDGET_S = 0.4

# The same bench: agreement of sampled windows with the whole track (12 tracks + 2 samples).
WINDOWS = [1, 2, 4, 8]
WINDOWS_AGREEMENT = {
    "top 1 the same": [71, 64, 71, 86],
    "sampled top 1 in the whole top 3": [79, 100, 93, 100],
    "top 3 in common": [74, 76, 83, 98],
}

# bench cascade, 2026-12-07 (the tests' stand-in head): threshold -> share sent, all agree.
CASCADE_THRESHOLD = [0.4, 0.5, 0.6, 0.6113, 0.7, 0.7485, 0.8, 0.8566, 0.9]
CASCADE_SENT = [6.2, 17.5, 32.1, 33.3, 47.1, 53.1, 60.6, 70.0, 77.7]
CASCADE_AGREE = [76.9, 82.1, 89.4, 90.0, 94.2, 95.4, 96.5, 98.5, 99.2]
CASCADE_COST = [0.012, 0.033, 0.061, 0.063, 0.090, 0.101, 0.115, 0.133, 0.148]

# bench pipeline and bench recommend, 2026-11-29 (after the redesign), Tansu 0.6 / Kafka 4.4.
LATENCY_CASES = [
    "recommend p50",
    "recommend p99",
    "raw round trip p50",
    "recommend p50, 20 at once",
]
LATENCY_MS = {
    "Tansu 0.6": [7.51, 12.90, 6.78, 21.70],
    "Apache Kafka 4.4": [5.43, 8.99, 2.89, 21.03],
}

# bench startup, 2026-11-29: median CPU ms per case (the upper end of a range), and its target.
STARTUP_CASES = ["--help", "wrong argument", "missing setting", "invalid setting", "missing file"]
STARTUP_CPU_MS = [38, 37, 38, 172, 37]
STARTUP_TARGET_MS = [300, 500, 500, 500, 500]


def _save(figure: Figure, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path


def _axes(title: str) -> tuple[Figure, Axes]:
    figure, axes = plt.subplots(figsize=(7, 3.6))
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure, axes


def compression() -> Path:
    figure, (size, cpu) = plt.subplots(1, 2, figsize=(9, 3.6))
    colour = {codec: f"C{i}" for i, codec in enumerate(COMPRESSION_BYTES)}  # one per codec
    for codec, values in COMPRESSION_BYTES.items():
        size.plot(COMPRESSION_BATCH, values, marker="o", label=codec, color=colour[codec])
    for codec, values in COMPRESSION_CPU_US.items():
        cpu.plot(COMPRESSION_BATCH, values, marker="o", label=codec, color=colour[codec])
    size.set(title="bytes per record on the wire", xlabel="records per batch", xscale="log")
    cpu.set(title="CPU µs to compress, per record", xlabel="records per batch", xscale="log")
    for axes in (size, cpu):
        axes.set_xticks(COMPRESSION_BATCH, [str(n) for n in COMPRESSION_BATCH])
        axes.grid(alpha=0.3)
        axes.legend()
    return _save(figure, "compression")


def local_model() -> Path:
    figure, axes = _axes("embedded model: CPU per track by length (4 windows)")
    axes.plot(LOCAL_MINUTES, LOCAL_CPU_S, marker="o", label="4 sampled windows")
    axes.axhline(LOCAL_BUDGET_S, color="red", linestyle="--", label=f"budget {LOCAL_BUDGET_S} s")
    axes.scatter([3], [LOCAL_WHOLE_3_MIN_CPU_S], color="black", label="3 min analysed whole")
    axes.set(xlabel="track length (minutes)", ylabel="CPU seconds per track", xscale="log")
    axes.set_yscale("log")
    axes.set_yticks([0.25, 0.4, 1, 2, 4], ["0.25", "0.4", "1", "2", "4"])
    axes.minorticks_off()
    axes.set_xticks(LOCAL_MINUTES, [str(m) for m in LOCAL_MINUTES])
    axes.legend()
    return _save(figure, "local-model")


def windows() -> Path:
    figure, axes = _axes("sampled windows against the whole track (top 3 genres)")
    for label, values in WINDOWS_AGREEMENT.items():
        axes.plot(WINDOWS, values, marker="o", label=label)
    axes.axvline(4, color="grey", linestyle=":", label="default (4)")
    axes.set(xlabel="windows per track (LOCAL_WINDOWS)", ylabel="% of tracks", ylim=(50, 102))
    axes.set_xticks(WINDOWS, [str(w) for w in WINDOWS])
    axes.legend(loc="lower right")
    return _save(figure, "windows")


def cascade() -> Path:
    figure, axes = _axes("cascade: share sent to Replicate against agreement")
    axes.plot(CASCADE_SENT, CASCADE_AGREE, marker="o")
    for threshold, sent, agree in zip(CASCADE_THRESHOLD, CASCADE_SENT, CASCADE_AGREE, strict=True):
        axes.annotate(f"{threshold:g}", (sent, agree), textcoords="offset points", xytext=(4, -10))
    axes.scatter([100], [100], color="black", label="Replicate alone ($0.19 / 1,000)")
    axes.set(xlabel="% of uploads sent to Replicate", ylabel="% of answers agreeing")
    axes.legend(loc="lower right")
    return _save(figure, "cascade")


def latency() -> Path:
    figure, axes = _axes("request/reply latency, one at a time unless said (ms)")
    width = 0.38
    for i, (broker, values) in enumerate(LATENCY_MS.items()):
        positions = [x + (i - 0.5) * width for x in range(len(LATENCY_CASES))]
        axes.bar(positions, values, width, label=broker)
    axes.set_xticks(range(len(LATENCY_CASES)), LATENCY_CASES, fontsize=8)
    axes.set(ylabel="ms")
    axes.legend()
    return _save(figure, "latency")


def startup() -> Path:
    figure, axes = _axes("genres start-up: median CPU against the target (ms)")
    axes.bar(STARTUP_CASES, STARTUP_CPU_MS, label="CPU (median)")
    axes.scatter(STARTUP_CASES, STARTUP_TARGET_MS, color="red", marker="_", s=600, label="target")
    axes.set(ylabel="ms")
    axes.tick_params(axis="x", labelsize=8)
    axes.legend()
    return _save(figure, "startup")


def main() -> None:
    for draw in (compression, local_model, windows, cascade, latency, startup):
        print(draw().relative_to(OUT.parents[1]))


if __name__ == "__main__":
    main()
