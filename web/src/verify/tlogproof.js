// c2sp.org/tlog-proof@v1 files whose `extra` is a leaf input (docs/formats.md §5).
import { FormatError, decodeBase64, decodeUtf8, startsWith, toHex, utf8 } from './bytes.js';
import { NoteError, parseDecimal, verifyNote } from './checkpoint.js';
import { LEAF_SIZE, parseLeaf } from './leaf.js';
import { inclusionError, leafHash } from './merkle.js';
import { MAX_PROOF_HASHES } from './bundle.js';

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
export const MAX_TLOG_PROOF_BYTES = 128 * 1024; // a checkpoint note plus a generous path

/** Whether the bytes (or text) start like a tlog-proof rather than a JSON bundle. */
export const isTlogProof = (data) =>
  typeof data === 'string'
    ? data.startsWith(TLOG_PROOF_HEADER)
    : startsWith(data, utf8(TLOG_PROOF_HEADER));

/** Parses the text form: {leafInput, index (BigInt), path, checkpoint}; FormatError otherwise. */
export function parseTlogProof(text) {
  const bad = (why) => new FormatError('tlog-proof', why);
  const cut = text.indexOf('\n\n');
  if (cut < 0) throw bad('no blank line before the checkpoint');
  const lines = text.slice(0, cut).split('\n');
  if (lines[0] !== TLOG_PROOF_HEADER) throw bad(`first line must be "${TLOG_PROOF_HEADER}"`);
  if (lines.length < 3 || !lines[1].startsWith('extra ')) {
    throw bad("missing 'extra <b64 leaf input>' line (the leaf input is required)");
  }
  const leafInput = decodeBase64(lines[1].slice(6));
  if (leafInput === null || leafInput.length !== LEAF_SIZE) {
    throw bad(`extra is not base64 of a ${LEAF_SIZE}-byte leaf input`);
  }
  const index = lines[2].startsWith('index ') ? parseDecimal(lines[2].slice(6)) : null;
  if (index === null) throw bad(`expected 'index <decimal>', got "${lines[2].slice(0, 40)}"`);
  const pathLines = lines.slice(3);
  if (pathLines.length > MAX_PROOF_HASHES) throw bad(`more than ${MAX_PROOF_HASHES} proof hashes`);
  const path = pathLines.map((line, i) => {
    const hash = decodeBase64(line);
    if (hash === null || hash.length !== 32) throw bad(`path[${i}] is not base64 of 32 bytes`);
    return hash;
  });
  return { leafInput, index, path, checkpoint: text.slice(cut + 2) };
}

const seqNumber = (n) => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString());

function verdict(valid, reason, seq, message, extra = {}) {
  return {
    kind: 'tlog-proof',
    valid,
    reason,
    seq,
    message,
    keysPinned: true,
    entries: [],
    ...extra,
  };
}

/**
 * Verifies a tlog-proof against trusted keys (the proof carries none, so they are required):
 * the checkpoint, that the leaf input's seq equals `index`, and the inclusion of its leaf.
 */
export async function verifyTlogProof(data, keys) {
  if (keys === null || keys === undefined) {
    return {
      ...verdict(false, 'malformed', null, 'tlog-proof: public keys are required'),
      keysPinned: false,
    };
  }
  let proof;
  let leaf;
  try {
    const text = typeof data === 'string' ? data : decodeUtf8(data);
    if (text === null) throw new FormatError('tlog-proof', 'not UTF-8');
    if (text.length > MAX_TLOG_PROOF_BYTES) {
      throw new FormatError('tlog-proof', `larger than ${MAX_TLOG_PROOF_BYTES} bytes`);
    }
    proof = parseTlogProof(text);
    leaf = parseLeaf(proof.leafInput);
    if (leaf === null)
      throw new FormatError('tlog-proof.extra', 'lacks the lineage-audit/leaf/v1 prefix');
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    return verdict(false, 'malformed', null, err.message);
  }
  let note;
  try {
    note = await verifyNote(proof.checkpoint, keys);
  } catch (err) {
    if (!(err instanceof NoteError)) throw err;
    return verdict(false, 'checkpoint_signature', null, `checkpoint: ${err.message}`);
  }
  const hash = leafHash(proof.leafInput);
  const seq = seqNumber(proof.index);
  const checkpoint = {
    origin: note.origin,
    size: Number(note.size),
    root: toHex(note.root),
    extensions: note.extensions,
  };
  const entry = (status, reason, message) => ({
    seq,
    status,
    reason,
    message,
    leafHash: toHex(hash),
    signatures: [],
    record: null,
  });
  if (leaf.seq !== proof.index) {
    const message = `leaf input seq ${leaf.seq} does not match index ${proof.index}`;
    return verdict(false, 'leaf_mismatch', seq, message, {
      checkpoint,
      entries: [entry('fail', 'leaf_mismatch', message)],
    });
  }
  const why = inclusionError(proof.index, note.size, hash, proof.path, note.root);
  if (why) {
    const message = `inclusion proof fails at tree size ${note.size}: ${why}`;
    return verdict(false, 'inclusion', seq, message, {
      checkpoint,
      entries: [entry('fail', 'inclusion', message)],
    });
  }
  const message =
    `seq ${proof.index} included in ${note.origin} at tree size ${note.size} ` +
    '(a tlog-proof carries no envelope: record signatures not checked)';
  return verdict(true, null, null, message, { checkpoint, entries: [entry('ok', null, null)] });
}
