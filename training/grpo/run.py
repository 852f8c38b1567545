"""Run one GRPO job from a JSON config, reporting to JSON-lines files: no Django, no database.

    python -m training.grpo.run --config config.json --sink-dir runs/17 [--output-dir DIR] [--models-dir var/models]

The Celery `train` task starts this as its own OS process (under `accelerate launch` for several GPUs), tails the
files in the sink directory, and cancels by creating `<sink-dir>/STOP` or sending SIGTERM. Exit code 0 means
completed or stopped (see status.json), 1 a failed run, 2 an invalid config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from training.grpo.config import GRPORunConfig
from training.grpo.sinks import JsonlSink


def hide_unused_imports(config: GRPORunConfig) -> None:
    """vLLM, which TRL imports whenever it is installed, is hidden from a run that does not generate with it (~3 s of
    CPU per run on a 2-core machine, and a warning when vLLM is newer than TRL knows; a local vLLM judge is a server in
    a process of its own): with None in sys.modules, `import vllm` raises ImportError and importlib.util.find_spec
    answers None, as if it were not installed."""
    if not config.use_vllm:
        sys.modules.setdefault("vllm", None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.grpo.run", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="GRPORunConfig as JSON.")
    parser.add_argument(
        "--sink-dir", required=True, type=Path, help="Directory for metrics/samples/status files."
    )
    parser.add_argument("--output-dir", type=Path, help="Checkpoints; defaults to <sink-dir>/output.")
    parser.add_argument(
        "--models-dir", type=Path, default=Path("var/models"), help="Where the bundled model lives."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sink = JsonlSink(args.sink_dir)
    try:
        config = GRPORunConfig.model_validate(json.loads(args.config.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as error:
        sink.finished("failed", {"error": f"invalid config: {error}", "phase": "config"})
        print(f"invalid config {args.config}: {error}", file=sys.stderr)
        return 2

    # SIGTERM (the worker's cancel, or a node shutting down) ends the run at the next safe point, like STOP.
    def _on_term(signum: int, frame: FrameType | None) -> None:
        sink.request_stop()

    signal.signal(signal.SIGTERM, _on_term)

    hide_unused_imports(config)
    # Imported here: torch/trl take seconds to import and are not needed to reject a bad config.
    from training.grpo.rewards import rewards_from_config
    from training.grpo.runner import run_grpo

    try:
        # A local vLLM judge is a server started for this run: the stack stops it however the run ends.
        with contextlib.ExitStack() as resources:
            funcs, weights = rewards_from_config(
                config, models_dir=args.models_dir, resources=resources, log_dir=args.sink_dir
            )
            run_grpo(
                config,
                funcs,
                weights,
                sink,
                output_dir=args.output_dir or args.sink_dir / "output",
                models_dir=args.models_dir,
            )
    except Exception as error:
        # run_grpo has already told the sink when the failure was its own; this covers loading the rewards.
        status = json.loads((args.sink_dir / "status.json").read_text(encoding="utf-8"))
        if status.get("status") != "failed":
            sink.finished("failed", {"error": f"{type(error).__name__}: {error}", "phase": "setup"})
        logging.getLogger(__name__).exception("GRPO run failed")
        return 1
    return 0


if __name__ == "__main__":
    exit_code = main()
    # Everything is on disk by now (sink files are closed after each line, the model is saved). Tearing down the
    # torch/trl/vllm module graph takes seconds more on a small CPU; skipping it lets the worker see the process end
    # as soon as the run has.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
