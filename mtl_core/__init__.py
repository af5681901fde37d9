"""MTL Studio's core, headless: it imports neither Streamlit nor plotly, so it runs in tests,
under torchrun and on a GPU machine that has neither.

- ``config``, ``validation``, ``errors``, ``registry``, ``scores``, ``isolation``, ``cli``: what
  every part shares (configs, checks that name the field, registries and plugins, Δm, a run's
  own randomness and threads, the headless commands);
- ``data``: datasets and augmentation; ``tasks``: one file per task; ``models``: architectures;
  ``weighting``: loss-weighting and gradient methods;
- ``training``: the loop and how it is steered; ``runs``: the RunManager and the run store;
- ``inference``: predicting and drawing for the pages; ``deploy``: compression and export.
"""
__version__ = "0.1.0"
