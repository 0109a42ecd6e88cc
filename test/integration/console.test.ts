import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundledRelease } from '../../src/catalog/index.js';
import { ed25519Keys, signedBundle } from '../support/catalog-bundles.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { makeTestPki } from '../support/test-pki.js';
import { READ_TOKEN, WRITE_TOKEN, api, resolveA, startGateway, waitFor, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

const CHROMIUM = process.env.PORTCULLIS_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const NXDOMAIN = 3;
const LINE_NAME = 'legy-jp.line-apps.com';
const ANSWER = '192.0.2.40';
const CATALOG_YAML = fileURLToPath(new URL('../../blocklists/catalog.yaml', import.meta.url));
/** A time as the console shows it. */
const SHOWN_TIME = String.raw`\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC`;

let dir = '';
let upstream: FakeUpstream;
let gateway: GatewayProcess;
let browser: Browser;
/** Console messages at error level and CSP violations, from every page: any is a defect. */
const pageErrors: string[] = [];

async function signedIn(token: string, adminUrl = gateway.adminUrl): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${adminUrl}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('article.card').first().waitFor();
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage: true });
}

let configFile = '';

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (or set PORTCULLIS_CHROMIUM)`);
  await mkdir(ARTIFACTS, { recursive: true });
  dir = await mkdtemp(join(tmpdir(), 'portcullis-console-'));
  upstream = await startFakeUpstream({ [LINE_NAME]: [{ type: 'A', value: ANSWER }], 'www.console-rule.test': [{ type: 'A', value: ANSWER }] });
  const home = join(dir, 'gateway');
  await mkdir(home, { recursive: true });
  configFile = await writeGatewayConfig(home, { upstream: upstream.target });
  gateway = await startGateway(configFile);
  // Some blocks for the activity view and the app cards.
  await resolveA(gateway.dnsPort, 'talk-pilsner.kakao.com');
  await resolveA(gateway.dnsPort, LINE_NAME);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}, 60_000);

afterAll(async () => {
  await browser.close();
  await gateway.stop('SIGKILL');
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe('web console in a real browser', () => {
  it('is served without a token under a strict CSP; every data call needs one', async () => {
    const page = await fetch(`${gateway.adminUrl}/ui/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self';/);
    expect(page.headers.get('content-security-policy')).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    // No inline script anywhere: every <script> has a src.
    expect([...html.matchAll(/<script\b[^>]*>/g)].every((m) => /\ssrc=/.test(m[0]))).toBe(true);
    expect(html).not.toMatch(/https?:\/\//);
    expect((await fetch(`${gateway.adminUrl}/ui/main.js`)).status).toBe(200);
    expect((await fetch(`${gateway.adminUrl}/v1/apps`)).status).toBe(401);
  });

  it('sign in, switch LINE off and see a real DNS query resolve, switch it on and see it blocked', async () => {
    const page = await signedIn(WRITE_TOKEN);
    await expect.poll(() => page.locator('article.card').count()).toBe(5);
    for (const name of ['KakaoTalk', 'LINE']) await page.getByRole('heading', { name, exact: true }).waitFor();
    await screenshot(page, 'apps');

    const lineSwitch = page.locator('#switch-line');
    expect(await lineSwitch.isChecked()).toBe(true);
    await lineSwitch.click();
    await page.locator('#state-line', { hasText: 'Not blocked' }).waitFor();
    expect(await lineSwitch.isChecked()).toBe(false);
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.addresses).toEqual([ANSWER]);

    // Keyboard: the switch is reachable and toggles with Space.
    await lineSwitch.focus();
    await page.keyboard.press('Space');
    await page.locator('#state-line', { hasText: /^Blocked$/ }).waitFor();
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.rcode).toBe(NXDOMAIN);
    await page.close();
  });

  it('add a rule (enforced by DNS), see it listed and filtered, delete it after confirming', async () => {
    const page = await signedIn(WRITE_TOKEN);
    await page.getByRole('link', { name: 'Rules' }).click();
    await page.getByLabel('Value').waitFor();
    await page.getByLabel('Value').fill('bad..name');
    await page.getByRole('button', { name: 'Add rule' }).click();
    await page.locator('#status.error', { hasText: 'host name' }).waitFor();

    expect((await resolveA(gateway.dnsPort, 'www.console-rule.test'))?.rcode).toBe(0);
    await page.getByLabel('Value').fill('console-rule.test');
    await page.getByLabel('Comment').fill('added in the browser');
    await page.getByRole('button', { name: 'Add rule' }).click();
    const row = page.locator('tr', { hasText: 'console-rule.test' });
    await row.waitFor();
    expect((await resolveA(gateway.dnsPort, 'www.console-rule.test'))?.rcode).toBe(NXDOMAIN);
    await page.getByLabel('Filter').fill('nothing-like-this');
    await page.getByText('No rule matches the filter.').waitFor();
    await page.getByLabel('Filter').fill('browser');
    await row.waitFor();
    await screenshot(page, 'rules');

    await row.getByRole('button', { name: /^Delete rule/ }).click();
    await row.getByRole('button', { name: /^Confirm deleting/ }).click();
    await page.locator('#status', { hasText: /deleted/ }).waitFor();
    expect(await page.locator('tr', { hasText: 'console-rule.test' }).count()).toBe(0);
    expect((await resolveA(gateway.dnsPort, 'www.console-rule.test'))?.rcode).toBe(0);
    await page.close();
  });

  it('the check box gives the verdict, app and rule', async () => {
    const page = await signedIn(READ_TOKEN);
    await page.getByRole('link', { name: 'Check' }).click();
    await page.getByLabel('Name or IP[:port]').fill('talk-pilsner.kakao.com');
    await page.getByRole('button', { name: 'Check' }).click();
    await page.locator('#check-result', { hasText: 'Blocked' }).waitFor();
    expect(await page.locator('#check-result').textContent()).toContain('kakaotalk, domain:kakao.com (dns layer)');
    // A name that resolves: the chain the DNS path follows, one row per step.
    await page.getByLabel('Name or IP[:port]').fill('www.console-rule.test');
    await page.getByRole('button', { name: 'Check' }).click();
    const table = page.getByRole('table', { name: 'Resolution' });
    await table.waitFor();
    const rows = await table.locator('tbody tr').allTextContents();
    expect(rows).toEqual(['querywww.console-rule.testallow', `address${ANSWER}Aallow`]);
    expect(await page.locator('#check-result').textContent()).toContain('A: NOERROR, allowed');
    await screenshot(page, 'check');
    // An address is checked on the IP layer, without a resolution.
    await page.getByLabel('Name or IP[:port]').fill('147.92.150.1:443');
    await page.getByRole('button', { name: 'Check' }).click();
    await page.locator('#check-result', { hasText: 'cidr:147.92.128.0/17' }).waitFor();
    expect(await page.getByRole('table', { name: 'Resolution' }).count()).toBe(0);
    await page.close();
  });

  it('activity: recent blocks, the rate chart, policy version and store state', async () => {
    const page = await signedIn(READ_TOKEN);
    await page.getByRole('link', { name: 'Activity' }).click();
    await page.getByRole('table', { name: 'Recent blocks' }).waitFor();
    expect(await page.locator('table[aria-label="Recent blocks"] tbody tr', { hasText: 'talk-pilsner.kakao.com' }).count()).toBeGreaterThan(0);
    expect(await page.locator('svg.chart polyline').count()).toBe(2);
    expect(await page.locator('#policy-state').textContent()).toMatch(/Policy version \d+.*store: file, healthy/);
    await screenshot(page, 'activity');
    await page.close();
  });

  it('a configuration change SIGHUP cannot apply shows as restart pending', async () => {
    const original = await readFile(configFile, 'utf8');
    await writeFile(configFile, original.replace('  listen: 127.0.0.1:0\n  upstreams', '  listen: 127.0.0.1:0\n  blockMode: refused\n  upstreams'));
    gateway.child.kill('SIGHUP');
    await waitFor(() => Promise.resolve(gateway.logs.some((l) => l.msg === 'reloaded; a restart is pending')), 5_000, 'the reload');
    const page = await signedIn(READ_TOKEN);
    await page.getByRole('link', { name: 'Activity' }).click();
    await page.locator('#restart-pending').waitFor();
    expect(await page.locator('#restart-pending').textContent()).toContain('dns.blockMode');
    await page.close();
    await writeFile(configFile, original);
  });

  it('a read-only token sees everything but cannot edit', async () => {
    const page = await signedIn(READ_TOKEN);
    await expect.poll(() => page.locator('input[role="switch"]:disabled').count()).toBe(5);
    expect(await page.locator('#who').textContent()).toContain('read only');
    await page.getByRole('link', { name: 'Rules' }).click();
    await page.getByRole('table', { name: 'Rules' }).waitFor();
    expect(await page.getByRole('form', { name: 'Add a rule' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Delete/ }).count()).toBe(0);
    await page.close();
  });

  it('the apps view says which catalog is in force: the bundled one, with no updates configured', async () => {
    const version = Number(/^version: (\d+)$/m.exec(await readFile(CATALOG_YAML, 'utf8'))?.[1]);
    expect(version).toBeGreaterThan(0);
    expect(((await api(gateway.adminUrl, 'GET', '/v1/catalog')).body as { version: number }).version).toBe(version);
    // Even a token that may edit gets no refresh button when there is nothing to refresh from.
    const page = await signedIn(WRITE_TOKEN);
    const line = page.locator('#catalog-status');
    await line.waitFor();
    expect(await line.textContent()).toBe(`Catalog ${version} — bundled with this build.`);
    expect(await line.getAttribute('data-origin')).toBe('bundled');
    expect(await page.locator('#catalog-warning').count()).toBe(0);
    expect(await page.locator('#catalog-expired').count()).toBe(0);
    expect(await page.locator('#catalog-refresh').count()).toBe(0);
    await page.close();
  });

  it('a signed catalog shows its source; a refused update shows as a warning while the last good one stays', async () => {
    const bundled = await loadBundledRelease();
    const publisher = ed25519Keys();
    const attacker = ed25519Keys();
    const version = bundled.version + 1;
    const home = join(dir, 'signed');
    await mkdir(home, { recursive: true });
    const pki = await makeTestPki(home, ['127.0.0.1']);
    let served = signedBundle(bundled.documents, { version, key: publisher.privateKey });
    const server = createServer({ cert: await readFile(pki.cert), key: await readFile(pki.key) }, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(served));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/catalog.json`;
    await writeFile(join(home, 'catalog.pub'), publisher.publicPem);
    const catalogLine = `  catalog: { url: "${url}", publicKey: catalog.pub, refresh: 1h, ca: ${pki.ca} }`;
    const signed = await startGateway(await writeGatewayConfig(home, { upstream: upstream.target, extra: ['policy:', catalogLine] }));
    try {
      await waitFor(async () => ((await api(signed.adminUrl, 'GET', '/v1/catalog')).body as { version: number }).version === version, 10_000, 'the signed catalog');
      const page = await signedIn(WRITE_TOKEN, signed.adminUrl);
      const line = page.locator('#catalog-status');
      await line.waitFor();
      const escapedUrl = url.replace(/[.]/g, '\\.');
      expect(await line.textContent()).toMatch(new RegExp(`^Catalog ${version} — signed bundle from ${escapedUrl}, downloaded ${SHOWN_TIME}, expires ${SHOWN_TIME}\\.$`));
      expect(await page.locator('#catalog-warning').count()).toBe(0);

      // The next bundle is signed with another key: the gateway refuses it and keeps the one in force.
      served = signedBundle(bundled.documents, { version: version + 1, key: attacker.privateKey });
      await page.locator('#catalog-refresh').click();
      const warning = page.locator('#catalog-warning');
      await warning.waitFor();
      expect(await warning.textContent()).toMatch(new RegExp(`^Last catalog update refused \\(bad-signature\\): .+; version ${version} stays in force\\.$`));
      expect(await warning.getAttribute('class')).toBe('warning');
      await page.locator('#status.error', { hasText: 'bad-signature' }).waitFor();
      expect(await line.textContent()).toContain(`Catalog ${version} — signed bundle`);
      await screenshot(page, 'catalog-refused');
      await page.close();

      // A read-only token sees the warning but gets no refresh button.
      const viewer = await signedIn(READ_TOKEN, signed.adminUrl);
      await viewer.locator('#catalog-warning').waitFor();
      expect(await viewer.locator('#catalog-refresh').count()).toBe(0);
      await viewer.close();
    } finally {
      await signed.stop('SIGKILL');
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);

  it('a wrong token is refused with words; signing out forgets the token', async () => {
    const page = await browser.newPage();
    await page.goto(`${gateway.adminUrl}/ui/`);
    await page.getByLabel('API token').fill('not-a-valid-token-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#status.error', { hasText: 'not accepted' }).waitFor();
    await page.getByLabel('API token').fill(WRITE_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('article.card').first().waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate<number>('sessionStorage.length')).toBe(0);
    await page.close();
    expect(pageErrors.filter((e) => !/401|Unauthorized/.test(e))).toEqual([]);
  });
});
