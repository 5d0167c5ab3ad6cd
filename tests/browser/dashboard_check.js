// Opens the demo's dashboard in Debian's chromium (headless, driven by playwright-core) and checks
// the DOM contract of deploy/collector/dashboard: a row per device with its versions, the latency and
// accuracy charts with at least one series each, and the halted rollout. Saves a full-page
// screenshot. Prints one `ok`/`FAIL` line per check; exits 1 when any failed, 2 on a crash.
//
//   node dashboard_check.js URL SCREENSHOT.png [DEVICE=VERSION ...]   (default box-1..3=1.1.0)
'use strict';
const { chromium } = require('playwright-core');

const kTimeoutMs = 30000;  // the page polls the collector; give it a few refreshes

async function main() {
  const [url, screenshot, ...specs] = process.argv.slice(2);
  if (!url || !screenshot) {
    console.error('usage: node dashboard_check.js URL SCREENSHOT.png [DEVICE=VERSION ...]');
    return 2;
  }
  const expected = (specs.length ? specs : ['box-1=1.1.0', 'box-2=1.1.0', 'box-3=1.1.0'])
    .map((s) => s.split('='));
  let failed = 0;
  const check = (name, ok, detail) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ': ' + detail : ''}`);
    if (!ok) failed++;
  };
  // Waits for fn(arg) to be true in the page; false (not an exception) when time is up.
  const until = async (page, fn, arg) => {
    try {
      await page.waitForFunction(fn, arg, { timeout: kTimeoutMs, polling: 250 });
      return true;
    } catch (e) {
      return false;
    }
  };

  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // chromium refuses its sandbox as root (CI runs as root); nothing untrusted is loaded here.
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const res = await page.goto(url, { waitUntil: 'load', timeout: kTimeoutMs });
    check(`GET ${url}`, res && res.ok(), res ? `HTTP ${res.status()}` : 'no response');

    for (const [device, version] of expected) {
      const row = `tr[data-device="${device}"]`;
      const present = await until(page, (sel) => !!document.querySelector(sel), row);
      check(`${row} exists`, present);
      if (!present) continue;
      const want = `digits=${version}`;
      const hasVersion = await until(page, ([sel, w]) => {
        const r = document.querySelector(sel);
        return !!r && (r.getAttribute('data-versions') || '').split(/[\s,;]+/).includes(w);
      }, [row, want]);
      const attr = await page.locator(row).first().getAttribute('data-versions');
      check(`${row} data-versions contains ${want}`, hasVersion, `data-versions="${attr}"`);
      const text = page.locator(row).first().getByText(version, { exact: false }).first();
      let visible = false;
      try {
        await text.waitFor({ state: 'visible', timeout: kTimeoutMs });
        visible = true;
      } catch (e) { /* reported below */ }
      check(`${row} shows the text ${version}`, visible);
    }

    for (const chart of ['#latency-chart', '#accuracy-chart']) {
      const sel = `${chart} path.series`;
      const ok = await until(page, (s) => document.querySelectorAll(s).length >= 1, sel);
      check(`${sel} exists`, ok, `${await page.locator(sel).count()} found`);
    }
    const halted = '#rollouts .rollout[data-state="halted"]';
    check(`${halted} exists`, await until(page, (s) => !!document.querySelector(s), halted));
    check('no uncaught errors in the page', pageErrors.length === 0, pageErrors.join(' | '));

    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  } finally {
    await browser.close();
  }
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(`dashboard_check: ${e && e.stack ? e.stack : e}`);
  process.exit(2);
});
