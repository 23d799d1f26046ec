"""Fold + export: the exported checkpoint's logits equal the hooked model's; plain loaders open it; the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from test_aura import MARKER, tiny_gpt2, tiny_llama, tiny_tokenizer
from toxbench.harness.core.errors import UsageError
from toxbench.interventions.aura import AurA, Damp
from toxbench.interventions.base import State
from toxbench.interventions.compose import Composite
from toxbench.interventions.fold import export_folded, fold_scales
from toxbench.interventions.module_presets import default_patterns
from toxbench.interventions.preprompt import PrePrompt
from toxbench.interventions.forward_hooks import resolve_modules


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)
    return tiny_tokenizer()


def random_state(model, method: str = "aura", seed: int = 0) -> State:
    g = torch.Generator().manual_seed(seed)
    names = resolve_modules(model, default_patterns(model))
    mods = dict(model.named_modules())
    tensors = {}
    for n in names:
        width = getattr(mods[n], "out_features", None) or mods[n].nf
        a = torch.rand(width, generator=g)
        a[a > 0.7] = 1.0
        tensors[n] = a
    return State(tensors, {"method": method, "model_fingerprint": "fp", "model": "tiny"})


def batch(tok):
    texts = [f"the cat {MARKER} sat on the mat", "a big red house", "sun moon"]
    enc = tok(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_export_logits_equal_hooked(tok, tmp_path, arch):
    from transformers import AutoModelForCausalLM

    model = tiny_gpt2(len(tok)) if arch == "gpt2" else tiny_llama(len(tok))
    interv = AurA(state=random_state(model))
    ids, mask = batch(tok)
    with torch.no_grad():
        plain = model(ids, attention_mask=mask).logits
        with interv.attach(model):
            hooked = model(ids, attention_mask=mask).logits
    assert not torch.allclose(plain, hooked, atol=1e-4)
    out = export_folded(model, tok, interv, tmp_path / "export")
    assert sorted(p.name for p in out.glob("*.safetensors")) and (out / "config.json").is_file()
    assert (out / "tokenizer.json").is_file() or (out / "tokenizer_config.json").is_file()
    info = json.loads((out / "toxbench_export.json").read_text())
    assert info["intervention"]["name"] == "aura" and len(info["folded_modules"]) == len(interv.state.tensors)
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask).logits, plain)  # inplace=False left it untouched
        reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
        folded = reloaded(ids, attention_mask=mask).logits
    assert torch.allclose(folded, hooked, atol=1e-5, rtol=0)
    assert not list(tmp_path.glob(".export.*"))  # no temp dir left behind


def test_export_loads_in_lm_eval_hf(tok, tmp_path):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model = tiny_llama(len(tok))
    interv = AurA(state=random_state(model, seed=1))
    out = export_folded(model, tok, interv, tmp_path / "export")
    lm = HFLM(pretrained=str(out), device="cpu", batch_size=1)
    req = Instance("loglikelihood", {}, ("the cat", " sat"), 0)
    ((ll, _),) = lm.loglikelihood([req], disable_tqdm=True)
    ids = tok("the cat sat", return_tensors="pt")["input_ids"]
    with torch.no_grad(), interv.attach(model):
        logp = torch.log_softmax(model(ids).logits[0, -2].double(), -1)[ids[0, -1]].item()
    assert ll == pytest.approx(logp, abs=1e-4)


def test_fold_det0_damp_and_composition(tok):
    model = tiny_gpt2(len(tok))
    s1, s2 = random_state(model, "damp", 2), random_state(model, "damp", 3)
    comp = Composite([Damp(state=s1), Damp(state=s2)])
    ids, mask = batch(tok)
    with torch.no_grad(), comp.attach(model):
        hooked = model(ids, attention_mask=mask).logits
    from toxbench.interventions.fold import folding_scales

    fold_scales(model, folding_scales(comp))
    with torch.no_grad():
        assert torch.allclose(model(ids, attention_mask=mask).logits, hooked, atol=1e-5)


def test_unfoldable_is_refused(tok, tmp_path):
    model = tiny_gpt2(len(tok))
    with pytest.raises(UsageError) as e:
        export_folded(model, tok, Composite([AurA(state=random_state(model)), PrePrompt()]), tmp_path / "x")
    assert "preprompt" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError):
        fold_scales(model, {"transformer.h.0.mlp": torch.ones(16)})  # not a Linear / Conv1D
    with pytest.raises(UsageError):
        fold_scales(model, {"transformer.h.0.mlp.c_fc": torch.ones(3)})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    with pytest.raises(UsageError):
        export_folded(model, tok, AurA(state=random_state(model)), tmp_path / "busy")


def _assert_export_equals_hooked(model, tok, state, out_dir):
    """The exported checkpoint's logits equal ``model``'s under the hooked AurA ``state``."""
    from transformers import AutoModelForCausalLM

    ids, mask = batch(tok)
    with torch.no_grad():
        with AurA(state=state).attach(model):
            hooked = model(ids, attention_mask=mask).logits
        folded = AutoModelForCausalLM.from_pretrained(str(out_dir)).eval()(ids, attention_mask=mask).logits
    assert torch.allclose(folded, hooked, atol=1e-5)


def test_export_command(tok, tmp_path):
    from toxbench.harness.cli.export import export
    from toxbench.harness.core.models import model_fingerprint

    base = tmp_path / "base"
    model = tiny_gpt2(len(tok))
    model.save_pretrained(str(base))
    tok.save_pretrained(str(base))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    state = random_state(model)
    state.metadata["model_fingerprint"] = model_fingerprint(model)
    state.save(tmp_path / "state.safetensors")
    runner = CliRunner()
    assert runner.invoke(export, ["--help"]).exit_code == 0
    args = ["--model", str(base), "--intervention", "aura", "--intervention-state", str(tmp_path / "state.safetensors"),
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    res = runner.invoke(export, args)
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("out")
    _assert_export_equals_hooked(model, tok, state, tmp_path / "out")
    # exists -> exit 2 with one line; --force replaces it
    res = runner.invoke(export, args)
    assert res.exit_code == 2 and "not empty" in res.output
    assert runner.invoke(export, [*args, "--force"]).exit_code == 0
    # a state fitted on another model -> exit 2, one line
    State(state.tensors, {**state.metadata, "model_fingerprint": "0" * 64}).save(tmp_path / "other.safetensors")
    res = runner.invoke(export, [*args[:4], "--intervention-state", str(tmp_path / "other.safetensors"),
                                 "--out", str(tmp_path / "o2"), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 2 and "fitted on" in res.output
    res = runner.invoke(export, ["--model", str(base), "--intervention", "aurra", "--out", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "aura" in res.output


def test_export_folds_the_state_run_uses_and_never_refits(tok, tmp_path, monkeypatch):
    """Issue 27.4: export looks up the state fitted in `run`'s dtype (not a float32 refit) and says which; a
    missing one is a one-line error naming the fit command."""
    from transformers import AutoModelForCausalLM

    from toxbench.harness.cli.export import export
    from toxbench.harness.core.models import model_fingerprint
    from toxbench.interventions import state_path

    base = tmp_path / "base"
    tiny_gpt2(len(tok)).save_pretrained(str(base))
    tok.save_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    fp = model_fingerprint(model)
    state = random_state(model)
    state.metadata["model_fingerprint"] = fp
    cache = tmp_path / "cache"
    path = state_path(cache, fp, "aura", AurA().config, "bfloat16")
    path.parent.mkdir(parents=True)
    state.save(path)
    monkeypatch.setattr(AurA, "fit", lambda *a, **k: pytest.fail("export must never fit"))
    args = ["--model", str(base), "--intervention", "aura", "--cache-dir", str(cache), "--device", "cpu"]
    res = CliRunner().invoke(export, [*args, "--fit-dtype", "float32", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "no aura state fitted in float32" in res.output and "toxbench fit" in res.output
    assert "no aura state" in res.output.strip().splitlines()[-1] and "Traceback" not in res.output
    res = CliRunner().invoke(export, [*args, "--fit-dtype", "bfloat16", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "fitted in bfloat16" in res.stderr and path.name in res.stderr
    _assert_export_equals_hooked(model, tok, state, tmp_path / "b")
