"""Suspected label errors: cleanlab's confident learning on out-of-fold predicted probabilities.

The probabilities come from a cross-validated linear head on the frozen backbone's features (the same cached
features the features scenario trains on), so every image is scored by a model that never saw it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from headstart.ground.params import Params

# The probe's own settings (measured on Fashion-MNIST, docs/data-health.md, "Label issues"), not the run's train.* ones.
PROBE = Params(train={"head_epochs": 100, "head_lr": 0.003, "weight_decay": 0.02, "label_smoothing": 0.0})


@dataclass(frozen=True)
class LabelIssues:
    """Images whose given label the out-of-fold model doubts, most doubtful first."""

    checked: int  # images scored
    issues: list[dict] = field(default_factory=list)  # {row, label, suggested, label_quality}
    precision: str = "float32"  # of the probe's products while it was fitted (probe_dtype)

    @property
    def fraction(self) -> float:
        """Share of the checked images flagged."""
        return len(self.issues) / self.checked if self.checked else 0.0

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {**asdict(self), "fraction": round(self.fraction, 4)}


def probe_dtype(precision: str = "auto") -> torch.dtype:
    """The dtype of the probe's matrix products while it is fitted. ``auto``: bfloat16 where the CPU has bfloat16
    instructions (AVX512_BF16 or AMX; on plain AVX-512 oneDNN would emulate them), else float32. The fit is
    compute-bound: bfloat16 products took 1.7 s against 2.9-3.5 s at 10,000 images and flagged 99.8 % the same
    images, with the same recall (docs/data-health.md); weights, optimizer and loss stay float32."""
    if precision == "float32":
        return torch.float32
    native = torch.backends.mkldnn.is_available() and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    if precision == "bfloat16" or native:
        return torch.bfloat16
    return torch.float32


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, folds: int, seed: int = 0, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """(images, classes) probabilities, each row from a linear head fitted on the other folds (stratified; folds
    are capped by the smallest class, which must have two images); ``dtype``: of the fit's products.

    The heads are fitted by full-batch AdamW (what the hybrid scenario's probe, :func:`fit_head`, does): on 8,000
    images it took 3.5 s against 36 s for scikit-learn's LogisticRegression, flagging as well (docs/data-health.md).
    """
    from sklearn.model_selection import StratifiedKFold

    standardised = ((features - features.mean(0)) / (features.std(0) + 1e-6)).astype(np.float32)
    classes = int(labels.max()) + 1
    smallest = int(np.bincount(labels).min())
    splits = list(StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed).split(standardised, labels))
    fitted_on = np.zeros((len(labels), len(splits)), np.float32)  # 1 where a row trains that fold's head
    for fold, (train, _) in enumerate(splits):
        fitted_on[train, fold] = 1.0
    heads = fit_fold_heads(standardised, labels.astype(np.int64), fitted_on, classes, seed, dtype)
    probabilities = np.zeros((len(labels), classes), np.float32)
    with torch.inference_mode():
        logits = heads(torch.from_numpy(standardised)).view(len(labels), len(splits), classes)
        for fold, (_, held_out) in enumerate(splits):
            probabilities[held_out] = torch.softmax(logits[held_out, fold], 1).numpy()
    return probabilities


def fit_fold_heads(
    features: np.ndarray,
    labels: np.ndarray,
    fitted_on: np.ndarray,
    classes: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> nn.Linear:
    """Every fold's linear head at once: one ``nn.Linear`` with ``folds x classes`` outputs, each fold's block
    trained on the mean loss of its own rows (``fitted_on[:, fold] == 1``), every block starting from the same
    seeded initialisation.

    The same fits as one :func:`fit_head` per fold (AdamW is element-wise and a fold's loss reaches only its own
    block; ``tests/model/test_label_issues.py`` compares them), but one pass over the features per step instead of
    one per fold: the steps are memory-bound (10 outputs read 1,280 floats per image), so 5 folds cost ~1/4.
    ``dtype`` bfloat16: the features are cast once and the products run under ``torch.autocast`` (master
    weights, gradients' accumulation and the loss in float32)."""
    from timm.optim import create_optimizer_v2

    p = PROBE.train
    folds = fitted_on.shape[1]
    torch.manual_seed(seed)
    template = nn.Linear(features.shape[1], classes)
    heads = nn.Linear(features.shape[1], folds * classes)
    with torch.no_grad():
        heads.weight.copy_(template.weight.repeat(folds, 1))
        heads.bias.copy_(template.bias.repeat(folds))
    optimizer = create_optimizer_v2(heads, opt="adamw", lr=p.head_lr, weight_decay=p.weight_decay)
    x, y = torch.from_numpy(features).to(dtype), torch.from_numpy(labels)[:, None].expand(-1, folds)
    weight = torch.from_numpy(fitted_on / fitted_on.sum(0))  # each fold's mean over its own rows
    mixed = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    for _ in range(p.head_epochs):
        with mixed:
            logits = heads(x)
        logits = logits.float().view(len(x), folds, classes).transpose(1, 2)  # (images, classes, folds)
        per_image = nn.functional.cross_entropy(logits, y, reduction="none", label_smoothing=p.label_smoothing)
        loss = (per_image * weight).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return heads


def find_label_issues(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0, precision: str = "float32"
) -> LabelIssues:
    """Rank suspected label errors (cleanlab ``find_label_issues``, ranked by self-confidence) and suggest the
    class the out-of-fold model prefers. ``labels`` are class indices 0..k-1, every class present twice;
    ``precision``: of the probe's fit (:func:`probe_dtype`)."""
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from cleanlab.rank import get_label_quality_scores

    dtype = probe_dtype(precision)
    probabilities = out_of_fold_probabilities(features, labels, folds, seed, dtype)
    # "both" (noise-rate pruning and confident-learning agree) flagged fewer clean images at the same recall than
    # cleanlab's default on Fashion-MNIST (docs/data-health.md, "Label issues")
    ranked = cleanlab_issues(
        labels, probabilities, filter_by="both", return_indices_ranked_by="self_confidence", n_jobs=1
    )
    quality = get_label_quality_scores(labels, probabilities)
    issues = [
        {
            "row": int(i),
            "label": int(labels[i]),
            "suggested": int(probabilities[i].argmax()),
            "label_quality": round(float(quality[i]), 4),
        }
        for i in ranked
    ]
    return LabelIssues(len(labels), issues, str(dtype).removeprefix("torch."))
