"""The plugin's hooks: registers :class:`rare_ray.RayRunner` as the runner ``ray``.

Importing this module does not import Ray: a missing install shows when a run starts.
"""

from __future__ import annotations

from rare import hookimpl
from rare.hookspecs import Register
from rare_ray.runner import RayRunner


@hookimpl
def register_runners(register: Register) -> None:
    register(RayRunner, name="ray")
