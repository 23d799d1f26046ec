"""AurA response collection across data-parallel ranks (gloo on CPU) equals the single-process responses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))

TEXTS = ["the film was good", "a terrible stupid day", "he said the city was nice", "you idiot", "the river",
         "they hate the music", "an old friend", "the team was awful and bad", "my happy child", "a kind woman"]
LABELS = [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]


def _collect():
    from tiny import tiny_llama

    from toxbench.interventions.forward_hooks import resolve_modules
    from toxbench.interventions.responses import collect_responses

    model, tok = tiny_llama()
    names = resolve_modules(model, ["model.layers.*.mlp.up_proj", "model.layers.*.mlp.down_proj"])
    return collect_responses(model, tok, TEXTS, LABELS, names, batch_size=2, progress=False)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # same kernels as the single-process reference
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        resp = _collect()
        if rank == 0:
            torch.save({k: v.clone() for k, v in resp.per_module.items()} | {"_tokens": torch.tensor(resp.n_tokens)}, out)
    finally:
        dist.destroy_process_group()


def test_two_ranks_give_the_single_process_responses(tmp_path):
    torch.set_num_threads(1)
    single = _collect()
    out = str(tmp_path / "rank0.pt")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
    got = torch.load(out)
    assert int(got.pop("_tokens")) == single.n_tokens
    assert set(got) == set(single.per_module)
    for name, m in single.per_module.items():
        torch.testing.assert_close(got[name], m, rtol=0, atol=1e-6, msg=name)
