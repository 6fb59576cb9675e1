// Opens an incident report (file://) in Debian's headless Chromium via playwright-core from
// web/node_modules, refuses and records every request that is not the page itself, takes a
// full-page screenshot, and prints what it saw as one JSON line for the pytest that runs it.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [, , reportPath, shotPath, webDir] = process.argv;
const require = createRequire(path.join(webDir, 'package.json'));
const { chromium } = require('playwright-core');
const PAGE_URL = pathToFileURL(path.resolve(reportPath)).href;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1240, height: 900 } });
  const requests = [];
  const problems = [];
  context.on('request', (r) => requests.push(r.url()));
  await context.route('**/*', (route) =>
    route.request().url() === PAGE_URL ? route.continue() : route.abort(),
  );
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(PAGE_URL, { waitUntil: 'load' });
  await page.screenshot({ path: shotPath, fullPage: true });
  const seen = await page.evaluate(() => ({
    title: document.title,
    confidence: document.querySelector('#confidence')?.textContent ?? null,
    state: document.querySelector('#state')?.textContent ?? null,
    svgs: document.querySelectorAll('svg').length,
    lineageNodes: document.querySelectorAll('#lineage-svg svg rect').length,
    divergencePoints: document.querySelectorAll('#divergence-svg circle').length,
    cites: [...document.querySelectorAll('[data-cites]')].map((e) => e.dataset.cites),
    bundleEntries: JSON.parse(document.querySelector('#bundle-json').textContent).entries.length,
    styleApplied: getComputedStyle(document.querySelector('h2')).borderBottomStyle,
    height: document.body.scrollHeight,
  }));
  console.log(JSON.stringify({ requests, problems, ...seen }));
} finally {
  await browser.close();
}
