"""mplmm — a workbench for multimodal learning with missing modalities (MPLMM, MulT and peer methods)."""
from .constants import MODALITIES, MODE_NAMES, MODE_PRESENT

__version__ = "0.1.0"
__all__ = ["MODALITIES", "MODE_NAMES", "MODE_PRESENT", "__version__"]
