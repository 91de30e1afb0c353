"""Stage 1 of the pipeline: the key-frame CNN (timm ConvNeXt, six classes: laterality x category).

Importing this package imports torch; callers in Django code import it inside functions.
"""

from inference.ml.keyframe.config import CLASS_NAMES, KeyframeModelConfig
from inference.ml.keyframe.data import ImageItem, decode_gray
from inference.ml.keyframe.evaluate import compute_metrics, draw_plots
from inference.ml.keyframe.predictor import KeyframePredictor, predict_naively
from inference.ml.keyframe.trainer import TrainingReporter, TrainingResult, train_keyframe_model

__all__ = [
    "CLASS_NAMES",
    "ImageItem",
    "KeyframeModelConfig",
    "KeyframePredictor",
    "TrainingReporter",
    "TrainingResult",
    "compute_metrics",
    "decode_gray",
    "draw_plots",
    "predict_naively",
    "train_keyframe_model",
]
