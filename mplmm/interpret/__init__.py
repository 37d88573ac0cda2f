"""Interpretation of MulT / MPLMM models: attention maps, prompt analyses, generated features and attributions.

Everything here is a pure function: tensors and DataFrames in, tensors and DataFrames out (no plotting, no widgets).
The plot builders live in :mod:`mplmm.plots.interpret`, the interactive panels in :mod:`mplmm_widgets`. One module per
topic, every public name re-exported here (``from mplmm import interpret as I; I.attention_maps(...)``):

* :mod:`.attention` — :func:`attention_maps` (per module, layer and head, prompt-token columns identified) and
  :func:`prompt_attention_share` (how much the memory transformers' readout token attends to the ``P`` missing-type
  prompt tokens, per mode × branch × layer). Needs a model whose ``forward`` takes ``need_weights`` (``mult``,
  ``mult_zero``, ``mult_dropout``, ``mplmm``).
* :mod:`.prompts` — :func:`prompt_similarity`: cosine similarity of the seven modes' missing-type prompt tokens and a
  2-D PCA projection (SVD, no sklearn), MPLMM only; :func:`generation_quality`: per time step MSE and cosine
  similarity between the features MPLMM generates for a dropped modality and the real path ``proj(x) + P_NMS``.
* :mod:`.attribution` (Captum) — :func:`modality_importance` (feature ablation, one group per modality, per missing
  mode), :func:`timestep_attributions` (Integrated Gradients on ``proj_l/a/v`` or one-time-step occlusion) and
  :func:`attribution_summary` (dataset-level mean ``|attribution|``).
* :mod:`.common` — batches of a split (:func:`get_batch`), :func:`modes_tensor`, :func:`eval_mode`,
  :func:`model_device`, :func:`model_name`.

Re-exported from elsewhere: :func:`evaluate_missing` (live evaluation under a rate or a forced mode, for the
missing-rate explorer) from :mod:`mplmm.evaluate`. Nothing here imports training: the demo model of the notebooks
(:func:`mplmm.workbench.demo.load_or_train_demo`) and the run-folder scanning (:mod:`mplmm.workbench.runs`) live in the
workbench.
"""
from __future__ import annotations

from ..evaluate import evaluate_missing
from .attention import (CROSSMODAL_MODULES, MEMORY_MODULES, AttentionMaps, attention_maps, prompt_attention_share,
                        supports_attention)
from .attribution import (ATTRIBUTION_METHODS, BASELINE_EPS, ForwardWrapper, attribution_summary,
                          hookable_projections, modality_importance, projection_layers, timestep_attributions)
from .common import Batch, eval_mode, get_batch, model_device, model_name, modes_tensor
from .prompts import (PromptSimilarity, cosine_matrix, generation_quality, generation_summary, pca_2d,
                      prompt_similarity, prompt_tokens, sources_of)

__all__ = [
    "ATTRIBUTION_METHODS", "AttentionMaps", "BASELINE_EPS", "Batch", "CROSSMODAL_MODULES", "ForwardWrapper",
    "MEMORY_MODULES", "PromptSimilarity", "attention_maps", "attribution_summary", "cosine_matrix", "eval_mode",
    "evaluate_missing", "generation_quality", "generation_summary", "get_batch", "hookable_projections",
    "modality_importance", "model_device", "model_name", "modes_tensor", "pca_2d", "projection_layers",
    "prompt_attention_share", "prompt_similarity", "prompt_tokens", "sources_of", "supports_attention",
    "timestep_attributions",
]
