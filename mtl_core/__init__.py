"""MTL Studio's core, headless: it imports neither Streamlit nor plotly, so it runs in tests,
under torchrun and on a GPU machine that has neither.

Its packages stand on floors, bottom first; a module imports only from its own floor or below
(the README's layer table, checked by ``tests/test_layers.py``):

- base: ``errors``, ``registry``, ``config``, ``weights``, ``scores``, ``isolation``;
- ``measures``: box matching, mAP, per-sample measures and their plain types;
- ``data``: datasets and augmentation; ``tasks``: one file per task, one display per kind;
- ``models``: backbones and architectures; ``weighting``: loss-weighting and gradient methods;
- ``store``: the run store, the contract between training and UI;
- ``training``: the loop, how it is steered, checkpoints, a config's validation;
- ``runs``: the RunManager; ``studies``: many runs as one experiment; ``lessons``;
- ``inference``, ``inspection``, ``deploy``, ``views``: using a trained model, and what pages draw;
- ``cli``: the headless commands.
"""
__version__ = "0.1.0"
