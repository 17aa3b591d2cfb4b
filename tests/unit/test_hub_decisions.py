"""The pure decisions behind a Hub download: which files a run needs, and whether they fit on the disk."""

from __future__ import annotations

import pytest

from tuitune.core import hub

GiB = 2**30
MiB = 2**20


def test_disk_space_refusal_is_a_function_of_sizes_and_free_bytes():
    sizes = {"model-00001-of-00002.safetensors": 4 * GiB, "model-00002-of-00002.safetensors": 3 * GiB,
             "config.json": 700, "tokenizer.json": 7 * MiB}
    total = sum(sizes.values())
    # fits: the files and the headroom
    hub.check_disk_space(sizes, total + hub.HEADROOM, model="Org/Big", folder="/cache")
    assert hub.disk_shortfall(sizes.values(), total + hub.HEADROOM) == 0
    # one byte short: refused before anything is downloaded, saying how much is needed, free and missing
    assert hub.disk_shortfall(sizes.values(), total + hub.HEADROOM - 1) == 1
    with pytest.raises(hub.DiskSpaceError) as e:
        hub.check_disk_space(sizes, 5 * GiB, model="Org/Big", folder="/cache")
    msg = str(e.value)
    assert "Org/Big" in msg and "4 file(s)" in msg and "7.01 GiB" in msg and "5.00 GiB free" in msg
    assert "/cache" in msg and "HF_HOME" in msg
    assert f"free {(total + hub.HEADROOM - 5 * GiB) / GiB:.2f} GiB" in msg
    # nothing left to download (all cached) always fits if the headroom does
    hub.check_disk_space({}, hub.HEADROOM, model="Org/Big", folder="/cache")
    with pytest.raises(hub.DiskSpaceError):
        hub.check_disk_space({}, hub.HEADROOM - 1, model="Org/Big", folder="/cache")
    assert isinstance(hub.DiskSpaceError("x"), hub.ModelError)  # the CLI and the form catch ModelError


def test_select_files_takes_one_copy_of_the_weights_and_what_a_run_reads():
    # A listing shaped like a large instruct repository that carries every format
    listing = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja", "merges.txt", "vocab.json", "tokenizer.model",
               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model-00001-of-00002.bin",
               "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json", "consolidated.safetensors",
               "original/consolidated.00.pth", "original/params.json", "model.gguf", "onnx/model.onnx",
               "onnx/config.json", "flax_model.msgpack", "tf_model.h5", "README.md", ".gitattributes",
               "LICENSE", "gguf/model-q4.gguf"]
    assert hub.select_files(listing) == sorted([
        "chat_template.jinja", "config.json", "generation_config.json", "merges.txt",
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
        "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json"])


def test_select_files_falls_back_to_bin_weights_only_without_safetensors():
    listing = ["config.json", "pytorch_model.bin", "tokenizer.json", "flax_model.msgpack", "rust_model.ot"]
    assert hub.select_files(listing) == ["config.json", "pytorch_model.bin", "tokenizer.json"]
    # a GGUF-only repository has nothing to train from: refused with the reason
    wanted = hub.select_files(["README.md", "model-q4_k_m.gguf", "model-q8_0.gguf"])
    with pytest.raises(hub.HubError, match="no transformers weights"):
        hub._check_weights(hub.HubRef("Org/Only-GGUF"), wanted)


@pytest.mark.parametrize("text, ref", [
    ("Qwen/Qwen2.5-0.5B-Instruct", hub.HubRef("Qwen/Qwen2.5-0.5B-Instruct")),
    ("HuggingFaceTB/SmolLM2-135M-Instruct@main", hub.HubRef("HuggingFaceTB/SmolLM2-135M-Instruct", "main")),
    ("org/name@" + "a" * 40, hub.HubRef("org/name", "a" * 40)),
    ("org/name@refs/pr/1", hub.HubRef("org/name", "refs/pr/1")),
    ("smollm2-135m-instruct", None), ("./models/x", None), ("/abs/path", None), ("a/b/c", None),
    ("../x", None), ("~/m", None), ("org/.", None), ("org/name.git", None)])
def test_parse_id(text, ref):
    assert hub.parse_id(text) == ref


def test_parse_id_refuses_an_empty_revision():
    with pytest.raises(hub.HubError, match="nothing after '@'"):
        hub.parse_id("org/name@")
