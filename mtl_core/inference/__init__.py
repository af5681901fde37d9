"""Inference: load a checkpoint and predict every task (``predictor``), a run's dataset samples in
the tasks' prediction format (``samples``), ensembles of runs (``ensemble``), and image decoding
and encoding (``images``). What the pages draw from these is :mod:`mtl_core.views`."""
