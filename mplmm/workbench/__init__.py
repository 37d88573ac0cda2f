"""The workbench glue on top of the core: notebook helpers, stage semantics, run folders, tuning, the batch runner.

* :mod:`.notebook` — what every notebook calls (setup, figures, ``write_metrics``, checkpoint discovery);
* :mod:`.stages` — what notebook 01's ``stage`` parameter means; :mod:`.headlines` — the batch index's numbers;
* :mod:`.demo` — a checkpoint, or a tiny demo model trained in seconds, for the interpretation notebooks;
* :mod:`.runs` — run folders and grid output roots: file names, ``status.json``, scanning;
* :mod:`.tuning` — Optuna studies: search spaces, samplers, journals, figures, tuning in process;
* :mod:`.batch` — the papermill grid runner, its executors, reports and index.

The core (:mod:`mplmm` outside this package) never imports it; :mod:`mplmm.cli` does.
"""
