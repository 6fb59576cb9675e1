// Every RFC 6962/9162 proof vector of transparency-dev/merkle (../shared/conformance/merkle):
// the verifier must fail exactly when `wantErr` is true, as the Rust and Python ones do.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { decodeBase64 } from '../src/verify/bytes.js';
import {
  consistencyError,
  inclusionError,
  verifyConsistency,
  verifyInclusion,
} from '../src/verify/merkle.js';
import { conformanceFile, readJson } from './support/paths.js';

function jsonFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return jsonFiles(full);
    return name.endsWith('.json') ? [full] : [];
  });
}

function b64(text) {
  const bytes = decodeBase64(text);
  assert.notEqual(bytes, null, `vector base64 ${text}`);
  return bytes;
}
const b64List = (list) => (list ?? []).map(b64);

const inclusion = jsonFiles(conformanceFile('merkle', 'inclusion')).sort();
const consistency = jsonFiles(conformanceFile('merkle', 'consistency')).sort();

test('the suite is complete (196 vectors, with the additional and single-entry sets)', () => {
  assert.equal(inclusion.length + consistency.length, 196);
  assert.ok(inclusion.some((f) => f.includes(`${path.sep}single-entry${path.sep}`)));
  assert.ok(consistency.some((f) => f.includes(`${path.sep}additional${path.sep}`)));
});

test('inclusion vectors err exactly when expected', () => {
  const wrong = [];
  let happy = 0;
  for (const file of inclusion) {
    const c = readJson(file);
    const why = inclusionError(
      BigInt(c.leafIdx),
      BigInt(c.treeSize),
      b64(c.leafHash),
      b64List(c.proof),
      b64(c.root),
    );
    if ((why !== null) !== c.wantErr)
      wrong.push(`${file} (${c.desc}): wantErr=${c.wantErr}, got ${why}`);
    happy += c.wantErr ? 0 : 1;
  }
  assert.deepEqual(wrong, []);
  assert.ok(happy >= 5, `only ${happy} happy paths`);
});

test('consistency vectors err exactly when expected', () => {
  const wrong = [];
  for (const file of consistency) {
    const c = readJson(file);
    const why = consistencyError(
      BigInt(c.size1),
      BigInt(c.size2),
      b64List(c.proof),
      b64(c.root1),
      b64(c.root2),
    );
    if ((why !== null) !== c.wantErr)
      wrong.push(`${file} (${c.desc}): wantErr=${c.wantErr}, got ${why}`);
  }
  assert.deepEqual(wrong, []);
});

function flipped(bytes, bit) {
  const out = Uint8Array.from(bytes);
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
}

test('every single-bit change to a happy path is rejected', () => {
  let checked = 0;
  for (const file of inclusion) {
    const c = readJson(file);
    if (c.wantErr) continue;
    const [leaf, root, proof] = [b64(c.leafHash), b64(c.root), b64List(c.proof)];
    const ok = (l, p, r) => verifyInclusion(BigInt(c.leafIdx), BigInt(c.treeSize), l, p, r);
    assert.ok(ok(leaf, proof, root), file);
    for (let bit = 0; bit < 256; bit += 7) {
      assert.ok(!ok(flipped(leaf, bit), proof, root), `${file} leaf bit ${bit}`);
      assert.ok(!ok(leaf, proof, flipped(root, bit)), `${file} root bit ${bit}`);
      proof.forEach((_, i) => {
        const bad = proof.map((h, j) => (j === i ? flipped(h, bit) : h));
        assert.ok(!ok(leaf, bad, root), `${file} proof[${i}] bit ${bit}`);
      });
    }
    checked++;
  }
  for (const file of consistency) {
    const c = readJson(file);
    if (c.wantErr || c.size1 === c.size2) continue;
    const [r1, r2, proof] = [b64(c.root1), b64(c.root2), b64List(c.proof)];
    const ok = (p, a, b) => verifyConsistency(BigInt(c.size1), BigInt(c.size2), p, a, b);
    assert.ok(ok(proof, r1, r2), file);
    for (let bit = 0; bit < 256; bit += 7) {
      assert.ok(!ok(proof, flipped(r1, bit), r2), `${file} root1 bit ${bit}`);
      assert.ok(!ok(proof, r1, flipped(r2, bit)), `${file} root2 bit ${bit}`);
      proof.forEach((_, i) => {
        const bad = proof.map((h, j) => (j === i ? flipped(h, bit) : h));
        assert.ok(!ok(bad, r1, r2), `${file} proof[${i}] bit ${bit}`);
      });
    }
    checked++;
  }
  assert.ok(checked >= 10, `only ${checked} happy paths exercised`);
});
