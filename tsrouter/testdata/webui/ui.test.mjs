// Drives the router's web UI in Debian's headless Chromium through
// playwright-core (never a browser download). Run by TestWebUIBrowser
// (tsrouter/webui_browser_test.go) inside a loopback-only network
// namespace, against the real router and a fake serve. Checks that need a
// plain HTTP client (using a key the UI created) are asked of the Go test:
// a line "CHECK <json>" on stdout, answered "ok" or a reason on stdin.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';

const base = process.env.ANVIL_BASE;
const credential = process.env.ANVIL_CREDENTIAL;
const shots = process.env.ANVIL_SHOTS;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function goCheck(req) {
  console.log('CHECK ' + JSON.stringify(req));
  const { value } = await lines.next();
  if (value !== 'ok') throw new Error('Go check ' + JSON.stringify(req) + ' failed: ' + value);
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function step(name) { console.log('STEP ' + name); }

const consoleErrors = [];
let expectErrors = false; // forged requests and the CSP probe log errors on purpose
const profile = mkdtempSync(join(tmpdir(), 'anvil-webui-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
  viewport: { width: 1280, height: 900 },
});
const page = context.pages()[0] || await context.newPage();
page.on('console', (m) => { if (m.type() === 'error' && !expectErrors) consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push('pageerror: ' + e.message));

async function ready() {
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
}
async function shoot(name) {
  for (const [label, width] of [['desktop', 1280], ['phone', 390]]) {
    await page.setViewportSize({ width, height: label === 'phone' ? 844 : 900 });
    await page.waitForTimeout(150);
    await page.screenshot({ path: join(shots, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

try {
  step('login page');
  await page.goto(base + '/ui/');
  await page.waitForURL('**/webui/login');
  await shoot('login');
  await page.fill('#credential', 'wrong-credential');
  expectErrors = true; // the 401 page load is logged by Chromium
  await page.click('#login');
  await page.waitForSelector('#login-error');
  expectErrors = false;
  await page.fill('#credential', credential);
  await page.click('#login');
  await page.waitForURL('**/webui/dashboard');
  await ready();

  step('nothing secret in the browser');
  const stored = await page.evaluate(() => ({
    local: JSON.stringify(Object.assign({}, localStorage)), session: JSON.stringify(Object.assign({}, sessionStorage)),
    cookie: document.cookie,
  }));
  assert(stored.local === '{}' && stored.session === '{}', 'web storage is not empty: ' + JSON.stringify(stored));
  assert(!stored.cookie.includes('anvil_ui_session'), 'the session cookie is readable by scripts');
  for (const v of Object.values(stored)) assert(!v.includes(credential), 'the credential is in the browser: ' + JSON.stringify(stored));
  const cookies = await context.cookies();
  const sess = cookies.find((c) => c.name === 'anvil_ui_session');
  assert(sess && sess.httpOnly && sess.sameSite === 'Strict' && /^[0-9a-f]{64}$/.test(sess.value), 'session cookie: ' + JSON.stringify(sess));
  assert(!cookies.some((c) => c.value.includes(credential)), 'a cookie holds the credential');

  step('every page renders');
  for (const p of ['dashboard', 'usage', 'my', 'keys', 'tiers', 'requests', 'guardrails', 'config']) {
    await page.goto(base + '/webui/' + p);
    await ready();
    const h1 = await page.textContent('h1');
    assert(h1 && h1.length > 0, p + ': no heading');
    if (p === 'dashboard') {
      await page.waitForSelector('#tier-table tbody tr');
      await page.waitForTimeout(10500); // two live refreshes, so the charts have a line
      const kpi = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#kpis div')].map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])));
      assert(/^[0-9.,]+$/.test(kpi['TTFT p50 ms'] || '') && /^[0-9.,]+$/.test(kpi['Latency p95 ms'] || ''), 'dashboard: latency and TTFT percentiles missing: ' + JSON.stringify(kpi));
    }
    // Accessibility: every control has a label, and Tab reaches the
    // skip link first.
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label')).map((e) => e.id || e.name));
    assert(unlabelled.length === 0, p + ': controls without a label: ' + unlabelled);
    await page.keyboard.press('Tab');
    assert(await page.evaluate(() => document.activeElement && document.activeElement.className === 'skip'), p + ': Tab does not reach the skip link first');
    await page.evaluate(() => document.activeElement.blur());
    if (p === 'guardrails') {
      const g = await page.textContent('#guard-recent tbody');
      assert(g.includes('masked') && g.includes('pii') && !(await page.content()).includes('pat@example.com'), 'guardrails: no masked pii count, or the text shown: ' + g);
    }
    if (p === 'config') assert((await page.textContent('#config-hash')).length > 0, 'config: no hash');
    await shoot(p);
  }

  if (await page.$('body[data-features~="usage"]')) {
    step('usage by key, drill-down and CSV');
    await page.goto(base + '/webui/usage');
    await ready();
    await page.selectOption('#group_by', 'key');
    await page.click('#usage-form button[type=submit]');
    await page.waitForSelector('#usage-table tr[data-group="key-traffic"]');
    await page.click('#usage-table tr[data-group="key-traffic"] button');
    await page.waitForSelector('body[data-drilled="key-traffic"]');
    const csv = await page.evaluate(() => fetch(document.getElementById('csv').getAttribute('href')).then((r) => r.text()));
    assert(csv.startsWith('group,t,requests'), 'CSV download: ' + csv.slice(0, 100));
    await shoot('usage-by-key');
  } else {
    step('usage accounting is not in this build: its pages say so');
    await page.goto(base + '/webui/usage');
    await ready();
    assert((await page.textContent('#status')).includes('not enabled'), 'usage page does not say usage accounting is not enabled');
  }

  step('create, rotate and disable a key');
  await page.goto(base + '/webui/keys');
  await ready();
  await page.fill('#kf-id', 'ui-key');
  await page.fill('#kf-user', 'ui-user');
  await page.fill('#kf-org', 'ui-org');
  await page.click('#kf-submit');
  await page.waitForSelector('#new-key:not([hidden])');
  const created = (await page.textContent('#new-key-value')).trim();
  assert(created.length > 20, 'no key shown after create');
  await shoot('keys-created');
  await goCheck({ key: created, want: 200 });
  await page.click('#new-key-done');
  assert(!(await page.textContent('#key-table')).includes(created), 'the key list shows the full key');
  await page.click('tr[data-key="ui-key"] button[data-action="rotate"]');
  await page.waitForFunction((old) => { const v = document.querySelector('#new-key-value').textContent; return v && v !== old; }, created);
  const rotated = (await page.textContent('#new-key-value')).trim();
  await goCheck({ key: created, want: 401 });
  await goCheck({ key: rotated, want: 200 });
  await page.click('#new-key-done');
  await page.click('tr[data-key="ui-key"] button[data-action="disable"]');
  await page.waitForSelector('tr[data-key="ui-key"] button[data-action="enable"]');
  await goCheck({ key: rotated, want: 401 });
  const after = await page.evaluate(() => JSON.stringify(Object.assign({}, localStorage, sessionStorage)) + document.cookie);
  assert(!after.includes(created) && !after.includes(rotated), 'a key landed in browser storage');

  step('quiesce and readmit a tier');
  await page.goto(base + '/webui/tiers');
  await ready();
  await page.click('tr[data-tier="local-a"] button[data-action="quiesce"]');
  await page.waitForSelector('#confirm:not([hidden])');
  const dry = await page.textContent('#dry-run');
  assert(dry.includes('"dry_run": true') && dry.includes('"applied": false'), 'dry run not shown: ' + dry);
  await shoot('tiers-confirm');
  await page.click('#confirm-yes');
  await page.waitForSelector('tr[data-tier="local-a"] td[data-state="quiesced"]');
  await goCheck({ tier: 'local-a', state: 'quiesced' });
  step('drain the quiesced tier: the preview says what it will do');
  await page.click('tr[data-tier="local-a"] button[data-action="drain"]');
  await page.waitForSelector('#confirm:not([hidden])');
  const preview = await page.textContent('#dry-run');
  assert(preview.includes('waits up to 30 s for 0 in-flight'), 'drain preview: ' + preview);
  await shoot('tiers-drain-confirm');
  await page.click('#confirm-yes');
  await page.waitForSelector('#applied:not([hidden])');
  const drained = await page.textContent('#applied-result');
  assert(drained.includes('"drained": true'), 'drain result: ' + drained);
  await page.click('tr[data-tier="local-a"] button[data-action="readmit"]');
  await page.waitForSelector('#confirm:not([hidden])');
  await page.click('#confirm-yes');
  await page.waitForSelector('tr[data-tier="local-a"] td[data-state="admitting"]');
  await goCheck({ tier: 'local-a', state: 'admitting' });

  step('forged writes are refused');
  expectErrors = true;
  const noToken = await page.evaluate(() => fetch('/v1/admin/transition', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ action: 'quiesce', tier_id: 'local-a', confirm: true, dry_run: false }),
  }).then((r) => r.status));
  assert(noToken === 403, 'a same-origin POST without the CSRF token got ' + noToken);
  step('cross-site form');
  // A page of another origin (about:blank's opaque one) posts a form at
  // the admin API: SameSite=Strict keeps the cookie home, and the Origin
  // check would refuse it anyway.
  await page.goto('about:blank');
  await page.setContent(`<form id="f" method="post" action="${base}/v1/admin/transition" enctype="text/plain">
    <input name='{"action":"quiesce","tier_id":"local-a","confirm":true,"dry_run":false,"x":"' value='"}'></form>`, { timeout: 15000 });
  const [forged] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/admin/transition'), { timeout: 15000 }),
    page.evaluate(() => document.getElementById('f').submit()),
  ]);
  assert(forged.status() === 401 || forged.status() === 403, 'the cross-site form POST got ' + forged.status());
  await page.waitForURL('**/v1/admin/transition', { waitUntil: 'load' });
  await page.goto(base + '/webui/tiers');
  await ready();
  await goCheck({ tier: 'local-a', state: 'admitting' });

  step('the CSP blocks an inline script');
  const csp = await page.evaluate(() => new Promise((resolve) => {
    window.__inlineRan = false;
    document.addEventListener('securitypolicyviolation', (e) => resolve({ directive: e.violatedDirective, ran: window.__inlineRan }), { once: true });
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true';
    document.body.appendChild(s);
    setTimeout(() => resolve({ directive: null, ran: window.__inlineRan }), 3000);
  }));
  assert(csp.directive && csp.directive.startsWith('script-src') && csp.ran === false, 'inline script not blocked: ' + JSON.stringify(csp));
  expectErrors = false;

  step('logout');
  await page.click('#logout');
  await page.waitForURL('**/webui/login');
  expectErrors = true;
  const afterLogout = await page.evaluate(() => fetch('/v1/admin/transition').then((r) => r.status));
  expectErrors = false;
  assert(afterLogout === 401, 'the admin API after logout answered ' + afterLogout);

  assert(consoleErrors.length === 0, 'console errors: ' + JSON.stringify(consoleErrors));
  console.log('WEBUI OK');
} catch (e) {
  console.log('WEBUI FAIL ' + e.stack);
  console.log('console errors: ' + JSON.stringify(consoleErrors));
  try { await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }); } catch (_) { /* best effort */ }
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(process.exitCode || 0);
}
