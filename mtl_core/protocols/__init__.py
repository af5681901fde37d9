"""How a run is scored and reported the way the field does it: which of its evaluations is its
model (:mod:`.selection`, model selection on validation) and the papers' protocols with their
published numbers (:mod:`.benchmarks`, the presets in ``assets/benchmarks``). Plain Python over
configs and metric rows: no torch."""
