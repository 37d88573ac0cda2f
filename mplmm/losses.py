"""The task losses, shared by training (:mod:`mplmm.train`) and scoring (:mod:`mplmm.evaluate`).

L1 for regression and cross-entropy for classification, as MPLMM; :func:`loss_target` shapes labels for them.
"""
from __future__ import annotations

import torch
from torch import nn

from .data.schema import MultimodalDataset


class CrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy; with deterministic algorithms on CUDA computed as log-softmax + gather, because CUDA's NLL loss
    has no deterministic kernel (it raises there)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.is_cuda and pred.dim() == 2 and torch.are_deterministic_algorithms_enabled():
            return -torch.log_softmax(pred.float(), dim=-1).gather(1, target.long().view(-1, 1)).mean()
        return super().forward(pred, target)


def criterion_for(ds: MultimodalDataset) -> nn.Module:
    """L1 for regression, cross-entropy for classification (as MPLMM)."""
    return nn.L1Loss() if ds.task == "regression" else CrossEntropy()


def loss_target(labels: torch.Tensor, task: str) -> torch.Tensor:
    """Labels as the loss expects them: ``(B, 1)`` float for regression — never ``(B,)``, which would broadcast to
    ``(B, B)`` against the predictions (reference bug B4) — and ``(B,)`` long class indices for classification."""
    return labels.view(-1, 1).float() if task == "regression" else labels.view(-1).long()


__all__ = ["CrossEntropy", "criterion_for", "loss_target"]
