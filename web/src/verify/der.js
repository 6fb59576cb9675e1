// Strict DER (X.690) reading for the two structures the verifier meets: an ECDSA signature
// (SEQUENCE of two INTEGERs) and a P-256 SubjectPublicKeyInfo. BER leniencies (long-form
// lengths that fit the short form, non-minimal integers, trailing bytes) are rejected, as the
// Rust (p256) and Python (OpenSSL) verifiers reject them.

const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OID = 0x06;
const TAG_SEQUENCE = 0x30;

/** One TLV at `offset`: {tag, start, end} of its contents, or null if not strict DER. */
function readTlv(bytes, offset) {
  if (offset + 2 > bytes.length) return null;
  const tag = bytes[offset];
  let length = bytes[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    // 0x80 is BER's indefinite length; more than 3 length bytes is never needed here.
    if (count === 0 || count > 3 || start + count > bytes.length) return null;
    if (bytes[start] === 0) return null; // leading zero: not minimal
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
    if (length < 0x80) return null; // would have fitted the short form
    start += count;
  }
  const end = start + length;
  if (end > bytes.length) return null;
  return { tag, start, end };
}

/** A DER INTEGER's magnitude for a positive, minimally encoded value; else null. */
function positiveInteger(bytes, tlv) {
  if (tlv.tag !== TAG_INTEGER || tlv.end === tlv.start) return null;
  const body = bytes.subarray(tlv.start, tlv.end);
  if (body[0] & 0x80) return null; // negative
  if (body.length > 1 && body[0] === 0 && !(body[1] & 0x80)) return null; // needless zero
  return body[0] === 0 ? body.subarray(1) : body;
}

/**
 * ECDSA-Sig-Value (DER) -> {r, s} magnitudes (big-endian, no leading zeros), or null when the
 * bytes are not exactly one strict DER SEQUENCE of two positive INTEGERs.
 */
export function parseDerSignature(bytes) {
  const seq = readTlv(bytes, 0);
  if (!seq || seq.tag !== TAG_SEQUENCE || seq.end !== bytes.length) return null;
  const rTlv = readTlv(bytes, seq.start);
  if (!rTlv) return null;
  const sTlv = readTlv(bytes, rTlv.end);
  if (!sTlv || sTlv.end !== seq.end) return null;
  const r = positiveInteger(bytes, rTlv);
  const s = positiveInteger(bytes, sTlv);
  return r && s ? { r, s } : null;
}

/** DER -> raw `r || s` (IEEE P1363, what WebCrypto takes), or null if a value exceeds 32 bytes. */
export function derToRaw(bytes, size = 32) {
  const sig = parseDerSignature(bytes);
  if (!sig || sig.r.length > size || sig.s.length > size) return null;
  const raw = new Uint8Array(2 * size);
  raw.set(sig.r, size - sig.r.length);
  raw.set(sig.s, 2 * size - sig.s.length);
  return raw;
}

// id-ecPublicKey (1.2.840.10045.2.1) and prime256v1 (1.2.840.10045.3.1.7), DER contents.
const OID_EC_PUBLIC_KEY = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

function isOid(bytes, tlv, oid) {
  if (!tlv || tlv.tag !== TAG_OID || tlv.end - tlv.start !== oid.length) return false;
  return oid.every((b, i) => bytes[tlv.start + i] === b);
}

/**
 * The SEC1 point inside a P-256 SubjectPublicKeyInfo, or null when the SPKI is not one
 * (wrong algorithm or curve, unused bits, trailing bytes). Whether the point lies on the
 * curve is for the ECDSA module to decide.
 */
export function p256PointFromSpki(spki) {
  const outer = readTlv(spki, 0);
  if (!outer || outer.tag !== TAG_SEQUENCE || outer.end !== spki.length) return null;
  const algorithm = readTlv(spki, outer.start);
  if (!algorithm || algorithm.tag !== TAG_SEQUENCE) return null;
  const algOid = readTlv(spki, algorithm.start);
  if (!isOid(spki, algOid, OID_EC_PUBLIC_KEY)) return null;
  const curveOid = readTlv(spki, algOid.end);
  if (!isOid(spki, curveOid, OID_P256) || curveOid.end !== algorithm.end) return null;
  const key = readTlv(spki, algorithm.end);
  if (!key || key.tag !== TAG_BIT_STRING || key.end !== outer.end) return null;
  if (key.end - key.start < 2 || spki[key.start] !== 0) return null; // unused-bits byte
  return spki.subarray(key.start + 1, key.end);
}
