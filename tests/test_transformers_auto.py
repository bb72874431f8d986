"""transformers conventions: after `import dllm_decode`, the Auto classes a published config names build our
classes, and a checkpoint's own modeling code (its `auto_map`) is never imported, run, or asked about."""
from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from dllm_decode import load_model
from dllm_decode.models import DreamConfig, DreamModel, LLaDAConfig, LLaDAModelLM
from dllm_decode.models.loading import ZOO_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "reference-logits"
AUTO = {"AutoModel": AutoModel, "AutoModelForCausalLM": AutoModelForCausalLM,
        "AutoModelForMaskedLM": AutoModelForMaskedLM}
# the auto_map entries of the published configs (LLaDA-8B-Instruct, Dream-v0-Instruct-7B)
PUBLISHED_AUTO_MAP = {
    "tiny-llada": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
                   "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
    "tiny-dream": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
}
OURS = {"tiny-llada": (LLaDAConfig, LLaDAModelLM), "tiny-dream": (DreamConfig, DreamModel)}
# Executed, any of these files writes the marker (an absolute path: transformers imports remote code from a
# copy in its modules cache) and then fails the import.
TRAP = "from pathlib import Path\nPath({marker!r}).write_text(__name__)\nraise RuntimeError('remote code ran')\n"


@pytest.fixture(autouse=True)
def no_prompt(monkeypatch):
    """transformers asks on stdin before running remote code; asking at all fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"transformers prompted: {args[0] if args else ''}")

    monkeypatch.setattr(builtins, "input", refuse)


def with_remote_code(name: str, dst: Path, marker: Path) -> Path:
    """A zoo checkpoint carrying its published `auto_map` plus modeling / configuration / tokenization files
    that would write `marker` if executed."""
    shutil.copytree(ZOO_DIR / name, dst)
    config = json.loads((dst / "config.json").read_text())
    config["auto_map"] = PUBLISHED_AUTO_MAP[name]
    (dst / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((dst / "tokenizer_config.json").read_text())
    stem = name.removeprefix("tiny-")
    tok_config["auto_map"] = {"AutoTokenizer": [f"tokenization_{stem}.Tokenizer", None]}
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config))
    for module in (f"modeling_{stem}", f"configuration_{stem}", f"tokenization_{stem}"):
        (dst / f"{module}.py").write_text(TRAP.format(marker=str(marker)))
    return dst


@pytest.mark.parametrize("auto", sorted(AUTO))
def test_auto_classes_build_our_llada_with_the_same_logits(auto):
    model = AUTO[auto].from_pretrained(str(ZOO_DIR / "tiny-llada"), dtype=torch.float32)
    assert type(model) is LLaDAModelLM
    ours = load_model("tiny-llada", pack=False)
    ids = torch.tensor([[5, 6, 7, 2, 2, 2]])
    torch.testing.assert_close(model(ids).logits, ours.module(ids).logits, rtol=0, atol=0)


def test_auto_classes_load_the_authors_fixtures_unchanged():
    for name, auto, cls in (("llada", AutoModelForCausalLM, LLaDAModelLM), ("dream", AutoModel, DreamModel)):
        model = auto.from_pretrained(str(FIXTURES / name), dtype=torch.float32)
        assert type(model) is cls
        expected = torch.load(FIXTURES / name / "expected.pt", weights_only=True)
        torch.testing.assert_close(model(expected["ids"]).logits, expected["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(PUBLISHED_AUTO_MAP))
@pytest.mark.parametrize("trust", [None, False])
def test_auto_map_and_modeling_files_are_never_executed(name, trust, tmp_path):
    marker = tmp_path / "EXECUTED"
    ckpt = with_remote_code(name, tmp_path / name, marker)
    kwargs = {} if trust is None else {"trust_remote_code": trust}
    config_class, model_class = OURS[name]
    assert type(AutoConfig.from_pretrained(str(ckpt), **kwargs)) is config_class
    for auto in PUBLISHED_AUTO_MAP[name]:
        if auto != "AutoConfig":
            assert type(AUTO[auto].from_pretrained(str(ckpt), **kwargs)) is model_class
    model = load_model(ckpt)
    assert type(model.module) is model_class and model.tokenizer is not None
    reference = load_model(name)
    ids = torch.tensor([[5, 6, 7, 2, 2, 2]])
    torch.testing.assert_close(model(ids), reference(ids), rtol=0, atol=0)
    assert not marker.exists()
