"""Text features: token-level embeddings (the last hidden layer) of a Hugging Face encoder over each transcript.

The encoder is a name or a local folder (``--text_model``); on a machine without network only a local folder (or a
model already in the Hugging Face cache) loads. Transcription is not done here: clips come with their transcripts
(no package we could find ships a speech recogniser whose model works offline). No transcript or an empty one: text
absent.
"""
from __future__ import annotations

import hashlib
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .config import ExtractConfig


class TextEncoder:
    """The tokenizer and encoder, loaded once; :meth:`__call__` embeds a list of transcripts."""

    def __init__(self, cfg: ExtractConfig, batch_size: int = 16) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights" bars: noise in notebooks and logs
        self.cfg, self.batch_size, self.torch = cfg, batch_size, torch
        name = cfg.text_model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            self.model = AutoModel.from_pretrained(name).eval()
        except Exception as exc:  # noqa: BLE001 - missing weights, no network, not a model folder
            raise ConfigError(f"text_model {name!r}: could not be loaded ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160]}); give a local folder with its config, tokenizer "
                              "and weights (--text_model PATH), or --text_model none") from exc
        self.dim = int(self.model.config.hidden_size)

    def fingerprint(self) -> str:
        """Identifies the weights whatever path they were loaded from: a hash of the config and the embedding table."""
        h = hashlib.sha1(self.model.config.to_json_string(use_diff=False).encode())
        emb = self.model.get_input_embeddings().weight.detach().float().numpy()
        h.update(np.ascontiguousarray(emb[: min(64, emb.shape[0])]).tobytes())
        h.update(str(len(self.tokenizer)).encode())
        return h.hexdigest()[:16]

    def versions(self) -> dict:
        import transformers

        return {"transformers": transformers.__version__}

    def __call__(self, texts: Sequence[Optional[str]]) -> list[tuple[Optional[np.ndarray], str]]:
        """Per transcript ``(tokens (T, D) or None, reason)``."""
        out: list[tuple[Optional[np.ndarray], str]] = [(None, "no transcript")] * len(texts)
        todo = [(i, t.strip()) for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        for i, t in enumerate(texts):
            if isinstance(t, str) and not t.strip():
                out[i] = (None, "empty transcript")
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            enc = self.tokenizer([t for _, t in chunk], padding=True, truncation=True,
                                 max_length=self.cfg.max_tokens, return_tensors="pt")
            with self.torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state.float().numpy()
            lengths = enc["attention_mask"].sum(dim=1).tolist()
            for (i, _), h, n in zip(chunk, hidden, lengths):
                out[i] = (np.ascontiguousarray(h[: int(n)], dtype=np.float32), "")
        return out


def tiny_encoder(folder: Any, words: Sequence[str], seed: int = 0, hidden: int = 32) -> str:
    """Write a small randomly initialised BERT and a word-level vocabulary into ``folder`` (for tests and the offline
    demo: a stand-in with the real code path, not a language model). Returns the folder as a string."""
    from pathlib import Path

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w.lower() for w in words})]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return str(folder)
