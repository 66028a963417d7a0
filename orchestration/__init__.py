"""speakerlake orchestration: Dagster definitions, settings, lake I/O, partitions, sensors."""

import os

# Must be set before torch / onnxruntime start their thread pools: with the default
# (active) wait policy their idle threads spin, which on small shared machines made a
# 0.45 s LSTM pass take 2-3 s.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
