"""report.py - bench/RESULTS-gpu.md from the JSON lines that bench/gpu/check.sh
collects (oc-gpu-bench, bench/peer/torch_heads.py --device cuda, torch_gpu.py).

    python3 bench/gpu/report.py results.jsonl tests.txt > bench/RESULTS-gpu.md

Lines that are not JSON are ignored; missing measurements show as "-"."""
import json
import sys


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return "-" if not a or not b else f"{b / a:.2f}x"


def share(v, ref):
    return "-" if not ref or not v else f"{100 * v / ref:.0f}%"


def main():
    rows = load(sys.argv[1])
    tests = open(sys.argv[2]).read().strip() if len(sys.argv) > 2 else ""
    info = next((r for r in rows if r.get("bench") == "info"), {})
    torch_v = next((r.get("torch") for r in rows if r.get("torch")), "-")
    pr = print
    pr("# oodc on the GPU: benchmark results\n")
    pr(f"Card: **{info.get('device', '?')}** (sm_{info.get('sm', '?')}, {info.get('sms', '?')} SMs, "
       f"{fmt(info.get('memory_gib'))} GiB), driver API {info.get('driver', '?')}, NVRTC {info.get('nvrtc', '?')}, "
       f"kernels compiled for {info.get('arch', '?')}; PyTorch {torch_v}.")
    pr("Written by `bench/gpu/check.sh`; times are medians of CUDA-event (oodc) or synchronized "
       "wall-clock (PyTorch eager) measurements after warm-up; lower is better.\n")
    if tests:
        pr("## GPU tests\n")
        pr("```\n" + tests + "\n```\n")

    heads = [r for r in rows if r.get("bench") == "heads" and "fused_us" in r]
    th = {(r["head"], r["batch"]): r.get("torch_us") for r in rows if "head" in r and "torch_us" in r}
    if heads:
        pr("## Heads: forward + backward (µs)\n")
        pr("| head | batch | oodc fused | kernels | oodc unfused | kernels | PyTorch eager | eager / fused |")
        pr("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in heads:
            t = th.get((r["head"], r["batch"]))
            pr(f"| {r['head']} | {r['batch']} | {fmt(r['fused_us'])} | {r['fused_kernels']} | {fmt(r['unfused_us'])} | "
               f"{r['unfused_kernels']} | {fmt(t)} | {ratio(r['fused_us'], t)} |")
        pr("")

    odin = [r for r in rows if r.get("bench") == "odin" and "peer" not in r]
    if odin:
        pr("## ODIN scoring step (ms per batch)\n")
        pr("| model | batch | oodc fused | oodc unfused | PyTorch eager | eager / fused |")
        pr("|---|---:|---:|---:|---:|---:|")
        for a in sorted({r["arch"] for r in odin}):
            fu = next((r["ms"] for r in odin if r["arch"] == a and r["fusion"] == 1), None)
            un = next((r["ms"] for r in odin if r["arch"] == a and r["fusion"] == 0), None)
            t = next((r["ms"] for r in rows if r.get("bench") == "odin" and r.get("peer") == "torch" and r["arch"] == a), None)
            b = next((r["batch"] for r in odin if r["arch"] == a), "-")
            pr(f"| {a.upper()} | {b} | {fmt(fu, 2)} | {fmt(un, 2)} | {fmt(t, 2)} | {ratio(fu, t)} |")
        pr("")

    train = [r for r in rows if r.get("bench") == "train"]
    if train:
        pr("## Training step (batch of 3x32x32 images)\n")
        pr("| model | batch | run | ms / step | images / s | kernels |")
        pr("|---|---:|---|---:|---:|---:|")
        for r in train:
            if r.get("peer") == "torch":
                what = f"PyTorch eager, TF32 {'on' if r.get('tf32') else 'off'}"
                k = "-"
            else:
                what = (f"oodc, fusion {'on' if r['fusion'] else 'off'}, TF32 {'on' if r['tf32'] else 'off'}"
                        f"{', CUDA graph' if r['graph'] else ''}")
                k = r.get("kernels", "-")
            pr(f"| {r['arch'].upper()} | {r['batch']} | {what} | {fmt(r['ms'], 2)} | {fmt(r.get('images_per_s'), 0)} | {k} |")
        pr("")

    copies = [r for r in rows if r.get("bench") == "copy"]
    dram = [r for r in rows if r.get("bench") == "dram"]
    if copies or dram:
        pr("## Memory bandwidth\n")
        ref = next((r["gbps"] for r in copies if "peer" not in r), None)
        pr("| measurement | GB/s | of the copy |")
        pr("|---|---:|---:|")
        for r in copies:
            who = "PyTorch" if r.get("peer") else "oodc (cuMemcpyDtoDAsync)"
            pr(f"| device-to-device copy of {r['mib']} MiB, {who} (bytes read + written) | {fmt(r['gbps'])} | "
               f"{share(r['gbps'], ref)} |")
        for r in dram:
            for key, label in (("loop_kernel_gbps", "all generated kernels of the step (buffer bytes / time)"),
                               ("best_gbps", f"best large kernel ({r.get('best_kernel', '')})")):
                v = r.get(key)
                pr(f"| {r['arch'].upper()} training step, {label} | {fmt(v)} | {share(v, ref)} |")
        pr("")
        pr("Achieved bandwidth counts each buffer a kernel reads or writes once (a lower bound "
           "on the bytes moved); cuBLAS calls are not included.")


if __name__ == "__main__":
    main()
