"""The show half of the task protocol: how a kind of prediction is drawn, worded and inspected.

One :class:`~mtl_core.tasks.display.base.Display` per kind of label (``DISPLAYS``), shared by every
task of that kind: ``answers`` (a class or a count per image), ``presence`` (the classes present),
``boxes``, ``masks``, ``maps`` (a dense float map: depth) and ``normal_maps`` (a unit vector per
pixel: surface normals). The kinds' modules are imported, and so registered, by
:mod:`mtl_core.tasks`; this file imports nothing, so that ``tasks.base`` can import the registry
without importing the tasks it is imported by.
"""
