"""The embedded classifier backend (``CLASSIFIER_BACKEND=local``): musicnn's MSD model on ONNX.

``LocalClassifier`` implements ``genres.classify.port.Classifier``; ``classify_once`` classifies
one file or URL for the command line.
"""

from genres.classify.local.classifier import LocalClassifier, classify_once
from genres.classify.local.fetch import FetchPolicy
from genres.classify.local.model import MODEL_NAME, MusicnnModel

__all__ = ["MODEL_NAME", "FetchPolicy", "LocalClassifier", "MusicnnModel", "classify_once"]
