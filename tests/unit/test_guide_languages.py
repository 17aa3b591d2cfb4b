"""The guide's language check (core/languages.py) and the base model it suggests for the task (core/guide.py):
made-up texts in several scripts, made-up projects, and the real K8s EN->ZH pairs and LLaMA-Factory demo sets."""

from __future__ import annotations

import json

import pytest

from tuitune.core import gemma, models
from tuitune.core.data.samples import Sample
from tuitune.core.guide import base_advice, base_hint, next_step, project_languages
from tuitune.core.languages import language_mix

ZH = ["Pod 是可以在 Kubernetes 中创建和管理的、最小的可部署的计算单元。", "请用中文简要回答用户的问题。",
      "节点是 Kubernetes 中的工作机器，可以是虚拟机或物理机。"]
EN = ["A Pod is the smallest deployable unit of computing that you can create and manage in Kubernetes.",
      "Answer the user's question briefly.", "A node is a worker machine in Kubernetes."]
TRANSLATE = "Translate the following English text to Chinese"


def test_chinese_text_is_mostly_chinese_even_with_english_terms_in_it():
    mix = language_mix(ZH)
    assert mix.mostly_non_english and mix.main == "Chinese" and mix.share > 0.7
    assert mix.describe().startswith("mostly Chinese")


def test_english_text_is_english():
    mix = language_mix(EN, EN)
    assert not mix.mostly_non_english and mix.share == 0 and mix.languages == () and mix.describe() == "English"


def test_a_loanword_does_not_make_english_french_but_french_counts():
    english = language_mix(["I had a café au lait and read the résumé of the new hire before the long meeting."])
    assert english.share == 0
    french = language_mix(["Le résumé de la réunion est prêt pour demain, merci de le lire avant la séance."])
    assert french.mostly_non_english and french.main == "other Latin-script"


def test_mixed_text_counts_each_language_by_its_weight():
    mostly_english = language_mix(EN * 3 + ZH[:1])
    assert not mostly_english.mostly_non_english and 0.1 < mostly_english.share < 0.5
    assert mostly_english.main == "Chinese"  # still named, as the largest other language
    same = language_mix(EN + ZH)  # the same sentences in both languages weigh about the same (WIDE_WEIGHT)
    assert 0.4 < same.share < 0.6
    more = language_mix(EN[:1] + ZH)
    assert more.mostly_non_english and more.describe().startswith("mostly Chinese")


def test_a_translation_into_chinese_counts_as_chinese_though_its_instructions_are_english():
    mix = language_mix([TRANSLATE, *EN], ZH)
    assert mix.share < 0.5 < mix.output_share  # the instructions and inputs are English, the outputs Chinese
    assert mix.mostly_non_english and mix.main == "Chinese"
    assert "of the outputs" in mix.describe()
    back = language_mix(["Translate the following Chinese text to English", *ZH], EN)  # ZH -> EN: reads Chinese
    assert back.share < 0.5 < back.input_share and back.mostly_non_english and "of the prompts" in back.describe()


@pytest.mark.parametrize(("texts", "main"), [
    (["Привет! Расскажи, пожалуйста, как устроен под в Kubernetes и зачем он нужен."], "Cyrillic"),
    (["東京は日本の首都です。ポッドはクラスタの最小単位です。"], "Japanese"),  # kana: the Han characters are Japanese
    (["쿠버네티스에서 파드는 가장 작은 배포 단위입니다."], "Korean"),
    (["ما هو أصغر وحدة قابلة للنشر في كوبernetes؟ اشرح ذلك بإيجاز من فضلك."], "Arabic"),
])
def test_other_scripts_are_named(texts, main):
    mix = language_mix(texts)
    assert mix.mostly_non_english and mix.main == main


def test_empty_or_letterless_text_says_nothing():
    for mix in (language_mix([]), language_mix(["", "   ", "12345 -> {}", "中"])):
        assert not mix.mostly_non_english and mix.letters < 20


# ---- the guide's advice on made-up projects ---------------------------------------------------------

def _trainable(store, instruction, outputs, *, system="", description="Translate Kubernetes docs"):
    store.set_task(name="t", description=description, system_prompt=system)
    store.add_samples([Sample(instruction=instruction, input=f"{i}", output=o, origin="seed", status="accepted")
                       for i, o in enumerate(outputs * 12)])
    store.conn.execute("INSERT OR IGNORE INTO rounds (id, started_at, status) VALUES (1, '2026-01-01', 'finished')")


def test_a_chinese_project_on_the_english_base_is_told_about_gemma(store, tmp_path):
    _trainable(store, TRANSLATE, ZH, system="You are a professional translator.")
    step = next_step(store, base=models.EMBEDDED_NAME, models_dir=tmp_path / "models")
    assert step.key == "train"
    msg = step.message
    assert msg.startswith("36 examples kept")  # the step itself is unchanged, the advice follows
    for part in ("mostly Chinese", "English-only", gemma.NAME, "~35% fewer tokens", "Gemma Terms of Use", "opt-in",
                 f"`tuitune models prepare {gemma.NAME}`", "/train", "until you choose"):
        assert part in msg, part
    assert "It is prepared" not in msg


def test_the_advice_says_when_gemma_is_prepared(store, tmp_path):
    _trainable(store, TRANSLATE, ZH)
    folder = tmp_path / "models" / gemma.NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / models.READY_MARKER).write_text("{}")
    assert models.is_ready(folder)
    msg = next_step(store, base=models.EMBEDDED_NAME, models_dir=tmp_path / "models").message
    assert "It is prepared: pick it as the base in `/train`" in msg and f"--base {gemma.NAME}" in msg
    assert "models prepare" not in msg
    hint = base_hint(project_languages(store), ready=True)
    assert hint.startswith("This project is mostly Chinese: gemma3-270m is multilingual") and ", prepared)" in hint


def test_no_advice_for_english_for_another_base_or_without_a_base(store, tmp_path):
    _trainable(store, "Answer briefly", EN)
    assert "Base model" not in next_step(store, base=models.EMBEDDED_NAME, models_dir=tmp_path).message
    store.conn.execute("DELETE FROM samples")
    _trainable(store, TRANSLATE, ZH)
    assert "Base model" in next_step(store, base=models.EMBEDDED_NAME, models_dir=tmp_path).message
    assert "Base model" not in next_step(store, base=gemma.NAME, models_dir=tmp_path).message
    assert "Base model" not in next_step(store, base="Qwen/Qwen2.5-0.5B-Instruct", models_dir=tmp_path).message
    assert "Base model" not in next_step(store).message  # a caller that does not say the base: the plain step


def test_the_advice_waits_for_steps_that_use_the_base(store, tmp_path):
    store.set_task(name="zh", description="用中文回答关于慢性病的问题，语气亲切、谨慎。")
    step = next_step(store, base=models.EMBEDDED_NAME, models_dir=tmp_path)
    assert step.key == "seeds" and "Base model" not in step.message  # adding seeds: not yet
    store.add_samples([Sample(instruction=z, output=z, origin="seed", status="accepted") for z in ZH])
    step = next_step(store, base=models.EMBEDDED_NAME, models_dir=tmp_path)
    assert step.key == "generate" and "Base model" in step.message
    chat = next_step(store, runs_done=1, base=models.EMBEDDED_NAME, models_dir=tmp_path)
    assert chat.key == "chat" and "Base model" in chat.message


def test_rejected_samples_do_not_count(store):
    store.set_task(name="t", description="Answer briefly")
    store.add_samples([Sample(instruction="Say hi", output="Hi there, how are you today?", origin="seed",
                              status="accepted")])
    store.add_samples([Sample(instruction=f"问题 {i}", output=ZH[0], status="rejected") for i in range(5)])
    assert project_languages(store).share == 0


def test_advice_is_empty_when_not_needed():
    english = language_mix(EN)
    assert base_advice(english, models.EMBEDDED_NAME, None) == ""
    assert base_advice(language_mix(ZH), models.EMBEDDED_NAME, None).startswith("**Base model:**")


# ---- real data ---------------------------------------------------------------------------------------

def test_the_real_k8s_pairs_as_a_translation_task_are_chinese(real_fixtures, store, tmp_path):
    rows = [json.loads(line) for line in (real_fixtures / "k8s_docs_en_zh.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) > 300
    store.set_task(name="k8s", description="Translate Kubernetes docs from English to Chinese",
                   system_prompt="You are a professional translator who can translate English to Chinese accurately "
                                 "while preserving the original formatting and technical terms")
    store.add_samples([Sample(instruction=TRANSLATE, input=r["en"], output=r["zh"], origin="import",
                              status="accepted") for r in rows])
    mix = project_languages(store)
    assert mix.share < 0.5 and mix.output_share > 0.8 and mix.mostly_non_english and mix.main == "Chinese"
    assert "Base model" in next_step(store, runs_done=1, base=models.EMBEDDED_NAME, models_dir=tmp_path).message
    english_side = language_mix([r["en"] for r in rows])
    assert english_side.share < 0.01  # the English originals (with their code and names) read as English


@pytest.mark.parametrize(("name", "chinese"), [("llamafactory_alpaca_en_demo.json", False),
                                                ("llamafactory_alpaca_zh_demo.json", True)])
def test_the_real_alpaca_demo_sets(real_fixtures, name, chinese):
    records = json.loads((real_fixtures / name).read_text("utf-8"))
    mix = language_mix([r["instruction"] + "\n" + r["input"] for r in records], [r["output"] for r in records])
    assert mix.mostly_non_english is chinese
    if chinese:
        assert mix.main == "Chinese" and mix.share > 0.9
    else:
        assert mix.share < 0.01
