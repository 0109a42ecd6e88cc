import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Three network namespaces wired as a real deployment: client -> gateway -> server. The
 * gateway namespace routes between two veth links and is where nftables intercepts; the
 * server namespace holds the "internet" addresses the tests reach (198.18.0.0/15 and
 * addresses inside the catalog's app ranges).
 */
export interface Topology {
  client: string;
  gateway: string;
  server: string;
  /** The gateway's address on the client side. */
  gatewayClientSide: string;
  /** The client's own address. */
  clientAddress: string;
  /** The same, IPv6. */
  gatewayClientSide6: string;
  /** Tears everything down (namespaces take their links and processes' sockets with them). */
  destroy(): void;
}

const CLIENT_NET = '10.77.1';
const SERVER_NET = '10.77.2';
const CLIENT_NET6 = 'fd77:1::';
const SERVER_NET6 = 'fd77:2::';

/** Why the namespace tests cannot run here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root: network namespaces and nftables need root (CI runs as root)';
  for (const tool of ['ip', 'nft']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (apt-get install iproute2 nftables)`;
    }
  }
  return null;
}

function run(args: string[]): void {
  execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createTopology(serverAddresses: readonly string[]): Topology {
  const tag = `pcl${process.pid % 100_000}`;
  const client = `${tag}c`;
  const gateway = `${tag}g`;
  const server = `${tag}s`;
  const destroy = (): void => {
    for (const ns of [client, gateway, server]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not there
      }
    }
  };
  destroy();
  try {
    for (const ns of [client, gateway, server]) run(['ip', 'netns', 'add', ns]);
    run(['ip', 'link', 'add', 'c0', 'netns', client, 'type', 'veth', 'peer', 'name', 'gc', 'netns', gateway]);
    run(['ip', 'link', 'add', 's0', 'netns', server, 'type', 'veth', 'peer', 'name', 'gs', 'netns', gateway]);
    const inNs = (ns: string, ...args: string[]): void => run(['ip', '-n', ns, ...args]);
    for (const ns of [client, gateway, server]) inNs(ns, 'link', 'set', 'lo', 'up');
    inNs(client, 'addr', 'add', `${CLIENT_NET}.2/24`, 'dev', 'c0');
    inNs(client, 'link', 'set', 'c0', 'up');
    inNs(client, 'route', 'add', 'default', 'via', `${CLIENT_NET}.1`);
    inNs(gateway, 'addr', 'add', `${CLIENT_NET}.1/24`, 'dev', 'gc');
    inNs(gateway, 'addr', 'add', `${SERVER_NET}.1/24`, 'dev', 'gs');
    inNs(gateway, 'link', 'set', 'gc', 'up');
    inNs(gateway, 'link', 'set', 'gs', 'up');
    inNs(gateway, 'route', 'add', 'default', 'via', `${SERVER_NET}.2`);
    run(['ip', 'netns', 'exec', gateway, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // TPROXY: packets marked 1 are delivered locally, whatever their destination address.
    inNs(gateway, 'rule', 'add', 'fwmark', '1', 'lookup', '100');
    inNs(gateway, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100');
    inNs(gateway, '-6', 'rule', 'add', 'fwmark', '1', 'lookup', '100');
    inNs(gateway, '-6', 'route', 'add', 'local', '::/0', 'dev', 'lo', 'table', '100');
    // IPv6 beside IPv4 (nodad: usable at once, no duplicate address detection wait).
    inNs(client, 'addr', 'add', `${CLIENT_NET6}2/64`, 'dev', 'c0', 'nodad');
    inNs(client, '-6', 'route', 'add', 'default', 'via', `${CLIENT_NET6}1`);
    inNs(gateway, 'addr', 'add', `${CLIENT_NET6}1/64`, 'dev', 'gc', 'nodad');
    inNs(gateway, 'addr', 'add', `${SERVER_NET6}1/64`, 'dev', 'gs', 'nodad');
    inNs(gateway, '-6', 'route', 'add', 'default', 'via', `${SERVER_NET6}2`);
    inNs(server, 'addr', 'add', `${SERVER_NET}.2/24`, 'dev', 's0');
    inNs(server, 'link', 'set', 's0', 'up');
    inNs(server, 'route', 'add', 'default', 'via', `${SERVER_NET}.1`);
    inNs(server, 'addr', 'add', `${SERVER_NET6}2/64`, 'dev', 's0', 'nodad');
    inNs(server, '-6', 'route', 'add', 'default', 'via', `${SERVER_NET6}1`);
    for (const address of serverAddresses) inNs(server, 'addr', 'add', `${address}/${address.includes(':') ? 128 : 32}`, 'dev', 'lo');
  } catch (e: unknown) {
    destroy();
    throw e;
  }
  return { client, gateway, server, gatewayClientSide: `${CLIENT_NET}.1`, clientAddress: `${CLIENT_NET}.2`, gatewayClientSide6: `${CLIENT_NET6}1`, destroy };
}

/** Runs a command inside a namespace; never rejects (the exit code is part of the answer). */
export function nsExec(ns: string, command: string, args: readonly string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('ip', ['netns', 'exec', ns, command, ...args], { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
    // Commands that read stdin (openssl s_client) see its end at once.
    child.stdin?.end();
  });
}

/** Loads an nftables ruleset into a namespace (replacing the one there). */
export function applyNft(ns: string, ruleset: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: `flush ruleset\n${ruleset}`, stdio: ['pipe', 'ignore', 'pipe'] });
}

/** Starts a long-running process inside a namespace and waits for it to print `readyLine`. */
export function startInNs(ns: string, command: string, args: readonly string[], readyLine: string, timeoutMs = 15_000): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} did not get ready in ${ns}: ${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${String(code)} in ${ns}: ${stderr}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.trim() !== readyLine) return;
      clearTimeout(timer);
      resolve(child);
    });
  });
}
