"""Training: the loop (``loop``: steps, evaluation, checkpoints, NaN guard), how a running
trainer is steered (``control``: commands from the run store, one decision per step shared by
every rank), gradient statistics, multi-process data parallelism, checkpoints, and building a
model, optimiser, device and precision from a config (``builders``). Knows nothing of Streamlit."""
