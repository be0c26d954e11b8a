"""Make tests/model/data/musicnn_reference.npz with musicnn's own TensorFlow graph.

Not part of the project's environment: run it once in a throwaway virtualenv::

    uv venv /tmp/tfvenv --python 3.11
    VIRTUAL_ENV=/tmp/tfvenv uv pip install 'tensorflow-cpu==2.21.*' librosa
    VIRTUAL_ENV=/tmp/tfvenv uv pip install --no-deps tf_keras musicnn==0.1.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfvenv/bin/python scripts/make_musicnn_reference.py

It builds ``musicnn.models.define_model(x, is_training, "MSD_musicnn", 50)`` exactly as
``musicnn.extractor.extractor`` does, restores the checkpoint shipped in the musicnn wheel, and
runs it (``is_training=False``), and the same for ``"MTT_musicnn"``, on:

* ``patches``: 2 seeded random log-mel patches, float32 (2, 187, 96), uniform in [0, 4);
* ``wave_patch``: the first 187 frames of the log-mel of ``waveform`` (below), computed with
  librosa as musicnn does but with the log taken in float32 (musicnn 0.1.0 casts to float16 first,
  which overflows; the service does not copy that bug).

Saved arrays:

* ``patches`` (2, 187, 96) float32 and ``tags`` (2, 50) float32: sigmoid outputs;
* ``waveform`` (48000,) int16: 3 s at 16 kHz, a deterministic mix of tones, a chirp, clicks and
  seeded noise; the audio is ``waveform / 32768`` as float32;
* ``mel`` (188, 96) float32: ``librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=512,
  hop_length=256, n_mels=96).T`` (Slaney mel scale and norm, centred frames, zero padding);
* ``wave_tags`` (50,) float32: the model's output for ``log10(10000 * mel[:187] + 1)``;
* ``mtt_tags`` (2, 50) and ``mtt_wave_tags`` (50,) float32: the same for the MTT model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import librosa
import musicnn
import numpy as np
import tensorflow as tf
from musicnn import configuration as config
from musicnn import models

SEED = 20251125
OUT = Path(__file__).resolve().parents[1] / "tests" / "model" / "data" / "musicnn_reference.npz"


def make_waveform() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    sr = config.SR
    t = np.arange(3 * sr) / sr
    wave = 0.25 * np.sin(2 * np.pi * 110.0 * t) + 0.15 * np.sin(2 * np.pi * 440.0 * t)
    wave += 0.1 * np.sin(2 * np.pi * (200.0 * t + 600.0 * t**2))  # chirp 200 Hz -> 3.8 kHz
    clicks = np.zeros_like(t)
    clicks[:: sr // 4] = 1.0
    wave += 0.3 * np.convolve(clicks, np.exp(-np.arange(400) / 40.0), mode="same")
    wave += 0.02 * rng.standard_normal(t.shape)
    return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


def run_model(name: str, n_labels: int, batch: np.ndarray) -> np.ndarray:
    """Sigmoid outputs of musicnn's ``name`` model, built and restored as its extractor does."""
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, *_ = models.define_model(x, is_training, name, n_labels)
        normalized_y = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        saver = tf.compat.v1.train.Saver()
        saver.restore(sess, os.path.dirname(musicnn.__file__) + f"/{name}/")
        out: np.ndarray = sess.run(normalized_y, feed_dict={x: batch, is_training: False})
    return out


def main() -> None:
    rng = np.random.default_rng(SEED)
    patches = rng.uniform(0.0, 4.0, size=(2, 187, config.N_MELS)).astype(np.float32)

    waveform = make_waveform()
    audio = waveform.astype(np.float32) / 32768.0
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=config.SR,
        hop_length=config.FFT_HOP,
        n_fft=config.FFT_SIZE,
        n_mels=config.N_MELS,
    ).T.astype(np.float32)
    wave_patch = np.log10(np.float32(10000) * mel[:187] + np.float32(1)).astype(np.float32)

    batch = np.concatenate([patches, wave_patch[None]], axis=0)
    out = run_model("MSD_musicnn", len(config.MSD_LABELS), batch)
    mtt_out = run_model("MTT_musicnn", len(config.MTT_LABELS), batch)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        patches=patches,
        tags=out[:2].astype(np.float32),
        waveform=waveform,
        mel=mel,
        wave_tags=out[2].astype(np.float32),
        mtt_tags=mtt_out[:2].astype(np.float32),
        mtt_wave_tags=mtt_out[2].astype(np.float32),
    )
    print(f"tensorflow {tf.__version__}, librosa {librosa.__version__}, numpy {np.__version__}")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)
    top = np.argsort(-out[2])[:5]
    print("wave_patch top tags:", [(config.MSD_LABELS[i], round(float(out[2][i]), 4)) for i in top])
    top = np.argsort(-mtt_out[2])[:5]
    print("MTT top tags:", [(config.MTT_LABELS[i], round(float(mtt_out[2][i]), 4)) for i in top])


if __name__ == "__main__":
    main()
