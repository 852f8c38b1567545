"""verifiers 0.4 harness plugin `rubricon_chat`: verifiers' own chat program (the `null` harness: a plain chat loop,
no tools), run with the Python interpreter of this process instead of a `uv`-built script environment.

verifiers' built-in harnesses prepare their chat program with `uv sync --script`, which downloads its dependencies
(openai, mcp, httpx2, tenacity, certifi) at run time. A Rubricon worker already has them installed (verifiers
depends on them), and a worker may have no network: this harness writes the same program text and runs it with
`sys.executable`. Everything else (the interception server, the trace, the env's episode loop) is verifiers' own.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from verifiers.v1.clients import ModelContext
from verifiers.v1.harnesses.null import NullHarness, NullHarnessConfig
from verifiers.v1.harnesses.utils.launch import CHAT_PROGRAM_SOURCE, launch_chat_program
from verifiers.v1.runtimes import ProgramResult, Runtime
from verifiers.v1.task import TaskData
from verifiers.v1.trace import Trace


class RubriconChatConfig(NullHarnessConfig):
    pass


def _program_path() -> str:
    digest = hashlib.sha256(CHAT_PROGRAM_SOURCE.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"rubricon-vf-chat-{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(CHAT_PROGRAM_SOURCE)
        tmp.replace(path)
    return str(path)


class _LocalInterpreter:
    """Stands in for the runtime inside `launch_chat_program`: the program runs as `python <file>`."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str):
        return getattr(self._runtime, name)

    async def prepare_uv_script(self, script, env=None, *, activate: bool = True) -> list[str]:
        return [sys.executable, _program_path()]


class RubriconChat(NullHarness):
    async def setup(self, runtime: Runtime) -> None:
        _program_path()

    async def launch(self, ctx: ModelContext, trace: Trace, runtime: Runtime, endpoint: str, secret: str,
                     mcp_urls: dict[str, str], data: TaskData, tool_interception_url: str | None = None,
                     ) -> ProgramResult:
        system_prompt, prompt = self.resolve_prompt(data)
        return await launch_chat_program(
            CHAT_PROGRAM_SOURCE, self.config, ctx, trace, _LocalInterpreter(runtime), endpoint, secret, mcp_urls,
            system_prompt, prompt,
            extra_args=[f"--tool-interception-url={tool_interception_url}"] if tool_interception_url else (),
        )


__all__ = ["RubriconChat", "RubriconChatConfig"]
