import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitForPort } from './gateway-process.js';

/** One nginx server block: plain or TLS, keep-alive or close after every response. */
export interface NginxSite {
  name: string;
  tls: boolean;
  /** 0: the server closes after each response (`keepalive_timeout 0`). */
  keepaliveSeconds: number;
  /** TLS versions offered, e.g. 'TLSv1.2' or 'TLSv1.3'. */
  tlsProtocols?: string;
}

export interface Nginx {
  ports: Record<string, number>;
  /** The document root: files written here are served. */
  root: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * A real nginx on 127.0.0.1 (Debian's nginx-light), one server per site, all under `dir`.
 * `files` maps a path under the root to its size in bytes (random content) for downloads.
 */
export async function startNginx(dir: string, sites: readonly NginxSite[], cert: { cert: string; key: string }, files: Record<string, number> = {}): Promise<Nginx> {
  const root = join(dir, 'www');
  await mkdir(root, { recursive: true });
  for (const [path, size] of Object.entries(files)) {
    const bytes = Buffer.alloc(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 7919 + 13) & 0xff;
    await writeFile(join(root, path), bytes);
  }
  // Workers run as nobody when nginx is started as root: they must be able to read the root.
  await chmod(dir, 0o755);
  await chmod(root, 0o755);
  for (const path of Object.keys(files)) await chmod(join(root, path), 0o644);
  const ports: Record<string, number> = {};
  const servers: string[] = [];
  for (const site of sites) {
    const port = await freePort();
    ports[site.name] = port;
    servers.push(
      [
        '  server {',
        `    listen 127.0.0.1:${port}${site.tls ? ' ssl' : ''};`,
        ...(site.tls ? [`    ssl_certificate ${cert.cert};`, `    ssl_certificate_key ${cert.key};`, `    ssl_protocols ${site.tlsProtocols ?? 'TLSv1.2 TLSv1.3'};`] : []),
        `    keepalive_timeout ${site.keepaliveSeconds};`,
        '    keepalive_requests 100000;',
        `    root ${root};`,
        '    location = /small { return 200 "small response body\\n"; }',
        '  }',
      ].join('\n'),
    );
  }
  const temp = join(dir, 'temp');
  await mkdir(temp, { recursive: true });
  await chmod(temp, 0o777);
  const config = join(dir, 'nginx.conf');
  await writeFile(
    config,
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'nginx-error.log')} warn;`,
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      `  client_body_temp_path ${temp}/body;`,
      `  proxy_temp_path ${temp}/proxy;`,
      `  fastcgi_temp_path ${temp}/fastcgi;`,
      `  uwsgi_temp_path ${temp}/uwsgi;`,
      `  scgi_temp_path ${temp}/scgi;`,
      ...servers,
      '}',
      '',
    ].join('\n'),
  );
  const child = spawn('nginx', ['-e', join(dir, 'nginx-error.log'), '-p', dir, '-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (const port of Object.values(ports)) await waitForPort(port, 10_000, 'nginx');
  } catch (e: unknown) {
    child.kill('SIGKILL');
    throw new Error(`${e instanceof Error ? e.message : String(e)}: ${stderr}`, { cause: e });
  }
  return {
    ports,
    root,
    child,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGQUIT');
      await exited;
    },
  };
}
