"""The rollout browser: rollouts with scores and labels, above rollouts, judging and reviews (docs/architecture.md)."""
