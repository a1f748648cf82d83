"""Training supernets: progressive shrinking with distillation, checkpointed for exact resume."""

from ofa_edge.training.config import DEFAULT_RECIPE, Phase, TrainConfig, load_recipe, recipe_names
from ofa_edge.training.progressive import Trainer, fit_config

__all__ = ["DEFAULT_RECIPE", "Phase", "TrainConfig", "Trainer", "fit_config", "load_recipe", "recipe_names"]
