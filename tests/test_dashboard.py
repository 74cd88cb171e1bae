"""`cart-sim dashboard`: the page's model, the command's bad input, and the page itself in headless Chromium.

The browser test serves the dashboard on a free port, presses Step in the SolaraViz
sidebar until the step counter reads 7, and counts coloured pixels in each of the four
plot images as the browser decoded them (curves are coloured; axes and text are grey):
none before the first step, hundreds after a week of steps, none again after Reset.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCENARIOS

CURVES = 4  # CAR T, blasts, ANC, IL-6

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def cart_sim(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_dashboard_without_solara_names_the_extra():
    code = "import sys; sys.modules['solara'] = None; sys.argv = ['cart-sim', 'dashboard']; from sim.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert 'pip install "cart-sim[dashboard]"' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args", [["--scenarios", "no/such/folder"], ["--port", "0"]])
def test_dashboard_bad_input_exits_2(args, tmp_path):
    r = cart_sim("dashboard", *args, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, (r.stdout, r.stderr)


def test_inputs_become_scenario_overrides(monkeypatch):
    pytest.importorskip("solara", reason='the dashboard extra is not installed: pip install "cart-sim[dashboard]"')
    monkeypatch.setenv("CART_SIM_SCENARIOS", str(SCENARIOS))
    from sim import dashboard

    dashboard.scenario_names.cache_clear()
    names = dashboard.scenario_names()
    assert {"cll1_standard", "cll1_cd16_icar"} <= set(names) and not any(n.startswith("sweeps/") for n in names)
    model = dashboard.DashboardModel("cll1_cd16_icar", dose="3e6", antigen="CD33", imax=0.5, seed=3)
    product = model.scenario.product
    assert product.dose_cells_per_kg.value == 3e6 and product.car.antigens == ["CD33"] and product.icar.imax == 0.5
    assert dashboard.DashboardModel("cll1_cd16_icar", antigen="CD16").scenario.product.icar is None  # not on its own target
    model.step()  # one day of hourly core steps, each collected
    assert model.steps == 1 and len(model.datacollector.get_model_vars_dataframe()) == 25


# --- the page in a browser -------------------------------------------------------------


@pytest.fixture
def browser():
    pytest.importorskip("solara", reason='the dashboard extra is not installed: pip install "cart-sim[dashboard]"')
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.skip(f"{path.name} not found at {path}: install Debian chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`cart-sim dashboard` on a free port; killed with its solara child in teardown."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "dashboard", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the solara server goes with it
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not answer on {url} within 60 s:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


# Coloured pixels of a loaded <img> (its own pixels, not overlays): curves are coloured, axes and text grey
COLOURED_PIXELS = """
const img = arguments[0];
if (!img.complete || img.naturalWidth === 0) return -1;
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const ctx = canvas.getContext("2d");
ctx.drawImage(img, 0, 0);
const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 64) n++;
}
return n;
"""


def test_step_draws_the_curves(server, browser, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def button(label):
        return browser.find_element(By.XPATH, f"//button[normalize-space(.)='{label}' or normalize-space(.)='{label.upper()}']")

    def plots():
        imgs = browser.find_elements(By.CSS_SELECTOR, "img[src^='blob:'], img[src^='data:image']")
        return imgs if len(imgs) == CURVES else None

    def curve_pixels(img) -> int:
        assert img.is_displayed() and img.size["width"] > 100, img.size
        return browser.execute_script(COLOURED_PIXELS, img)

    def steps_shown():
        return next((e.text for e in browser.find_elements(By.XPATH, "//*[starts-with(normalize-space(.), 'Step: ')]")), None)

    def wait_for(condition, what, timeout=60):
        transient = (NoSuchElementException, StaleElementReferenceException)  # the page re-renders after each step
        try:
            WebDriverWait(browser, timeout, poll_frequency=0.2, ignored_exceptions=transient).until(lambda _: condition())
        except TimeoutException:
            browser.save_screenshot(str(tmp_path / "failed.png"))
            log = (tmp_path / "server.log").read_text()[-3000:]
            pytest.fail(f"{what}; screenshot {tmp_path / 'failed.png'}; server log:\n{log}")

    browser.get(server)
    wait_for(lambda: plots() and steps_shown() == "Step: 0", "the page shows no 'Step: 0' and four plots")
    before = []

    def loaded() -> bool:  # read in one go inside the wait: a re-render between reads makes an element stale
        before[:] = [curve_pixels(img) for img in plots()]
        return min(before) >= 0

    wait_for(loaded, "the plot images did not load")
    assert max(before) < 20, f"curves drawn before the first step: {before}"  # one point per curve, no line yet

    for k in range(1, 8):  # a week: day -5 (lymphodepletion) to day 2, two days of CAR T after the infusion
        button("Step").click()
        wait_for(lambda k=k: steps_shown() == f"Step: {k}", f"the step counter did not reach {k}")
    wait_for(lambda: min(curve_pixels(img) for img in plots()) > 300, "the four curves were not drawn after 7 steps", 20)
    browser.save_screenshot(str(tmp_path / "dashboard.png"))

    button("Reset").click()  # a new model from the sidebar's inputs
    wait_for(lambda: steps_shown() == "Step: 0", "Reset did not bring the counter back to 0")
    wait_for(lambda: 0 <= max(curve_pixels(img) for img in plots()) < 20, "Reset did not clear the curves", 20)
