"""Runs: the RunManager (one per process; starts, queues and steers runs through the run store,
:mod:`mtl_core.store`)."""
