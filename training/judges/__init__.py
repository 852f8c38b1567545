"""Judge backends: OpenAI-compatible (openai_judge.py, on training.llm_client), local transformers
(transformers_judge.py), the backend protocol and content-addressed cache (base.py). The scriptable local
OpenAI-compatible server of tests and benchmarks is tests/support/judge_server.py."""
