"""The embedded classifier backend (``CLASSIFIER_BACKEND=local``): musicnn's MSD and MTT models
on ONNX.

``LocalClassifier`` implements ``genres.classify.port.Classifier``; the composition root builds
it (``genres.classify.factory.open_classifier``), the command line included.
"""

from genres.classify.local.classifier import LocalClassifier
from genres.classify.local.fetch import FetchPolicy
from genres.classify.local.model import MODEL_NAME, MusicnnModel

__all__ = ["MODEL_NAME", "FetchPolicy", "LocalClassifier", "MusicnnModel"]
