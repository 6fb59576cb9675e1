// Wycheproof (../shared/conformance/wycheproof/testvectors_v1): every ML-DSA-65 verify vector,
// and every ECDSA P-256/SHA-256 vector in DER and P1363 form, through each ECDSA backend the
// page can use: WebCrypto alone, noble alone, and the page's default (WebCrypto + fallback).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { fromHex } from '../src/verify/bytes.js';
import { P256PublicKey, P256_N, ecdsaStats, setEcdsaBackend } from '../src/verify/ecdsa.js';
import { mldsa65Verify } from '../src/verify/mldsa.js';
import { bigEndian, toBigEndian } from '../src/verify/bytes.js';
import { conformanceFile, readJson } from './support/paths.js';

const vectors = (name) => readJson(conformanceFile('wycheproof', 'testvectors_v1', name));

function expectedValid(t) {
  assert.ok(['valid', 'invalid'].includes(t.result), `tcId ${t.tcId}: result ${t.result}`);
  return t.result === 'valid';
}

/** Runs `verify(group, test)` over every vector; returns [wrong tcIds, total, valid]. */
async function runAll(doc, verify) {
  const wrong = [];
  let total = 0;
  let valid = 0;
  for (const group of doc.testGroups) {
    for (const t of group.tests) {
      const want = expectedValid(t);
      total++;
      valid += want ? 1 : 0;
      if ((await verify(group, t)) !== want) wrong.push(t.tcId);
    }
  }
  return [wrong, total, valid];
}

test('ML-DSA-65: all 210 verify vectors (79 valid)', async () => {
  const doc = vectors('mldsa_65_verify_test.json');
  const [wrong, total, valid] = await runAll(doc, (group, t) => {
    const pk = fromHex(group.publicKey);
    // The ledger verifies with the empty context; vectors carrying `ctx` test the
    // FIPS 204 context API, including contexts over 255 bytes, which must fail.
    const context = t.ctx === undefined ? undefined : fromHex(t.ctx);
    return mldsa65Verify(pk, fromHex(t.msg), fromHex(t.sig), context);
  });
  assert.deepEqual(wrong, []);
  assert.deepEqual([total, valid], [210, 79]);
});

test('ML-DSA-65: a signature one byte short or long is rejected', () => {
  const doc = vectors('mldsa_65_verify_test.json');
  const group = doc.testGroups.find((g) => g.tests.some((t) => t.result === 'valid' && !t.ctx));
  const t = group.tests.find((x) => x.result === 'valid' && !x.ctx);
  const [pk, msg, sig] = [fromHex(group.publicKey), fromHex(t.msg), fromHex(t.sig)];
  assert.ok(mldsa65Verify(pk, msg, sig));
  assert.ok(!mldsa65Verify(pk, msg, sig.subarray(0, sig.length - 1)));
  assert.ok(!mldsa65Verify(pk, msg, Uint8Array.of(...sig, 0)));
});

const p256Key = (group, tcId) => {
  const key = P256PublicKey.fromSpki(fromHex(group.publicKeyDer));
  assert.ok(key, `tcId ${tcId}: the group's SPKI must parse`);
  return key;
};

for (const backend of ['webcrypto', 'noble', 'auto']) {
  describe(`ECDSA P-256 through ${backend}`, () => {
    after(() => setEcdsaBackend('auto'));

    test('DER: all 484 vectors (174 valid)', async () => {
      setEcdsaBackend(backend);
      const before = { ...ecdsaStats };
      const doc = vectors('ecdsa_secp256r1_sha256_test.json');
      const [wrong, total, valid] = await runAll(doc, (group, t) => {
        assert.equal(group.sha, 'SHA-256');
        return p256Key(group, t.tcId).verifyDer(fromHex(t.msg), fromHex(t.sig));
      });
      assert.deepEqual(wrong, []);
      assert.deepEqual([total, valid], [484, 174]);
      if (backend === 'noble') assert.equal(ecdsaStats.webcrypto, before.webcrypto);
      if (backend === 'webcrypto') assert.equal(ecdsaStats.noble, before.noble);
    });

    test('P1363: all 262 vectors (173 valid)', async () => {
      setEcdsaBackend(backend);
      const doc = vectors('ecdsa_secp256r1_sha256_p1363_test.json');
      const [wrong, total, valid] = await runAll(doc, (group, t) =>
        p256Key(group, t.tcId).verifyRaw(fromHex(t.msg), fromHex(t.sig)),
      );
      assert.deepEqual(wrong, []);
      assert.deepEqual([total, valid], [262, 173]);
    });
  });
}

/** Every valid 64-byte P1363 vector as its high-S twin (r, n - s), which is just as valid. */
function highSTwins() {
  const doc = vectors('ecdsa_secp256r1_sha256_p1363_test.json');
  const twins = [];
  for (const group of doc.testGroups) {
    for (const t of group.tests) {
      const sig = fromHex(t.sig);
      if (t.result !== 'valid' || sig.length !== 64) continue;
      const s = bigEndian(sig.subarray(32));
      const twin = Uint8Array.of(...sig.subarray(0, 32), ...toBigEndian(P256_N - s, 32));
      twins.push({ group, t, twin, high: P256_N - s > P256_N / 2n });
    }
  }
  return twins;
}

test('high-S: noble (lowS: false) and the default path accept every (r, n - s) twin', async () => {
  const twins = highSTwins();
  assert.ok(twins.filter((x) => x.high).length > 50);
  for (const backend of ['noble', 'auto']) {
    setEcdsaBackend(backend);
    for (const { group, t, twin } of twins) {
      assert.ok(
        await p256Key(group, t.tcId).verifyRaw(fromHex(t.msg), twin),
        `${backend} tcId ${t.tcId}`,
      );
    }
  }
  setEcdsaBackend('auto');
});

test('high-S: a WebCrypto that refuses high-S is overruled by noble only for valid twins', async (t) => {
  const { group, t: vector, twin } = highSTwins().find((x) => x.high);
  const key = p256Key(group, vector.tcId);
  const subtle = globalThis.crypto.subtle;
  // A stand-in WebCrypto with the strictest legal policy: it rejects every high-S signature.
  const strict = Object.create(subtle);
  strict.verify = async (alg, k, sig, msg) => {
    if (bigEndian(new Uint8Array(sig).subarray(32)) > P256_N / 2n) return false;
    return subtle.verify(alg, k, sig, msg);
  };
  strict.importKey = subtle.importKey.bind(subtle);
  t.mock.getter(globalThis.crypto, 'subtle', () => strict);
  const fresh = P256PublicKey.fromSpki(key.spki);
  const before = ecdsaStats.noble;
  assert.ok(await fresh.verifyRaw(fromHex(vector.msg), twin));
  assert.equal(ecdsaStats.noble, before + 1, 'noble decided the high-S signature');
  const wrongMessage = Uint8Array.of(...fromHex(vector.msg), 1);
  assert.ok(!(await fresh.verifyRaw(wrongMessage, twin)));
});

test('without WebCrypto the default path verifies with noble', async (t) => {
  const doc = vectors('ecdsa_secp256r1_sha256_test.json');
  const group = doc.testGroups[0];
  const vector = group.tests.find((x) => x.result === 'valid');
  t.mock.getter(globalThis.crypto, 'subtle', () => undefined);
  const before = ecdsaStats.noble;
  assert.ok(await p256Key(group, vector.tcId).verifyDer(fromHex(vector.msg), fromHex(vector.sig)));
  assert.equal(ecdsaStats.noble, before + 1);
});
