"""``genres learn`` and trained heads: which features to learn from, the cost of training on
500 clips, and the cost per track with and without a head.

    uv run python -m bench learn [--music DIR] [--clips 500] [--tracks 24]

Real audio labelled by its source (never shipped or downloaded by the bench; get it once)::

    cd /tmp && apt-get download sonic-pi-samples nexuiz-music wesnoth-1.16-music && \\
        for f in *.deb; do dpkg -x "$f" /tmp/hl_audio/x; done

Labels: ``orchestral`` (wesnoth's soundtrack, GPL-2+), ``electronic`` (nexuiz's tracks inside
``music.pk3``, GPL-2+), and four of Sonic Pi's CC0 sample families: ``tabla``, ``ambient``
(``ambi_*``), ``drum loop`` (``loop_*``) and ``bass`` (``bass_*``), short samples repeated to
fill their clip. Clips are 16 kHz mono WAV files in ``CACHE``, one folder per label (an
ImageFolder ``genres learn`` takes), made once.

Three parts:

* **Features.** One example per source file (so no two examples share audio), its embedding,
  penultimate layer and 33 scores averaged over 4 windows; a head on each, standardised or
  not, by stratified k-fold cross-validation (``classify.local.learn.cross_validate``):
  held-out top-1 and top-3.
* **Training 500 clips.** ``genres learn`` on ``--clips`` clips (5 s each, cut along the
  sources) in a subprocess: wall and CPU seconds, the training's own seconds, peak RSS.
* **Cost per track.** ``LocalClassifier.classify`` on ``--tracks`` clips in this process
  (``workers=0``), without and with the head just written: CPU seconds per track.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from genres.classify.local.audio import SAMPLE_RATE, decode
from genres.classify.local.model import MusicnnModel

MUSIC = Path("/tmp/hl_audio/x/usr/share")
CACHE = Path("/tmp/genres-bench-learn")
CLIP_SECONDS = 5.0
SONIC_PI = {"tabla": "tabla_", "ambient": "ambi_", "drum loop": "loop_", "bass": "bass_"}


def sources(music: Path) -> dict[str, list[Path]]:
    """Label -> its source files (nexuiz's are unpacked from its pk3 once)."""
    found: dict[str, list[Path]] = {
        "orchestral": sorted((music / "games" / "wesnoth").rglob("*.ogg")),
    }
    pk3 = music / "games" / "nexuiz" / "data" / "music.pk3"
    unpacked = CACHE / "nexuiz"
    if pk3.exists() and not unpacked.exists():
        with zipfile.ZipFile(pk3) as zf:
            for name in zf.namelist():
                if name.endswith(".ogg"):
                    (unpacked / Path(name).name).parent.mkdir(parents=True, exist_ok=True)
                    (unpacked / Path(name).name).write_bytes(zf.read(name))
    found["electronic"] = sorted(unpacked.glob("*.ogg"))
    samples = music / "sonic-pi" / "samples"
    for label, prefix in SONIC_PI.items():
        found[label] = sorted(samples.glob(f"{prefix}*.flac"))
    return {label: paths for label, paths in found.items() if paths}


def write_wav(path: Path, audio: npt.NDArray[np.float32]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def filled(audio: npt.NDArray[np.float32], seconds: float) -> npt.NDArray[np.float32]:
    """At least ``seconds`` of ``audio``, repeating a short sample."""
    need = int(seconds * SAMPLE_RATE)
    if len(audio) >= need:
        return audio
    return np.tile(audio, need // max(1, len(audio)) + 1)[:need]


def cuts(path: Path, seconds: float) -> Iterator[npt.NDArray[np.float32]]:
    """Consecutive ``seconds``-long clips of a file (one, repeated, for a short sample)."""
    audio = filled(decode(path, max_seconds=600.0), seconds)
    size = int(seconds * SAMPLE_RATE)
    for start in range(0, len(audio) - size + 1, size):
        yield audio[start : start + size]


def per_file_set(found: dict[str, list[Path]]) -> Path:
    """One 12 s clip per source file (from its middle), one folder per label."""
    root = CACHE / "per-file"
    if not root.exists():
        for label, paths in found.items():
            for path in paths:
                audio = filled(decode(path, max_seconds=600.0), 12.0)
                middle = max(0, len(audio) // 2 - 6 * SAMPLE_RATE)
                write_wav(
                    root / label / f"{path.stem}.wav", audio[middle : middle + 12 * SAMPLE_RATE]
                )
    return root


def clip_set(found: dict[str, list[Path]], count: int) -> Path:
    """``count`` clips of ``CLIP_SECONDS``, the labels in turn, cut along their sources."""
    root = CACHE / f"clips-{count}"
    if root.exists():
        return root
    streams = {
        label: (clip for path in paths for clip in cuts(path, CLIP_SECONDS))
        for label, paths in found.items()
    }
    made = 0
    while made < count and streams:
        for label in list(streams):
            clip = next(streams[label], None)
            if clip is None:
                del streams[label]
                continue
            write_wav(root / label / f"{made:04d}.wav", clip)
            made += 1
            if made == count:
                break
    return root


def features(root: Path) -> dict[str, object]:
    """Held-out top-1/top-3 of a head on each layer, standardised or not."""
    from genres.classify.local.analysis import WINDOW_SAMPLES
    from genres.classify.local.frontend import log_mel, to_patches
    from genres.classify.local.learn import cross_validate, one_hot

    model = MusicnnModel().load()
    names = ("embedding", "msd_penultimate", "genres")
    rows: dict[str, list[npt.NDArray[np.float32]]] = {n: [] for n in names}
    truth: list[str] = []
    for path in sorted(root.rglob("*.wav")):
        audio = decode(path)
        starts = np.linspace(0, len(audio) - WINDOW_SAMPLES, 4).astype(int)
        patches = np.stack([to_patches(log_mel(audio[s : s + WINDOW_SAMPLES]))[0] for s in starts])
        for name, out in zip(names, model.run(patches, names), strict=True):
            rows[name].append(out.mean(axis=0))
        truth.append(path.parent.name)
    labels = sorted(set(truth))
    targets = one_hot(truth, labels)
    folds = min(5, min(truth.count(label) for label in labels))
    report: dict[str, object] = {"examples": {label: truth.count(label) for label in labels}}
    for name in names:
        x = np.array(rows[name], np.float64)
        for standardise in (True, False):
            started = time.perf_counter()
            cv = cross_validate(x, targets, standardise=standardise, folds=folds)
            key = f"{name}({x.shape[1]}){'' if standardise else ' raw'}"
            report[key] = {
                "top1": round(cv.top1, 3),
                "top3": round(cv.top3, 3),
                "l2": cv.l2,
                "seconds": round(time.perf_counter() - started, 2),
            }
            print(f"  {key:<28} top-1 {cv.top1:.1%}  top-3 {cv.top3:.1%}  (L2 {cv.l2:g})")
    return report


def teacher_targets(root: Path, top_n: int = 10) -> dict[str, object]:
    """Hard against soft targets from a teacher with a score distribution of its own.

    Replicate's answers cannot be had here, so the MTT model stands in for it: another tagger
    with its own vocabulary (50 tags), whose top ``top_n`` scores are kept as Replicate's are
    stored. The head (on MSD's embedding) learns the teacher's top label, or its top-N scores
    normalised; held-out agreement with the teacher's top label is what the cascade needs.
    """
    from genres.classify.local.examples import Example, restrict
    from genres.classify.local.frontend import log_mel, to_patches
    from genres.classify.local.learn import cross_validate

    model = MusicnnModel().load()
    tags = [f"mtt tag {j}" for j in range(50)]  # names do not matter to the measurement
    embeddings, examples_soft, examples_hard = [], [], []
    for i, path in enumerate(sorted(root.rglob("*.wav"))):
        patches = to_patches(log_mel(decode(path)))
        embedding, mtt = model.run(patches, ("embedding", "mtt_tags"))
        scores = mtt.mean(axis=0)
        best = np.argsort(-scores)[:top_n]
        soft = {tags[j]: float(scores[j]) for j in best}
        examples_soft.append(Example(str(i), soft))
        examples_hard.append(Example(str(i), {tags[best[0]]: 1.0}))
        embeddings.append(embedding.mean(axis=0))
    report: dict[str, object] = {}
    for name, examples in (("top label", examples_hard), ("soft top-10", examples_soft)):
        kept, _ = restrict(examples, 5)
        index = [int(e.audio) for e in kept]
        labels = sorted({label for e in kept for label in e.target})
        targets = np.array([[e.target.get(label, 0.0) for label in labels] for e in kept])
        # Only labels that are some track's top label are kept by ``restrict``; score both
        # variants on the same tracks and labels.
        cv = cross_validate(np.array(embeddings)[index], targets, standardise=False)
        report[name] = {
            "tracks": len(kept),
            "labels": len(labels),
            "top1": round(cv.top1, 3),
            "top3": round(cv.top3, 3),
        }
        print(
            f"  {name:<12} {len(kept)} tracks, {len(labels)} labels: agreement with the "
            f"teacher's top label {cv.top1:.1%}, in top 3 {cv.top3:.1%}"
        )
    return report


def train_500(root: Path, out: Path) -> dict[str, float]:
    """``genres learn ROOT --out OUT`` in a subprocess: wall, CPU, training seconds, peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "genres.cli", "learn", str(root), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**__import__("os").environ, "COLUMNS": "120"},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(result.stdout)
    if result.returncode != 0:
        raise SystemExit(f"genres learn failed: {result.stderr}")
    trained = re.search(r"trained in ([0-9.]+) s", result.stdout)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "training_s": float(trained.group(1)) if trained else float("nan"),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
    }


async def cost_per_track(paths: list[Path], head: Path, rounds: int = 3) -> tuple[float, float]:
    """Median CPU seconds of ``classify`` per track in this process, without and with the
    head, alternated track by track so both see the same load."""
    import httpx

    from genres.classify.local.classifier import LocalClassifier
    from genres.classify.local.head import Head

    model = MusicnnModel().load()
    async with httpx.AsyncClient() as client:
        plain = LocalClassifier(http_client=client, model=model, workers=0)
        headed = LocalClassifier(http_client=client, model=model, workers=0, head=Head.load(head))
        cpu: dict[LocalClassifier, list[float]] = {plain: [], headed: []}
        await plain.classify(str(paths[0]))  # warm up
        for _ in range(rounds):
            for path in paths:
                for classifier in (plain, headed):
                    started = time.process_time()
                    await classifier.classify(str(path))
                    cpu[classifier].append(time.process_time() - started)
        await plain.aclose()
        await headed.aclose()
    return statistics.median(cpu[plain]), statistics.median(cpu[headed])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--tracks", type=int, default=24)
    args = parser.parse_args()
    found = sources(args.music)
    if len(found) < 2:
        raise SystemExit(f"no labelled audio under {args.music}: see this module's docstring")
    print("sources:", {label: len(paths) for label, paths in found.items()})
    print("features (one example per source file, k-fold held out):")
    figures = features(per_file_set(found))
    clips = clip_set(found, args.clips)
    print("teacher targets (MTT's tags standing in for Replicate's):")
    figures["teacher"] = teacher_targets(clips)
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.npz"
        training = train_500(clips, head)
        print(f"genres learn on {args.clips} clips: {training}")
        tracks = sorted(clips.rglob("*.wav"))[:: max(1, args.clips // args.tracks)][: args.tracks]
        plain, with_head = asyncio.run(cost_per_track(tracks, head))
    print(
        f"CPU per track ({len(tracks)} clips of {CLIP_SECONDS:g} s, median): "
        f"{plain:.4f} s without a head, {with_head:.4f} s with ({with_head / plain - 1:+.1%})"
    )
    print(
        json.dumps(
            {
                "features": figures,
                "training": training,
                "cpu_per_track_s": {"plain": round(plain, 4), "head": round(with_head, 4)},
            }
        )
    )


if __name__ == "__main__":
    main()
