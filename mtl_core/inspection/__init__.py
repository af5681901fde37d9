"""Inspecting a trained run: per-sample errors of every task, confusion matrices, per-class
curves, error drawings, and a cache of per-sample outputs kept beside the checkpoint."""
