"""`python -m tuitune.core.export_model.llama_cpp_run` (JSON on stdin: gguf, prompts, max_new_tokens): greedy
answers of llama.cpp itself, through llama-cpp-python, printed as one JSON list. It runs in a process of its own
(verify.llama_cpp_greedy_answers starts it), so a crash in llama.cpp's C code cannot take the export down.

ggml's "extra buffer types" (weights repacked for AMX and similar kernels) are turned off: on this project's
machines (a VM with AMX) ggml_backend_amx_mul_mat crashed with SIGSEGV on the first decode of any model, with
them off it answers. They change speed only, not results.
"""

from __future__ import annotations

import json
import sys


def answers(gguf: str, prompts: list[str], max_new_tokens: int) -> list[str]:
    import llama_cpp.llama_cpp as low
    from llama_cpp import Llama

    default_params = low.llama_model_default_params

    def without_extra_buffers():
        params = default_params()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = without_extra_buffers  # Llama() reads its model params from here
    try:
        llm = Llama(model_path=gguf, n_ctx=4096, verbose=False, seed=0)
    finally:
        low.llama_model_default_params = default_params
    out = []
    for prompt in prompts:
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=llm._model.add_bos_token(), special=True)
        res = llm.create_completion(tokens, max_tokens=max_new_tokens, temperature=0.0, top_k=1, top_p=1.0,
                                    repeat_penalty=1.0)
        out.append(res["choices"][0]["text"])
    llm.close()
    return out


if __name__ == "__main__":
    job = json.load(sys.stdin)
    print(json.dumps(answers(job["gguf"], job["prompts"], int(job["max_new_tokens"])), ensure_ascii=False))
