"""Training: the loop (steps, evaluation, checkpoints, pause/stop, NaN guard), gradient
statistics, multi-process data parallelism, and building a model, optimiser, device and
precision from a config. Knows nothing of Streamlit."""
