"""The linear-probe stage of LP-FT: the new head fitted on cached backbone features before fine-tuning."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.ground.params import Params


def fit_head(head: nn.Module, features: np.ndarray, targets: np.ndarray, params: Params) -> float:
    """Fit the classifier head on cached features: full-batch AdamW steps (the linear-probe stage of LP-FT)."""
    from timm.optim import create_optimizer_v2

    p = params.train
    optimizer = create_optimizer_v2(head, opt="adamw", lr=p.head_lr, weight_decay=p.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)
    x, y = torch.from_numpy(features), torch.from_numpy(targets)
    head.train()
    for _ in range(p.head_epochs):
        loss = loss_fn(head(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()
