"""Lessons: a point about multi-task learning, a study that shows it, and the effect that proves it.

A lesson is data (JSON under ``assets/lessons/``, see :mod:`mtl_core.lessons.catalog`): a text,
the study spec to run, the charts that make the point, the effect it claims (a paired difference
over seeds, :mod:`mtl_core.lessons.effect`) and variations to try next. The Lessons page and
``bench/lessons.py`` read the same files.
"""
