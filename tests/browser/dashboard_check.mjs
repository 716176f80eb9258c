// Opens the dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), as a user would, and prints what it saw as JSON for
// host/tests/dashboard.rs to check: console errors, the charts and their data points, the
// rows of the regression panel and the matrix, and what a filter changes. Saves a screenshot.
//
// usage: node dashboard_check.mjs URL SCREENSHOT.png FILTER_ID FILTER_VALUE
import { chromium } from "playwright-core";

const [url, screenshot, filterId, filterValue] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Root in CI, no GPU, a closed network: the flags that keep Chromium quiet and working.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { console_errors: [], page_errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector("body[data-ready]", { timeout: 30000 });
  out.ready = await page.getAttribute("body", "data-ready");
  const charts = () => page.$$eval("#charts .chart", (cs) => cs.map((c) => ({
    title: c.querySelector("h3").textContent,
    points: Number(c.dataset.points),
    canvas: !!c.querySelector("canvas"),
    legend: [...c.querySelectorAll(".u-legend .u-series th")].map((s) => s.textContent.trim()).filter(Boolean),
  })));
  out.charts = await charts();
  out.run_count = await page.textContent("#run-count");
  out.regression_rows = await page.$$eval("#regressions tr", (rs) => rs.length - 1);
  out.regressions_text = await page.textContent("#regressions");
  out.matrix_text = await page.textContent("#matrix");
  // Hovering a chart shows values in its legend.
  const canvas = await page.$("#charts .chart .u-over");
  if (canvas) {
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + box.width - 3, box.y + box.height / 2);
    out.hover_values = await page.$$eval("#charts .chart:first-child .u-legend .u-value", (vs) => vs.map((v) => v.textContent));
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.selectOption("#" + filterId, filterValue);
  out.filtered_charts = await charts();
  out.filtered_run_count = await page.textContent("#run-count");
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
