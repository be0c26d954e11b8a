"""Local model (musicnn MSD on onnxruntime): time per minute of audio, and peak memory.

    uv run python -m bench.local_model [--minutes 3] [--runs 3] [--batch 2] [--threads 2]

Builds a track by looping the packaged sample (``service/genres/samples/loop_garzul.flac``) to
``--minutes`` and encoding it as a 192 kb/s stereo 44.1 kHz mp3 in a temporary directory, then
classifies it in a fresh subprocess ``--runs`` times (the model loaded once). Reports, per
minute of audio, the median time of decode (PyAV + soxr), front end (mel spectrogram) and model
(onnxruntime), and the subprocess's peak RSS (``VmHWM``, checked against the parent's
``getrusage(RUSAGE_CHILDREN).ru_maxrss``). Prints a human summary and a final JSON line.

Targets: at most 0.5 s per minute of audio and 400 MB peak RSS on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "service" / "genres" / "samples" / "loop_garzul.flac"
TARGET_SECONDS_PER_MINUTE = 0.5
TARGET_PEAK_RSS_MB = 400.0


def build_track(path: Path, minutes: float) -> float:
    """Loop the sample to ``minutes`` and write it as mp3; the track's length in seconds."""
    with av.open(str(SAMPLE)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        loop = np.concatenate(
            [
                out.to_ndarray()
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ],
            axis=1,
        )
    total = int(minutes * 60 * rate)
    with av.open(str(path), "w", format="mp3") as out:
        encoder = out.add_stream("libmp3lame", rate=rate)
        encoder.layout = "stereo"
        encoder.bit_rate = 192_000
        written = 0
        while written < total:
            block = loop[:, : min(loop.shape[1], total - written)]
            for start in range(0, block.shape[1], 16384):
                part = np.ascontiguousarray(block[:, start : start + 16384], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
                frame.sample_rate = rate
                frame.pts = written + start
                for packet in encoder.encode(frame):
                    out.mux(packet)
            written += block.shape[1]
        for packet in encoder.encode(None):
            out.mux(packet)
    return total / rate


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(path: str, runs: int, batch: int, threads: int) -> None:
    """In the subprocess: load the model, analyse ``path`` ``runs`` times, print JSON."""
    from genres.classify.local.model import MusicnnModel, analyse

    rss_before = _vm_hwm_mb()
    started = time.perf_counter()
    model = MusicnnModel(batch_size=batch, intra_op_threads=threads)
    load = time.perf_counter() - started
    results = []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        analysis = analyse(path, model)
        wall = time.perf_counter() - started
        results.append(
            {
                "wall": wall,
                "cpu": time.process_time() - cpu_started,
                "decode": analysis.decode_seconds,
                "frontend": analysis.frontend_seconds,
                "model": analysis.model_seconds,
                "audio_seconds": analysis.audio_seconds,
                "patches": analysis.patches,
            }
        )
    top = sorted(zip(model.tags, analysis.scores.tolist(), strict=True), key=lambda t: -t[1])[:5]
    print(
        json.dumps(
            {
                "load_seconds": load,
                "runs": results,
                "vm_hwm_mb": _vm_hwm_mb(),
                "vm_hwm_before_model_mb": rss_before,
                "top_tags": [[name, round(score, 4)] for name, score in top],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="patches per model call")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.runs, args.batch, args.threads)
        return

    with tempfile.TemporaryDirectory() as tmp:
        track = Path(tmp) / "track.mp3"
        seconds = build_track(track, args.minutes)
        size_mb = track.stat().st_size / 1e6
        command = [
            sys.executable,
            "-m",
            "bench.local_model",
            "--worker",
            str(track),
            "--runs",
            str(args.runs),
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])
            ),
        }
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"the worker failed ({done.returncode})")
        child_maxrss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = json.loads(done.stdout.strip().splitlines()[-1])
    runs = report["runs"]
    minutes = seconds / 60

    def per_minute(stage: str) -> float:
        return statistics.median(run[stage] for run in runs) / minutes

    summary = {
        "bench": "local_model",
        "audio_seconds": round(seconds, 1),
        "mp3_mb": round(size_mb, 2),
        "runs": len(runs),
        "batch": args.batch,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "seconds_per_minute": round(per_minute("wall"), 4),
        "cpu_seconds_per_minute": round(per_minute("cpu"), 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "decode_seconds_per_minute": round(per_minute("decode"), 4),
        "frontend_seconds_per_minute": round(per_minute("frontend"), 4),
        "model_seconds_per_minute": round(per_minute("model"), 4),
        "median_track_seconds": round(statistics.median(run["wall"] for run in runs), 3),
        "model_load_seconds": round(report["load_seconds"], 3),
        "peak_rss_mb": round(report["vm_hwm_mb"], 1),
        "peak_rss_children_mb": round(child_maxrss_mb, 1),
        "rss_before_model_mb": round(report["vm_hwm_before_model_mb"], 1),
        "patches": runs[0]["patches"],
        "top_tags": report["top_tags"],
        "target_seconds_per_minute": TARGET_SECONDS_PER_MINUTE,
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
    }
    summary["meets_targets"] = (
        summary["seconds_per_minute"] <= TARGET_SECONDS_PER_MINUTE
        and summary["peak_rss_mb"] <= TARGET_PEAK_RSS_MB
    )
    print(f"track: {seconds:.0f} s looped sample as mp3 ({size_mb:.1f} MB), {len(runs)} runs")
    print(
        f"per minute of audio (median): {summary['seconds_per_minute']:.3f} s total = "
        f"decode {summary['decode_seconds_per_minute']:.3f} + front end "
        f"{summary['frontend_seconds_per_minute']:.3f} + model "
        f"{summary['model_seconds_per_minute']:.3f}"
        f"   (target <= {TARGET_SECONDS_PER_MINUTE})"
    )
    print(
        f"CPU time per minute of audio (all threads): {summary['cpu_seconds_per_minute']:.3f} s; "
        f"load average {summary['load_average_1m']} on {os.cpu_count()} CPUs (others' work "
        "inflates the wall times)"
    )
    print(
        f"whole track: {summary['median_track_seconds']:.2f} s; model load "
        f"{summary['model_load_seconds']:.2f} s; {summary['patches']} patches, batch {args.batch}, "
        f"{args.threads} threads, {os.cpu_count()} CPUs"
    )
    print(
        f"peak RSS: {summary['peak_rss_mb']:.0f} MB (VmHWM; ru_maxrss "
        f"{summary['peak_rss_children_mb']:.0f} MB; {summary['rss_before_model_mb']:.0f} MB "
        f"before the model)   (target <= {TARGET_PEAK_RSS_MB:.0f})"
    )
    print(f"top tags: {report['top_tags']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
