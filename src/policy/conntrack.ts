import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Protocol } from '../match/ports.js';

const execFileAsync = promisify(execFile);

/** conntrack runs are bounded: a wedged netlink call cannot stall the ones after it. */
const COMMAND_TIMEOUT_MS = 10_000;
/** A listing larger than this (a very busy host) is cut off rather than held in memory. */
const LIST_MAX_BYTES = 256 * 1024 * 1024;

/** A tracked TCP or UDP flow, by its original direction (as the client sent it, before any NAT of the reply). */
export interface TrackedFlow {
  proto: Protocol;
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/**
 * Reads `conntrack -L` output: one flow per line, `tcp 6 431999 ESTABLISHED src=… dst=… sport=…
 * dport=… src=… …`; the first src/dst/sport/dport are the original direction. Other protocols
 * (ICMP has no ports) and lines that do not parse are skipped.
 */
export function parseConntrackList(text: string): TrackedFlow[] {
  const out: TrackedFlow[] = [];
  for (const line of text.split('\n')) {
    const proto = line.startsWith('tcp ') ? 'tcp' : line.startsWith('udp ') ? 'udp' : null;
    if (proto === null) continue;
    const field = (name: string): string | undefined => new RegExp(`\\b${name}=(\\S+)`).exec(line)?.[1];
    const src = field('src');
    const dst = field('dst');
    const sport = Number(field('sport'));
    const dport = Number(field('dport'));
    if (src === undefined || dst === undefined || !Number.isInteger(sport) || !Number.isInteger(dport)) continue;
    out.push({ proto, src, dst, sport, dport });
  }
  return out;
}

/** The tracked flows of the host, or null when the conntrack tool is not there. */
export async function listTrackedFlows(): Promise<TrackedFlow[] | null> {
  const flows: TrackedFlow[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    try {
      const { stdout } = await execFileAsync('conntrack', ['-L', '-f', family], { timeout: COMMAND_TIMEOUT_MS, maxBuffer: LIST_MAX_BYTES });
      flows.push(...parseConntrackList(stdout));
    } catch (e: unknown) {
      if (isMissing(e)) return null;
      // It exits non-zero on an empty table with some versions; what it printed still counts.
      const stdout = e instanceof Error && 'stdout' in e && typeof e.stdout === 'string' ? e.stdout : '';
      flows.push(...parseConntrackList(stdout));
    }
  }
  return flows;
}

/** Deletes one flow's entry, by its exact original tuple; whether it was deleted. */
export async function deleteTrackedFlow(flow: TrackedFlow): Promise<boolean> {
  const args = ['-D', '-p', flow.proto, '-s', flow.src, '-d', flow.dst, '--sport', String(flow.sport), '--dport', String(flow.dport)];
  try {
    await execFileAsync('conntrack', args, { timeout: COMMAND_TIMEOUT_MS });
    return true;
  } catch {
    // Gone already (it ended, or was deleted with the one before): nothing to do.
    return false;
  }
}

function isMissing(e: unknown): boolean {
  return e instanceof Error && 'code' in e && e.code === 'ENOENT';
}
