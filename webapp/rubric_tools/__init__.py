"""Rubric tools: the live preview, AI-drafted rubrics and the dry run of a rubric version. Each runs judges or a
model on the rubric being edited, so this package sits above rubrics, rollouts and judging (docs/architecture.md)."""
