// ECDSA P-256 / SHA-256 verification (docs/formats.md §2: DER signatures, high-S accepted).
//
// WebCrypto (crypto.subtle, in browsers and in node) takes raw `r || s`, so DER is converted
// first. @noble/curves is the fallback: where WebCrypto is missing or refuses the key, and as
// a second opinion on a high-S signature WebCrypto rejects, so that a WebCrypto enforcing
// low-S cannot turn a valid ledger signature invalid. `setEcdsaBackend('noble')` forces it.
import { p256 } from '@noble/curves/nist.js';
import { bigEndian } from './bytes.js';
import { derToRaw, p256PointFromSpki } from './der.js';

/** The order of the P-256 group. */
export const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const HALF_N = P256_N >> 1n;
const RAW_SIZE = 64;
const BACKENDS = ['auto', 'webcrypto', 'noble'];

let backend = 'auto';
/** How many verifications each library decided (shown by the page, checked by the tests). */
export const ecdsaStats = { webcrypto: 0, noble: 0 };

/**
 * 'auto' (WebCrypto, noble where WebCrypto cannot decide), 'noble' (noble only) or
 * 'webcrypto' (WebCrypto only, no fallback: for tests of the WebCrypto path itself).
 */
export function setEcdsaBackend(name) {
  if (!BACKENDS.includes(name)) throw new Error(`unknown ECDSA backend ${name}`);
  backend = name;
}

export const ecdsaBackend = () => backend;

const subtle = () => globalThis.crypto?.subtle;

export class P256PublicKey {
  /** A key from DER SPKI bytes, or null if they are not a P-256 key with a valid point. */
  static fromSpki(spki) {
    const point = p256PointFromSpki(spki);
    if (!point) return null;
    try {
      p256.Point.fromBytes(point).assertValidity();
    } catch {
      return null;
    }
    return new P256PublicKey(spki, point);
  }

  constructor(spki, point) {
    this.spki = spki;
    this.point = point;
    this.cryptoKey = null; // a Promise of a CryptoKey (or null if WebCrypto refuses it)
  }

  /** Verifies a DER signature over `message` (SHA-256 inside). Resolves to a boolean. */
  async verifyDer(message, der) {
    const raw = derToRaw(der);
    return raw !== null && this.verifyRaw(message, raw);
  }

  /** Verifies a raw `r || s` (IEEE P1363) signature over `message`. */
  async verifyRaw(message, raw) {
    if (raw.length !== RAW_SIZE) return false;
    const r = bigEndian(raw.subarray(0, 32));
    const s = bigEndian(raw.subarray(32));
    if (r < 1n || r >= P256_N || s < 1n || s >= P256_N) return false;
    if (backend === 'noble' || (backend === 'auto' && !subtle())) return this.#noble(message, raw);
    const key = await this.#webcryptoKey();
    if (key === null) {
      if (backend === 'webcrypto') return false;
      return this.#noble(message, raw);
    }
    const ok = await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw, message);
    if (ok || backend === 'webcrypto' || s <= HALF_N) {
      ecdsaStats.webcrypto++;
      return ok;
    }
    return this.#noble(message, raw);
  }

  #webcryptoKey() {
    if (this.cryptoKey === null) {
      const params = { name: 'ECDSA', namedCurve: 'P-256' };
      this.cryptoKey = subtle()
        .importKey('spki', this.spki, params, false, ['verify'])
        .catch(() => null);
    }
    return this.cryptoKey;
  }

  #noble(message, raw) {
    ecdsaStats.noble++;
    try {
      // lowS: false accepts (r, s) with s > n/2, which is as valid as (r, n - s).
      return p256.verify(raw, message, this.point, { lowS: false, prehash: true });
    } catch {
      return false;
    }
  }
}
