"""Hypothesis strategies: draw *structure* (sizes, encodings, scales, seeds, templates, token ids),
never matrices entry by entry. Parameters are generated from the drawn seed by
:func:`mdm_props.params.init_params` (CPU, float64, then moved to the device).

Shrinking goes towards small vocabularies and dimensions, the canonical template "A r B", RoPE,
one head and scale 1: smaller examples that still satisfy every hypothesis the strategy promises
(non-degeneracy is built in: A ≠ B ≠ fillers, d ≥ V + 1 under H-orth, even d_head under RoPE).

**Fixed schema.** Every draw of :func:`configs`, :func:`templates`, :func:`cases` and :func:`chosen` makes the same
sequence of choices with the same constraints, whatever the earlier choices were: a size or id whose
range depends on an earlier draw (d_model ∈ [V + 1, V + 9], A ∈ [0, V), B ≠ A, a filler among the
V − 2 free ids, a template of 3–5 slots) is drawn as an index from one fixed range (:data:`INDEX`) and
reduced modulo the number of options (:func:`pick`), with no filter and a fixed number of fillers.
Why: Hypothesis's ``target()`` phase (6.170) splices choice sequences; a splice whose choice falls
outside the range its slot has there is *misaligned*, overruns, is cached under other choices and so
is run again on every pass of the optimiser, whose loop ends only when a pass makes no call or enough
valid examples were run. The thorough C4b run with seed 12 spun there for over 25 minutes (issue 15;
no draw took more than 0.8 s). With a fixed schema a splice never misaligns: every one is a valid draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

from hypothesis import strategies as st

from .facts import EntityTemplate, Template, rev
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
ENTITY_K = (1, 4)  # tokens per entity of a k-token fact (THEORY §2c)
RELATION_M = (1, 3)  # relation length m of a k-token fact
# INDEX reduced modulo n is uniform on [0, n) for every n ≤ INDEX_UNIFORM (INDEX_MODULUS = lcm(1, …, 32)
# is a multiple of each), within n/INDEX_MODULUS (< 1e-12 for n < 100) of uniform for larger n
INDEX_UNIFORM = 32
INDEX_MODULUS = math.lcm(*range(1, INDEX_UNIFORM + 1))


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
INDEX = st.integers(0, INDEX_MODULUS - 1)  # one choice with the same constraints wherever it is drawn
scales = st.sampled_from(SCALES)
rope_bases = st.sampled_from(ROPE_BASES)
etas = st.sampled_from(ETAS)


def pick(draw, options):
    """One of ``options`` (a non-empty sequence), uniformly, from one :data:`INDEX` choice: the choice's
    constraints do not depend on ``options``, so earlier draws that change the options leave the choice
    sequence aligned (module docstring). Shrinks to ``options[0]``."""
    options = tuple(options)
    if not options:
        raise ValueError("options must be a non-empty sequence")
    return options[draw(INDEX) % len(options)]


CHOICES = 32  # INDEX choices drawn up front by :func:`chosen`; the deep case builders make at most 25


@st.composite
def chosen(draw, make, **kwargs):
    """``make(choose, seed, **kwargs)`` under Hypothesis, for the deep claims' case builders
    (``c5_reflected_route.deep_case``, ``layer_storage.storage_case``), which take a chooser so that
    their runners can drive them with ``random.Random.choice``. A fixed schema whatever the builder does:
    :data:`CHOICES` INDEX choices and a seed are drawn first, and the k-th ``choose(options)`` is
    ``options[index_k mod len(options)]`` (as :func:`pick`; shrinks to ``options[0]``). A builder that
    makes more choices than that is an error, not a silent reuse."""
    indices = [draw(INDEX) for _ in range(CHOICES)]
    seed = draw(seeds)
    used = iter(indices)

    def choose(options):
        options = tuple(options)
        if not options:
            raise ValueError("options must be a non-empty sequence")
        index = next(used, None)
        if index is None:
            raise ValueError(f"the case builder {make.__name__} made more than CHOICES = {CHOICES} choices")
        return options[index % len(options)]

    return make(choose, seed, **kwargs)


@st.composite
def templates(draw, vocab: int, A: int, B: int, max_length: int = MAX_LENGTH) -> Template:
    """A template whose fillers avoid A and B; shrinks to the canonical "A r B" with r the smallest free id.
    A fixed schema: the length, two :func:`pick` choices for the slots and ``max_length − 2`` filler
    choices (the first ``length − 2`` are used), whatever ``vocab``, A and B are."""
    free = [t for t in range(vocab) if t not in (A, B)]
    length = draw(st.integers(3, max_length))
    a = pick(draw, range(length - 1))
    b = length - 1 - pick(draw, range(length - 1 - a))  # shrinks to the last slot: "A r B"
    fillers = [pick(draw, free) for _ in range(max_length - 2)]
    return Template(length, a, b, tuple(fillers[: length - 2]))


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
        d_model = pick(draw, range(vocab + 1, top + 1))
    else:
        d_model = pick(draw, range(D_MODEL[0], (D_MODEL[1] if max_d_model is None else max_d_model) + 1))
    if d_head is None:  # one choice for every encoding: 2, 4, …, D_HEAD[1] under RoPE, 1 … D_HEAD[1] otherwise
        head = pick(draw, range(D_HEAD[0], D_HEAD[1] + 1))
        head = 2 * ((head + 1) // 2) if p == "rope" else head
    else:
        head = draw(d_head)
    return ModelConfig(
        vocab=vocab,
        d_model=d_model,
        d_head=head,
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
    A = pick(draw, range(cfg.vocab))
    B = pick(draw, [t for t in range(cfg.vocab) if t != A])
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


# ---------------------------------------------------------------------------------------------
# k-token facts (THEORY §2c): one chooser-driven builder for Hypothesis and for seeded samplers


def entity_fact(
    choose,
    vocab: int,
    *,
    k=None,
    m=None,
    palindromic: bool = True,
) -> tuple[EntityTemplate, tuple[int, ...], tuple[int, ...]]:
    """A k-token fact (template, A, B) over ``vocab`` real tokens: ``choose(options)`` picks one of a
    sequence (``random.Random.choice``; ``lambda o: pick(draw, o)`` under Hypothesis, where it shrinks to
    the first option: k = 1, m = 1).

    k ∈ ``k`` (default 1 … ENTITY_K[1]), m ∈ ``m`` (default 1 … RELATION_M[1]); a palindromic relation
    (the first ⌈m/2⌉ tokens chosen, mirrored), or with ``palindromic=False`` one that does not read the
    same backwards (m ≥ 2). The relation uses at most V − 2 distinct tokens, so at least two remain for
    the entities; A and B are k-tuples of the remaining tokens (repeats allowed), A ≠ B. Five choices
    whatever the sizes (each a whole tuple)."""
    ks = tuple(range(ENTITY_K[0], ENTITY_K[1] + 1)) if k is None else tuple(k)
    ms = tuple(range(RELATION_M[0], RELATION_M[1] + 1)) if m is None else tuple(m)
    if not palindromic:
        ms = tuple(x for x in ms if x >= 2)
    if not ks or not ms or min(ks) < 1 or min(ms) < 1:
        raise ValueError(f"k and m must offer sizes >= 1 (m >= 2 for a non-palindromic relation); got k={ks}, m={ms}")
    least = 3 if palindromic else 4  # two entity tokens and one relation token (two if not palindromic)
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < least:
        raise ValueError(
            f"vocab must be an integer >= {least} (two entity tokens and the relation's "
            f"{'one' if palindromic else 'two'} distinct tokens); got {vocab!r}"
        )
    size, length = choose(ks), choose(ms)
    if palindromic:
        half = product(range(vocab), repeat=(length + 1) // 2)
        options = [h + rev(h[: length // 2]) for h in half]
    else:
        options = [r for r in product(range(vocab), repeat=length) if r != rev(r)]
    relation = choose(tuple(r for r in options if len(set(r)) <= vocab - 2))
    free = [t for t in range(vocab) if t not in relation]
    entities = tuple(product(free, repeat=size))
    A = choose(entities)
    B = choose(tuple(e for e in entities if e != A))
    return EntityTemplate(size, relation), A, B


@st.composite
def entity_facts(draw, vocab: int, **kwargs) -> tuple[EntityTemplate, tuple[int, ...], tuple[int, ...]]:
    """:func:`entity_fact` under Hypothesis (a fixed schema: five :func:`pick` choices)."""
    return entity_fact(lambda options: pick(draw, options), vocab, **kwargs)


def sample_entity_fact(rng, vocab: int, **kwargs) -> tuple[EntityTemplate, tuple[int, ...], tuple[int, ...]]:
    """:func:`entity_fact` driven by a ``random.Random`` (runners, negative controls, experiments)."""
    return entity_fact(rng.choice, vocab, **kwargs)
