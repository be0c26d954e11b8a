"""Convert musicnn's MSD_musicnn and MTT_musicnn TensorFlow-1 checkpoints to one ONNX graph,
without TensorFlow.

Run once by a developer (the service never downloads anything)::

    uv run python scripts/convert_musicnn.py            # pip-downloads musicnn==0.1.0
    uv run python scripts/convert_musicnn.py --wheel /path/to/musicnn-0.1.0-py3-none-any.whl

It writes, beside the local classifier (``service/genres/classify/local/``):

* ``musicnn_genres.onnx``: input ``patches`` float32 ``(N, 187, 96)`` (log-mel patches, time
  by mel band, ``log10(10000 * mel + 1)``), computed once and fed to both models; outputs
  ``genres`` float32 ``(N, 33)`` (sigmoid scores of the genre tags: MSD's genre tags, then
  MTT's classical, opera and choral, as ``genres.classify.local.tags`` selects and merges them),
  ``msd_tags`` and ``mtt_tags`` ``(N, 50)`` (each model's whole taggram, one row per patch),
  ``embedding`` ``(N, 1506)`` (MSD's pooled mid-level features after their batch-norm: what a
  trained head learns from) and ``msd_penultimate`` ``(N, 200)`` (MSD's hidden layer);
* ``musicnn_genres.json``: the names of the ``genres`` columns, in order;
* ``MUSICNN_LICENSE.txt``: musicnn's ISC licence and where it came from.

How the checkpoint is read: ``.index`` is a LevelDB-style SSTable whose keys are tensor names and
whose values are ``BundleEntryProto`` messages (dtype, shape, shard, offset, size, crc32c);
``.data-00000-of-00001`` holds the raw little-endian tensors at those offsets.

Each model is musicnn 0.1.0's ``build_musicnn`` (``musicnn/models.py``); ``MSD_musicnn`` and
``MTT_musicnn`` share its settings (num_filt_frontend=1.6, num_filt_midend=64,
num_units_backend=200) and differ only in their weights. In inference mode:

* input batch-norm (one channel);
* timbral front end: two convolutions over the time-padded (3, 3) input with kernels (7, 38) and
  (7, 67), 204 filters each, "valid"; ReLU; batch-norm; max over the mel axis;
* temporal front end: three convolutions with kernels (128, 1), (64, 1), (32, 1), 51 filters
  each, TensorFlow "same" padding (for an even kernel k it pads (k-1)//2 before and k//2 after:
  more at the end); ReLU; batch-norm; max over the mel axis;
* concatenation of the five front-end maps: 561 channels by 187 frames;
* mid end: three 1-D convolutions (kernel 7, padding 3 each side, 64 filters), each ReLU then
  batch-norm, the second and third with residual connections; dense concatenation of the front
  end and the three mid-end outputs: 753 channels;
* back end: max and mean over time, *interleaved per channel* (``concat([max, mean], axis=2)``
  of (N, 753, 1) maps, then flatten: max0, mean0, max1, mean1, ...); batch-norm; dense 200 with
  ReLU; batch-norm; dense 50; sigmoid.

Batch-norm epsilon is TensorFlow's default 1e-3; convolution kernels are stored HWIO.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from genres.classify.local.tags import MTT_GENRES, genre_indices

PACKAGE = "musicnn"
VERSION = "0.1.0"
WHEEL_NAME = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
"""sha256 of the wheel on PyPI (checked so a different file is never converted silently)."""
CHECKPOINT_DIRS = {"msd": "musicnn/MSD_musicnn/", "mtt": "musicnn/MTT_musicnn/"}
ONNX_NAME = "musicnn_genres.onnx"
TAGS_NAME = "musicnn_genres.json"
LICENSE_PATH = f"{PACKAGE}-{VERSION}.dist-info/LICENSE.md"
CONFIGURATION_PATH = "musicnn/configuration.py"

N_FRAMES = 187
N_MELS = 96
EMBEDDING_WIDTH = 1506
BN_EPSILON = 1e-3
OPSET = 18

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "service" / "genres" / "classify" / "local"

_TABLE_MAGIC = 0xDB4775248B80FB57
_DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 9: np.dtype("<i8")}


# ---------------------------------------------------------------------------------------------
# Reading the checkpoint
# ---------------------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _protobuf_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message; varints and length-delimited only."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            fields.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            fields.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            fields.append((number, struct.unpack_from("<I", buf, pos)[0]))
            pos += 4
        elif wire == 1:
            fields.append((number, struct.unpack_from("<Q", buf, pos)[0]))
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return fields


def _block_entries(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The key/value entries of one SSTable block (prefix-compressed keys, restart array)."""
    block = table[offset : offset + size]
    compression = table[offset + size]
    if compression != 0:
        raise ValueError(f"compressed SSTable blocks are not supported (type {compression})")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries: list[tuple[bytes, bytes]] = []
    pos = 0
    key = b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


@dataclass(frozen=True)
class BundleEntry:
    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]
    offset: int
    size: int


def read_index(index: bytes) -> dict[str, BundleEntry]:
    """Every tensor entry in a TensorFlow checkpoint's ``.index`` SSTable."""
    footer = index[-48:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != _TABLE_MAGIC:
        raise ValueError("not a TensorFlow checkpoint index (bad SSTable magic)")
    pos = 0
    _meta_offset, pos = _varint(footer, pos)
    _meta_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    entries: dict[str, BundleEntry] = {}
    for _, handle in _block_entries(index, index_offset, index_size):
        block_offset, hpos = _varint(handle, 0)
        block_size, _ = _varint(handle, hpos)
        for key, value in _block_entries(index, block_offset, block_size):
            if not key:  # the BundleHeaderProto
                continue
            dtype_code = 0
            shape: list[int] = []
            offset = size = 0
            shard = 0
            for number, field in _protobuf_fields(value):
                if number == 1 and isinstance(field, int):
                    dtype_code = field
                elif number == 2 and isinstance(field, bytes):
                    for dim_number, dim in _protobuf_fields(field):
                        if dim_number == 2 and isinstance(dim, bytes):
                            dim_size = 0
                            for size_number, size_value in _protobuf_fields(dim):
                                if size_number == 1 and isinstance(size_value, int):
                                    dim_size = size_value
                            shape.append(dim_size)
                elif number == 3 and isinstance(field, int):
                    shard = field
                elif number == 4 and isinstance(field, int):
                    offset = field
                elif number == 5 and isinstance(field, int):
                    size = field
                elif number == 7:
                    raise ValueError(f"sliced tensors are not supported ({key!r})")
            if shard != 0:
                raise ValueError(f"multi-shard checkpoints are not supported ({key!r})")
            name = key.decode()
            if dtype_code not in _DTYPES:
                continue  # e.g. strings; none of the model's weights
            entries[name] = BundleEntry(name, _DTYPES[dtype_code], tuple(shape), offset, size)
    return entries


def read_checkpoint(index: bytes, data: bytes) -> dict[str, np.ndarray]:
    """All numeric tensors of a single-shard TF checkpoint, by name."""
    tensors: dict[str, np.ndarray] = {}
    for name, entry in read_index(index).items():
        count = int(np.prod(entry.shape)) if entry.shape else 1
        if count * entry.dtype.itemsize != entry.size:
            raise ValueError(f"{name}: size {entry.size} does not match shape {entry.shape}")
        raw = data[entry.offset : entry.offset + entry.size]
        tensors[name] = np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape).copy()
    return tensors


# ---------------------------------------------------------------------------------------------
# Building the ONNX graph
# ---------------------------------------------------------------------------------------------


class _Graph:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.used: set[str] = set()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, key: str) -> np.ndarray:
        self.used.add(key)
        return self.weights[key]

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: object) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def batch_norm_scale(self, layer: str) -> np.ndarray:
        gamma = self.weights[f"{layer}/gamma"].astype(np.float64)
        var = self.weights[f"{layer}/moving_variance"].astype(np.float64)
        return gamma / np.sqrt(var + BN_EPSILON)

    def batch_norm(self, x: str, layer: str, channel_axis_rank: int) -> str:
        """Inference batch-norm as a per-channel scale and shift.

        ``channel_axis_rank`` is how many axes follow the channel axis (to shape the constants).
        """
        gamma = self.weight(f"{layer}/gamma").astype(np.float64)
        beta = self.weight(f"{layer}/beta").astype(np.float64)
        mean = self.weight(f"{layer}/moving_mean").astype(np.float64)
        var = self.weight(f"{layer}/moving_variance").astype(np.float64)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        shift = beta - mean * scale
        shape = (-1,) + (1,) * channel_axis_rank
        s = self.const(f"{layer}_scale", scale.astype(np.float32).reshape(shape))
        b = self.const(f"{layer}_shift", shift.astype(np.float32).reshape(shape))
        return self.op("Add", [self.op("Mul", [x, s], "bn_mul"), b], "bn")

    def conv(self, x: str, layer: str, kernel: np.ndarray, pads: list[int]) -> str:
        w = self.const(f"{layer}_w", np.ascontiguousarray(kernel, dtype=np.float32))
        b = self.const(f"{layer}_b", self.weight(f"{layer}/bias").astype(np.float32))
        return self.op("Conv", [x, w, b], "conv", pads=pads)


def _same_pads(kernel: int) -> tuple[int, int]:
    """TensorFlow "same" padding for stride 1: the extra pad of an even kernel goes at the end."""
    total = kernel - 1
    return total // 2, total - total // 2


@dataclass(frozen=True)
class _Head:
    """One musicnn model's node names: its sigmoid output and two inner layers."""

    sigmoid: str
    pooled: str
    """The back end's pooled features after their batch-norm (N, 1506): what the dense layer
    reads."""
    penultimate: str
    """The 200-wide hidden layer after its batch-norm (N, 200)."""


def _build_head(g: _Graph, patches: str, prefix: str) -> _Head:
    """One musicnn model (MSD or MTT: the same architecture) on ``patches``.

    Layers are read from ``g.weights`` under ``{prefix}/`` (NCHW: channels, time, mel).
    """
    axes1 = g.const("axes1", np.array([1], dtype=np.int64))
    # (N, 187, 96) -> (N, 1, 187, 96); the input batch-norm has one channel.
    x = g.op("Unsqueeze", [patches, axes1], "input4d")
    x = g.batch_norm(x, f"{prefix}/batch_normalization", 2)

    mel_axis = g.const("axes3", np.array([3], dtype=np.int64))
    front: list[str] = []

    def pooled_block(y: str, bn_name: str) -> str:
        """``max over mel of BN(ReLU(y))``, computed on the pooled map rather than the full one.

        ReLU and the batch-norm's per-channel ``scale * v + shift`` are monotonic, so the max
        over the mel axis commutes with them: it is ``BN(ReLU(max y))`` for channels with a
        positive scale and ``BN(ReLU(min y))`` for a negative one (exactly, in floating point
        too, as rounding is monotonic). This spares three passes over the largest tensors of
        the model and the memory they would take.
        """
        scale = g.batch_norm_scale(bn_name)
        pooled = g.op("ReduceMax", [y, mel_axis], "melmax", keepdims=0)  # (N, C, T)
        if np.any(scale < 0):
            smallest = g.op("ReduceMin", [y, mel_axis], "melmin", keepdims=0)
            positive = g.const(f"{bn_name}_positive", (scale >= 0).reshape(-1, 1))
            pooled = g.op("Where", [positive, pooled, smallest], "melpick")
        return g.batch_norm(g.op("Relu", [pooled], "relu"), bn_name, 1)

    # Timbral blocks: conv -> ReLU -> BN -> max over the mel axis, input padded (3, 3) in time.
    for conv_name, bn_name in (
        ("conv2d", "batch_normalization_1"),
        ("conv2d_1", "batch_normalization_2"),
    ):
        kernel = g.weight(f"{prefix}/{conv_name}/kernel")  # HWIO
        y = g.conv(x, f"{prefix}/{conv_name}", kernel.transpose(3, 2, 0, 1), pads=[3, 0, 3, 0])
        front.append(pooled_block(y, f"{prefix}/{bn_name}"))
    # Temporal blocks: the same with "same" padding in time.
    for conv_name, bn_name in (
        ("conv2d_2", "batch_normalization_3"),
        ("conv2d_3", "batch_normalization_4"),
        ("conv2d_4", "batch_normalization_5"),
    ):
        kernel = g.weight(f"{prefix}/{conv_name}/kernel")
        before, after = _same_pads(kernel.shape[0])
        y = g.conv(
            x, f"{prefix}/{conv_name}", kernel.transpose(3, 2, 0, 1), pads=[before, 0, after, 0]
        )
        front.append(pooled_block(y, f"{prefix}/{bn_name}"))
    front_features = g.op("Concat", front, "frontend", axis=1)  # (N, 561, 187)

    # Mid end: 1-D convolutions over time whose "width" spans all channels.
    def midend_conv(inp: str, conv_name: str, bn_name: str) -> str:
        kernel = g.weight(f"{prefix}/{conv_name}/kernel")  # (7, C_in, 1, C_out)
        k = kernel[:, :, 0, :].transpose(2, 1, 0)  # (C_out, C_in, 7)
        y = g.conv(inp, f"{prefix}/{conv_name}", k, pads=[3, 3])
        return g.batch_norm(g.op("Relu", [y], "relu"), f"{prefix}/{bn_name}", 1)

    c1 = midend_conv(front_features, "conv2d_5", "batch_normalization_6")
    c2 = g.op("Add", [midend_conv(c1, "conv2d_6", "batch_normalization_7"), c1], "res2")
    c3 = g.op("Add", [midend_conv(c2, "conv2d_7", "batch_normalization_8"), c2], "res3")
    features = g.op("Concat", [front_features, c1, c2, c3], "midend", axis=1)  # (N, 753, 187)

    # Back end: temporal max and mean, interleaved per channel.
    time_axis = g.const("axes2", np.array([2], dtype=np.int64))
    max_pool = g.op("ReduceMax", [features, time_axis], "maxpool", keepdims=1)  # (N, 753, 1)
    mean_pool = g.op("ReduceMean", [features, time_axis], "meanpool", keepdims=1)
    pooled = g.op("Concat", [max_pool, mean_pool], "pool", axis=2)  # (N, 753, 2)
    flat = g.op("Flatten", [pooled], "flat", axis=1)  # (N, 1506): max0, mean0, max1, ...
    flat = g.batch_norm(flat, f"{prefix}/batch_normalization_9", 0)

    def dense(inp: str, layer: str) -> str:
        kernel = g.const(f"{layer}_w", g.weight(f"{layer}/kernel").astype(np.float32))
        bias = g.const(f"{layer}_b", g.weight(f"{layer}/bias").astype(np.float32))
        return g.op("Add", [g.op("MatMul", [inp, kernel], "matmul"), bias], "dense")

    hidden = g.batch_norm(
        g.op("Relu", [dense(flat, f"{prefix}/dense")], "relu"),
        f"{prefix}/batch_normalization_10",
        0,
    )
    logits = dense(hidden, f"{prefix}/dense_1")
    return _Head(g.op("Sigmoid", [logits], f"{prefix}_sigmoid"), flat, hidden)


def _model_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inference weights of a checkpoint, without ``model/`` and the optimiser's state."""
    return {
        k.removeprefix("model/"): v
        for k, v in weights.items()
        if not any(part in k for part in ("Adam", "beta1_power", "beta2_power", "global_step"))
    }


def build_onnx(
    msd_weights: dict[str, np.ndarray],
    mtt_weights: dict[str, np.ndarray],
    msd_labels: list[str],
    mtt_labels: list[str],
) -> tuple[onnx.ModelProto, list[str]]:
    """Both musicnn models on one input, and the merged genre output (see ``tags.py``).

    Returns the model and the names of its ``genres`` output's columns.
    """
    weights = {f"msd/{k}": v for k, v in _model_weights(msd_weights).items()}
    weights |= {f"mtt/{k}": v for k, v in _model_weights(mtt_weights).items()}
    g = _Graph(weights)
    patches = "patches"
    msd_head = _build_head(g, patches, "msd")
    msd, mtt = msd_head.sigmoid, _build_head(g, patches, "mtt").sigmoid
    g.nodes.append(helper.make_node("Identity", [msd], ["msd_tags"], name="msd_tags"))
    g.nodes.append(helper.make_node("Identity", [mtt], ["mtt_tags"], name="mtt_tags"))
    # The features a trained head learns from (measured against the penultimate layer and the
    # genre scores: see README, "A trained head"): computed on the way to the tags anyway.
    g.nodes.append(helper.make_node("Identity", [msd_head.pooled], ["embedding"], name="embedding"))
    g.nodes.append(
        helper.make_node(
            "Identity", [msd_head.penultimate], ["msd_penultimate"], name="msd_penultimate"
        )
    )

    # The genre columns: MSD's genre tags as they are, then each MTT genre as the max of the
    # MTT tags merged into it (per patch: "classical" or "classic", whichever is surer).
    msd_genres = genre_indices(msd_labels)
    msd_picks = g.const("msd_genres", np.array([i for i, _ in msd_genres], dtype=np.int64))
    columns = [g.op("Gather", [msd, msd_picks], "msd_genres", axis=1)]
    names = [name for _, name in msd_genres]
    merge_axis = g.const("axes1", np.array([1], dtype=np.int64))
    for name, sources in MTT_GENRES.items():
        indices = np.array([mtt_labels.index(source) for source in sources], dtype=np.int64)
        picked = g.op("Gather", [mtt, g.const(f"mtt_{name}", indices)], f"mtt_{name}", axis=1)
        columns.append(g.op("ReduceMax", [picked, merge_axis], f"mtt_{name}_max", keepdims=1))
        names.append(name)
    g.nodes.append(helper.make_node("Concat", columns, ["genres"], name="genres", axis=1))

    missing = set(weights) - g.used
    if missing:
        raise ValueError(f"checkpoint tensors not used by the graph: {sorted(missing)}")

    graph = helper.make_graph(
        g.nodes,
        "musicnn_genres",
        [helper.make_tensor_value_info(patches, TensorProto.FLOAT, ["N", N_FRAMES, N_MELS])],
        [
            helper.make_tensor_value_info("genres", TensorProto.FLOAT, ["N", len(names)]),
            helper.make_tensor_value_info("msd_tags", TensorProto.FLOAT, ["N", 50]),
            helper.make_tensor_value_info("mtt_tags", TensorProto.FLOAT, ["N", 50]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBEDDING_WIDTH]),
            helper.make_tensor_value_info("msd_penultimate", TensorProto.FLOAT, ["N", 200]),
        ],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="genres scripts/convert_musicnn.py",
        doc_string=(
            f"musicnn {VERSION} MSD_musicnn and MTT_musicnn (ISC licence, Music Technology "
            "Group, Universitat Pompeu Fabra), converted from their TensorFlow checkpoints and "
            "run side by side on one input. Input: log10(10000*mel+1) patches (N, 187, 96) of a "
            "16 kHz mel spectrogram (n_fft 512, hop 256, 96 Slaney bands). Outputs: genres "
            f"(N, {len(names)}) sigmoid scores of the genre tags (MSD's genre tags, then MTT's "
            "classical (max of classical and classic), opera and choral); msd_tags (N, 50) and "
            "mtt_tags (N, 50), each model's whole taggram; embedding (N, 1506), MSD's pooled "
            "mid-level features after their batch-norm (max and mean over time per channel, "
            "interleaved); msd_penultimate (N, 200), MSD's hidden layer after its batch-norm."
        ),
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model, names


# ---------------------------------------------------------------------------------------------
# Getting the wheel and writing the outputs
# ---------------------------------------------------------------------------------------------


def download_wheel(directory: Path) -> Path:
    """``pip download musicnn==0.1.0 --no-deps`` with whichever pip is at hand."""
    spec = f"{PACKAGE}=={VERSION}"
    candidates: list[list[str]] = [[sys.executable, "-m", "pip"]]
    if pip := shutil.which("pip"):
        candidates.append([pip])
    if uv := shutil.which("uv"):
        candidates.append([uv, "tool", "run", "pip"])
    for pip_command in candidates:
        command = [*pip_command, "download", spec, "--no-deps", "--only-binary=:all:"]
        result = subprocess.run(
            [*command, "-d", str(directory)], capture_output=True, text=True, check=False
        )
        wheel = directory / WHEEL_NAME
        if result.returncode == 0 and wheel.exists():
            return wheel
    raise SystemExit(f"could not download {spec}; pass --wheel PATH")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_labels(configuration_py: str, variable: str) -> list[str]:
    """``MSD_LABELS`` or ``MTT_LABELS`` from musicnn/configuration.py, without importing it."""
    namespace: dict[str, object] = {}
    for line in configuration_py.splitlines():
        if line.startswith(variable):
            exec(line, {}, namespace)  # a literal list of strings, from a checked wheel
    labels = namespace.get(variable)
    if not isinstance(labels, list) or len(labels) != 50:
        raise ValueError(f"{variable} not found in configuration.py")
    return [str(label) for label in labels]


def convert(wheel: Path, out_dir: Path) -> Path:
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not that of {WHEEL_NAME} on PyPI")
    checkpoints: dict[str, dict[str, np.ndarray]] = {}
    with zipfile.ZipFile(wheel) as zf:
        for key, directory in CHECKPOINT_DIRS.items():
            checkpoints[key] = read_checkpoint(
                zf.read(directory + ".index"), zf.read(directory + ".data-00000-of-00001")
            )
        licence = zf.read(LICENSE_PATH).decode()
        configuration = zf.read(CONFIGURATION_PATH).decode()
    model, names = build_onnx(
        checkpoints["msd"],
        checkpoints["mtt"],
        read_labels(configuration, "MSD_LABELS"),
        read_labels(configuration, "MTT_LABELS"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / ONNX_NAME
    buffer = io.BytesIO()
    onnx.save_model(model, buffer)
    onnx_path.write_bytes(buffer.getvalue())
    (out_dir / TAGS_NAME).write_text(json.dumps(names, indent=1) + "\n")
    sources = ", ".join(f"{d}.index, {d}.data-00000-of-00001" for d in CHECKPOINT_DIRS.values())
    (out_dir / "MUSICNN_LICENSE.txt").write_text(
        f"The model {ONNX_NAME} is converted from musicnn's MSD_musicnn and MTT_musicnn\n"
        "checkpoints.\n\n"
        f"Package:      {PACKAGE} {VERSION} (PyPI)\n"
        f"Wheel:        {WHEEL_NAME}\n"
        f"Wheel sha256: {digest}\n"
        f"Weights from: {sources}\n"
        f"Tag names:    {CONFIGURATION_PATH} (MSD_LABELS, MTT_LABELS)\n"
        f"Licence file: {LICENSE_PATH} (ISC), reproduced below\n"
        "Converted by: scripts/convert_musicnn.py\n\n"
        "-----------------------------------------------------------------------------\n\n"
        + licence.strip()
        + "\n"
    )
    n_params = sum(
        int(np.prod(init.dims)) for init in model.graph.initializer if len(init.dims) > 0
    )
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes, {n_params} constants)")
    return onnx_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} (else pip-downloaded)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args()
    if args.wheel is not None:
        convert(args.wheel, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        convert(download_wheel(Path(tmp)), args.out)


if __name__ == "__main__":
    main()
