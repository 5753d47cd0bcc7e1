"""The persistent Hopper kernels against the one-tile-per-CTA ones, from tools/bench_gemm.py's
JSON (rows ``<algo>_p``, ``<algo>_pt``, ``<algo>_1t`` of one run):

    python tools/compare_persistent.py bench_gemm.json [--markdown]

Prints, per shape and kernel family, the time and cuBLAS ratio of each schedule and the speed-up
of the persistent one, then the rule the figures support for ``_gemm_sm90.persistent_wins``: the
largest K up to which the persistent kernel was faster at every measured shape of every family
(and whether it also won above it). It only reads the numbers; choosing the rule stays a human
decision written down with the run (tools/matmul_notes.md).
"""

from __future__ import annotations

import argparse
import json
import sys

SCHEDULES = ("1t", "p", "pt")  # one tile per CTA, persistent (TMA stores), persistent (thread stores)


def table(rows: list[dict]) -> dict:
    """{(M, N, K, family): {schedule: row}} for the forced-schedule rows of a bench_gemm run."""
    out: dict = {}
    for r in rows:
        family, _, sched = r["algo"].rpartition("_")
        if sched not in SCHEDULES or not family:
            continue
        out.setdefault((r["M"], r["N"], r["K"], family), {})[sched] = r
    return out


def speedups(tab: dict) -> list[tuple]:
    """(M, N, K, family, ms of 1t, ms of p, ratio 1t / p, ratio to cuBLAS of 1t and p), for the
    shapes where both schedules were measured, ordered by family then K."""
    res = []
    for (M, N, K, fam), by in tab.items():
        if "1t" in by and "p" in by:
            one, per = by["1t"], by["p"]
            res.append((M, N, K, fam, one["ms"], per["ms"], one["ms"] / per["ms"], one["ratio"], per["ratio"]))
    return sorted(res, key=lambda t: (t[3], t[2], t[0], t[1]))


def k_threshold(sp: list[tuple]) -> tuple[int | None, bool]:
    """(largest K at or below which the persistent kernel won at every measured shape, whether
    it also won at every shape above that K); (None, False) if it lost at the smallest K."""
    ks = sorted({t[2] for t in sp})
    best = None
    for k in ks:
        if all(t[6] > 1.0 for t in sp if t[2] <= k):
            best = k
        else:
            break
    above = best is not None and all(t[6] > 1.0 for t in sp if t[2] > best)
    return best, above


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown (for docs/matmul.md)")
    args = p.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    tab = table(data["rows"])
    sp = speedups(tab)
    if not sp:
        print("no shape with both the _p and the _1t row in this run", file=sys.stderr)
        return 1
    print(f"{data.get('device', '?')}, {data.get('date', '?')}: persistent (p: TMA stores, pt: thread stores) "
          "against one tile per CTA (1t); ratios to cuBLAS from the same run")
    if args.markdown:
        print("| shape | kernel | 1t ms (x cuBLAS) | p ms (x cuBLAS) | pt ms (x cuBLAS) | 1t / p |")
        print("|---|---|---|---|---|---|")
    for (M, N, K, fam, t1, tp, up, r1, rp) in sp:
        pt = tab[(M, N, K, fam)].get("pt")
        pts = f"{pt['ms']:.3f} ({pt['ratio']:.3f})" if pt else "-"
        if args.markdown:
            print(f"| {M}x{N}x{K} | {fam} | {t1:.3f} ({r1:.3f}) | {tp:.3f} ({rp:.3f}) | {pts} | {up:.3f} |")
        else:
            print(f"{M:>6}x{N:>5}x{K:>5} {fam:14} 1t {t1:8.3f} ms ({r1:.3f})  p {tp:8.3f} ms ({rp:.3f})  "
                  f"pt {pts:>18}  1t/p {up:.3f}")
    k, above = k_threshold(sp)
    if k is None:
        print("rule: the persistent kernel lost at the smallest K measured: keep persistent_wins False")
    elif above:
        print(f"rule: the persistent kernel won at every measured shape (K up to {max(t[2] for t in sp)}): "
              "persistent_wins could be always True")
    else:
        print(f"rule: the persistent kernel won at every shape with K <= {k} and not at every one above: "
              f"persistent_wins(M, N, K) = K <= {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
