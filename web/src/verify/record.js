// Readable form of a record: the in-toto Statement inside a DSSE payload (docs/formats.md §2).
// Display only: nothing here decides a verdict, and the payload bytes are never re-serialised
// for verification.
import { decodeUtf8 } from './bytes.js';
import { isObject } from './keys.js';

const PREDICATE = /^https:\/\/lineage-audit\.dev\/predicate\/([a-z0-9-]+)\/v1$/;
const text = (v) => (typeof v === 'string' ? v : v === undefined ? null : JSON.stringify(v));

/** A summary of the statement, or {error} when the payload is not a JSON object. */
export function describeRecord(payloadType, payload) {
  const raw = decodeUtf8(payload);
  if (raw === null) return { payloadType, error: 'payload is not UTF-8' };
  let statement;
  try {
    statement = JSON.parse(raw);
  } catch {
    return { payloadType, error: 'payload is not JSON', raw: raw.slice(0, 2000) };
  }
  if (!isObject(statement)) return { payloadType, error: 'payload is not a JSON object', raw };
  const predicate = isObject(statement.predicate) ? statement.predicate : {};
  const predicateType = text(statement.predicateType);
  const kind = PREDICATE.exec(predicateType ?? '')?.[1] ?? null;
  const subjects = Array.isArray(statement.subject)
    ? statement.subject.map((s) => ({
        name: text(s?.name),
        sha256: text(s?.digest?.sha256),
      }))
    : [];
  const intent = isObject(predicate.intent)
    ? { seq: text(predicate.intent.seq), leafHash: text(predicate.intent.leaf_hash) }
    : null;
  const error = isObject(predicate.error)
    ? `${text(predicate.error.type) ?? ''}: ${text(predicate.error.message) ?? ''}`
    : null;
  return {
    payloadType,
    type: text(statement._type),
    predicateType,
    kind,
    action: text(predicate.action),
    actor: text(predicate.actor),
    requestedAt: text(predicate.requested_at),
    status: text(predicate.status),
    intent,
    error,
    subjects,
    json: JSON.stringify(statement, null, 2),
  };
}
