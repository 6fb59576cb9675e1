// The built page (dist/verify.html) in headless Chromium from Debian's `chromium` package,
// driven by playwright-core (no browser download), opened from file:// like a user would.
// Every golden case must show its expected verdict; the page must make no network request.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { GOLDEN, WEB, readJson } from '../test/support/paths.js';

const PAGE = path.join(WEB, 'dist', 'verify.html');
const PAGE_URL = pathToFileURL(PAGE).href;
const SHOTS = path.join(WEB, 'test-output');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const { cases } = readJson(path.join(GOLDEN, 'verdicts.json'));

let browser;
let context;
const requests = []; // every request any page of `context` made
const problems = []; // console errors, page errors, CSP violations

before(async () => {
  assert.ok(
    existsSync(PAGE),
    `${PAGE} is missing: build it with \`make setup\` (npm run build in web/)`,
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (make tools)`);
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  context.on('request', (r) => requests.push(r.url()));
  // Belt and braces: anything that is not the page itself would be refused and recorded.
  await context.route('**/*', (route) =>
    route.request().url() === PAGE_URL ? route.continue() : route.abort(),
  );
});

after(async () => {
  await browser?.close();
});

async function openPage(ctx = context, { provokesViolations = false } = {}) {
  const page = await ctx.newPage();
  if (!provokesViolations) {
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  }
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(PAGE_URL);
  await page.waitForSelector('body[data-state=ready]');
  await page.evaluate(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.cspViolations.push(e.violatedDirective),
    );
  });
  return page;
}

/** Loads keys (or none) and the evidence file; resolves when its verdict is on screen. */
async function verifyIn(page, file, pubkeys) {
  if (pubkeys) {
    await page.setInputFiles('#keys-input', path.join(GOLDEN, pubkeys));
    await page.waitForSelector('#keys-status[data-pinned=true]');
  }
  await page.setInputFiles('#evidence-input', path.join(GOLDEN, file));
  await page.waitForFunction(
    (name) => window.lineageAuditLast?.file === name && document.body.dataset.state === 'done',
    file,
  );
  return page.locator('#verdict');
}

// Screenshots a person looks at (web/test-output/, not committed): one per kind of outcome.
const SCREENSHOTS = {
  'valid-range.bundle.json[keys.pub.json]': 'valid-range.png',
  'valid-range.bundle.json[unpinned]': 'valid-range-unpinned.png',
  'broken-chain-link.bundle.json[keys.pub.json]': 'broken-chain-link.png',
  'tampered-checkpoint.bundle.json[keys.pub.json]': 'tampered-checkpoint.png',
  'valid.tlog-proof[keys.pub.json]': 'valid-tlog-proof.png',
  'lineage-event-tampered.bundle.json[keys.pub.json]': 'lineage-event-tampered.png',
};

const entriesIn = (file) =>
  file.endsWith('.tlog-proof')
    ? 1
    : JSON.parse(readFileSync(path.join(GOLDEN, file), 'utf8')).entries.length;

describe('golden verdicts in the browser', () => {
  for (const c of cases) {
    test(`${c.file} [${c.pubkeys ?? 'unpinned'}] → ${c.valid ? 'VALID' : `${c.reason} seq=${c.seq}`}`, async () => {
      const page = await openPage();
      const verdict = await verifyIn(page, c.file, c.pubkeys);
      assert.equal(await verdict.getAttribute('data-valid'), String(c.valid));
      assert.equal(await verdict.getAttribute('data-reason'), c.reason ?? '');
      assert.equal(await verdict.getAttribute('data-seq'), c.seq === null ? '' : String(c.seq));
      const headline = await verdict.locator('.headline').innerText();
      const entries = page.locator('#entries > li');
      if (c.valid) {
        assert.match(headline, /^✓\s*VALID$/);
        const green = c.pubkeys ? 'ok' : 'warn'; // unpinned keys: valid, but amber
        assert.match(await verdict.getAttribute('class'), new RegExp(`\\b${green}\\b`));
        assert.equal(await entries.count(), entriesIn(c.file));
        assert.equal(
          await page.locator('#entries > li[data-status=ok]').count(),
          entriesIn(c.file),
          'every entry green',
        );
        assert.equal(
          await page.locator('#events > li:not([data-status=ok])').count(),
          0,
          'every event green',
        );
        if (!c.pubkeys) assert.match(await verdict.innerText(), /Keys NOT pinned/);
      } else {
        assert.match(await verdict.getAttribute('class'), /\bbad\b/);
        assert.ok(headline.includes(`INVALID · ${c.reason}`), headline);
        if (c.seq !== null) {
          assert.ok(headline.includes(`at seq ${c.seq}`), headline);
          // A lineage event names the seq of the record signing its batch; the event is red.
          const failing =
            c.reason === 'lineage_event'
              ? page.locator(`#events > li[data-record-seq="${c.seq}"][data-status=fail]`)
              : page.locator(`#entries > li[data-seq="${c.seq}"][data-status=fail]`);
          assert.equal(await failing.count(), 1, `the item at seq ${c.seq} is red`);
          assert.ok((await failing.locator('.state').innerText()).includes(c.reason));
        }
        if (c.reason === 'checkpoint_signature' && !c.file.endsWith('.tlog-proof')) {
          assert.equal(
            await page.locator('#entries > li[data-status=ok]').count(),
            0,
            'nothing is green',
          );
        }
      }
      assert.deepEqual(await page.evaluate(() => window.cspViolations), []);
      const shot = SCREENSHOTS[`${c.file}[${c.pubkeys ?? 'unpinned'}]`];
      if (shot) await page.screenshot({ path: path.join(SHOTS, shot), fullPage: true });
      await page.close();
    });
  }
});

describe('the page itself', () => {
  test('carries a CSP that forbids every network request and allows only its own inline code', async () => {
    const page = await openPage(context, { provokesViolations: true });
    const csp = await page
      .locator('meta[http-equiv="Content-Security-Policy"]')
      .getAttribute('content');
    const directives = Object.fromEntries(
      csp
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .map(([k, ...v]) => [k, v]),
    );
    assert.deepEqual(directives['default-src'], ["'none'"]);
    assert.equal(directives['connect-src'], undefined, 'no connect-src: default-src none applies');
    assert.match(directives['script-src'].join(' '), /^'sha256-[A-Za-z0-9+/]{43}='$/);
    assert.ok(!csp.includes('unsafe-eval') && !csp.includes("script-src 'unsafe-inline'"));
    // The policy is in force: a fetch from the page is refused before it leaves.
    const outcome = await page.evaluate(async () => {
      try {
        await fetch('http://127.0.0.1:9/never');
        return 'fetched';
      } catch {
        return 'refused';
      }
    });
    assert.equal(outcome, 'refused');
    await page.waitForFunction(() => window.cspViolations.includes('connect-src'));
    // Trusted Types: no string can be parsed into the page as HTML.
    const sink = await page.evaluate(() => {
      try {
        document.createElement('div').innerHTML = '<img src=x>';
        return 'assigned';
      } catch (err) {
        return err.name;
      }
    });
    assert.equal(sink, 'TypeError');
    await page.close();
  });

  test('a file dropped on the page is verified', async () => {
    const page = await openPage();
    const bytes = readFileSync(path.join(GOLDEN, 'payload-bit-flip.bundle.json'), 'utf8');
    const keys = readFileSync(path.join(GOLDEN, 'keys.pub.json'), 'utf8');
    const drop = async (name, text) => {
      const transfer = await page.evaluateHandle(
        ([n, t]) => {
          const dt = new DataTransfer();
          dt.items.add(new File([t], n, { type: 'application/json' }));
          return dt;
        },
        [name, text],
      );
      await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: transfer });
    };
    await drop('keys.pub.json', keys); // a keys file dropped is trusted, not verified
    await page.waitForSelector('#keys-status[data-pinned=true]');
    await drop('payload-bit-flip.bundle.json', bytes);
    await page.waitForFunction(
      () => window.lineageAuditLast?.file === 'payload-bit-flip.bundle.json',
    );
    assert.equal(await page.locator('#verdict').getAttribute('data-reason'), 'envelope_signature');
    assert.equal(
      await page.locator('#entries > li[data-seq="3"]').getAttribute('data-status'),
      'fail',
    );
    await page.close();
  });

  test('remembered keys survive a reload; forgetting them re-verifies unpinned', async () => {
    const own = await browser.newContext();
    own.on('request', (r) => requests.push(r.url()));
    const page = await openPage(own);
    await page.setInputFiles('#keys-input', path.join(GOLDEN, 'keys.pub.json'));
    await page.click('#keys-remember');
    await page.reload();
    await page.waitForSelector('body[data-state=ready]');
    assert.equal(await page.locator('#keys-status').getAttribute('data-pinned'), 'true');
    assert.match(await page.locator('#keys-status').innerText(), /remembered on this computer/);
    await page.setInputFiles('#evidence-input', path.join(GOLDEN, 'valid-single.bundle.json'));
    await page.waitForFunction(() => window.lineageAuditLast?.result.keysPinned === true);
    await page.click('#keys-forget');
    await page.waitForFunction(() => window.lineageAuditLast?.result.keysPinned === false);
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await own.close();
  });

  test('keys that are not a public-keys file are refused with the reason', async () => {
    const page = await openPage();
    await page.setInputFiles('#keys-input', path.join(GOLDEN, 'valid-single.bundle.json'));
    await page.waitForSelector('#keys-error:not([hidden])');
    assert.match(
      await page.locator('#keys-error').innerText(),
      /cannot be used: pinned keys\.format/,
    );
    assert.equal(await page.locator('#keys-status').getAttribute('data-pinned'), 'false');
    await page.close();
  });
});

describe('offline', () => {
  test('no page made any network request: only the page file itself was loaded', () => {
    assert.ok(requests.length >= cases.length, `saw ${requests.length} requests`);
    assert.deepEqual([...new Set(requests)], [PAGE_URL]);
    assert.deepEqual(problems, []);
  });
});
