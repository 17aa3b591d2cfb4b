"""What a merged folder keeps of its base: the license/notice files (the Gemma Terms of Use ask for that) and the
base's stop ids beside the tokenizer's EOS."""

from __future__ import annotations

from tuitune.core.training.merge import _stop_ids, copy_license_files


def test_license_and_notice_files_travel_with_the_merged_folder(tmp_path):
    base, out = tmp_path / "base", tmp_path / "merged"
    base.mkdir()
    out.mkdir()
    for name in ("LICENSE", "LICENSE.txt", "NOTICE.md", "NOTICE-modified.txt", "GEMMA_TERMS.html", "USE_POLICY.md",
                 "config.json", "model.safetensors", "README.md"):
        (base / name).write_text(name)
    copied = copy_license_files(base, out)
    assert copied == sorted(["LICENSE", "LICENSE.txt", "NOTICE.md", "NOTICE-modified.txt", "GEMMA_TERMS.html",
                             "USE_POLICY.md"])
    assert {p.name for p in out.iterdir()} == set(copied)  # weights, config and README are not license files
    assert (out / "GEMMA_TERMS.html").read_text() == "GEMMA_TERMS.html"


def test_base_stop_ids_are_kept_beside_the_tokenizers_eos():
    assert _stop_ids([1, 106], 106) == [1, 106]  # Gemma: <eos> and <end_of_turn> both stop
    assert _stop_ids(2, 2) == 2  # SmolLM2: one id, unchanged
    assert _stop_ids(1, 106) == [1, 106]  # a template EOS the base did not list is added
    assert _stop_ids(None, 7) == 7 and _stop_ids([None], 7) == 7
