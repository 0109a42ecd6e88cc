import type { AppId } from '../catalog/index.js';
import { buildAnswer, buildOpt } from './message.js';
import { CLASS_IN, RCODE, TYPE, encodeName, type Edns, type Query } from './wire.js';

export type BlockMode = 'nxdomain' | 'nullip' | 'refused';

/** RFC 8914 Extended DNS Error 15: Blocked. */
export const EDE_BLOCKED = 15;
const POINTER_TO_QUESTION = 0xc00c;
const SOA_MNAME = encodeName('portcullis.invalid');
const SOA_RNAME = encodeName('blocked.portcullis.invalid');

export interface BlockOptions {
  mode: BlockMode;
  /** TTL of the SOA (negative answers) and of null answers, seconds. */
  negativeTtlSec: number;
}

/**
 * The SOA we put in the authority section of a blocked answer, owned by the question name, so
 * resolvers downstream cache the block for the negative TTL (RFC 2308) and no longer.
 */
function buildSoaRecord(negativeTtlSec: number, serial: number): Buffer {
  const rdata = Buffer.concat([SOA_MNAME, SOA_RNAME, Buffer.alloc(20)]);
  const fixed = rdata.length - 20;
  rdata.writeUInt32BE(serial >>> 0, fixed);
  rdata.writeUInt32BE(3600, fixed + 4); // refresh
  rdata.writeUInt32BE(600, fixed + 8); // retry
  rdata.writeUInt32BE(86_400, fixed + 12); // expire
  rdata.writeUInt32BE(negativeTtlSec, fixed + 16); // minimum: the negative TTL
  return record(TYPE.SOA, negativeTtlSec, rdata);
}

function record(type: number, ttlSec: number, rdata: Buffer): Buffer {
  const out = Buffer.allocUnsafe(12 + rdata.length);
  out.writeUInt16BE(POINTER_TO_QUESTION, 0);
  out.writeUInt16BE(type, 2);
  out.writeUInt16BE(CLASS_IN, 4);
  out.writeUInt32BE(ttlSec, 6);
  out.writeUInt16BE(rdata.length, 10);
  rdata.copy(out, 12);
  return out;
}

/**
 * Blocked answers are built per query on the hot path; their fixed parts (the SOA for the
 * current policy version, the OPT with EDE per app) are built once and copied, never patched.
 */
let lastSoa: { ttl: number; serial: number; authority: { count: number; bytes: Buffer } } | null = null;

function soaAuthority(negativeTtlSec: number, serial: number): { count: number; bytes: Buffer } {
  if (lastSoa?.ttl !== negativeTtlSec || lastSoa.serial !== serial) {
    lastSoa = { ttl: negativeTtlSec, serial, authority: { count: 1, bytes: buildSoaRecord(negativeTtlSec, serial) } };
  }
  return lastSoa.authority;
}

/** OPT records with EDE 15 by app, DO bit and rcode: a few dozen at most. */
const edeOpts = new Map<string, Buffer[]>();

function blockedOpt(edns: Edns, app: AppId | null, rcode: number): Buffer {
  const text = app ?? 'custom';
  let byVariant = edeOpts.get(text);
  if (byVariant === undefined) {
    byVariant = [];
    edeOpts.set(text, byVariant);
  }
  const variant = (edns.dnssecOk ? 16 : 0) | rcode;
  return (byVariant[variant] ??= buildOpt(edns, { extendedRcode: rcode, ede: { code: EDE_BLOCKED, text } }));
}

const NULL_A = Buffer.alloc(4);
const NULL_AAAA = Buffer.alloc(16);

/**
 * The answer for a blocked name, in the configured mode, for any qtype:
 * - nxdomain: NXDOMAIN with SOA;
 * - null: 0.0.0.0 / :: for A / AAAA, NODATA with SOA for every other type;
 * - refused: REFUSED.
 * With EDNS, an EDE 15 "Blocked" option names the app (RFC 8914).
 */
export function blockedAnswer(queryBuf: Uint8Array, query: Query, app: AppId | null, options: BlockOptions, policyVersion: number): Buffer {
  const { questionEnd, edns } = query;
  if (options.mode === 'refused') return buildAnswer(queryBuf, query.id, query.flags, RCODE.REFUSED, questionEnd, edns, { opt: optFor(edns, app, RCODE.REFUSED) });
  if (options.mode === 'nullip' && query.qclass === CLASS_IN && (query.qtype === TYPE.A || query.qtype === TYPE.AAAA)) {
    const rdata = query.qtype === TYPE.A ? NULL_A : NULL_AAAA;
    return buildAnswer(queryBuf, query.id, query.flags, RCODE.NOERROR, questionEnd, edns, {
      answers: { count: 1, bytes: record(query.qtype, options.negativeTtlSec, rdata) },
      opt: optFor(edns, app, RCODE.NOERROR),
    });
  }
  const rcode = options.mode === 'nullip' ? RCODE.NOERROR : RCODE.NXDOMAIN;
  return buildAnswer(queryBuf, query.id, query.flags, rcode, questionEnd, edns, { authority: soaAuthority(options.negativeTtlSec, policyVersion), opt: optFor(edns, app, rcode) });
}

function optFor(edns: Edns | null, app: AppId | null, rcode: number): Buffer | undefined {
  return edns === null ? undefined : blockedOpt(edns, app, rcode);
}
