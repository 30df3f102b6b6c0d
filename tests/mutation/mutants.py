"""The mutation script (issue 9 item 9, issue 14): how much of the suite's and of ``mdm-props verify``'s
semantic power is real, measured by planting plausible bugs.

Each mutant is one textual patch of one file (it must match exactly once). For each mutant the
repository is copied to a scratch directory (without .venv, .git and caches), the patch is applied
there, and, with this repository's interpreter and ``PYTHONPATH`` pointing at the copy (the script
checks that ``import mdm_props`` resolves to the copy), it runs

* the claim tests: ``pytest -n auto -x -q -m "claim or negative_control or meta"`` (``dev`` profile,
  fixed ``--hypothesis-seed``, so a run is reproducible), and
* ``python -m mdm_props verify`` (default settings),

and prints a table (mutant, pytest killed?, verify killed?, seconds) and both kill rates. A mutant is
*killed* when the command exits non-zero. Not collected by pytest (the file is not ``test_*.py``) and
not run by CI: ``make mutants`` or ``.venv/bin/python tests/mutation/mutants.py [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    "*.egg-info",
    "build",
    ".hypothesis",
    "*.png",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)
PYTEST_ARGS = [
    "-m",
    "pytest",
    "-n",
    "auto",
    "-x",
    "-q",
    "-p",
    "no:randomly",
    "--hypothesis-seed=0",
    "-m",
    "claim or negative_control or meta",
    "tests",
]
VERIFY_ARGS = ["-m", "mdm_props", "verify"]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    description: str


MUTANTS = [
    Mutant(
        "rope-sign",
        "mdm_props/model.py",
        "torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)",
        "torch.stack((even * cos + odd * sin, -even * sin + odd * cos), dim=-1)",
        "RoPE rotates clockwise (by −angle) everywhere: q, k and rope_matrix",
    ),
    Mutant(
        "rope-one-side",
        "mdm_props/model.py",
        "k = rope_rotate(k, positions, cfg.rope_base, cfg.rope_pairing)",
        "k = rope_rotate(k, -positions, cfg.rope_base, cfg.rope_pairing)",
        "the keys are rotated in the reverse direction (only k): scores no longer relative",
    ),
    Mutant(
        "rope-base-ignored",
        "mdm_props/model.py",
        "return base ** (-2.0 * l / d_head)",
        "return 1e4 ** (-2.0 * l / d_head)",
        "RoPE frequencies always use base 1e4, whatever rope_base says",
    ),
    Mutant(
        "drop-scale",
        "mdm_props/model.py",
        "s = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)",
        "s = q @ k.transpose(-1, -2)",
        "the 1/√d_k score scale is dropped",
    ),
    Mutant(
        "alibi-slope-sign",
        "mdm_props/model.py",
        "return -alibi_slopes(cfg.n_heads,",
        "return +alibi_slopes(cfg.n_heads,",
        "ALiBi bias +m|j − i| (attends to far tokens) instead of −m|j − i|",
    ),
    Mutant(
        "alibi-no-abs",
        "mdm_props/model.py",
        "[:, None, None] * offset.abs().to(",
        "[:, None, None] * offset.to(",
        "ALiBi bias −m(j − i): not symmetric",
    ),
    Mutant(
        "t5-reversed",
        "mdm_props/model.py",
        'return params["t5_bias"][layer][:, offset + cfg.max_len - 1]',
        'return params["t5_bias"][layer][:, -offset + cfg.max_len - 1]',
        "T5 bias read as b(i − j) instead of b(j − i)",
    ),
    Mutant(
        "causal-in-bidirectional",
        "mdm_props/model.py",
        'if cfg.attention == "causal":\n            s = s.masked_fill',
        'if cfg.attention in ("causal", "bidirectional"):\n            s = s.masked_fill',
        "the causal mask is applied in bidirectional mode too",
    ),
    Mutant(
        "mask-leak-unembed",
        "mdm_props/model.py",
        'return params["E"][: cfg.vocab] if cfg.tied else params["U"]',
        'return params["E"][: cfg.vocab] + 0.5 * params["E"][cfg.vocab] if cfg.tied else params["U"]',
        "the mask embedding leaks into every tied output row (U x_M ≠ 0)",
    ),
    Mutant(
        "mask-leak-nll",
        "mdm_props/facts.py",
        "corrupted = torch.where(mask, torch.full_like(tokens, cfg.mask_id), tokens)",
        "corrupted = torch.where(mask, tokens, tokens)",
        "the masked-diffusion loss scores masked tokens without masking them (the answer leaks)",
    ),
    Mutant(
        "loss-weight-1/t^2",
        "mdm_props/facts.py",
        "return nll / t.squeeze(-1).to(nll.device, nll.dtype)",
        "return nll / t.squeeze(-1).to(nll.device, nll.dtype) ** 2",
        "masked-diffusion estimator weighted 1/t² instead of 1/t",
    ),
    Mutant(
        "storage-grad-transpose",
        "mdm_props/gradients.py",
        "return g[None, :, None] * c[:, None, :]",
        "return c[:, :, None] * g[None, None, :]",
        "closed-form ∂L/∂W_OV = c (Uᵀ(p − y))ᵀ: the transpose is missing",
    ),
    Mutant(
        "first-factor-sign",
        "mdm_props/storage.py",
        "    return (rf * rr).sum(-1)\n",
        "    return -(rf * rr).sum(-1)\n",
        "C3's first factor (p_f − y)ᵀ(p_r − y) with its sign flipped",
    ),
    Mutant(
        "alignment-same-order",
        "mdm_props/storage.py",
        "        out.append(where[t][taken.get(t, 0)])\n        taken[t] = taken.get(t, 0) + 1\n    return out",
        "        out.append(where[t][taken.get(t, 0)])\n        taken[t] = taken.get(t, 0) + 1\n"
        "    return list(range(len(dst)))",
        "token alignment of the reverse to the forward positions in the same order, not token to token",
    ),
    Mutant(
        "forward-safety-x10",
        "mdm_props/rounding.py",
        "FORWARD_SAFETY = 2.0",
        "FORWARD_SAFETY = 20.0",
        "the forward-pass rounding bound (C0) made ten times looser",
    ),
    Mutant(
        "storage-safety-x10",
        "mdm_props/rounding.py",
        "STORAGE_SAFETY = 2.0",
        "STORAGE_SAFETY = 20.0",
        "the storage claims' rounding bounds (C1, C3, C4a) made ten times looser",
    ),
    Mutant(
        "forward-safety-x0.1",
        "mdm_props/rounding.py",
        "FORWARD_SAFETY = 2.0",
        "FORWARD_SAFETY = 0.2",
        "the forward-pass rounding bound made ten times tighter (unsound)",
    ),
    Mutant(
        "gamma-nu/2",
        "mdm_props/rounding.py",
        "return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)",
        "return n * UNIT_ROUNDOFF / 2",
        "γ_n = nu/2 instead of nu/(1 − nu)",
    ),
    Mutant(
        "false-alarm-1e-2",
        "mdm_props/statistics.py",
        "FALSE_ALARM = 1e-6",
        "FALSE_ALARM = 1e-2",
        "the default false-alarm level changed from 1e-6 to 1e-2",
    ),
    Mutant(
        "nc-found-without-example",
        "mdm_props/search.py",
        "        hit = violation(cand)\n",
        "        hit = (0.0, {})\n",
        "every negative-control search reports 'found' at its first draw, with no example",
    ),
    Mutant(
        "storage-step-sign",
        "mdm_props/storage.py",
        'return {**params, "W_OV": params["W_OV"] - eta * step}',
        'return {**params, "W_OV": params["W_OV"] + eta * step}',
        "the storage step moves W_OV up the forward gradient (W + ηG)",
    ),
    # one formula per bound (issue 14): each per-draw bound/formula of C1a–C4a is a thin wrapper over the batched
    # one, so a slip there now moves verify's batched rows too (before, such a slip in a per-draw copy was seen
    # only by pytest's per-draw/batched agreement test)
    Mutant(
        "c1c-margin-bound-sign",
        "mdm_props/claims/c1_reusable_evidence.py",
        "tol_m = obs[:, A, None] + obs + UNIT_ROUNDOFF",
        "tol_m = obs[:, A, None] - obs + UNIT_ROUNDOFF",
        "C1c's margin bound subtracts the second logit's error instead of adding it (c1c_tolerances_batch)",
    ),
    Mutant(
        "c1b-formula-target",
        "mdm_props/claims/c1_reusable_evidence.py",
        "return bil(W_new) - bil(W), eta[:, None] * f.resid[:, A, None] * alpha_B",
        "return bil(W_new) - bil(W), eta[:, None] * f.resid[:, B, None] * alpha_B",
        "C1b's formula η(1 − p_f(A))α^f(B) reads 1 − p_f(B) (evidence_change_batch)",
    ),
    Mutant(
        "c3-overlap-forward-twice",
        "mdm_props/claims/c3_aligned_storage.py",
        "S = (f.token_attention(vocab + 1) * r.token_attention(vocab + 1)).sum((-1, -2))",
        "S = (f.token_attention(vocab + 1) * f.token_attention(vocab + 1)).sum((-1, -2))",
        "C3's token overlap Σ_t α^f(t)α^r(t) reads the forward attention twice (storage_product_batch)",
    ),
    # the deep block (issue 21 item 3): each a wrong component that only the deep oracle (C0.2d) pins for
    # certain; invariances (C5, C9) hold for several of them
    Mutant(
        "deep-norm-eps-outside-sqrt",
        "mdm_props/model.py",
        "return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain",
        "return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * gain",
        "RMSNorm x / (√mean(x²) + ε) ⊙ g: epsilon outside the square root",
    ),
    Mutant(
        "deep-norm-gain-ignored",
        "mdm_props/model.py",
        "return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain",
        "return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)",
        "RMSNorm ignores its gain g",
    ),
    Mutant(
        "deep-mlp-gate-up-swapped",
        "mdm_props/model.py",
        'silu(xm @ params["W_gate"][layer].T) * (xm @ params["W_up"][layer].T)',
        'silu(xm @ params["W_up"][layer].T) * (xm @ params["W_gate"][layer].T)',
        "SwiGLU silu(W_up x) ⊙ W_gate x: gate and up swapped",
    ),
    Mutant(
        "deep-gqa-grouping-modulo",
        "mdm_props/model.py",
        "k = k.repeat_interleave(group, dim=-3)",
        "k = k.repeat(*([1] * (k.dim() - 3)), group, 1, 1)",
        "GQA: query head h reads the keys of kv head h mod K instead of h // (H/K)",
    ),
    Mutant(
        "deep-rope-pairing-swapped",
        "mdm_props/model.py",
        '    if pairing == "half-split":\n        half = v.shape[-1] // 2',
        '    if pairing == "interleaved":\n        half = v.shape[-1] // 2',
        "RoPE rotates half-split pairs when asked for interleaved ones and the other way round",
    ),
    Mutant(
        "deep-readout-offset-right",
        "mdm_props/model.py",
        "read = (positions - cfg.readout_offset).clamp_min(0)",
        "read = (positions + cfg.readout_offset).clamp_max(T - 1)",
        "read-out offset s reads slot i at i + s (to the right) instead of i − s",
    ),
    Mutant(
        "deep-final-norm-dropped",
        "mdm_props/model.py",
        'x = rms_norm(x, params["norm_final"], cfg.norm_eps)',
        "x = x",
        "the final norm is skipped (final_norm=True has no effect)",
    ),
    Mutant(
        "deep-untied-head-ignored",
        "mdm_props/model.py",
        'return params["E"][: cfg.vocab] if cfg.tied else params["U"]',
        'return params["E"][: cfg.vocab]',
        "the untied head U is ignored: logits always read E[:V]",
    ),
]


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.path
    text = path.read_text()
    n = text.count(mutant.old)
    if n != 1:
        raise SystemExit(f"mutant {mutant.name}: the patch matches {n} times in {mutant.path} (must be once)")
    path.write_text(text.replace(mutant.old, mutant.new))


def run(cmd_args, cwd: Path, timeout: float) -> tuple[int, float, float, str]:
    """(exit code, wall s, child CPU s, output tail) of ``python <cmd_args>`` in ``cwd`` with PYTHONPATH=cwd."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "HYPOTHESIS_PROFILE": "dev"}
    env.pop("CI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, *cmd_args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        code, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        code, out = 124, f"timeout after {timeout} s\n{exc.stdout or ''}"
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, time.perf_counter() - start, cpu, out[-3000:] if isinstance(out, str) else str(out)[-3000:]


def run_verify(cwd: Path, timeout: float) -> tuple[int, float, float, str]:
    """Like :func:`run` for ``mdm-props verify``, stopping at the first row whose status is not ok (the
    exit code is then 1 for certain: a violated row makes verify exit 1); ``-1`` marks such an early stop."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    env.pop("CI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, *VERIFY_ARGS], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, code = [], None
    for line in p.stdout:
        lines.append(line)
        if line.startswith("[") and " ... " in line and not any(ok in line for ok in OK_STATUSES):
            p.kill()
            code = -1
            break
        if time.perf_counter() - start > timeout:
            p.kill()
            code = 124
            break
    p.wait()
    code = p.returncode if code is None else code
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, time.perf_counter() - start, cpu, "".join(lines)[-3000:]


OK_STATUSES = ("... holds", "... counterexample-found", "... skipped")


def imported_from(cwd: Path) -> str:
    code, _, _, out = run(["-c", "import mdm_props; print(mdm_props.__file__)"], cwd, 60)
    return out.strip().splitlines()[-1] if out.strip() else ""


def evaluate(mutant: Mutant | None, *, pytest_on: bool, verify_on: bool, keep: bool) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="mdm_mutant_"))
    root = scratch / "repo"
    shutil.copytree(ROOT, root, ignore=IGNORE)
    try:
        if mutant is not None:
            apply(mutant, root)
        where = imported_from(root)
        if not where.startswith(str(root)):
            raise SystemExit(f"mdm_props imports from {where!r}, not from the scratch copy {root}")
        row = {"mutant": mutant.name if mutant else "(none)", "description": mutant.description if mutant else ""}
        if pytest_on:
            code, wall, cpu, out = run(PYTEST_ARGS, root, 1200)
            row.update(
                pytest_exit=code,
                pytest_killed=code != 0,
                pytest_s=round(wall, 1),
                pytest_cpu_s=round(cpu, 1),
                pytest_tail=out[-1500:],
            )
        if verify_on:
            code, wall, cpu, out = run_verify(root, 600)
            failed = [
                ln
                for ln in out.splitlines()
                if "FAILED" in ln or (ln.startswith("[") and " ... " in ln and not any(o in ln for o in OK_STATUSES))
            ]
            row.update(
                verify_exit=code,
                verify_killed=code != 0,
                verify_s=round(wall, 1),
                verify_cpu_s=round(cpu, 1),
                verify_failed=failed[-1] if failed else "",
                verify_tail=out[-1500:],
            )
        return row
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def mark(row, key):
    return "-" if key not in row else ("KILLED" if row[key] else "survived")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="mutant names to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--no-pytest", action="store_true")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run (it must pass)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies")
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    mutants = MUTANTS
    if args.list:
        for m in mutants:
            print(f"{m.name:<26} {m.path:<22} {m.description}")
        return 0
    chosen = [m for m in mutants if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in mutants}
    if unknown:
        ap.error(f"unknown mutants {sorted(unknown)}; see --list")
    for m in chosen:  # every patch must apply before any work starts
        apply_check = (ROOT / m.path).read_text().count(m.old)
        if apply_check != 1:
            ap.error(f"mutant {m.name}: the patch matches {apply_check} times in {m.path}")
    opts = dict(pytest_on=not args.no_pytest, verify_on=not args.no_verify, keep=args.keep)
    rows = []
    if not args.no_baseline:
        base = evaluate(None, **opts)
        print(
            f"baseline: pytest exit {base.get('pytest_exit')} ({base.get('pytest_s')} s), verify exit "
            f"{base.get('verify_exit')} ({base.get('verify_s')} s wall, {base.get('verify_cpu_s')} s CPU)",
            flush=True,
        )
        if base.get("pytest_killed") or base.get("verify_killed"):
            print(base.get("pytest_tail", ""), base.get("verify_tail", ""), sep="\n")
            raise SystemExit("the unmutated repository must pass both")
        rows.append(base)
    for m in chosen:
        row = evaluate(m, **opts)
        rows.append(row)
        print(
            f"{m.name:<26} pytest {mark(row, 'pytest_killed'):<9} verify {mark(row, 'verify_killed'):<9} "
            f"({row.get('pytest_s', '-')} s, {row.get('verify_s', '-')} s)  {row.get('verify_failed', '')[:90]}",
            flush=True,
        )
    table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def table(rows) -> None:
    muts = [r for r in rows if r["mutant"] != "(none)"]
    print(f"\n{'mutant':<26} {'pytest':<9} {'verify':<9} {'pytest s':>8} {'verify s':>8} {'verify cpu':>10}")
    for r in muts:
        print(
            f"{r['mutant']:<26} {mark(r, 'pytest_killed'):<9} {mark(r, 'verify_killed'):<9} "
            f"{r.get('pytest_s', '-'):>8} {r.get('verify_s', '-'):>8} {r.get('verify_cpu_s', '-'):>10}"
        )
    for key, label in (("pytest_killed", "pytest"), ("verify_killed", "verify")):
        done = [r for r in muts if key in r]
        if done:
            k = sum(r[key] for r in done)
            print(f"{label} kill rate: {k}/{len(done)} = {k / len(done):.0%}")
    only = [
        r["mutant"]
        for r in muts
        if "pytest_killed" in r and "verify_killed" in r and r["pytest_killed"] != r["verify_killed"]
    ]
    if only:
        print("killed by only one of them: " + ", ".join(only))


# depth (issue 21 item 6): the route reflection Φ, C4a's constant and the one Taylor engine's logarithm
MUTANTS += [
    Mutant(
        "phi-queries-only",
        "mdm_props/claims/c5_reflected_route.py",
        'for name in ("W_Q", "W_K"):',
        'for name in ("W_Q",):',
        "Φ reflects one side only: J on every head's W_Q, not on W_K (the scores are no longer those at −δ)",
    ),
    Mutant(
        "phi-ignores-pairing",
        "mdm_props/claims/c5_reflected_route.py",
        'J = rope_reflection(cfg.d_head, cfg.rope_pairing, device=params["W_Q"].device)',
        'J = rope_reflection(cfg.d_head, device=params["W_Q"].device)',
        "Φ ignores the RoPE pairing: the interleaved J also for half-split pairs",
    ),
    Mutant(
        "c4a-bound-1/4",
        "mdm_props/claims/c4_reverse_loss_decrease.py",
        "C4A_BOUND_DENOMINATOR = 8\n",
        "C4A_BOUND_DENOMINATOR = 4\n",
        "C4a's remainder bound η² spread²/8 loosened to η² spread²/4 (and η* halved): still sound, not tight",
    ),
    Mutant(
        "taylor-order-ln",
        "mdm_props/taylor.py",
        "return math.log2(R1 / R2) if R2 != 0 and R1 / R2 > 0 else math.nan",
        "return math.log(R1 / R2) if R2 != 0 and R1 / R2 > 0 else math.nan",
        "the Taylor engine's observed order log2(R(η)/R(η/2)) taken as a natural logarithm (order 2 reads 1.39)",
    ),
]


if __name__ == "__main__":
    sys.exit(main())
