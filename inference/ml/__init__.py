"""Machine learning code: torch, timm, transformers and peft live here and only here.

Nothing under ``inference.ml`` imports Django models, and nothing outside it imports these modules
at start-up: tasks and commands import them inside the function that needs them, so the web
processes never load torch. Each model family is a small package with the same shape: a pydantic
config, the data path, a trainer, a predictor and its evaluation.
"""
