"""Per-block time of AutoGen's DockerCommandLineCodeExecutor (autogen-ext), for benches/sandbox.rs.

The executor is started once and its container reused for every block, as AutoGen does by
default; the time of one block is that of one `execute_code_blocks` call with a single python
block `print(1)` (AutoGen writes the block to a file in its bind-mounted work dir and runs
`timeout 60 python <file>` with a `docker exec`). Container start and stop are not counted.

    python autogen_docker.py --image IMAGE --blocks N   # N blocks after a warm-up, prints the median
    python autogen_docker.py --image IMAGE --serve      # one block per line read on stdin

In --serve mode (how the bench interleaves it with execbox's calls) it prints `ready` once the
container is up, then `ms <float>` for each line it reads; at end of input it prints
`median <float>` of the blocks asked for by lines other than `warm` and stops the executor.
"""

import argparse
import asyncio
import statistics
import sys
import time

from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock
from autogen_ext.code_executors.docker import DockerCommandLineCodeExecutor

BLOCK = [CodeBlock(code="print(1)", language="python")]
WARMUP = 3


async def one_block(executor: DockerCommandLineCodeExecutor) -> float:
    start = time.perf_counter()
    result = await executor.execute_code_blocks(BLOCK, CancellationToken())
    elapsed = (time.perf_counter() - start) * 1000.0
    if result.exit_code != 0 or result.output.strip() != "1":
        raise SystemExit(f"autogen block failed: exit {result.exit_code}, output {result.output!r}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="an image with `python` on PATH")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--blocks", type=int, help="run this many blocks after a warm-up")
    mode.add_argument("--serve", action="store_true", help="run one block per line of stdin")
    args = parser.parse_args()

    executor = DockerCommandLineCodeExecutor(image=args.image)
    await executor.start()
    samples = []
    try:
        if args.serve:
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                ms = await one_block(executor)
                if line.strip() != "warm":
                    samples.append(ms)
                print(f"ms {ms:.3f}", flush=True)
        else:
            for _ in range(WARMUP):
                await one_block(executor)
            for _ in range(args.blocks):
                samples.append(await one_block(executor))
    finally:
        await executor.stop()
    if samples:
        print(f"median {statistics.median(samples):.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
