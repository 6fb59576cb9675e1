// Byte helpers shared by every verifier module: strict base64, hex, UTF-8, comparisons.
// Plain ES module with no dependencies, so node's tests and the browser page run the same code.

/** A check that fails on the input's shape (docs/formats.md §6 step 0: `malformed`). */
export class FormatError extends Error {
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.name = 'FormatError';
    this.field = field;
  }
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/**
 * Strict RFC 4648 §4 base64: standard alphabet, padded, canonical (unused bits zero), no
 * whitespace. Returns null for anything else, as the Python and Rust decoders reject the same.
 */
export function decodeBase64(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0) return null;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const quad = [0, 0, 0, 0];
    for (let j = 0; j < 4; j++) {
      const code = text.charCodeAt(i + j);
      if (last && j >= 4 - pad) {
        if (code !== 61) return null; // '='
        continue;
      }
      const value = code < 128 ? DECODE[code] : -1;
      if (value < 0) return null;
      quad[j] = value;
    }
    const n = (quad[0] << 18) | (quad[1] << 12) | (quad[2] << 6) | quad[3];
    if (last && pad === 2 && (n & 0xffff) !== 0) return null; // non-canonical trailing bits
    if (last && pad === 1 && (n & 0xff) !== 0) return null;
    out[o++] = n >>> 16;
    if (o < out.length) out[o++] = (n >>> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
  }
  return out;
}

export function encodeBase64(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += ALPHABET[n >>> 18] + ALPHABET[(n >>> 12) & 63];
    out += i + 1 < bytes.length ? ALPHABET[(n >>> 6) & 63] : '=';
    out += i + 2 < bytes.length ? ALPHABET[n & 63] : '=';
  }
  return out;
}

/** Base64 of a field, optionally of an exact byte length; throws FormatError otherwise. */
export function base64Field(value, field, length) {
  if (typeof value !== 'string') throw new FormatError(field, 'expected a base64 string');
  const raw = decodeBase64(value);
  if (raw === null) throw new FormatError(field, 'not canonical padded base64');
  if (length !== undefined && raw.length !== length) {
    throw new FormatError(field, `expected ${length} bytes, got ${raw.length}`);
  }
  return raw;
}

export function toHex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

export function fromHex(text) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || /[^0-9a-fA-F]/.test(text)) {
    throw new Error(`not hex: ${String(text).slice(0, 40)}`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const encoder = new TextEncoder();
export const utf8 = (text) => encoder.encode(text);

/** UTF-8 decoding that fails (returns null) on invalid bytes instead of substituting U+FFFD. */
export function decodeUtf8(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Big-endian unsigned integer of any length, as a BigInt. */
export function bigEndian(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** A BigInt as exactly `length` big-endian bytes (the caller guarantees it fits). */
export function toBigEndian(n, length) {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}
