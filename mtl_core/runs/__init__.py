"""Runs: the RunManager (one per process; starts, queues and steers runs) and the RunStore
(SQLite, the contract between training and UI)."""
