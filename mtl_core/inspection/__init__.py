"""Inspecting a trained run: the per-sample outputs of a split, computed once per checkpoint and
kept beside it (``outputs``, ``packing``), and the error table with its filters, summaries and
CSV (``table``). The measures behind it are :mod:`mtl_core.measures`; its pictures
:mod:`mtl_core.views.inspection`."""
