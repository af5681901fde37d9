"""What the pages draw, computed here so pages hold no tensor code: overlays and summaries of a
prediction (``render``), dataset samples with their ground truth (``preview``), MTAN attention
maps (``attention``), gate values (``gates``) and the Inspect page's pictures (``inspection``).
Everything returned is numpy ``(H, W, 3)`` uint8 images and plain Python."""
