"""How a dataset's features were made (``MultimodalDataset.features``), and the check that a checkpoint's features
and new data's agree.

Per modality a record ``{"extractor": name, "settings": {...}, "dim": D, "versions": {...}}``, written by
:func:`mplmm.extract.extract` and stored in the ``.npz`` as the JSON string ``meta__features``. Two records agree
when extractor, settings and dim are equal; library versions are kept for the record, not compared.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from ..constants import MODALITIES
from .schema import DataError

COMPARED = ("extractor", "settings", "dim")


def parse_features(value: Any, source: str) -> Optional[dict]:
    """The provenance record of a file's meta (a JSON string or a dict), validated; None when there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DataError(f"{source} key 'meta__features': not valid JSON ({exc})") from exc
    if not isinstance(value, dict) or any(m not in MODALITIES for m in value):
        raise DataError(f"{source} key 'meta__features': expected a dict keyed by text/audio/vision, got "
                        f"{str(value)[:80]}")
    return value


def describe(record: Optional[dict]) -> str:
    """``"opensmile eGeMAPSv02 ... (25 dims)"``: a record in a few words."""
    if not record:
        return "none recorded"
    settings = ", ".join(f"{k}={v}" for k, v in sorted((record.get("settings") or {}).items()))
    return f"{record.get('extractor')} [{settings}] ({record.get('dim')} dims)"


def mismatch(trained: Optional[dict], have: Optional[dict]) -> Optional[str]:
    """The first modality whose features were made differently, as ``"<m> features expected X, found Y"``; None when
    they agree or either side records nothing."""
    if not trained or not have:
        return None
    for m in MODALITIES:
        a, b = trained.get(m), have.get(m)
        if a is None and b is None:
            continue
        if a is None or b is None or any(a.get(k) != b.get(k) for k in COMPARED):
            return f"{m} features expected {describe(a)} (as trained), found {describe(b)}"
    return None
