"""Browser test: the Dagster UI shows the asset graph and the scored customers with their metadata.

Starts ``dagster dev`` on a free 127.0.0.1 port with a temporary DAGSTER_HOME and the 2,000-customer
CDNOW slice, materializes the graph into that instance, then drives Debian's chromium with
playwright and saves screenshots to docs/screenshots/.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from customer_assets_tests.conftest import CDNOW_CSV_COLUMNS

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(cdnow_slice, tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    db = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CUSTOMER_ASSETS_SOURCE": str(cdnow_slice),
           "CUSTOMER_ASSETS_COLUMNS": CDNOW_CSV_COLUMNS, "CUSTOMER_ASSETS_DB": str(db)}
    subprocess.run([sys.executable, "-m", "customer_assets.cli", "materialize"], env=env, check=True,
                   capture_output=True, timeout=600)
    port = _free_port()
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen([str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-m", "customer_assets.definitions"],
                            env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/server_info", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        os.killpg(proc.pid, 9)
        pytest.fail("dagster dev did not answer within 120 s")
    yield base
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


@pytest.fixture(scope="module")
def page(ui):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        yield pg
        browser.close()


def test_asset_graph_page(ui, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(ui + "/asset-groups", wait_until="networkidle")
    page.get_by_text("Global asset lineage").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2_000)
    body = page.inner_text("body")
    for group in ("ingest", "features", "segments", "models", "scores", "evaluation"):
        assert group in body, group
    page.screenshot(path=str(SHOTS / "asset_graph.png"))


def test_models_group_lists_the_four_models(ui, page):
    page.goto(ui + "/locations/customer_assets.definitions/asset-groups/models", wait_until="networkidle")
    page.get_by_text("next_purchase").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    for name in ("churn", "spend", "ltv", "next_purchase", "XGBoost"):
        assert name in body, name
    page.screenshot(path=str(SHOTS / "models_group.png"))


def test_scored_customers_page_shows_metadata_and_columns(ui, page):
    page.goto(ui + "/assets/scores/scored_customers", wait_until="networkidle")
    page.get_by_text("recommended_action").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2_000)
    body = page.inner_text("body")
    for text in ("Row count", "2,000", "1998-06-30", "churn_probability", "top_drivers", "model_cutoff_date",
                 "Partition of the models used"):
        assert text in body, text
    page.screenshot(path=str(SHOTS / "scored_customers.png"), full_page=True)


def _open_chart(page, key: str, alt: str, shot: str) -> None:
    """Open the metadata entry ``key`` ([Show Markdown]) and check that its chart image is drawn."""
    link = page.locator("tr", has_text=key).locator("a", has_text="[Show Markdown]").first
    link.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(key).first.wait_for(timeout=30_000)
    img = dialog.locator(f'img[alt="{alt}"]')
    img.wait_for(timeout=30_000)
    width, height, src = img.evaluate("e => [e.naturalWidth, e.naturalHeight, e.getAttribute('src').slice(0, 26)]")
    assert src == "data:image/svg+xml;base64,", src
    assert width >= 400 and height >= 100, (key, width, height)
    dialog.screenshot(path=str(SHOTS / shot))
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="hidden", timeout=10_000)


def test_model_metadata_shows_its_charts_and_metrics(ui, page):
    """The churn model's metadata carries numeric metrics and three charts that the UI draws as images."""
    page.goto(ui + "/assets/models/churn", wait_until="networkidle")
    page.get_by_text("metric/validation_roc_auc").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2_000)
    body = page.inner_text("body")
    for key in ("metric/validation_brier", "metric/validation_pr_auc", "promoted", "selection"):
        assert key in body, key
    _open_chart(page, "feature_importance", "feature importance", "churn_feature_importance.png")
    _open_chart(page, "reliability_plot", "reliability", "churn_reliability.png")
    _open_chart(page, "cumulative_gains", "cumulative gains", "churn_cumulative_gains.png")


def test_segments_and_scores_show_their_charts(ui, page):
    page.goto(ui + "/assets/segments/customer_segments", wait_until="networkidle")
    page.get_by_text("silhouette_by_k").first.wait_for(timeout=60_000)
    assert "mean_recency_days" in page.inner_text("body")
    _open_chart(page, "segments_chart", "segments", "segments_chart.png")
    page.goto(ui + "/assets/scores/scored_customers", wait_until="networkidle")
    page.get_by_text("segment_profile").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    for text in ("mean_predicted_ltv", "mean_churn_probability", "top_customers_at_risk"):
        assert text in body, text
    page.locator("tr", has_text="top_customers_at_risk").locator("a", has_text="[Show Markdown]").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("value_at_risk").first.wait_for(timeout=30_000)
    assert "recommended_action" in dialog.inner_text()
    dialog.screenshot(path=str(SHOTS / "scored_top_at_risk.png"))
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="hidden", timeout=10_000)
    _open_chart(page, "value_decile_chart", "value deciles", "scored_value_deciles.png")
    _open_chart(page, "segment_value_chart", "segment value", "scored_segment_value.png")
