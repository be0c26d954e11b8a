"""How much audio a track must have before the model's answer is stored (issue 23).

Two permanent failures instead of predictions:

* ``AUDIO_TOO_SHORT``: less than ``min_seconds`` of audio decoded (``AUDIO_MIN_SECONDS``).
  The model reads patches of 187 frames, ``PATCH_SECONDS`` (2.976 s) at 16 kHz; the front end
  fills a shorter track by repeating it, and the model then answers, confidently, about a
  loop of a fraction of a second. The default, ``MIN_SECONDS`` (3 s), is one whole patch.
* ``AUDIO_TRUNCATED``: decodable for much less than the file states (below ``TRUNCATED_BELOW``
  of its stated length, and more than ``TRUNCATED_SLACK_SECONDS`` short of it): a partial
  file, such as a CDN serving the first bytes of an upload.

What a file states is FFmpeg's length of its first audio stream (a Xing/Info or VBRI header in
an MP3, STREAMINFO in a FLAC, the header of a WAV, an MP4's index...). It is judged only when
the bytes present cannot account for it: when the file's size at the stream's bit rate comes
to at least the stated length (within ``SIZE_ACCOUNTS_FOR``), the file is whole, or the length
is FFmpeg's estimate from that very size (an MP3 without a Xing or VBRI header, raw AAC: for a
variable bit rate such an estimate can be several times the real length, and proves nothing
about missing bytes). A file that states no length, or only such an estimate, is judged by the
minimum alone. Decoding that stopped at ``AUDIO_MAX_SECONDS`` is judged by neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from genres.classify.local.frontend import HOP, PATCH_FRAMES, SAMPLE_RATE
from genres.errors import AudioError
from genres_contracts import FailureKind

PATCH_SECONDS = (PATCH_FRAMES - 1) * HOP / SAMPLE_RATE
"""The audio one model input covers: 187 centred frames, 256 samples apart (2.976 s)."""

MIN_SECONDS = 3.0
"""``AUDIO_MIN_SECONDS``' default: one whole patch (``PATCH_SECONDS``, rounded up)."""

TRUNCATED_BELOW = 0.9
"""A track decoded for less than this share of its stated length is truncated..."""

TRUNCATED_SLACK_SECONDS = 1.0
"""...when it is also more than this many seconds short (encoder padding, rounding)."""

SIZE_ACCOUNTS_FOR = 1.02
"""The file's size at its bit rate accounts for a stated length up to this factor above it."""


@dataclass(slots=True)
class DecodeReport:
    """What decoding a track found out, filled in by ``audio.iter_decode``."""

    decoded_seconds: float = 0.0
    stated_seconds: float | None = None
    """The length the file states for its first audio stream, if any."""
    size_seconds: float | None = None
    """The file's size in bits over the stream's bit rate, when the stream has one."""
    capped: bool = False
    """Decoding stopped at ``max_seconds``, before the end of the audio."""
    cap_seconds: float | None = None
    """The ``max_seconds`` decoding was asked to stop at."""

    @property
    def claimed_seconds(self) -> float | None:
        """The stated length, when the bytes present cannot account for it; else ``None``."""
        stated = self.stated_seconds
        if stated is None or stated <= 0:
            return None
        if self.size_seconds is not None and stated <= self.size_seconds * SIZE_ACCOUNTS_FOR:
            return None
        return stated


def judge(report: DecodeReport, *, min_seconds: float) -> None:
    """Raise ``AudioError`` (``AUDIO_TRUNCATED`` or ``AUDIO_TOO_SHORT``) when the decoded
    audio may not be classified; truncation first, as it says why the audio is short."""
    if report.capped:
        return  # there is more audio than was decoded: neither short nor cut off
    decoded = report.decoded_seconds
    claimed = report.claimed_seconds
    if claimed is not None:
        expected = claimed if report.cap_seconds is None else min(claimed, report.cap_seconds)
        if decoded < TRUNCATED_BELOW * expected and expected - decoded > TRUNCATED_SLACK_SECONDS:
            raise AudioError(
                f"the audio is truncated: it decodes for {decoded:.2f} s of the {claimed:.2f} s "
                "its file states (a partial file?)",
                kind=FailureKind.AUDIO_TRUNCATED,
            )
    if decoded < min_seconds:
        raise AudioError(
            f"the audio is too short: {decoded:.2f} s, less than the {min_seconds:g} s the "
            "model needs (AUDIO_MIN_SECONDS)",
            kind=FailureKind.AUDIO_TOO_SHORT,
        )
