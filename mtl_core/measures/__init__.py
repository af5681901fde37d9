"""What tasks and inspection both measure: COCO box matching and mAP (``matching``, ``map_metric``),
per-sample answers, confusion matrices, curves and reliability (``stats``), and the plain-Python
types they are handed out as (``types``). Below the tasks, so a task can use them."""
