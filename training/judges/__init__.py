"""Judge backends: OpenAI-compatible (openai_judge.py, on training.llm_client), local transformers
(transformers_judge.py), the backend protocol and content-addressed cache (base.py), and a scriptable local
OpenAI-compatible server for tests and benchmarks (stub_server.py)."""
