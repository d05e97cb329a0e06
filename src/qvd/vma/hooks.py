"""Running QVD hooks (reference §4.4): configured executables called with key/value args.

* action hooks ``vma.on_action.<action>`` get all properties plus
  ``qvd.vm.session.state <x_state>`` and ``qvd.hook.on_action <action>``; they block and
  a failure aborts the action;
* state hooks ``vma.on_state.<state>`` get ``qvd.hook.on_state <state>``; detached,
  failures ignored;
* provisioning hooks ``vma.on_provisioning.<step>`` get the properties plus
  ``qvd.hook.on_provisioning <step>``; they block and replace the built-in step.

Output is appended to ``<path.log>/qvd-hooks.log``.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path

from qvd.vma.config import VmaConfig

__all__ = ["HookRunner", "hook_argv"]

log = logging.getLogger("qvd.vma.hooks")


def hook_argv(path: str, params: Mapping[str, str], extra: Mapping[str, str]) -> list[str]:
    """``path k1 v1 k2 v2 …``: properties (sorted) then the hook's own pairs."""
    argv = [path]
    for key in sorted(params):
        argv += [key, params[key]]
    for key, value in extra.items():
        argv += [key, value]
    return argv


class HookRunner:
    def __init__(self, config: VmaConfig, timeout: float = 120.0) -> None:
        self._config = config
        self._timeout = timeout

    def _log_file(self) -> Path:
        folder = self._config.log_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder / "qvd-hooks.log"

    def _run(self, argv: list[str], *, wait: bool) -> bool:
        try:
            with open(self._log_file(), "ab") as out:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
        except OSError as exc:
            log.error("hook %s cannot run: %s", argv[0], exc.strerror)
            return False
        if not wait:
            return True
        try:
            code = proc.wait(self._timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.error("hook %s timed out", argv[0])
            return False
        if code != 0:
            log.error("hook %s exited with %s", argv[0], code)
        return code == 0

    def action(self, action: str, params: Mapping[str, str], x_state: str) -> bool:
        """Run ``vma.on_action.<action>``; True if absent or successful."""
        path = self._config.hook("action", action)
        if path is None:
            return True
        extra = {"qvd.vm.session.state": x_state, "qvd.hook.on_action": action}
        return self._run(hook_argv(path, params, extra), wait=True)

    def state(self, state: str) -> None:
        """Start ``vma.on_state.<state>`` in the background, if configured."""
        path = self._config.hook("state", state)
        if path is not None:
            self._run(hook_argv(path, {}, {"qvd.hook.on_state": state}), wait=False)

    def provisioning(self, step: str, params: Mapping[str, str]) -> bool | None:
        """Run ``vma.on_provisioning.<step>``: None if absent, else whether it succeeded."""
        path = self._config.hook("provisioning", step)
        if path is None:
            return None
        extra = {"qvd.hook.on_provisioning": step}
        return self._run(hook_argv(path, params, extra), wait=True)
