"""Snapshots at 80x24 from the new-user walk (issue 21): the review screen's footer (every key label whole, the
palette key last; the detail shows a synthesized sample flagged as a copy of a seed's answer), the chat's F6
answer-settings dialog (every field and hint on screen), the save-as-seed dialog and the /seed form.
Fixed data (the K8s seeds of data/), no paths or times on screen, no model."""

from __future__ import annotations

from pathlib import Path

from textual.screen import Screen

from tuitune.core.data.importing import import_file
from tuitune.core.data.samples import Sample
from tuitune.core.data.store import Store
from tuitune.core.serving.chat import GenParams
from tuitune.core.synth.copies import AnswerCopies, flag_copies
from tuitune.settings import load_settings
from tuitune.tui.app import make_app
from tuitune.tui.screens.gen_settings import GenSettings
from tuitune.tui.screens.review import ReviewScreen
from tuitune.tui.screens.save_exchange import SaveExchange
from tuitune.tui.screens.seed import SeedForm

K8S = Path(__file__).resolve().parents[2] / "data" / "k8s_docs_en_zh.json"
SIZE = (80, 24)


def k8s_app(tmp_path, *, flagged: bool = False):
    project = tmp_path / "snap"
    store = Store.open(project)
    store.set_task(name="k8s-zh", description="Translate Kubernetes docs into Chinese")
    import_file(store, K8S, as_="seeds")
    if flagged:  # a synthesized sample that copies the last seed's answer, flagged as the engine flags it
        seeds = store.samples(origin="seed")
        copied = Sample(seeds[0].instruction, seeds[-1].output, input="A DaemonSet ensures that all Nodes run a "
                        "copy of a Pod.", origin="synth")
        store.add_sample(flag_copies(copied, AnswerCopies(seeds)))
    store.close()
    app = make_app(load_settings(project=project, home=tmp_path / "home"))
    app.sub_title = "snapshot"
    return app, project


async def blank(pilot) -> None:
    """A plain screen under the dialog (the main screen's transcript names the temp folder)."""
    await pilot.app.push_screen(Screen())
    await pilot.pause()


def test_review_footer_fits_80_columns(snap_compare, tmp_path):
    app, project = k8s_app(tmp_path, flagged=True)

    async def run_before(pilot):
        screen = ReviewScreen(Store.open(project), status="pending")
        pilot.app.push_screen(screen)
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_answer_settings_dialog_fits_80x24(snap_compare, tmp_path):
    app, _ = k8s_app(tmp_path)

    async def run_before(pilot):
        await blank(pilot)
        await pilot.app.push_screen(GenSettings(GenParams(temperature=0, seed=7, stop=["\n\n", "###"])))
        await pilot.pause()
        pilot.app.screen.query_one("#gen-temperature").cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_save_as_seed_dialog_80x24(snap_compare, tmp_path):
    app, _ = k8s_app(tmp_path)

    async def run_before(pilot):
        await blank(pilot)
        await pilot.app.push_screen(SaveExchange("A DaemonSet ensures that all Nodes run a copy of a Pod.",
                                                 "DaemonSet 确保所有节点运行 Pod"))
        await pilot.pause()
        pilot.app.screen.query_one("#corrected").cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_seed_form_80x24(snap_compare, tmp_path):
    app, _ = k8s_app(tmp_path)

    async def run_before(pilot):
        await blank(pilot)
        await pilot.app.push_screen(SeedForm())
        await pilot.pause()
        pilot.app.screen.query_one("#input").cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_every_answer_setting_is_whole_on_screen_at_80x24(tmp_path):
    from tuitune.core.serving.gen_settings import LABELS

    app, _ = k8s_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(GenSettings(GenParams()))
        await pilot.pause()
        screen = app.screen
        for field in LABELS:
            box = screen.query_one(f"#gen-{field}")
            assert screen.region.contains_region(box.region) and box.region.width >= 20, field
            label = box.parent.query_one(".gen-label")
            assert label.region.width >= len(str(label.render())), field  # not cut
            row = box.parent
            hint = row.parent.children[row.parent.children.index(row) + 1]
            assert screen.region.contains_region(hint.region) and hint.region.height == 1, field  # one line
