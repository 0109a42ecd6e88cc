import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './gateway-process.js';
import { udpExchange } from './dns-clients.js';
import { buildQuery } from './dns-message.js';

export interface Unbound {
  /** Plain DNS, UDP and TCP. */
  plainPort: number;
  /** DNS over TLS (RFC 7858) with the certificate given. */
  tlsPort: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * The server: lines every unbound run here starts from: one thread in the foreground, IPv4,
 * nothing written outside `dir` (no chroot, syslog or pid file), quiet, loopback clients only,
 * the iterator alone (no DNSSEC validation).
 */
export function unboundServerLines(dir: string): string[] {
  return [
    '  verbosity: 0',
    '  num-threads: 1',
    '  do-ip6: no',
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  access-control: 127.0.0.0/8 allow',
    '  module-config: "iterator"',
  ];
}

/**
 * Debian's unbound in the foreground, answering `records` (unbound local-data lines, e.g.
 * `www.example.test. 300 IN A 192.0.2.7`) from a static local zone: over plain DNS and over TLS.
 * `tcpIdleTimeoutMs` is how long it keeps a quiet TCP/TLS connection open.
 */
export async function startUnbound(dir: string, options: { cert: string; key: string; zone: string; records: string[]; tcpIdleTimeoutMs?: number }): Promise<Unbound> {
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const conf = join(dir, 'unbound.conf');
  await writeFile(
    conf,
    [
      'server:',
      ...unboundServerLines(dir),
      `  interface: 127.0.0.1@${plainPort}`,
      `  interface: 127.0.0.1@${tlsPort}`,
      `  tls-port: ${tlsPort}`,
      `  tls-service-pem: "${options.cert}"`,
      `  tls-service-key: "${options.key}"`,
      `  tcp-idle-timeout: ${options.tcpIdleTimeoutMs ?? 30_000}`,
      '  incoming-num-tcp: 100',
      `  local-zone: "${options.zone}" static`,
      ...options.records.map((r) => `  local-data: "${r}"`),
      'remote-control:',
      '  control-enable: no',
      '',
    ].join('\n'),
  );
  const child = spawn('unbound', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const probe = buildQuery({ name: options.records[0]!.split(/\s+/)[0]!.replace(/\.$/, '') });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`unbound exited ${child.exitCode}: ${stderr}`);
    if ((await udpExchange(plainPort, probe, 200)) !== null) break;
    if (i > 50) throw new Error(`unbound did not answer: ${stderr}`);
  }
  return {
    plainPort,
    tlsPort,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
