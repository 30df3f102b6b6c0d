"""Hypothesis strategies: draw *structure* (sizes, encodings, scales, seeds, templates, token ids),
never matrices entry by entry. Parameters are generated from the drawn seed by
:func:`mdm_props.params.init_params` (CPU, float64, then moved to the device).

Shrinking goes towards small vocabularies and dimensions, the canonical template "A r B", RoPE,
one head and scale 1: smaller examples that still satisfy every hypothesis the strategy promises
(non-degeneracy is built in: A ≠ B ≠ fillers, d ≥ V + 1 under H-orth, even d_head under RoPE).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from .facts import Template
from .model import POSITIONAL_ENCODINGS, RELATIVE_ENCODINGS, ModelConfig
from .params import init_params

MAX_SEED = 2**32 - 1

# The case space: one table of ranges, read by the Hypothesis strategies below and by the seeded
# sampler :func:`sample_case` (claim runners, negative controls), so both search the same space.
VOCAB = (3, 8)  # V real tokens: [3, max_vocab], default max_vocab 8
D_MODEL = (2, 16)  # d_model without H-orth
ORTH_EXTRA = 9  # under H-orth: d_model ∈ [V + 1, V + ORTH_EXTRA]
D_HEAD = (1, 16)  # d_head; under RoPE 2·[1, D_HEAD[1] // 2] (even)
ROPE_BASES = (1e4, 5e5, 100.0)
SCALES = (1.0, 0.5, 2.0, 4.0)  # init scale of the weight matrices
ETAS = (1e-3, 1e-2, 0.1, 1.0)  # storage step sizes
N_HEADS = (1, 2, 3)  # heads drawn by the storage claims' runners
MAX_LENGTH = 5  # template length ∈ [3, MAX_LENGTH]


@dataclass(frozen=True)
class Case:
    """One drawn example: a model structure, a parameter seed and scale, a template and a pair A ≠ B."""

    cfg: ModelConfig
    seed: int
    scale: float
    orthonormal: bool
    template: Template
    A: int
    B: int

    def params(self, device="cpu") -> dict:
        return init_params(self.cfg, self.seed, scale=self.scale, orthonormal=self.orthonormal, device=device)


seeds = st.integers(0, MAX_SEED)
scales = st.sampled_from(SCALES)
rope_bases = st.sampled_from(ROPE_BASES)
etas = st.sampled_from(ETAS)


@st.composite
def templates(draw, vocab: int, A: int, B: int, max_length: int = MAX_LENGTH) -> Template:
    """A template whose fillers avoid A and B; shrinks to the canonical "A r B" with r the smallest free id."""
    free = [t for t in range(vocab) if t not in (A, B)]
    length = draw(st.integers(3, max_length))
    a = draw(st.integers(0, length - 2))
    b = length - 1 - draw(st.integers(0, length - 2 - a))  # shrinks to the last slot: "A r B"
    fillers = tuple(draw(st.lists(st.sampled_from(free), min_size=length - 2, max_size=length - 2)))
    return Template(length, a, b, fillers)


@st.composite
def configs(
    draw,
    *,
    pos=st.sampled_from(POSITIONAL_ENCODINGS),
    attention=st.just("bidirectional"),
    orthonormal: bool = False,
    n_heads=st.just(1),
    n_layers=st.just(1),
    d_head=None,
    max_vocab: int = VOCAB[1],
    max_d_model: int | None = None,
) -> ModelConfig:
    """A ModelConfig; with ``orthonormal=True``, d_model ≥ vocab + 1 is guaranteed (H-orth).

    ``max_d_model`` caps d_model (default: D_MODEL[1], or vocab + ORTH_EXTRA under H-orth; never below
    vocab + 1 there).
    """
    p = draw(pos)
    vocab = draw(st.integers(VOCAB[0], max_vocab))
    if orthonormal:
        top = vocab + ORTH_EXTRA
        top = top if max_d_model is None else max(vocab + 1, min(top, max_d_model))
        d_model = draw(st.integers(vocab + 1, top))
    else:
        d_model = draw(st.integers(D_MODEL[0], D_MODEL[1] if max_d_model is None else max_d_model))
    if d_head is None:
        d_head = st.integers(1, D_HEAD[1] // 2).map(lambda h: 2 * h) if p == "rope" else st.integers(*D_HEAD)
    return ModelConfig(
        vocab=vocab,
        d_model=d_model,
        d_head=draw(d_head),
        n_heads=draw(n_heads),
        n_layers=draw(n_layers),
        pos=p,
        rope_base=draw(rope_bases),
        absolute_kind=draw(st.sampled_from(["learned", "sinusoidal"])),
        attention=draw(attention),
    )


@st.composite
def cases(
    draw,
    *,
    pos=st.sampled_from(RELATIVE_ENCODINGS),
    orthonormal: bool = True,
    canonical: bool = False,
    **config_kwargs,
) -> Case:
    """A full example. Defaults satisfy H-rel, H-orth and H-bi (the hypotheses of C1, C3, C4a)."""
    cfg = draw(configs(pos=pos, orthonormal=orthonormal, **config_kwargs))
    A = draw(st.integers(0, cfg.vocab - 1))
    B = draw(st.integers(0, cfg.vocab - 1).filter(lambda t: t != A))
    if canonical:
        template = Template(3, 0, 2, (min(t for t in range(cfg.vocab) if t not in (A, B)),))
    else:
        template = draw(templates(cfg.vocab, A, B))
    return Case(cfg, draw(seeds), draw(scales), orthonormal, template, A, B)


def sample_case(
    rng,
    *,
    pos=RELATIVE_ENCODINGS,
    orthonormal: bool = True,
    canonical: bool = False,
    attention: str = "bidirectional",
    n_heads=(1,),
    max_vocab: int = VOCAB[1],
    vocab: int | None = None,
    d_model: int | None = None,
    max_length: int = MAX_LENGTH,
) -> Case:
    """A seeded draw mirroring :func:`cases` (same ranges and choices), for claim runners and
    negative controls, which run outside Hypothesis: ``rng`` is a ``random.Random``.

    ``pos`` and ``n_heads`` are sequences to choose from; ``vocab`` / ``d_model`` fix a size
    (``d_model`` must still be ≥ vocab + 1 when ``orthonormal``)."""
    p = rng.choice(tuple(pos))
    V = rng.randint(VOCAB[0], max_vocab) if vocab is None else vocab
    if d_model is None:
        d_model = rng.randint(V + 1, V + ORTH_EXTRA) if orthonormal else rng.randint(*D_MODEL)
    d_head = 2 * rng.randint(1, D_HEAD[1] // 2) if p == "rope" else rng.randint(*D_HEAD)
    cfg = ModelConfig(
        vocab=V,
        d_model=d_model,
        d_head=d_head,
        n_heads=rng.choice(tuple(n_heads)),
        pos=p,
        rope_base=rng.choice(ROPE_BASES),
        absolute_kind=rng.choice(("learned", "sinusoidal")),
        attention=attention,
    )
    A = rng.randrange(V)
    B = rng.choice([t for t in range(V) if t != A])
    free = [t for t in range(V) if t not in (A, B)]
    if canonical:
        template = Template(3, 0, 2, (min(free),))
    else:
        length = rng.randint(3, max_length)
        a = rng.randint(0, length - 2)
        b = rng.randint(a + 1, length - 1)
        template = Template(length, a, b, tuple(rng.choice(free) for _ in range(length - 2)))
    return Case(cfg, rng.randint(0, MAX_SEED), rng.choice(SCALES), orthonormal, template, A, B)
