"""The package list: every ``mplmm*`` package found, plus ``mplmm_widgets`` (the ``widgets/`` folder, mapped by
``[tool.setuptools.package-dir]`` in pyproject.toml, where everything else is configured)."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mplmm*"]), "mplmm_widgets"])
