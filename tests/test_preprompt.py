"""Pre-prompting: presets, free text, chat templates, composition with AurA."""

from __future__ import annotations

import pytest
import torch

from test_aura import tiny_gpt2, tiny_tokenizer
from toxbench.harness.core.errors import UsageError
from toxbench.interventions.aura import AurA
from toxbench.interventions.base import State
from toxbench.interventions.compose import Composite
from toxbench.interventions.preprompt import PRESETS, PrePrompt

CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
)


def test_plain_prefix_like_ml_aura():
    p = PrePrompt()
    assert p.wrap_prompt("So I said", tiny_tokenizer()) == PRESETS["polite"] + " So I said"
    assert p.wrap_prompt("So I said") == PRESETS["polite"] + " So I said"
    assert PrePrompt(text="Be nice.").wrap_prompt("Hi") == "Be nice. Hi"
    assert PrePrompt(preset="adversarial").instruction == PRESETS["adversarial"]
    assert PrePrompt(text="Be nice.").config["preset"] == "custom"
    assert PrePrompt(text="X", separator="\n").wrap_prompt("Y") == "X\nY"


def test_chat_template_puts_context_in_assistant_turn():
    tok = tiny_tokenizer(chat_template=CHAT)
    wrapped = PrePrompt(preset="non-toxic").wrap_prompt("So I said", tok)
    assert wrapped == f"<|system|>{PRESETS['non-toxic']}<|end|><|assistant|>So I said"
    assert PrePrompt(role="user").wrap_prompt("x", tok).startswith("<|user|>")
    assert PrePrompt(chat_template="off").wrap_prompt("x", tok) == PRESETS["polite"] + " x"
    # templates without a system role get the instruction as the user message
    tok2 = tiny_tokenizer(chat_template=NO_SYSTEM)
    assert PrePrompt().wrap_prompt("x", tok2) == f"<u>{PRESETS['polite']}</u><a>x"
    with pytest.raises(UsageError):
        PrePrompt(chat_template="on").wrap_prompt("x", tiny_tokenizer())


def test_bad_config():
    with pytest.raises(UsageError) as e:
        PrePrompt(preset="polit")
    assert "polite" in str(e.value)
    with pytest.raises(UsageError):
        PrePrompt(role="assistant")
    with pytest.raises(UsageError):
        PrePrompt(colour="red")
    assert PrePrompt.kind == "input" and not PrePrompt.needs_fit


def test_composition_with_aura_is_generic():
    tok = tiny_tokenizer()
    model = tiny_gpt2(len(tok))
    state = State({"transformer.h.0.mlp.c_fc": torch.zeros(64)}, {"method": "aura"})
    comp = Composite([AurA(state=state), PrePrompt(text="Be kind.")])
    assert comp.name == "aura+preprompt"
    assert comp.wrap_prompt("Hello", tok) == "Be kind. Hello"
    ids = torch.tensor([tok.encode("the cat sat")])
    with torch.no_grad():
        plain = model(ids).logits
        with comp.attach(model):
            changed = model(ids).logits
    assert not torch.allclose(plain, changed)
    assert [p["name"] for p in comp.spec()["parts"]] == ["aura", "preprompt"]
