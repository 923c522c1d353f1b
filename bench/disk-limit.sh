#!/usr/bin/env bash
# Measures this disk's own limits with fio (sequential writes with fdatasync after every
# write, 4 KiB and 1 MiB blocks), then the journal and the bookie on the same disk, and
# prints the journal's and bookie's figures as ratios to the disk's.
#
#   bench/disk-limit.sh [DIR] [SECONDS]      (default: ./data-bench, 5 s per run)
#
# Installs fio from the distribution when it is missing. A benchmark, not a test: it checks
# the targets and says which are met, and always exits 0 unless something fails to run.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-./data-bench}
secs=${2:-5}
mkdir -p "$dir"

if ! command -v fio >/dev/null 2>&1; then
  sudo=(); [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq fio >/dev/null
fi
cargo build --release --quiet -p cli --bin magnetar
bin=target/release/magnetar

out=$(mktemp -d)
trap 'rm -rf "$out" "$dir"/fio-*' EXIT
for bs in 4k 1m; do
  fio --name="fio-$bs" --directory="$dir" --rw=write --bs="$bs" --size=1G --fdatasync=1 \
      --ioengine=sync --runtime="$secs" --time_based --output-format=json >"$out/fio-$bs.json" 2>/dev/null
done
"$bin" perf journal --dir "$dir" --duration "${secs}s" --json >"$out/journal.jsonl"
"$bin" perf bookie --dir "$dir" --duration "${secs}s" --json >"$out/bookie.jsonl"

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def fio(bs):
    j = json.load(open(os.path.join(out, f"fio-{bs}.json")))["jobs"][0]
    sync = j.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    return {"mb_s": j["write"]["bw_bytes"] / 1e6, "iops": j["write"]["iops"],
            "p50_ms": sync.get("50.000000", 0) / 1e6, "p99_ms": sync.get("99.000000", 0) / 1e6}
def runs(name):
    return {(r["entry_size"], r["outstanding"]): r for r in map(json.loads, open(os.path.join(out, name)))}
f4, f1m = fio("4k"), fio("1m")
jr, bk = runs("journal.jsonl"), runs("bookie.jsonl")
print(f"fio fdatasync 4KiB: {f4['iops']:.0f} writes/s, {f4['mb_s']:.1f} MB/s, fdatasync p50 {f4['p50_ms']:.3f} ms p99 {f4['p99_ms']:.3f} ms")
print(f"fio fdatasync 1MiB: {f1m['mb_s']:.1f} MB/s")
print()
print("| bench | entry | outstanding | adds/s | MB/s | p50 ms | p99 ms | p99.9 ms | max ms |")
print("|---|---|---|---|---|---|---|---|---|")
for name, rs in (("journal", jr), ("bookie", bk)):
    for (size, o), r in sorted(rs.items()):
        print(f"| {name} | {size} B | {o} | {r['adds_per_sec']:.0f} | {r['mb_per_sec']:.1f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p999_ms']:.3f} | {r['max_ms']:.3f} |")
print()
t1 = jr[(65536, 256)]["mb_per_sec"] / f1m["mb_s"]
t2 = bk[(1024, 256)]["adds_per_sec"] / jr[(1024, 256)]["adds_per_sec"]
limit = 1.5 * f4["p99_ms"] + 0.5
p99 = bk[(1024, 1)]["p99_ms"]
def verdict(ok): return "met" if ok else "NOT met"
print(f"journal MB/s (64KiB, 256 outstanding) / fio fdatasync 1MiB MB/s = {t1:.2f}  (target >= 0.7: {verdict(t1 >= 0.7)})")
print(f"bookie adds/s (1KiB, 256) / journal adds/s (1KiB, 256) = {t2:.2f}  (target >= 0.5: {verdict(t2 >= 0.5)})")
print(f"bookie add p99 at 1 outstanding = {p99:.3f} ms; limit 1.5 x fio p99 + 0.5 ms = {limit:.3f} ms  ({verdict(p99 <= limit)})")
PY
