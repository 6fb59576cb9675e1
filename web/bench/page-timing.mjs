// Times the built page verifying one bundle in headless Chromium (Debian's chromium driven by
// playwright-core), opened from file:// as a user would. Reports the page's own measurement
// (performance.now() around the verification, then around rendering) for each repeat.
// Usage: node bench/page-timing.mjs PAGE KEYS BUNDLE REPEATS   (prints one JSON line)
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [page, keys, bundle, repeatsText] = process.argv.slice(2);
const repeats = Number(repeatsText ?? 3);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const tab = await browser.newPage();
  const requests = [];
  tab.on('request', (r) => requests.push(r.url()));
  await tab.goto(pathToFileURL(page).href);
  await tab.waitForSelector('body[data-state=ready]');
  await tab.setInputFiles('#keys-input', keys);
  await tab.waitForSelector('#keys-status[data-pinned=true]');
  const runs = [];
  for (let i = 0; i < repeats; i++) {
    await tab.evaluate(() => (window.lineageAuditLast = null));
    await tab.setInputFiles('#evidence-input', bundle);
    await tab.waitForFunction(
      () => window.lineageAuditLast && document.body.dataset.state === 'done',
      null,
      {
        timeout: 600_000,
      },
    );
    runs.push(
      await tab.evaluate(() => {
        const last = window.lineageAuditLast;
        return {
          verifyMs: last.verifyMs,
          renderMs: last.renderMs,
          valid: last.result.valid,
          reason: last.result.reason,
          entries: last.result.entries.length,
          ecdsa: last.ecdsa,
        };
      }),
    );
  }
  const version = browser.version();
  process.stdout.write(`${JSON.stringify({ chromium: version, runs, requests })}\n`);
} finally {
  await browser.close();
}
