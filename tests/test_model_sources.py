"""Models by built-in name, GGUF file or wheel, turned into ordinary folders offline."""

import zipfile
from pathlib import Path

import pytest
from helpers import killed_before_its_rename

from hir import HIRError
from hir.cli import main
from hir.models import load_policy
from hir.models.sources import BUILTIN_MODELS, fetch_builtin, resolve_model

SHARED_GGUF = (
    Path(__file__).resolve().parents[2] / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_corrupt_gguf_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 40)
    with pytest.raises(HIRError, match="cannot read GGUF .*broken.gguf"):
        load_policy(bad)
    assert not list((tmp_path / "cache" / "models").glob("gguf-*/config.json"))


def test_a_gguf_of_an_architecture_transformers_cannot_read_is_one_clear_error(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "bogus.gguf"
    writer = gguf.GGUFWriter(str(path), arch="bogusarch")  # a valid file of an unknown kind
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(HIRError, match="architecture bogusarch is not supported") as info:
        load_policy(path)
    assert "\n" not in str(info.value) and "llama, qwen2" in str(info.value)


def test_a_wheel_needs_exactly_one_gguf(tmp_path):
    wheel = tmp_path / "empty-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("empty/__init__.py", "")
    with pytest.raises(HIRError, match="holds 0 GGUF files"):
        resolve_model(wheel)
    (tmp_path / "not-a-wheel.whl").write_text("x")
    with pytest.raises(HIRError, match="not a readable wheel"):
        resolve_model(tmp_path / "not-a-wheel.whl")


def test_builtin_names_are_checked_and_pinned(tmp_path, capsys):
    with pytest.raises(HIRError, match="did you mean the built-in 'smollm2-135m-instruct'"):
        load_policy("smollm2-135m")
    wrong = tmp_path / "other.gguf"
    wrong.write_bytes(b"GGUF not the pinned file")
    with pytest.raises(HIRError, match="not the pinned file"):
        fetch_builtin("smollm2-135m-instruct", source=wrong)
    with pytest.raises(HIRError, match="unknown built-in model"):
        fetch_builtin("gpt-5")
    assert main(["models", "list"]) == 0
    assert "smollm2-135m-instruct  (not fetched)" in capsys.readouterr().out


@pytest.mark.skipif(
    not SHARED_GGUF.is_file(), reason="../shared/models is not beside this checkout"
)
@pytest.mark.slow  # starts a process and kills it
def test_the_shared_smollm2_gguf_becomes_a_chat_model_folder_even_after_a_killed_fetch(cache):
    """A `hir models fetch` killed between writing its staging folder and renaming it into place
    (the crash point `staged`, as in test_staged_kills.py) leaves nothing at the target, and the
    next fetch converts the model whole."""
    target = cache / "models" / "smollm2-135m-instruct"
    killed_before_its_rename(
        ["models", "fetch", "smollm2-135m-instruct", "--source", str(SHARED_GGUF)], target
    )
    assert not target.exists()
    folder = fetch_builtin("smollm2-135m-instruct", source=SHARED_GGUF)
    assert folder == target and (target / "config.json").is_file()
    policy = load_policy("smollm2-135m-instruct")
    assert policy.model.config.model_type == "llama"
    assert sum(p.numel() for p in policy.model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert policy.tokenizer.chat_template and "<|im_start|>" in policy.tokenizer.chat_template
    assert set(BUILTIN_MODELS) == {"smollm2-135m-instruct"}
