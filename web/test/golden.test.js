// The shared golden table (tests/golden/verdicts.json): every case must get exactly the
// verdict the Python and Rust verifiers give (tests/test_golden.py, rust/.../golden.rs) —
// one table, three implementations. Run through each ECDSA backend the page can use.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { REASONS, loadKeysFile, setEcdsaBackend, verifyFile } from '../src/verify/index.js';
import { GOLDEN, readJson } from './support/paths.js';

const { cases } = readJson(path.join(GOLDEN, 'verdicts.json'));
const read = (name) => new Uint8Array(readFileSync(path.join(GOLDEN, name)));

test('the table lists every golden file and every reason code', () => {
  const files = readdirSync(GOLDEN).filter(
    (n) => n.endsWith('.bundle.json') || n.endsWith('.tlog-proof'),
  );
  assert.deepEqual(new Set(cases.map((c) => c.file)), new Set(files));
  const reasons = new Set(cases.map((c) => c.reason));
  for (const reason of [...REASONS, null]) assert.ok(reasons.has(reason), `no case for ${reason}`);
  const mutations = [
    'payload-bit-flip',
    'stripped-signature',
    'wrong-key',
    'wrong-tree-size',
    'broken-chain-link',
  ];
  for (const m of mutations) assert.ok(files.includes(`${m}.bundle.json`), m);
});

for (const backend of ['auto', 'noble']) {
  describe(`golden verdicts, ECDSA through ${backend}`, () => {
    after(() => setEcdsaBackend('auto'));
    for (const c of cases) {
      test(`${c.file} [${c.pubkeys ?? 'unpinned'}]: ${c.what}`, async () => {
        setEcdsaBackend(backend);
        const keys = c.pubkeys ? loadKeysFile(read(c.pubkeys)) : null;
        const v = await verifyFile(read(c.file), keys);
        assert.deepEqual(
          { valid: v.valid, reason: v.reason, seq: v.seq },
          { valid: c.valid, reason: c.reason, seq: c.seq },
          v.message,
        );
        assert.equal(v.keysPinned, c.pubkeys !== null);
        assert.equal(typeof v.message, 'string');
        if (c.valid) assert.ok(v.entries.every((e) => e.status === 'ok'));
        if (c.reason === 'lineage_event') {
          const failing = v.events.find((e) => e.recordSeq === c.seq && e.status === 'fail');
          assert.ok(failing, 'the failing event is marked');
        } else if (c.seq !== null && v.entries.length) {
          const failing = v.entries.find((e) => e.seq === c.seq && e.status === 'fail');
          assert.equal(failing?.reason, c.reason, 'the failing entry carries the reason');
        }
        if (c.valid && v.events) assert.ok(v.events.every((e) => e.status === 'ok'));
      });
    }
  });
}
