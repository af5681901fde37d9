"""The run store, the contract between training and UI: the store itself (SQLite, WAL; ``store``),
its versioned ``schema``, the commands a trainer reads each step (``commands``), run ids and the
runs directory (``ids``), statuses (``status``) and liveness by heartbeat (``liveness``). Below
training, which writes it, and the RunManager, which reads and steers through it."""
