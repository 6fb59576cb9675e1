// The byte formats as the verifier reads them (docs/formats.md): strict base64 and DER,
// checkpoint notes, tlog-proof grammar, bundle shape, and the §6 ordering rule.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { decodeBase64, encodeBase64, utf8 } from '../src/verify/bytes.js';
import { NoteError, parseNote } from '../src/verify/checkpoint.js';
import { derToRaw, parseDerSignature } from '../src/verify/der.js';
import { loadKeysFile, verifyBundle, verifyTlogProof } from '../src/verify/index.js';
import { parseTlogProof } from '../src/verify/tlogproof.js';
import { describeRecord } from '../src/verify/record.js';
import { GOLDEN } from './support/paths.js';

const ROOT = '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';
const golden = (name) => readFileSync(path.join(GOLDEN, name), 'utf8');
const keys = () => loadKeysFile(golden('keys.pub.json'));

test('base64 is strict RFC 4648: padded, canonical, no whitespace', () => {
  assert.deepEqual(decodeBase64('aGk='), utf8('hi'));
  assert.deepEqual(decodeBase64(''), new Uint8Array(0));
  for (const bad of ['aGk', 'aGl=', 'aG==', 'aGk=\n', 'a Gk=', 'aGk-', '====', 'aG=k', 'aGk==']) {
    assert.equal(decodeBase64(bad), null, bad);
  }
  for (let n = 0; n < 40; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
    assert.deepEqual(decodeBase64(encodeBase64(bytes)), bytes);
    assert.equal(encodeBase64(bytes), Buffer.from(bytes).toString('base64'));
  }
});

test('DER signatures: strict encodings only', () => {
  const hex = (h) => Buffer.from(h, 'hex');
  const r = '01'.repeat(32);
  assert.deepEqual(derToRaw(hex(`30440220${r}0220${r}`)), new Uint8Array(64).fill(1));
  const high = `80${'01'.repeat(31)}`; // high bit set: needs its 00 sign byte
  assert.deepEqual(
    derToRaw(hex(`3045022100${high}0220${r}`)).subarray(0, 32),
    new Uint8Array(hex(high)),
  );
  for (const [why, bad] of [
    ['long-form length that fits the short form', `3081440220${r}0220${r}`],
    ['indefinite length', `30800220${r}0220${r}0000`],
    ['bytes after the second integer', `30460220${r}0220${r}0000`],
    ['bytes after the sequence', `30440220${r}0220${r}00`],
    ['needless leading zero', `3045022100${r}0220${r}`],
    ['negative integer', `30440220${'81'.repeat(32)}0220${r}`],
    ['empty integer', `302402000220${r}`],
    ['not a sequence', `31440220${r}0220${r}`],
    ['one integer only', `30220220${r}`],
  ]) {
    assert.equal(parseDerSignature(hex(bad)), null, why);
  }
  assert.equal(derToRaw(hex(`3045022101${'ff'.repeat(32)}0220${r}`)), null, '33-byte r');
});

test('checkpoint notes: body, extensions, signature lines, limits', () => {
  const sig = '\u2014 o AQIDBAU=\n';
  const note = parseNote(`o\n1\n${ROOT}\next one\n\n${sig}`);
  assert.deepEqual([note.origin, note.size, note.extensions], ['o', 1n, ['ext one']]);
  assert.deepEqual([...note.signatures[0].keyId], [1, 2, 3, 4]);
  assert.deepEqual([...note.signatures[0].sig], [5]);
  const bad = [
    `o\n01\n${ROOT}\n\n${sig}`,
    `o\n-1\n${ROOT}\n\n${sig}`,
    `o\n18446744073709551616\n${ROOT}\n\n${sig}`,
    `o\n1\nAAAA\n\n${sig}`,
    `\n1\n${ROOT}\n\n${sig}`,
    `o\t\n1\n${ROOT}\n\n${sig}`,
    `o\n1\n${ROOT}\n\n\n${sig}`,
    `o\n1\n${ROOT}\n\n`,
    `o\n1\n${ROOT}\n\n\u2014 o AQID\n`,
    `o\n1\n${ROOT}\n\n\u2014 o AQIDBA==\n`,
    `o\n1\n${ROOT}\n\n- o AQIDBAU=\n`,
    `o\n1\n${ROOT}\n\n\u2014 o+x AQIDBAU=\n`,
    `o\n1\n${ROOT}\n\n\u2014 o AQIDBAU=`,
    `o\n1\n${ROOT}\n\n${sig.repeat(17)}`,
    'x'.repeat(64 * 1024 + 1),
  ];
  for (const text of bad)
    assert.throws(() => parseNote(text), NoteError, JSON.stringify(text.slice(0, 80)));
  assert.doesNotThrow(() => parseNote(`o\n18446744073709551615\n${ROOT}\n\n${sig.repeat(16)}`));
});

test('tlog-proof grammar: header, extra, canonical index, 32-byte path lines', () => {
  const proof = golden('valid.tlog-proof');
  const parsed = parseTlogProof(proof);
  assert.equal(parsed.index, 3n);
  assert.equal(parsed.path.length, 3);
  const lines = proof.split('\n');
  const variants = [
    proof.replace('c2sp.org/tlog-proof@v1', 'c2sp.org/tlog-proof@v2'),
    proof.replace('index 3', 'index 03'),
    proof.replace('index 3', 'index x'),
    proof.replace(lines[1], 'extra AAEC'),
    proof.replace(lines[3], 'AAAA'),
    proof.replace(`${lines[1]}\n`, ''),
    proof.split('\n\n')[0],
  ];
  for (const text of variants) assert.throws(() => parseTlogProof(text), /tlog-proof/);
});

test('tlog-proofs need keys; a leaf without the prefix is malformed', async () => {
  const proof = golden('valid.tlog-proof');
  assert.equal((await verifyTlogProof(proof, null)).reason, 'malformed');
  const leaf = decodeBase64(proof.split('\n')[1].slice(6));
  leaf[0] ^= 1;
  const broken = proof.replace(proof.split('\n')[1], `extra ${encodeBase64(leaf)}`);
  const v = await verifyTlogProof(broken, keys());
  assert.deepEqual([v.reason, v.seq], ['malformed', null]);
});

test('bundle shape (step 0): each wrong field is malformed, with seq null', async () => {
  const base = JSON.parse(golden('valid-range.bundle.json'));
  const mutations = {
    format: (b) => (b.format = 'lineage-audit/evidence-bundle/v2'),
    kind: (b) => (b.kind = 'other'),
    checkpoint: (b) => (b.checkpoint = 7),
    seq: (b) => (b.entries[0].seq = -1),
    'fractional seq': (b) => (b.entries[0].seq = 1.5),
    'short leaf': (b) => (b.entries[0].leaf_input = encodeBase64(new Uint8Array(157))),
    'leaf prefix': (b) => (b.entries[0].leaf_input = encodeBase64(new Uint8Array(158))),
    payload: (b) => (b.entries[0].envelope.payload = 'not base64!'),
    signatures: (b) => (b.entries[0].envelope.signatures = {}),
    keyid: (b) => (b.entries[0].envelope.signatures[0].keyid = 1),
    'proof hash': (b) => (b.entries[0].inclusion_proof[0] = 'AAAA'),
    'long proof': (b) => (b.entries[0].inclusion_proof = Array(65).fill(ROOT)),
    consistency: (b) => (b.consistency = { old_checkpoint: b.checkpoint }),
    'unpinned, no keys': (b) => delete b.keys,
  };
  for (const [name, mutate] of Object.entries(mutations)) {
    const bundle = structuredClone(base);
    mutate(bundle);
    const pinned = name.startsWith('unpinned') ? null : keys();
    const v = await verifyBundle(JSON.stringify(bundle), pinned);
    assert.deepEqual(
      [v.valid, v.reason, v.seq],
      [false, 'malformed', null],
      `${name}: ${v.message}`,
    );
  }
  const withExtras = { ...structuredClone(base), extra: 1, consistency: null };
  assert.equal(
    (await verifyBundle(JSON.stringify(withExtras), keys())).valid,
    true,
    'unknown members ignored',
  );
});

test('lineage events (§6.1): shape errors are malformed at step 0, before any signature', async () => {
  const base = JSON.parse(golden('valid-lineage-path.bundle.json'));
  const mutations = {
    'events not a list': (b) => (b.events = {}),
    'record_seq negative': (b) => (b.events[0].record_seq = -1),
    'index missing': (b) => delete b.events[0].index,
    'event not base64': (b) => (b.events[0].event = 'e30'),
    'short path hash': (b) => (b.events[0].path[0] = 'AAAA'),
    'path too long': (b) => (b.events[0].path = Array(65).fill(ROOT)),
    // A broken envelope too: shape still wins, as step 0 comes first.
    'with a bad signature': (b) => {
      b.events[0].size = '5';
      b.entries[0].envelope.signatures.pop();
    },
  };
  for (const [name, mutate] of Object.entries(mutations)) {
    const bundle = structuredClone(base);
    mutate(bundle);
    const v = await verifyBundle(JSON.stringify(bundle), keys());
    assert.deepEqual([v.reason, v.seq], ['malformed', null], `${name}: ${v.message}`);
  }
  const none = structuredClone(base);
  none.events = null;
  assert.equal((await verifyBundle(JSON.stringify(none), keys())).valid, true, 'null events: none');
});

test('lineage events: an event not attested by a batch intent of the bundle fails at its seq', async () => {
  const bundle = JSON.parse(golden('valid-lineage-path.bundle.json'));
  bundle.events[1].record_seq = 7;
  const v = await verifyBundle(JSON.stringify(bundle), keys());
  assert.deepEqual([v.reason, v.seq], ['lineage_event', 7]);
  assert.deepEqual(
    v.events.map((e) => e.status),
    ['ok', 'fail'],
  );
  assert.equal(v.events[0].event.job, 'golden:step1');
});

test('§6 ordering: an earlier step wins over an earlier entry, per-entry verdicts kept', async () => {
  const bundle = JSON.parse(golden('valid-range.bundle.json'));
  const bySeq = (s) => bundle.entries.find((e) => e.seq === s);
  const sig = bySeq(3).envelope.signatures[0];
  const raw = decodeBase64(sig.sig);
  raw[raw.length - 3] ^= 1; // inside s: still DER, no longer valid
  sig.sig = encodeBase64(raw);
  bySeq(5).envelope.signatures.pop();
  const v = await verifyBundle(JSON.stringify(bundle), keys());
  assert.deepEqual([v.reason, v.seq], ['signature_missing', 5]);
  const status = Object.fromEntries(v.entries.map((e) => [e.seq, e.reason ?? e.status]));
  assert.deepEqual(status, {
    0: 'ok',
    1: 'ok',
    2: 'ok',
    3: 'envelope_signature',
    4: 'ok',
    5: 'signature_missing',
    6: 'ok',
    7: 'ok',
  });
});

test('records read as in-toto statements', () => {
  const bundle = JSON.parse(golden('valid-range.bundle.json'));
  const outcome = bundle.entries[1].envelope;
  const r = describeRecord(outcome.payloadType, decodeBase64(outcome.payload));
  assert.equal(r.kind, 'outcome');
  assert.equal(r.action, 'golden.step');
  assert.equal(r.actor, 'golden:writer');
  assert.equal(r.status, 'succeeded');
  assert.equal(r.intent.seq, '0');
  assert.equal(r.subjects[0].name, 'a0');
  assert.equal(describeRecord('t', utf8('[1]')).error, 'payload is not a JSON object');
  assert.equal(describeRecord('t', Uint8Array.of(0xff)).error, 'payload is not UTF-8');
});
