"""The blocks of benchmarks/render_results.py, one module per family of tables.

- core: paths, metrics, the marker syntax, the file loader (it records what a block cites) and number formatting
- runs: the runs the docs cite (run log, recipe seeds, ensembles, GPU sweep) and how to read a run's flags
- readme: the README's headline, Scientific, quickstart and deviations tables
- experiments: the tables of docs/EXPERIMENTS.md's log (run overview, sweeps, fusion grids, seeds, ensembles)
- research: the issue-21 research runs (research/*.json) and their validation fusion grids
- cascade: the dense/sparse complementarity and the offline rank-fusion probe (research/complementarity/)
- measurements: speed, scale, semantic IDs, load-time checks and the data layer
- commands: the commands that reproduce every cited run
- documents: the block registry and the re-rendering of a document
"""
