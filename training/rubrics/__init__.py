"""Rubrics: the spec (spec.py), scoring engine (engine.py), judge prompts (prompts.py), judge output parsing
(parsing.py), TRL reward functions (rewards.py) and verifiers export (export.py). No Django, no torch at import.

Light entry points, safe for the web process:

    from training.rubrics import validate_spec, spec_json_schema, SpecError, RubricSpec
"""

from __future__ import annotations

from training.rubrics.spec import RubricSpec, SpecError, spec_json_schema, validate_spec

__all__ = ["RubricSpec", "SpecError", "spec_json_schema", "validate_spec"]
