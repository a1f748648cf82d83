"""Training supernets: progressive shrinking with distillation, checkpointed for exact resume."""

from ofa_edge.training.progressive import RECIPES, Phase, TrainConfig, Trainer

__all__ = ["RECIPES", "Phase", "TrainConfig", "Trainer"]
