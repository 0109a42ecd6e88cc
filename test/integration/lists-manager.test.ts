import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ListConfig } from '../../src/config/index.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { ListManager, fetchList, type ListManagerOptions, type ListStatus } from '../../src/lists/index.js';
import { parseList } from '../../src/lists/formats.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { ListEntries } from '../../src/policy/index.js';
import { rejection } from '../support/rejection.js';

// parseList keeps its behaviour; the spy only counts how often the manager parses.
vi.mock('../../src/lists/formats.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/lists/formats.js')>();
  return { ...actual, parseList: vi.fn(actual.parseList) };
});
const parseSpy = vi.mocked(parseList);

/** A list server on 127.0.0.1 whose answer each test sets, recording every request's headers. */
interface ListServer {
  url: string;
  port: number;
  requests: IncomingHttpHeaders[];
  /** Answers each request; by default serves `body` with `etag`, honouring If-None-Match. */
  respond: (headers: IncomingHttpHeaders, res: ServerResponse) => void;
  body: string;
  etag: string | null;
  server: Server;
}

let dir: string;
let servers: Server[] = [];
let managers: ListManager[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-lists-'));
  parseSpy.mockClear();
});

afterEach(async () => {
  for (const m of managers) m.stop();
  managers = [];
  await Promise.all(servers.map(closeServer));
  servers = [];
  await rm(dir, { recursive: true, force: true });
});

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => {
      resolve();
    });
    server.closeAllConnections();
  });
}

function serveDefault(state: ListServer, headers: IncomingHttpHeaders, res: ServerResponse): void {
  if (state.etag !== null && headers['if-none-match'] === state.etag) {
    res.writeHead(304, { etag: state.etag });
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', ...(state.etag === null ? {} : { etag: state.etag }) });
  res.end(state.body);
}

async function startServer(body: string, etag: string | null = null, port = 0): Promise<ListServer> {
  const server = createServer();
  const state: ListServer = {
    url: '',
    port: 0,
    requests: [],
    body,
    etag,
    server,
    respond: (headers, res) => {
      serveDefault(state, headers, res);
    },
  };
  server.on('request', (req, res) => {
    state.requests.push(req.headers);
    state.respond(req.headers, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      resolve();
    });
  });
  servers.push(server);
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}/list.txt`;
  return state;
}

function listConfig(source: string, overrides: Partial<ListConfig> = {}): ListConfig {
  return {
    source,
    name: 'extra',
    format: 'auto',
    action: 'block',
    app: null,
    refreshMs: DEFAULTS.listRefreshDefaultMs,
    isRemote: source.startsWith('http'),
    ...overrides,
  };
}

/** A manager over the given lists, with a listener that records every update. */
function managerOf(configs: ListConfig[], options: Partial<ListManagerOptions> = {}): { manager: ListManager; updates: ListEntries[][] } {
  const manager = new ListManager(configs, { cacheDir: join(dir, 'cache'), logger: silentLogger, ...options });
  managers.push(manager);
  const updates: ListEntries[][] = [];
  manager.on('update', (entries) => {
    updates.push(entries);
  });
  return { manager, updates };
}

function namesOf(manager: ListManager): string[] {
  return manager.entries().flatMap((e) => [...e.suffix, ...e.exact]);
}

function statusOf(manager: ListManager): ListStatus {
  return manager.status()[0]!;
}


describe('ListManager: local files', () => {
  it('loads a list file and emits one update carrying its entries', async () => {
    const file = join(dir, 'block.hosts');
    await writeFile(file, '# blocked\n0.0.0.0 talk.kakao.com\n0.0.0.0 line.me\n');
    const { manager, updates } = managerOf([listConfig(file, { name: 'school', app: 'kakaotalk' })]);

    await manager.loadAll();

    expect(updates).toHaveLength(1);
    expect(updates[0]).toEqual([
      { name: 'school', action: 'block', app: 'kakaotalk', suffix: [], exact: ['talk.kakao.com', 'line.me'], allowSuffix: [], cidrs: [] },
    ]);
    const status = statusOf(manager);
    expect(status).toMatchObject({ name: 'school', source: file, format: 'hosts', entries: 2, skipped: 0, lastError: null, fromCache: false });
    expect(status.loadedAt).not.toBeNull();
  });

  it('reports skipped lines in the status with their line numbers', async () => {
    const file = join(dir, 'names.txt');
    await writeFile(file, 'kakao.com\nnot a name\nline.me\n');
    const { manager } = managerOf([listConfig(file)]);
    await manager.loadAll();
    const status = statusOf(manager);
    expect(status.entries).toBe(2);
    expect(status.skipped).toBe(1);
    expect(status.firstSkipped).toEqual([{ line: 2, text: 'not a name', reason: 'expected one name per line' }]);
  });

  it('reloads an edited file on refresh() and leaves an unchanged one alone', async () => {
    const file = join(dir, 'names.txt');
    await writeFile(file, 'kakao.com\n');
    const { manager, updates } = managerOf([listConfig(file)]);
    await manager.loadAll();
    expect(namesOf(manager)).toEqual(['kakao.com']);

    await manager.refresh();
    expect(updates).toHaveLength(1);
    expect(parseSpy).toHaveBeenCalledTimes(1);

    await writeFile(file, 'kakao.com\nline.me\n');
    const later = new Date(Date.now() + 10_000);
    await utimes(file, later, later);
    const [status] = await manager.refresh();

    expect(updates).toHaveLength(2);
    expect(updates[1]![0]!.suffix).toEqual(['kakao.com', 'line.me']);
    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);
    expect(status).toMatchObject({ entries: 2, lastError: null });
  });

  it('after start(), a list file edited in place or replaced by rename is in force without refresh()', async () => {
    const file = join(dir, 'names.txt');
    await writeFile(file, 'kakao.com\n');
    const { manager, updates } = managerOf([listConfig(file)]);
    await manager.loadAll();
    manager.start();
    const until = async (count: number): Promise<void> => {
      const deadline = Date.now() + 3_000;
      while (updates.length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    };

    await writeFile(file, 'kakao.com\nline.me\n');
    await until(2);
    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);

    // As editors and config management do: write a new file, rename it over the old one.
    const temp = join(dir, '.names.txt.tmp');
    await writeFile(temp, 'didiglobal.com\n');
    await rename(temp, file);
    await until(3);
    expect(namesOf(manager)).toEqual(['didiglobal.com']);

    // A file beside it changing does not reload the list.
    await writeFile(join(dir, 'other.txt'), 'x\n');
    await new Promise((resolve) => setTimeout(resolve, DEFAULTS.listWatchDebounceMs * 3));
    expect(updates).toHaveLength(3);
  });

  it('keeps the last good entries when the file disappears, and reports the error', async () => {
    const file = join(dir, 'names.txt');
    await writeFile(file, 'kakao.com\nline.me\n');
    const { manager, updates } = managerOf([listConfig(file)]);
    await manager.loadAll();

    await rm(file);
    const [status] = await manager.refresh();

    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);
    expect(updates).toHaveLength(1);
    expect(status!.entries).toBe(2);
    expect(status!.lastError).toContain(file);
    expect(status!.lastError).toContain('ENOENT');
    expect(manager.status()[0]!.lastError).toBe(status!.lastError);

    await writeFile(file, 'naver.jp\n');
    const back = new Date(Date.now() + 10_000);
    await utimes(file, back, back);
    const [recovered] = await manager.refresh();
    expect(recovered!.lastError).toBeNull();
    expect(namesOf(manager)).toEqual(['naver.jp']);
  });

  it('a file restored with its old mtime clears the error it left', async () => {
    const file = join(dir, 'names.txt');
    await writeFile(file, 'kakao.com\n');
    // A whole-millisecond mtime, so restoring it gives back exactly the same mtimeMs.
    const mtime = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    await utimes(file, mtime, mtime);
    const { manager } = managerOf([listConfig(file)]);
    await manager.loadAll();
    const saved = await readFile(file);

    await rm(file);
    expect((await manager.refresh())[0]!.lastError).toContain('ENOENT');

    await writeFile(file, saved); // as `cp -p` from a backup would
    await utimes(file, mtime, mtime);
    expect((await stat(file)).mtimeMs).toBe(mtime.getTime());
    const [status] = await manager.refresh();
    expect(status!.lastError).toBeNull();
    expect(namesOf(manager)).toEqual(['kakao.com']);
  });

  it('does not let a file edited into junk empty the list', async () => {
    const file = join(dir, 'names.txt');
    await writeFile(file, 'kakao.com\n');
    const { manager, updates } = managerOf([listConfig(file, { format: 'domains' })]);
    await manager.loadAll();

    await writeFile(file, 'this is not\na list of names\n');
    const later = new Date(Date.now() + 10_000);
    await utimes(file, later, later);
    const [status] = await manager.refresh();

    expect(namesOf(manager)).toEqual(['kakao.com']);
    expect(updates).toHaveLength(1);
    expect(status!.lastError).toContain('no line could be read as a domains rule');

    // Still junk, same mtime: the failure stays reported.
    const [again] = await manager.refresh();
    expect(again!.lastError).toContain('no line could be read as a domains rule');
  });

  it('loads several lists and emits a single update for them', async () => {
    const a = join(dir, 'a.txt');
    const b = join(dir, 'b.cidr');
    await writeFile(a, 'kakao.com\n');
    await writeFile(b, '10.0.0.0/8\n');
    const { manager, updates } = managerOf([listConfig(a, { name: 'a' }), listConfig(b, { name: 'b', action: 'allow' })]);
    await manager.loadAll();
    expect(updates).toHaveLength(1);
    expect(updates[0]!.map((e) => [e.name, e.action, e.suffix.length + e.cidrs.length])).toEqual([
      ['a', 'block', 1],
      ['b', 'allow', 1],
    ]);
  });
});

describe('ListManager: remote lists', () => {
  it('downloads a list, emits an update and keeps a copy under cacheDir', async () => {
    const body = '||kakao.com^\n@@||status.kakao.com^\n';
    const server = await startServer(body, '"v1"');
    const { manager, updates } = managerOf([listConfig(server.url)]);

    await manager.loadAll();

    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]!['if-none-match']).toBeUndefined();
    expect(updates).toHaveLength(1);
    expect(updates[0]![0]).toMatchObject({ suffix: ['kakao.com'], allowSuffix: ['status.kakao.com'] });
    expect(statusOf(manager)).toMatchObject({ format: 'adblock', entries: 2, lastError: null, fromCache: false });
    expect(await readFile(join(dir, 'cache', 'extra.txt'), 'utf8')).toBe(body);
  });

  it('sends the ETag back and keeps its entries without re-parsing on a 304', async () => {
    const server = await startServer('||kakao.com^\n', '"v1"');
    const { manager, updates } = managerOf([listConfig(server.url)]);
    await manager.loadAll();
    const loadedAt = manager.status()[0]!.loadedAt;
    expect(parseSpy).toHaveBeenCalledTimes(1);

    await new Promise((resolve) => setTimeout(resolve, 5));
    const [status] = await manager.refresh();

    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!['if-none-match']).toBe('"v1"');
    expect(parseSpy).toHaveBeenCalledTimes(1);
    expect(updates).toHaveLength(1);
    expect(namesOf(manager)).toEqual(['kakao.com']);
    expect(status).toMatchObject({ entries: 1, lastError: null, loadedAt });

    // A new version (new ETag) is downloaded and parsed again.
    server.body = '||kakao.com^\n||line.me^\n';
    server.etag = '"v2"';
    await manager.refresh();
    expect(server.requests[2]!['if-none-match']).toBe('"v1"');
    expect(parseSpy).toHaveBeenCalledTimes(2);
    expect(updates).toHaveLength(2);
    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);
  });

  it('sends Last-Modified back as If-Modified-Since', async () => {
    const lastModified = 'Mon, 01 Jan 2024 00:00:00 GMT';
    const server = await startServer('kakao.com\n');
    server.respond = (headers, res) => {
      if (headers['if-modified-since'] === lastModified) {
        res.writeHead(304);
        res.end();
        return;
      }
      res.writeHead(200, { 'last-modified': lastModified });
      res.end(server.body);
    };
    const { manager, updates } = managerOf([listConfig(server.url)]);
    await manager.loadAll();
    await manager.refresh();
    expect(server.requests[1]!['if-modified-since']).toBe(lastModified);
    expect(updates).toHaveLength(1);
    expect(parseSpy).toHaveBeenCalledTimes(1);
    expect(namesOf(manager)).toEqual(['kakao.com']);
  });

  it('keeps the last good copy when the server answers 500; the error clears once the server recovers', async () => {
    const server = await startServer('kakao.com\nline.me\n', '"v1"');
    const { manager, updates } = managerOf([listConfig(server.url)]);
    await manager.loadAll();

    server.respond = (_headers, res) => {
      res.writeHead(500);
      res.end('internal error');
    };
    const [failed] = await manager.refresh();

    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);
    expect(updates).toHaveLength(1);
    expect(failed).toMatchObject({ entries: 2, fromCache: false });
    expect(failed!.lastError).toContain('HTTP 500');
    expect(failed!.lastError).toContain(server.url);

    server.respond = (headers, res) => {
      serveDefault(server, headers, res);
    };
    const [recovered] = await manager.refresh();
    expect(recovered!.lastError).toBeNull();
    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);
  });

  it('keeps reporting a broken new version while the server answers 304 for it', async () => {
    const server = await startServer('kakao.com\n', '"v1"');
    const { manager } = managerOf([listConfig(server.url, { format: 'domains' })]);
    await manager.loadAll();

    server.body = 'not a list\n';
    server.etag = '"v2"';
    expect((await manager.refresh())[0]!.lastError).toContain('no line could be read');
    const [again] = await manager.refresh();

    expect(again!.lastError).toContain('no line could be read');
    expect(namesOf(manager)).toEqual(['kakao.com']);
  });

  it('does not let an HTML page served with 200 (a captive portal) replace the list or its on-disk copy', async () => {
    const body = 'kakao.com\n';
    const server = await startServer(body);
    const { manager, updates } = managerOf([listConfig(server.url)]);
    await manager.loadAll();

    server.body = '<!DOCTYPE html>\n<html><body>\n<p>Please log in to the Wi-Fi</p>\n</body></html>\n';
    const [status] = await manager.refresh();

    expect(namesOf(manager)).toEqual(['kakao.com']);
    expect(updates).toHaveLength(1);
    expect(status!.lastError).toContain('no line could be read');
    expect(await readFile(join(dir, 'cache', 'extra.txt'), 'utf8')).toBe(body);
  });

  it('after a restart with the server down, enforces the on-disk copy and says so; a returning server replaces it', async () => {
    const server = await startServer('||kakao.com^\n||line.me^\n', '"v1"');
    const first = managerOf([listConfig(server.url)]);
    await first.manager.loadAll();
    first.manager.stop();
    const { port, url } = server;
    await closeServer(server.server);

    const { manager, updates } = managerOf([listConfig(url)]);
    await manager.loadAll();

    expect(updates).toHaveLength(1);
    expect(namesOf(manager)).toEqual(['kakao.com', 'line.me']);
    const status = statusOf(manager);
    expect(status).toMatchObject({ entries: 2, fromCache: true });
    expect(status.lastError).toContain(url);

    // The source comes back on the same address: a full download replaces the cached copy.
    const again = await startServer('||naver.jp^\n', '"v2"', port);
    const [fresh] = await manager.refresh();
    expect(again.requests).toHaveLength(1);
    expect(again.requests[0]!['if-none-match']).toBeUndefined();
    expect(fresh).toMatchObject({ entries: 1, fromCache: false, lastError: null });
    expect(namesOf(manager)).toEqual(['naver.jp']);
  });

  it('with neither the server nor a copy on disk, loads nothing and reports the error', async () => {
    const server = await startServer('kakao.com\n');
    const url = server.url;
    await closeServer(server.server);
    const { manager, updates } = managerOf([listConfig(url)]);
    await manager.loadAll();
    expect(updates).toHaveLength(0);
    expect(manager.entries()).toEqual([]);
    const status = statusOf(manager);
    expect(status).toMatchObject({ entries: 0, loadedAt: null, fromCache: false });
    expect(status.lastError).toContain(url);
  });

  it('refuses a download that declares more than listFetchMaxBytes, keeping the last good copy', async () => {
    const server = await startServer('kakao.com\n');
    const { manager } = managerOf([listConfig(server.url)]);
    await manager.loadAll();

    server.respond = (_headers, res) => {
      res.writeHead(200, { 'content-length': String(DEFAULTS.listFetchMaxBytes + 1) });
      res.write('line.me\n'); // and never the rest
    };
    const [status] = await manager.refresh();

    expect(status!.lastError).toContain(`larger than ${DEFAULTS.listFetchMaxBytes} bytes`);
    expect(namesOf(manager)).toEqual(['kakao.com']);
    expect(await readFile(join(dir, 'cache', 'extra.txt'), 'utf8')).toBe('kakao.com\n');
  });

  describe('offline', () => {
    it('never makes a request and reports why nothing was loaded', async () => {
      const server = await startServer('kakao.com\n');
      const { manager, updates } = managerOf([listConfig(server.url)], { offline: true });
      await manager.loadAll();
      await manager.refresh();
      expect(server.requests).toHaveLength(0);
      expect(updates).toHaveLength(0);
      expect(manager.status()[0]!.lastError).toContain('offline');
    });

    it('uses the on-disk copy of an earlier download without a request', async () => {
      const server = await startServer('kakao.com\n');
      await managerOf([listConfig(server.url)]).manager.loadAll();
      expect(server.requests).toHaveLength(1);

      const { manager, updates } = managerOf([listConfig(server.url)], { offline: true });
      await manager.loadAll();
      await manager.refresh();

      expect(server.requests).toHaveLength(1);
      expect(updates).toHaveLength(1);
      expect(namesOf(manager)).toEqual(['kakao.com']);
      expect(statusOf(manager)).toMatchObject({ entries: 1, fromCache: true });
    });

    it('still reads local files', async () => {
      const file = join(dir, 'names.txt');
      await writeFile(file, 'kakao.com\n');
      const { manager } = managerOf([listConfig(file)], { offline: true });
      await manager.loadAll();
      expect(namesOf(manager)).toEqual(['kakao.com']);
      expect(manager.status()[0]!.lastError).toBeNull();
    });
  });
});

describe('fetchList', () => {
  const options = { maxBytes: 1024, timeoutMs: 5_000 };

  it('refuses a chunked body that grows past maxBytes without declaring its length', async () => {
    const server = await startServer('');
    let closed = false;
    server.respond = (_headers, res) => {
      res.on('close', () => {
        closed = true;
      });
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = 'x.example\n'.repeat(100); // 1000 bytes
      res.write(chunk);
      res.write(chunk);
      // and keep the response open, as a hostile server would
    };
    const error = await rejection(fetchList(server.url, options));
    expect(error.code).toBe('PCL_ERR_LIST_TOO_LARGE');
    expect(error.message).toContain('larger than 1024 bytes');
    await vi.waitFor(() => {
      expect(closed).toBe(true);
    });
  });

  it('refuses a declared length over maxBytes before reading the body', async () => {
    const server = await startServer('x'.repeat(1025));
    const error = await rejection(fetchList(server.url, options));
    expect(error.code).toBe('PCL_ERR_LIST_TOO_LARGE');
  });

  it('accepts a body of exactly maxBytes', async () => {
    const server = await startServer('x'.repeat(1024), '"e"');
    const fetched = await fetchList(server.url, options);
    expect(fetched.text).toHaveLength(1024);
    expect(fetched.etag).toBe('"e"');
  });

  it('gives up on a server that stalls mid-body once timeoutMs passes', async () => {
    const server = await startServer('');
    server.respond = (_headers, res) => {
      res.writeHead(200);
      res.write('kakao.com\n');
    };
    const started = Date.now();
    const error = await rejection(fetchList(server.url, { maxBytes: 1024, timeoutMs: 200 }));
    expect(error.code).toBe('PCL_ERR_LIST_FETCH');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('gives up on a server that never answers once timeoutMs passes', async () => {
    const server = await startServer('');
    server.respond = () => undefined;
    const error = await rejection(fetchList(server.url, { maxBytes: 1024, timeoutMs: 200 }));
    expect(error.code).toBe('PCL_ERR_LIST_FETCH');
    expect(error.message).toContain(server.url);
  });

  it('follows a redirect to the list', async () => {
    const server = await startServer('kakao.com\n');
    server.respond = (headers, res) => {
      if (server.requests.length === 1) {
        res.writeHead(302, { location: '/moved.txt' });
        res.end();
        return;
      }
      serveDefault(server, headers, res);
    };
    const fetched = await fetchList(server.url, options);
    expect(fetched.text).toBe('kakao.com\n');
    expect(server.requests).toHaveLength(2);
  });
});
