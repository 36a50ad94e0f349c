"""rare-ray: run a rare-synth pipeline on a Ray cluster.

``Pipeline(steps, serving="openai", serving_options={...}, runner="ray",
runner_options={"address": "10.0.0.1:6379", "pool_size": 8})`` or
``rare run --runner ray --ray-address 10.0.0.1:6379 -X pool_size=8``. See
:class:`rare_ray.runner.RayRunner` for the settings.
"""

from __future__ import annotations

from rare_ray.runner import PIP_LINE, RayRunner

__all__ = ["PIP_LINE", "RayRunner"]
