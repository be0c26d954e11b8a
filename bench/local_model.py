"""Local model (musicnn MSD + MTT on onnxruntime): cost per track, peak memory, and how far the
sampled windows agree with the whole track.

    uv run python -m bench local-model [--windows 4] [--runs 3] [--tracks 12]
                                       [--music-dir /tmp/wesnoth-music]

Real music: the orchestral tracks of Debian's ``wesnoth-1.16-music`` package (GPL-2+), which
the bench does not ship or download; get them once with::

    cd /tmp && apt-get download wesnoth-1.16-music && \\
        dpkg-deb -x wesnoth-1.16-music_*.deb /tmp/wesnoth-music

Two parts:

* **Cost per track.** Files of 1, 3, 10 and 30 minutes are made by concatenating the real
  tracks (looping them; the packaged sample ``loop_garzul.flac`` when the music is missing) and
  encoding them as 192 kb/s stereo 44.1 kHz mp3 in ``CACHE`` (made once, reused). Each length is
  classified ``--runs`` times in a fresh subprocess (the model loaded once) with ``--windows``
  windows; reported: median wall and CPU seconds per track (CPU: ``process_time``, all threads),
  and the subprocess's peak RSS (``VmHWM``). The 3-minute file is also analysed whole
  (``windows=None``, every patch) once, as the cost the windows replace.
* **Agreement.** On the ``--tracks`` longest real tracks and the bundled samples: the top 3
  genres of the whole track (every patch) against the top 3 of the sampled windows, for 1, 2,
  4 and 8 windows and ``--windows``: how often the top 1 is the same, how often the sampled top
  1 is in the whole top 3, and the mean share of the top 3 in common.

Targets (issue 14): CPU per track of any length <= 0.4 s with the default window count; a
10-minute file no slower than a 3-minute one (CPU, within 10% for run-to-run noise); peak RSS
<= 300 MB. Prints a human summary and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "service" / "genres" / "samples"
MUSIC_DIR = Path("/tmp/wesnoth-music")
CACHE = Path("/tmp/genres-bench-local-model")
LENGTHS_MINUTES = (1, 3, 10, 30)
AGREEMENT_WINDOWS = (1, 2, 4, 8)
RATE = 44_100

TARGET_CPU_PER_TRACK = 0.4
TARGET_PEAK_RSS_MB = 300.0
NOISE = 1.10
"""A 10-minute file counts as no slower than a 3-minute one within this ratio (CPU time)."""


def music_files(music_dir: Path) -> list[Path]:
    return sorted(music_dir.rglob("*.ogg"))


def _blocks(sources: list[Path]) -> Iterator[np.ndarray]:
    """The sources' audio, one after another forever, as stereo float32 (2, n) at ``RATE``."""
    while True:
        for path in sources:
            with av.open(str(path)) as container:
                stream = container.streams.audio[0]
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        yield out.to_ndarray()


def build_track(path: Path, minutes: float, sources: list[Path]) -> None:
    """``minutes`` of the sources, concatenated, written as a 192 kb/s mp3 (streamed)."""
    total = int(minutes * 60 * RATE)
    partial = path.with_suffix(".partial")
    with av.open(str(partial), "w", format="mp3") as out:
        encoder = out.add_stream("libmp3lame", rate=RATE)
        encoder.layout = "stereo"
        encoder.bit_rate = 192_000
        written = 0
        for block in _blocks(sources):
            block = np.ascontiguousarray(block[:, : total - written], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = written
            for packet in encoder.encode(frame):
                out.mux(packet)
            written += block.shape[1]
            if written >= total:
                break
        for packet in encoder.encode(None):
            out.mux(packet)
    partial.rename(path)


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _top(tags: tuple[str, ...], scores: np.ndarray, n: int = 3) -> list[str]:
    order = sorted(range(len(tags)), key=lambda i: (-float(scores[i]), tags[i]))
    return [tags[i] for i in order[:n]]


def cost_worker(path: str, runs: int, windows: int, whole: bool) -> None:
    """In a subprocess: load the model, analyse ``path`` ``runs`` times, print JSON."""
    from genres.classify.local.analysis import analyse
    from genres.classify.local.model import MusicnnModel

    started = time.perf_counter()
    model = MusicnnModel().load()
    load = time.perf_counter() - started
    results = []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        analysis = analyse(path, model, windows=windows)
        results.append(
            {
                "wall": time.perf_counter() - started,
                "cpu": time.process_time() - cpu_started,
                "patches": analysis.patches,
            }
        )
    report: dict[str, object] = {
        "load_seconds": load,
        "runs": results,
        "vm_hwm_mb": _vm_hwm_mb(),
        "top3": _top(model.tags, analysis.scores),
    }
    if whole:
        started, cpu_started = time.perf_counter(), time.process_time()
        analysis = analyse(path, model, windows=None, max_seconds=None)
        report["whole"] = {
            "wall": time.perf_counter() - started,
            "cpu": time.process_time() - cpu_started,
            "patches": analysis.patches,
        }
    print(json.dumps(report))


def agreement_worker(paths: list[str], windows: list[int]) -> None:
    """In a subprocess: whole-track and sampled top 3 of each path, one JSON line each."""
    from genres.classify.local.analysis import analyse
    from genres.classify.local.model import MusicnnModel

    model = MusicnnModel()
    for path in paths:
        whole = analyse(path, model, windows=None, max_seconds=None)
        sampled = {n: _top(model.tags, analyse(path, model, windows=n).scores) for n in windows}
        print(
            json.dumps(
                {
                    "path": path,
                    "seconds": round(whole.audio_seconds, 1),
                    "whole": _top(model.tags, whole.scores),
                    "sampled": sampled,
                }
            ),
            flush=True,
        )


def _run(args: list[str]) -> list[dict[str, object]]:
    command = [sys.executable, "-m", "bench.local_model", *args]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the worker failed ({done.returncode})")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def agreement(rows: list[dict[str, object]], n: int) -> dict[str, float]:
    same_top1 = in_top3 = overlap = 0.0
    for row in rows:
        whole = row["whole"]
        sampled = row["sampled"][str(n)]  # type: ignore[index]
        assert isinstance(whole, list)
        assert isinstance(sampled, list)
        same_top1 += sampled[0] == whole[0]
        in_top3 += sampled[0] in whole
        overlap += len(set(sampled) & set(whole)) / 3
    count = max(1, len(rows))
    return {
        "top1_same": round(same_top1 / count, 3),
        "top1_in_whole_top3": round(in_top3 / count, 3),
        "top3_overlap": round(overlap / count, 3),
    }


def main() -> None:
    from genres.config import Settings

    default_windows = Settings().local_windows
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--windows", type=int, default=default_windows)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tracks", type=int, default=12, help="real tracks for the agreement")
    parser.add_argument("--music-dir", type=Path, default=MUSIC_DIR)
    parser.add_argument("--cost-worker", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--agreement-worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cost_worker:
        cost_worker(args.cost_worker, args.runs, args.windows, args.whole)
        return
    if args.agreement_worker:
        windows = sorted({*AGREEMENT_WINDOWS, args.windows})
        agreement_worker(args.agreement_worker, windows)
        return

    music = music_files(args.music_dir)
    if not music:
        print(
            f"no .ogg under {args.music_dir}: lengths are made from the packaged sample and the "
            "agreement uses the samples only (see this module's docstring for the real music)"
        )
    sources = music or [SAMPLES / "loop_garzul.flac"]
    tag = "wesnoth" if music else "sample"
    CACHE.mkdir(parents=True, exist_ok=True)

    cost: dict[int, dict[str, object]] = {}
    for minutes in LENGTHS_MINUTES:
        track = CACHE / f"{tag}-{minutes}min.mp3"
        if not track.exists():
            started = time.perf_counter()
            build_track(track, minutes, sources)
            print(f"made {track} in {time.perf_counter() - started:.1f} s")
        extra = ["--whole"] if minutes == 3 else []
        options = ["--runs", str(args.runs), "--windows", str(args.windows), *extra]
        [report] = _run(["--cost-worker", str(track), *options])
        runs = report["runs"]
        assert isinstance(runs, list)
        cost[minutes] = {
            "wall": round(statistics.median(r["wall"] for r in runs), 4),
            "cpu": round(statistics.median(r["cpu"] for r in runs), 4),
            "patches": runs[0]["patches"],
            "peak_rss_mb": round(float(report["vm_hwm_mb"]), 1),  # type: ignore[arg-type]
            "load_seconds": round(float(report["load_seconds"]), 3),  # type: ignore[arg-type]
            "top3": report["top3"],
        }
        if "whole" in report:
            cost[minutes]["whole"] = report["whole"]
        print(
            f"{minutes:>2}-minute mp3: {cost[minutes]['cpu']:.3f} s CPU, "
            f"{cost[minutes]['wall']:.3f} s wall per track (median of {args.runs}), "
            f"{cost[minutes]['patches']} windows, peak RSS {cost[minutes]['peak_rss_mb']:.0f} MB, "
            f"top 3 {cost[minutes]['top3']}"
        )
    whole3 = cost[3]["whole"]
    assert isinstance(whole3, dict)
    print(
        f"   3-minute mp3 analysed whole (every patch, as before): {whole3['cpu']:.2f} s CPU, "
        f"{whole3['wall']:.2f} s wall, {whole3['patches']} patches"
    )

    longest = sorted(music, key=lambda p: -p.stat().st_size)[: args.tracks]
    tracks = [*longest, *sorted(SAMPLES.glob("*.flac"))]
    rows = _run(["--agreement-worker", *map(str, tracks), "--windows", str(args.windows)])
    print(f"\nagreement, whole track vs {args.windows} sampled windows (top 3 genres):")
    for row in rows:
        name = Path(str(row["path"])).name
        sampled = row["sampled"][str(args.windows)]  # type: ignore[index]
        print(f"  {name:<32} {row['seconds']:>6} s  whole {row['whole']}  sampled {sampled}")
    by_windows = {n: agreement(rows, n) for n in sorted({*AGREEMENT_WINDOWS, args.windows})}
    for n, figures in by_windows.items():
        print(
            f"  {n} window(s): top 1 same {figures['top1_same']:.0%}, sampled top 1 in whole "
            f"top 3 {figures['top1_in_whole_top3']:.0%}, top 3 in common "
            f"{figures['top3_overlap']:.0%}  ({len(rows)} tracks)"
        )

    cpu_max = max(float(c["cpu"]) for c in cost.values())  # type: ignore[arg-type]
    rss_max = max(float(c["peak_rss_mb"]) for c in cost.values())  # type: ignore[arg-type]
    ten_vs_three = float(cost[10]["cpu"]) / float(cost[3]["cpu"])  # type: ignore[arg-type]
    checks = {
        "cpu_per_track_max_s": round(cpu_max, 4),
        "cpu_per_track_ok": cpu_max <= TARGET_CPU_PER_TRACK,
        "ten_vs_three_minute_cpu_ratio": round(ten_vs_three, 3),
        "ten_no_slower_than_three": ten_vs_three <= NOISE,
        "peak_rss_mb_max": rss_max,
        "peak_rss_ok": rss_max <= TARGET_PEAK_RSS_MB,
    }
    print(
        f"\nCPU per track, any length: max {cpu_max:.3f} s (target <= {TARGET_CPU_PER_TRACK}); "
        f"10 min / 3 min CPU {ten_vs_three:.2f} (target <= {NOISE}); peak RSS {rss_max:.0f} MB "
        f"(target <= {TARGET_PEAK_RSS_MB:.0f}); load average {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} CPUs (others' work inflates wall times, not CPU)"
    )
    summary = {
        "bench": "local_model",
        "windows": args.windows,
        "runs": args.runs,
        "source": tag,
        "cost": {f"{m}min": c for m, c in cost.items()},
        "agreement_tracks": len(rows),
        "agreement": {str(n): f for n, f in by_windows.items()},
        **checks,
        "meets_targets": all(v for k, v in checks.items() if k.endswith("_ok"))
        and bool(checks["ten_no_slower_than_three"]),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
