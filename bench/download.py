"""Download throughput: prefect-tinker's downloader vs the `tinker` CLI's sequential urllib.

A local Tinker service runs in its own process (`prefect-tinker local serve`). The benchmark
trains nothing: it saves one external_weights checkpoint of a fresh LoRA run, then adds
`--files` shards of random bytes (`--size-mb` in total, default 1 GiB) to that checkpoint's
directory, so the service's signed-URL route serves a multi-file checkpoint of that size.

Both downloaders fetch it from the page cache (a warm-up read comes first), alternating for
`--repeats` rounds; the best time of each is reported, with the peak RSS growth of this
process during our download (VmHWM after resetting it through /proc/self/clear_refs).

Usage:
    python bench/download.py                 # 1 GiB in 8 files
    python bench/download.py --size-mb 128   # quick run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _report import report  # noqa: E402

API_KEY = "tml-bench-download"
BASE_MODEL = "Qwen/Qwen3-0.6B"


def _start_service(data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", TINKER_TELEMETRY="0")
    cmd = [
        sys.executable, "-c", "from prefect_tinker.cli import main; main()", "local", "serve",
        "--data-dir", str(data_dir), "--api-key", API_KEY,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    line = proc.stdout.readline().strip()  # the base URL, printed once the service is ready
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit(f"the local service did not start (got {line!r})")
    return proc, line


def _make_checkpoint(base_url: str, data_dir: Path, size_mb: int, files: int) -> str:
    import tinker

    service = tinker.ServiceClient(base_url=base_url, api_key=API_KEY)
    tc = service.create_lora_training_client(base_model=BASE_MODEL, rank=4, seed=0).result()
    path = tc.save_weights_external("bench").result().path
    service.close("success").result(timeout=60)
    (ckpt_dir,) = data_dir.glob("checkpoints/*/external_weights/bench")
    shard = size_mb * 1024 * 1024 // files
    block = os.urandom(16 * 1024 * 1024)
    for i in range(files):
        with open(ckpt_dir / f"shard-{i:02d}.bin", "wb") as fh:
            left = shard
            while left:
                n = min(left, len(block))
                fh.write(block[:n] if i % 2 else block[::-1][:n])
                left -= n
    return path


def _warm(data_dir: Path) -> None:
    for f in data_dir.glob("checkpoints/*/external_weights/bench/*"):
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _ours(rest, path: str, dest: Path, concurrency: int) -> tuple[float, int, float]:
    from prefect_tinker.export import download

    shutil.rmtree(dest, ignore_errors=True)
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
    t0 = time.perf_counter()
    manifest = download(rest, path, dest, concurrency=concurrency)
    seconds = time.perf_counter() - t0
    growth_mib = (_rss_kib("VmHWM") - before) / 1024
    return seconds, manifest.bytes_transferred, growth_mib


def _urllib(rest, path: str, dest: Path) -> tuple[float, int]:
    """The `tinker checkpoint download` code path: sequential urlopen + read(8192)."""
    from tinker.cli.commands.checkpoint import _download_external_weights

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    total = _download_external_weights(rest, path, dest, show_progress=False, format="json")
    return time.perf_counter() - t0, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="checkpoint size (MiB)")
    parser.add_argument("--files", type=int, default=8, help="number of shard files")
    parser.add_argument("--concurrency", type=int, default=4, help="our parallel transfers")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per downloader")
    args = parser.parse_args()

    import tinker

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    proc, base_url = _start_service(work / "service")
    try:
        path = _make_checkpoint(base_url, work / "service", args.size_mb, args.files)
        _warm(work / "service")
        rest = tinker.RestClient(base_url=base_url, api_key=API_KEY)
        ours, theirs, growth = [], [], []
        nbytes = 0
        for _ in range(args.repeats):
            s, nbytes, g = _ours(rest, path, work / "ours", args.concurrency)
            ours.append(s)
            growth.append(g)
            s2, total = _urllib(rest, path, work / "urllib")
            theirs.append(s2)
            assert total == nbytes, (total, nbytes)
        mib = nbytes / 2**20
        ours_rate, urllib_rate = mib / min(ours), mib / min(theirs)
        report(
            "download",
            f"{mib:.0f} MiB checkpoint in {args.files + 2} files from the local service's "
            f"signed URLs; ours with concurrency {args.concurrency}, best of {args.repeats}",
            figures={
                "ours MiB/s": ours_rate,
                "sequential urllib (tinker CLI) MiB/s": urllib_rate,
                "ours seconds": min(ours),
                "urllib seconds": min(theirs),
                "peak RSS growth, ours (MiB)": max(growth),
            },
            ratios={
                "ours / sequential urllib": (ours_rate / urllib_rate, ">= 1.5"),
                "RSS growth / 64 MiB budget": (max(growth) / 64, "<= 1.0"),
            },
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
