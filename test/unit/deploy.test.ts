import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfigChecked, parseHostPort } from '../../src/config/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const K8S = join(ROOT, 'deploy', 'kubernetes');

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

async function manifests(): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for (const file of ['configmap.yaml', 'deployment.yaml', 'service.yaml', 'servicemonitor.yaml']) {
    const docs = parseAllDocuments(await readFile(join(K8S, file), 'utf8'));
    for (const doc of docs) {
      expect(doc.errors, file).toEqual([]);
      out.push(doc.toJS() as Manifest);
    }
  }
  return out;
}

async function validConfig(text: string): Promise<NonNullable<Awaited<ReturnType<typeof loadConfigChecked>>['config']>> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-deploy-'));
  try {
    const file = join(dir, 'portcullis.yaml');
    await writeFile(file, text);
    const { config, problems } = await loadConfigChecked({ file, env: {} });
    expect(problems).toEqual([]);
    return config!;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('deploy/', () => {
  it('the example configuration is valid and never opens the admin API without tokens', async () => {
    const config = await validConfig(await readFile(join(ROOT, 'deploy', 'portcullis.example.yaml'), 'utf8'));
    expect(config.admin.tokens.length).toBeGreaterThan(0);
    expect(config.dns.allowClients).not.toBeNull();
  });

  it('Kubernetes: the ConfigMap config is valid, and the Deployment, Services and ServiceMonitor agree with it', async () => {
    const all = await manifests();
    for (const m of all) {
      expect(m.apiVersion, m.kind).toMatch(/^(v1|apps\/v1|monitoring\.coreos\.com\/v1)$/);
      expect(m.metadata.name).not.toBe('');
    }
    const configMap = all.find((m) => m.kind === 'ConfigMap')!;
    const config = await validConfig(configMap.data!['portcullis.yaml']!);
    const port = (listen: string): number => {
      const parsed = parseHostPort(listen, { allowAnyPort: true });
      if (typeof parsed === 'string') throw new Error(parsed);
      return parsed.port;
    };

    const deployment = all.find((m) => m.kind === 'Deployment')!;
    const container = (deployment.spec as { template: { spec: { containers: { ports: { name: string; containerPort: number; protocol: string }[]; livenessProbe: { httpGet: { path: string } }; readinessProbe: { httpGet: { path: string } }; securityContext: { allowPrivilegeEscalation: boolean; readOnlyRootFilesystem: boolean } }[] } } }).template.spec.containers[0]!;
    const byName = new Map(container.ports.map((p) => [p.name, p]));
    expect(byName.get('dns-udp')).toMatchObject({ containerPort: port(config.dns.listen), protocol: 'UDP' });
    expect(byName.get('dns-tcp')).toMatchObject({ containerPort: port(config.dns.listen), protocol: 'TCP' });
    expect(byName.get('tls')?.containerPort).toBe(port(config.proxy.tls.listen));
    expect(byName.get('http')?.containerPort).toBe(port(config.proxy.http.listen));
    expect(byName.get('admin')?.containerPort).toBe(port(config.admin.listen));
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });

    for (const service of all.filter((m) => m.kind === 'Service')) {
      for (const p of (service.spec as { ports: { targetPort: string; protocol: string }[] }).ports) {
        expect(byName.get(p.targetPort), `${service.metadata.name} -> ${p.targetPort}`).toMatchObject({ protocol: p.protocol });
      }
    }
    const monitor = all.find((m) => m.kind === 'ServiceMonitor')!;
    const selector = (monitor.spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] });
    const admin = all.find((m) => m.kind === 'Service' && Object.entries(selector.selector.matchLabels).every(([k, v]) => m.metadata.labels?.[k] === v));
    expect(admin?.metadata.name).toBe('portcullis-admin');
    expect(selector.endpoints[0]).toMatchObject({ port: 'admin', path: '/metrics' });
  });

  it('systemd: not root, one capability, sandboxed, reload on SIGHUP (and systemd-analyze accepts it where installed)', async () => {
    const path = join(ROOT, 'deploy', 'systemd', 'portcullis.service');
    const unit = await readFile(path, 'utf8');
    for (const line of ['User=portcullis', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'StateDirectory=portcullis', 'ExecReload=/bin/kill -HUP $MAINPID']) {
      expect(unit).toContain(line);
    }
    expect(unit).toMatch(/^ExecStart=\S*node \S*dist\/cli\.js start --config /m);
    if (existsSync('/usr/bin/systemd-analyze')) {
      const result = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
      expect(result.stderr.split('\n').filter((l) => /portcullis\.service/.test(l) && !/User|Group|Documentation|Failed to resolve|node/.test(l))).toEqual([]);
    }
  });

  it('transparent mode: the example config and the DaemonSet config are valid, ports and capabilities agree', async () => {
    const example = await validConfig(await readFile(join(ROOT, 'deploy', 'portcullis.transparent.yaml'), 'utf8'));
    expect(example.proxy.transparent).toMatchObject({ mode: 'tproxy', tcp: '[::]:15001', quic: '[::]:15443' });
    expect(example.nftables).toMatchObject({ apply: true });
    const docs = parseAllDocuments(await readFile(join(K8S, 'daemonset-transparent.yaml'), 'utf8')).map((d) => d.toJS() as Manifest);
    const config = await validConfig(docs.find((m) => m.kind === 'ConfigMap')!.data!['portcullis.yaml']!);
    const daemonSet = docs.find((m) => m.kind === 'DaemonSet')!;
    const pod = (daemonSet.spec as { template: { spec: { hostNetwork: boolean; containers: { ports: { name: string; containerPort: number; protocol: string }[]; securityContext: { capabilities: { add: string[] } } }[] } } }).template.spec;
    expect(pod.hostNetwork).toBe(true);
    const container = pod.containers[0]!;
    expect(container.securityContext.capabilities.add).toEqual(expect.arrayContaining(['NET_ADMIN', 'NET_BIND_SERVICE']));
    const byName = new Map(container.ports.map((p) => [p.name, p]));
    expect(byName.get('transparent')).toMatchObject({ containerPort: Number(config.proxy.transparent!.tcp!.split(':').pop()), protocol: 'TCP' });
    expect(byName.get('quic')).toMatchObject({ containerPort: Number(config.proxy.transparent!.quic!.split(':').pop()), protocol: 'UDP' });
  });

  it.skipIf(process.getuid?.() !== 0 || !existsSync('/usr/sbin/nft'))('nftables examples load (checked by nft in a scratch network namespace; needs root)', () => {
    const ns = `pcl-nftcheck-${process.pid}`;
    spawnSync('ip', ['netns', 'add', ns]);
    try {
      for (const file of ['redirect.nft', 'redirect-all-tcp.nft', 'tproxy.nft']) {
        const result = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', join(ROOT, 'deploy', 'nftables', file)], { encoding: 'utf8' });
        expect({ file, stderr: result.stderr, status: result.status }).toEqual({ file, stderr: '', status: 0 });
      }
    } finally {
      spawnSync('ip', ['netns', 'del', ns]);
    }
  });

  it('systemd: the transparent drop-in adds CAP_NET_ADMIN and nothing else', async () => {
    const dropIn = await readFile(join(ROOT, 'deploy', 'systemd', 'transparent.conf'), 'utf8');
    expect(dropIn).toMatch(/^AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN$/m);
    expect(dropIn).toMatch(/^CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN$/m);
  });

  it('Dockerfile: built with npm ci, runs the CLI as a non-root user, ships the catalog', async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/RUN npm ci/);
    expect(dockerfile).toMatch(/COPY --from=build \/src\/build\/Release\/portcullis_native\.node/);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^COPY blocklists /m);
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "\/opt\/portcullis\/dist\/cli\.js", "start"/);
  });
});
