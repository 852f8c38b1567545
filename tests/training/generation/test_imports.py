from __future__ import annotations

import subprocess
import sys

from tests.training.generation.conftest import REPO_ROOT


def test_the_package_imports_without_torch_vllm_or_django() -> None:
    # The web process and the Django side import these types; they must not drag in the ML stack.
    code = (
        "import sys, training.generation, training.generation.environments, training.generation.backends;"
        "import training.generation.backends.openai_backend;"
        "loaded = [m for m in ('torch', 'vllm', 'transformers', 'django') if m in sys.modules];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
