"""Inference: load a checkpoint and predict every task (``predictor``), draw overlays and
summaries for the pages (``render``), MTAN attention maps (``attention``), dataset samples and
previews (``samples``, ``preview``), ensembles of runs, and image decoding and encoding."""
