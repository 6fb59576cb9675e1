"""A tiny GPT-2 trained in the test on synthetic member texts, and its word-level tokenizer.

The synthetic language is a Markov chain over a small vocabulary of made-up words: every
word has a few likely successors, so non-member texts from the same chain are predictable
too (the model learns the chain) while member texts are also memorised (trained on for a
few hundred steps). The model and tokenizer are saved as an ordinary transformers
directory, so the product loads them the way it loads any local model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu", "da", "fi")
N_WORDS = 72
SUCCESSORS = 4  # likely next words per word
P_LIKELY = 0.75  # mass on the likely successors; the rest is uniform
SPECIALS = ("[PAD]", "[UNK]", "[BOS]")


def vocabulary(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < N_WORDS:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))))
    return sorted(words)


@dataclass(frozen=True)
class Chain:
    words: list[str]
    successors: dict[str, list[str]]

    @classmethod
    def make(cls, seed: int = 0) -> Chain:
        words = vocabulary(seed)
        rng = random.Random(seed + 1)
        return cls(words, {w: rng.sample(words, SUCCESSORS) for w in words})

    def text(self, rng: random.Random, length: int) -> str:
        word = rng.choice(self.words)
        out = [word]
        for _ in range(length - 1):
            if rng.random() < P_LIKELY:
                word = rng.choice(self.successors[word])
            else:
                word = rng.choice(self.words)
            out.append(word)
        return " ".join(out)

    def texts(self, n: int, seed: int, lengths: tuple[int, int] = (16, 40)) -> list[str]:
        rng = random.Random(seed)
        return [self.text(rng, rng.randint(*lengths)) for _ in range(n)]


def make_tokenizer(words: list[str], *, bos: bool = False):
    """A word-level fast tokenizer (whitespace split); with ``bos`` it prepends [BOS]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((*SPECIALS, *words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]"
    )


def train_tiny_gpt2(
    members: list[str],
    tokenizer,
    *,
    steps: int = 300,
    seed: int = 0,
    n_positions: int = 128,
    background: list[str] = (),
):
    """GPT-2 with 2 layers, 64-d, trained on ``members`` (and ``background``) on the CPU."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=64, n_layer=2, n_head=4,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    with torch_threads(1):
        _train(model, tokenizer, list(members) + list(background), steps, seed)
    return model.eval()


def _train(model, tokenizer, corpus: list[str], steps: int, seed: int) -> None:
    import torch

    encoded = [torch.tensor(tokenizer(t)["input_ids"]) for t in corpus]
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(encoded, min(16, len(encoded)))
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, x in enumerate(batch):
            ids[row, : len(x)] = x
            labels[row, : len(x)] = x
            mask[row, : len(x)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def save_model(model, tokenizer, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@dataclass(frozen=True)
class TinySetup:
    """The trained tiny model, its tokenizer, and the texts of the experiment."""

    model: object
    tokenizer: object
    chain: Chain
    members: list[str]
    nonmembers: list[str]
    human: list[str]  # more non-members: a reference set of "human-written" texts
    prefix: tuple[str, ...]  # ReCaLL prefix pool (non-members)


@cache
def trained_tiny() -> TinySetup:
    """Trained once per test process (~8 s on 2 cores) and shared by the Tier 4 modules;
    nothing is written outside pytest's tmp directories."""
    chain = Chain.make(0)
    tokenizer = make_tokenizer(chain.words)
    members = chain.texts(64, seed=1)
    background = chain.texts(128, seed=3)
    model = train_tiny_gpt2(members, tokenizer, steps=300, background=background)
    return TinySetup(
        model=model,
        tokenizer=tokenizer,
        chain=chain,
        members=members,
        nonmembers=chain.texts(64, seed=2),
        human=chain.texts(300, seed=5),
        prefix=tuple(chain.texts(2, seed=4, lengths=(10, 20))),
    )


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch on ``count`` threads. The tiny model's matrices are so small that a second
    OpenMP thread only adds synchronisation: on a loaded 2-core machine one thread was 25x
    faster than two. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
