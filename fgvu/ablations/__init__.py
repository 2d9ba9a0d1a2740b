"""The ablation grid: named configurations x seeds, run as ordinary `fit` runs, with statistics and reports.

- `grid`: the default grid (DESIGN.md) and TOML grid files;
- `runner`: runs every (configuration, seed) in its own run folder, in parallel, resumably;
- `stats`: mean +- std over seeds, paired t-tests against the full model, Holm correction;
- `report`: runs.csv, summary.csv, ablations.md, plots and failure analysis.
"""
