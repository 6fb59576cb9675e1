// Checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes (docs/formats.md §4).
import { decodeBase64, equal, utf8 } from './bytes.js';
import { validKeyName } from './keys.js';
import { mldsa65Verify } from './mldsa.js';

export const MAX_NOTE_BYTES = 64 * 1024;
export const MAX_NOTE_SIGNATURES = 16;
const U64_MAX = (1n << 64n) - 1n;

/** A checkpoint that does not parse or whose signatures fail (verdict checkpoint_signature). */
export class NoteError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NoteError';
  }
}

/** ASCII decimal u64 without sign or leading zeros, as a BigInt; null otherwise. */
export function parseDecimal(text) {
  if (!/^(0|[1-9][0-9]*)$/.test(text)) return null;
  const n = BigInt(text);
  return n <= U64_MAX ? n : null;
}

/** Splits and parses a note: {origin, size, root, extensions, text (bytes), signatures}. */
export function parseNote(note) {
  if (typeof note !== 'string') throw new NoteError('checkpoint is not a string');
  if (utf8(note).length > MAX_NOTE_BYTES) {
    throw new NoteError(`note is larger than ${MAX_NOTE_BYTES} bytes`);
  }
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) {
    throw new NoteError('note contains a control character other than newline');
  }
  if (!note.endsWith('\n')) throw new NoteError('note does not end with a newline');
  const cut = note.lastIndexOf('\n\n');
  if (cut < 0) throw new NoteError('note has no blank line before its signatures');
  const body = note.slice(0, cut + 1);
  const lines = body.split('\n').slice(0, -1);
  if (lines.length < 3) {
    throw new NoteError(`note text has ${lines.length} lines, expected origin, size, root`);
  }
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (!origin) throw new NoteError('empty origin line');
  // tlog-checkpoint allows extension lines after the root; ours has none, others may.
  if (extensions.some((line) => !line)) throw new NoteError('empty extension line in the note');
  const size = parseDecimal(sizeText);
  if (size === null) {
    throw new NoteError(`tree size "${sizeText}" is not a canonical decimal u64`);
  }
  const root = decodeBase64(rootText);
  if (root === null || root.length !== 32) {
    throw new NoteError(`root "${rootText}" is not base64 of 32 bytes`);
  }
  const signatures = parseSignatureLines(note.slice(cut + 2));
  return { origin, size, root, extensions, text: utf8(body), signatures };
}

function parseSignatureLines(block) {
  const lines = block.split('\n').slice(0, -1);
  if (lines.length === 0) throw new NoteError('note has no signature lines');
  if (lines.length > MAX_NOTE_SIGNATURES) {
    throw new NoteError(`note has ${lines.length} signature lines (max ${MAX_NOTE_SIGNATURES})`);
  }
  return lines.map((line) => {
    const parts = line.split(' ');
    if (parts.length !== 3 || parts[0] !== '\u2014' || !validKeyName(parts[1])) {
      throw new NoteError(`malformed signature line "${line.slice(0, 60)}"`);
    }
    const blob = decodeBase64(parts[2]);
    if (blob === null) throw new NoteError('signature line is not canonical padded base64');
    if (blob.length < 5) throw new NoteError('signature shorter than key id + signature');
    return { name: parts[1], keyId: blob.subarray(0, 4), sig: blob.subarray(4) };
  });
}

/**
 * Parses a note and checks our two signatures: lines by unknown keys are ignored, a known
 * key whose signature fails rejects the note, and both of ours must be present.
 */
export async function verifyNote(note, keys) {
  const parsed = parseNote(note);
  const { name } = keys.checkpoint;
  if (parsed.origin !== name) {
    throw new NoteError(`origin "${parsed.origin}" is not the trusted log "${name}"`);
  }
  let ecdsaFound = false;
  let mldsaFound = false;
  for (const sig of parsed.signatures) {
    if (sig.name !== name) continue;
    if (equal(sig.keyId, keys.checkpoint.ecdsaNoteId)) {
      if (!(await keys.checkpoint.ecdsa.verifyDer(parsed.text, sig.sig))) {
        throw new NoteError('ECDSA P-256 checkpoint signature does not verify');
      }
      ecdsaFound = true;
    } else if (equal(sig.keyId, keys.checkpoint.mldsaNoteId)) {
      if (!mldsa65Verify(keys.checkpoint.mldsa, parsed.text, sig.sig)) {
        throw new NoteError('ML-DSA-65 checkpoint signature does not verify');
      }
      mldsaFound = true;
    }
  }
  if (!ecdsaFound) throw new NoteError(`no ECDSA P-256 signature by "${name}"`);
  if (!mldsaFound) throw new NoteError(`no ML-DSA-65 signature by "${name}"`);
  return parsed;
}
