"""MTL Studio's core: data, tasks, models, weighting methods, the training engine and the run store.

Imports neither Streamlit nor plotly, so it runs headless, in tests and under torchrun.
"""
__version__ = "0.1.0"
