"""Studies: many runs as one experiment. A study is a base config, factors to vary (the
weighting method, task weights, architecture, width, any numeric field, augmentation, the task
subset), seeds and optionally the single-task baselines; :mod:`mtl_core.studies.spec` checks a
study's spec and expands it into planned runs, each an ordinary run of the store tagged with the
study and its factor values. Nothing is imported here, so importing one module of the package
does not pull in the others (or torch)."""
