"""Tiny random models + a tiny word-level tokenizer, built in-process (no downloads, milliseconds)."""

from __future__ import annotations

import string
from pathlib import Path

import torch

WORDS = (
    "the a an of to and in is was it he she they we you i that this for on with as at by from be have not but "
    "or are his her their our my your good bad nice terrible awful lovely day night world people said says "
    "film actor series play role television city river year game team music song book story time life love "
    "hate stupid idiot kind friend happy sad very really one two three new old first last man woman child"
).split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS + list(string.punctuation) + list(string.digits))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.model_max_length = 256
    return fast


def tiny_llama(seed: int = 0, layers: int = 2, inter: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def tiny_gpt2(seed: int = 0, layers: int = 2):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=layers, n_head=2, n_positions=256,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(cfg).eval(), tok


def save_tiny(path: Path, kind: str = "llama", seed: int = 0) -> Path:
    model, tok = (tiny_llama if kind == "llama" else tiny_gpt2)(seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
