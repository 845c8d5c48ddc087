// Speak Easy in a real browser (issue #14), driven by tests/speakeasy_browser.rs.
//
// Two nodes, three members, each member in its own browser context (own cookies): the admin
// and Bob use node A, Carol node B. The admin creates all > ops > cell-a, invites Bob at ops
// (the invite string pasted) and Carol at cell-a (the invite delivered over the bus, across
// nodes). Bob posts in ops: Carol never sees it. Carol posts in cell-a: Bob reads it. A reply
// thread across both nodes renders in order. Hostile text shows as text. The admin removes
// Carol: what is posted in cell-a afterwards never shows on her page. Node B is killed: the
// admin and Bob keep posting through node A. Screenshots of the main pages go to SCREENS.
//
// Configuration comes in $SE_CONFIG (JSON): { admin, bob, carol: login URLs, killPid: node
// B's pid, screens: directory, chromium: path }. Exits non-zero on the first failed check.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const cfg = JSON.parse(process.env.SE_CONFIG);
const T0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
fs.mkdirSync(cfg.screens, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const dialogs = [];
async function member(name, loginUrl) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 800 }, acceptDownloads: true });
  const page = await ctx.newPage();
  page.on('dialog', (d) => { dialogs.push(`${name}: ${d.message()}`); d.dismiss(); });
  if (process.env.SE_TRACE) { page.on('request', (r) => log(name, '>>', r.method(), r.url())); page.on('response', (r) => log(name, '<<', r.status(), r.url())); }
  page.on('pageerror', (e) => { dialogs.push(`${name}: page error ${e.message}`); });
  await page.goto(loginUrl);
  const base = new URL(loginUrl).origin;
  return { name, page, base };
}

async function shot(m, file) {
  await m.page.screenshot({ path: path.join(cfg.screens, file), fullPage: true });
}

// Load `url` until its text contains `text` (bounded); returns the ms it took.
async function waitFor(m, url, text, ms = 90000) {
  const start = Date.now();
  for (;;) {
    await m.page.goto(url);
    const body = await m.page.textContent('main');
    if (body.includes(text)) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`${m.name}: "${text}" not on ${url} after ${ms} ms`);
    await sleep(250);
  }
}

async function neverSees(m, urls, text) {
  for (const u of urls) {
    await m.page.goto(u);
    const body = await m.page.content();
    check(!body.includes(text), `${m.name} does not see "${text}" on ${new URL(u).pathname}`);
  }
}

// The link to a compartment (by its full path text) on the network page.
async function compartmentUrl(m, netUrl, leaf) {
  await m.page.goto(netUrl);
  const href = await m.page.getAttribute(`ul.tree a:text-is("${leaf}")`, 'href');
  return m.base + href;
}

async function newThread(m, compUrl, board, title, text, tau = '') {
  await m.page.goto(compUrl);
  await m.page.fill('input[name=board]', board);
  await m.page.fill('input[name=title]', title);
  await m.page.fill('textarea[name=text]', text);
  if (tau) await m.page.selectOption('form[action$="/post"] select[name=tau]', tau);
  await Promise.all([m.page.waitForURL(/\/t\//), m.page.click('button:has-text("Post to")')]);
  return m.page.url();
}

async function reply(m, threadUrl, toText, text) {
  await m.page.goto(threadUrl);
  const post = m.page.locator('div.post', { hasText: toText }).first();
  await post.locator('summary').click();
  await post.locator('textarea[name=text]').fill(text);
  await Promise.all([m.page.waitForURL(/\/t\//), post.locator('button:has-text("Reply")').click()]);
}

const members = [];
const admin = await member('admin', cfg.admin);
const bob = await member('bob', cfg.bob);
const carol = await member('carol', cfg.carol);
members.push(admin, bob, carol);
try {
check((await admin.page.textContent('h1')).includes('Your networks'), 'admin logged in with the token');

// A second use of the token is refused (it is one-time).
{
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const r = await p.goto(cfg.admin);
  check(r.status() === 401, 'the login token works once only');
  await ctx.close();
}

// The admin starts the network and its tree.
await admin.page.fill('input[name=name]', 'Resistance');
await admin.page.fill('input[name=my_name]', 'Admin');
await Promise.all([admin.page.waitForURL(/\/n\//), admin.page.click('button:has-text("Create network")')]);
const netPath = new URL(admin.page.url()).pathname;
const netUrl = (m) => m.base + netPath;
async function addCompartment(parentLabel, name) {
  await admin.page.goto(netUrl(admin));
  await admin.page.selectOption('select[name=parent]', { label: parentLabel });
  await admin.page.fill('form[action$="/compartment"] input[name=name]', name);
  await Promise.all([admin.page.waitForURL(/\/c\//), admin.page.click('button:has-text("Create")')]);
}
await addCompartment('all', 'ops');
await addCompartment('all › ops', 'cell-a');
await admin.page.goto(netUrl(admin));
check((await admin.page.textContent('ul.tree')).includes('cell-a'), 'admin sees all > ops > cell-a');
await shot(admin, '01-admin-network.png');

// Bob and Carol make pseudonyms for joining.
async function pseudonym(m, name) {
  await m.page.goto(m.base + '/join');
  await m.page.fill('form[action="/join/start"] input[name=my_name]', name);
  await Promise.all([m.page.waitForURL(/\/join$/), m.page.click('button:has-text("Make a pseudonym")')]);
  return (await m.page.textContent('code.id')).trim();
}
const bobId = await pseudonym(bob, 'Bob');
const carolId = await pseudonym(carol, 'Carol');
check(bobId.startsWith('bumpid1') && carolId.startsWith('bumpid1'), 'pseudonym strings shown');
await shot(carol, '02-carol-join.png');

async function invite(id, name, atLabel) {
  await admin.page.goto(netUrl(admin) + '/members');
  await admin.page.fill('input[name=to]', id);
  await admin.page.fill('form[action$="/invite"] input[name=name]', name);
  await admin.page.selectOption('select[name=at]', { label: atLabel });
  await admin.page.click('button:has-text("Make invite")');
  return (await admin.page.textContent('code.invite')).trim();
}
const bobInvite = await invite(bobId, 'Bob', 'all › ops');
check(bobInvite.startsWith('bumpse1:'), 'admin got an invite string for Bob');
check(await admin.page.$eval('img.qr', (i) => i.complete && i.naturalWidth > 0), 'the invite is also shown as a QR image');
await shot(admin, '03-admin-invite.png');
await invite(carolId, 'Carol', 'all › ops › cell-a');

// Bob pastes his invite; Carol's arrives over the bus at node B.
await bob.page.goto(bob.base + '/join');
await bob.page.fill('textarea[name=invite]', bobInvite);
await Promise.all([bob.page.waitForURL(/\/n\//), bob.page.click('button:has-text("Join")')]);
check((await bob.page.textContent('main')).includes('cleared at all › ops'), 'Bob joined at ops by the pasted invite');
const carolJoinMs = await waitFor(carol, carol.base + '/', 'Resistance');
log(`Carol's invite arrived over the bus (node A -> node B) within ${carolJoinMs} ms`);
await carol.page.goto(netUrl(carol));
check((await carol.page.textContent('main')).includes('cleared at all › ops › cell-a'), 'Carol joined at cell-a');
check((await carol.page.textContent('ul.tree')).includes('ops (above your clearance)'), 'Carol sees ops only as the path to her compartment');
await shot(carol, '04-carol-network.png');

// Bob posts in ops, with hostile markup in the body.
const hostile = 'OPS-SECRET-MARKER-1 <script>alert("xss")</script> <a href="javascript:alert(2)">click</a> <img src=x onerror=alert(3)>';
const opsUrlBob = await compartmentUrl(bob, netUrl(bob), 'ops');
const t0 = Date.now();
const bobThread = await newThread(bob, opsUrlBob, 'general', 'Ops plan <b>bold?</b>', hostile);
const opsUrlAdmin = await compartmentUrl(admin, netUrl(admin), 'ops');
await waitFor(admin, opsUrlAdmin, 'Ops plan <b>bold?</b>');
log(`click-to-visible on the admin's page (Tau none, same node): ${Date.now() - t0} ms`);
await waitFor(bob, bobThread, 'OPS-SECRET-MARKER-1');
const seenMs = await waitFor(bob, bobThread, 'seen on 1 peer', 30000);
log(`Bob's post shown as seen on node A's one peer within ${seenMs} ms more`);
const bodyText = await bob.page.textContent('div.post .body');
check(bodyText.includes('<script>alert("xss")</script>'), 'hostile markup shows as text');
check((await bob.page.locator('main script, main img, main a[href^="javascript:"]').count()) === 0, 'no script, image or javascript: link made from a post');
await shot(bob, '05-bob-thread-hostile.png');

// Carol posts in cell-a; Bob (at ops) reads it, across nodes.
const cellUrlCarol = await compartmentUrl(carol, netUrl(carol), 'cell-a');
const t1 = Date.now();
const carolThread = await newThread(carol, cellUrlCarol, 'field', 'Cell report', 'CELL-MARKER-2 all quiet', 'unmixed');
const cellUrlBob = await compartmentUrl(bob, netUrl(bob), 'cell-a');
await waitFor(bob, cellUrlBob + '?board=field', 'Cell report');
log(`click-to-visible on Bob's page (Tau none, node B -> node A): ${Date.now() - t1} ms`);
const carolThreadPath = new URL(carolThread).pathname;

// A reply thread across both nodes renders in order.
await waitFor(admin, admin.base + carolThreadPath, 'CELL-MARKER-2');
await reply(admin, admin.base + carolThreadPath, 'CELL-MARKER-2', 'REPLY-ADMIN-3 copy that');
await waitFor(bob, bob.base + carolThreadPath, 'REPLY-ADMIN-3');
await reply(bob, bob.base + carolThreadPath, 'REPLY-ADMIN-3', 'REPLY-BOB-4 moving');
await waitFor(carol, carol.base + carolThreadPath, 'REPLY-BOB-4');
const order = await carol.page.$$eval('div.post', (ps) => ps.map((p) => [p.className, p.querySelector('.body')?.textContent ?? '']));
const idx = (s) => order.findIndex(([, t]) => t.includes(s));
check(idx('CELL-MARKER-2') === 0 && idx('REPLY-ADMIN-3') === 1 && idx('REPLY-BOB-4') === 2, 'the thread renders root, reply, reply-to-reply in order');
check(order[1][0].includes('d1') && order[2][0].includes('d2'), 'replies are indented by depth');
await shot(carol, '06-carol-thread.png');
await shot(bob, '07-bob-thread.png');

// Carol attaches a file to her thread; Bob downloads it byte for byte, never rendered.
const fileBody = 'ATTACH-MARKER-9 <script>alert(4)</script>\n';
await carol.page.goto(carol.base + carolThreadPath);
await carol.page.setInputFiles('input[type=file]', { name: 'plan <v2>.txt', mimeType: 'text/html', buffer: Buffer.from(fileBody) });
await Promise.all([carol.page.waitForURL(/\/t\//), carol.page.click('button:has-text("Attach")')]);
await waitFor(bob, bob.base + carolThreadPath, 'plan <v2>.txt');
const [download] = await Promise.all([
  bob.page.waitForEvent('download'),
  bob.page.click('a.file'),
]);
const dlPath = await download.path();
check(fs.readFileSync(dlPath, 'utf8') === fileBody, 'the attachment downloads byte for byte');
check(download.suggestedFilename().includes('plan'), `the download keeps its name (${download.suggestedFilename()})`);
await bob.page.goto(bob.base + carolThreadPath);
await shot(bob, '07c-bob-attachment.png');

// A private message from Bob (node A) to Carol (node B), and her answer.
await bob.page.goto(netUrl(bob) + '/dm');
const carolOpt = await bob.page.$eval('select[name=to]', (sel) =>
  [...sel.options].find((o) => o.textContent.startsWith('Carol')).value);
await bob.page.selectOption('select[name=to]', carolOpt);
await bob.page.fill('textarea[name=text]', 'DM-MARKER-7 meet at the usual place');
const t3 = Date.now();
await Promise.all([bob.page.waitForURL(/\/dm\//), bob.page.click('button:has-text("Send privately")')]);
await waitFor(carol, netUrl(carol) + '/dm', 'DM-MARKER-7');
log(`private message click-to-visible on Carol's page (node A -> node B): ${Date.now() - t3} ms`);
const convPath = await carol.page.getAttribute('#conversations a', 'href');
await carol.page.goto(carol.base + convPath);
await carol.page.fill('textarea[name=text]', 'DM-REPLY-8 agreed');
await Promise.all([carol.page.waitForURL(/\/dm\//), carol.page.click('button:has-text("Send privately")')]);
await waitFor(carol, carol.base + convPath, 'DM-REPLY-8');
await shot(carol, '07b-carol-private.png');
await bob.page.goto(netUrl(bob) + '/dm');
const bobConv = await bob.page.getAttribute('#conversations a', 'href');
await waitFor(bob, bob.base + bobConv, 'DM-REPLY-8');
check(true, 'Bob reads Carol\'s private answer');
await neverSees(admin, [netUrl(admin) + '/dm', netUrl(admin) + '/search?q=DM-MARKER'], 'DM-MARKER-7');

// Carol never sees Bob's ops post.
const carolUrls = [carol.base + '/', netUrl(carol), cellUrlCarol, carol.base + new URL(bobThread).pathname,
  netUrl(carol) + '/search?q=OPS-SECRET', carol.base + new URL(opsUrlBob).pathname];
await neverSees(carol, carolUrls, 'OPS-SECRET-MARKER-1');

// The admin removes Carol; what is posted in cell-a after that never shows on her page.
await admin.page.goto(netUrl(admin) + '/members');
await shot(admin, '08-admin-members.png');
const row = admin.page.locator('tr', { hasText: 'Carol' });
await Promise.all([admin.page.waitForURL(/\/members$/), row.locator('button:has-text("Remove")').click()]);
check((await admin.page.locator('tr', { hasText: 'Carol' }).textContent()).includes('removed'), 'Carol is shown removed');
await admin.page.goto(netUrl(admin));
check((await admin.page.textContent('ul.tree')).match(/cell-a\s*\d*\s*epoch 1/) !== null, 'cell-a moved to epoch 1');
const cellUrlAdmin = await compartmentUrl(admin, netUrl(admin), 'cell-a');
await newThread(admin, cellUrlAdmin, 'field', 'After removal', 'AFTER-REMOVAL-MARKER-5');
await waitFor(bob, cellUrlBob + '?board=field', 'After removal');
check(true, 'Bob reads cell-a at its new epoch');
await sleep(3000);
await neverSees(carol, [carol.base + '/', cellUrlCarol + '?board=field', netUrl(carol) + '/search?q=AFTER-REMOVAL'], 'After removal');
await neverSees(carol, [netUrl(carol) + '/search?q=AFTER-REMOVAL'], 'AFTER-REMOVAL-MARKER-5');

// Kill node B: the admin and Bob keep posting through node A.
process.kill(cfg.killPid, 'SIGKILL');
log('node B killed');
const t2 = Date.now();
await newThread(bob, opsUrlBob, 'general', 'Still here', 'AFTER-KILL-MARKER-6');
await waitFor(admin, opsUrlAdmin, 'Still here');
log(`after node B died: Bob's post visible to the admin in ${Date.now() - t2} ms`);
await admin.page.goto(admin.base + '/');
await shot(admin, '09-admin-dashboard.png');
await carol.page.goto(carol.base + '/settings');
check((await carol.page.textContent('main')).includes('The last post went out unmixed'), 'settings say the last post went out unmixed');
await admin.page.goto(admin.base + '/settings');
check((await admin.page.textContent('main')).includes('Keys at rest'), 'the settings page shows where keys are kept');
await shot(admin, '10-admin-settings.png');

} catch (e) {
  // Show what each member's page says, and keep a picture of it.
  for (const m of members) {
    try {
      await shot(m, `failed-${m.name}.png`);
      log(`${m.name} at ${m.page.url()}:`, (await m.page.textContent('body')).slice(0, 600));
    } catch (_) { /* the page may be gone */ }
  }
  await browser.close();
  throw e;
}
check(dialogs.length === 0, `no dialog or page error (${dialogs.join('; ')})`);
await browser.close();
log('all browser checks passed');
