"""reasoning-gym as a task source: generated entries stored as plain data, scored by our rubric engine through the
`reasoning_gym` criterion, compared with reasoning-gym's own score_answer on the same entries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.requires import installed
from training.rubrics.engine import RubricEngine
from training.rubrics.spec import SpecError, validate_spec
from training.rubrics.types import Rollout
from training.sources import reasoning_gym as rg

pytestmark = installed("reasoning_gym")

SPEC = {"criteria": [{"key": "rg", "title": "reasoning-gym score", "kind": "reasoning_gym"}]}


@pytest.mark.parametrize("name", ["basic_arithmetic", "chain_sum"])
def test_generated_entries_score_like_reasoning_gym(name):
    items = rg.generate(name, size=6, seed=1234)
    import reasoning_gym

    own = reasoning_gym.create_dataset(name, size=6, seed=1234)
    engine = RubricEngine(validate_spec(SPEC))
    for index, item in enumerate(items):
        entry = own[index]
        assert (item.question, item.answer) == (entry["question"], entry["answer"])  # same seed, same entries
        # Stored info survives a JSON round trip (it lives in a JSONField) and still scores.
        info = json.loads(json.dumps(item.info))
        wrong = str(int(entry["answer"]) + 7)
        for answer in (entry["answer"], wrong, f"{entry['answer']}0", ""):
            completion = f"Thinking... <answer>{answer}</answer>"
            ours = engine.score(Rollout(completion=completion, prompt=item.question, reference=item.answer,
                                        info=info))
            assert ours.criteria["rg"].score == pytest.approx(own.score_answer(answer, entry)), (answer, entry)
        correct = engine.score(Rollout(completion=f"<answer>{entry['answer']}</answer>", info=info))
        assert correct.total == 1.0
        assert engine.score(Rollout(completion=f"<answer>{wrong}</answer>", info=info)).total == 0.0


def test_no_answer_tag_scores_zero_and_missing_entry_is_unscored():
    item = rg.generate("chain_sum", size=1, seed=3)[0]
    engine = RubricEngine(validate_spec(SPEC))
    assert engine.score(Rollout(completion=item.answer, info=item.info)).criteria["rg"].score == 0.0
    unscored = engine.score(Rollout(completion=f"<answer>{item.answer}</answer>", info={}))
    assert unscored.criteria["rg"].score is None and "no reasoning-gym entry" in unscored.criteria["rg"].error


def test_bad_inputs_are_refused_with_their_field():
    with pytest.raises(rg.ReasoningGymError) as unknown:
        rg.generate("no_such_dataset", size=2, seed=1)
    assert unknown.value.field == "dataset"
    with pytest.raises(rg.ReasoningGymError) as size:
        rg.generate("chain_sum", size=0, seed=1)
    assert size.value.field == "size"
    with pytest.raises(rg.ReasoningGymError) as config:
        rg.generate("chain_sum", size=2, seed=1, config={"bogus": 1})
    assert config.value.field == "config" and "bogus" in str(config.value)
    with pytest.raises(SpecError):
        validate_spec({"criteria": [{"key": "rg", "title": "t", "kind": "reasoning_gym", "dataset": "nope"}]})


def test_config_fields_reach_the_generator():
    items = rg.generate("chain_sum", size=5, seed=9, config={"min_terms": 2, "max_terms": 2})
    assert all(item.info["reasoning_gym"]["entry"]["metadata"]["num_terms"] == 2 for item in items)


def test_training_rubrics_import_without_reasoning_gym(tmp_path):
    """The rubric engine (and with it the web process) starts where reasoning-gym is not installed; the criterion
    then reports the missing package as its error."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['reasoning_gym'] = None\n")  # makes `import reasoning_gym` fail
    code = (
        "from training.rubrics.spec import validate_spec\n"
        "from training.rubrics.engine import RubricEngine\n"
        "from training.rubrics.types import Rollout\n"
        "spec = validate_spec({'criteria': [{'key': 'rg', 'title': 't', 'kind': 'reasoning_gym', 'dataset': 'x'}]})\n"
        "r = RubricEngine(spec).score(Rollout(completion='<answer>1</answer>', info={'reasoning_gym': "
        "{'dataset': 'x', 'entry': {'question': 'q', 'answer': '1'}}}))\n"
        "print(r.criteria['rg'].error, '|', r.criteria['rg'].reason)\n"
    )
    import os

    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "reasoning-gym not installed" in out.stdout and "pip install" in out.stdout
