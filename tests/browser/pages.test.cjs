// Headless Chromium (Debian's, driven by playwright-core) opens the links from the mails moto
// received, submits the pages' forms and reads the result, with no JavaScript on the pages.
// Run by infra/api-tests.sh with BASE_URL (the local server) and MOTO_URL set.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { chromium } = require(path.resolve(__dirname, '../../infra/node_modules/playwright-core'));

const BASE = process.env.BASE_URL;
const MOTO = process.env.MOTO_URL;
const PASSWORD = 'violet-tractor-sunrise-42';
const NEW_PASSWORD = 'amber-lantern-orchard-77';

async function api(method, p, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(BASE + p, { method, headers, body: body && JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function linkFromMail(to, subjectPart) {
  for (let i = 0; i < 50; i++) {
    const data = await (await fetch(`${MOTO}/moto-api/data.json`)).json();
    const mails = data.ses.Message.filter((m) => m.destinations.ToAddresses.includes(to) && m.subject.includes(subjectPart));
    if (mails.length) {
      const m = mails[mails.length - 1].body.match(/href="([^"]+)"/);
      return m[1].replace(/&amp;/g, '&');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no "${subjectPart}" mail to ${to}`);
}

async function withPage(fn) {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    const problems = [];
    // Expected 4xx result pages log "Failed to load resource"; policy violations must not occur.
    page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) problems.push(m.text()); });
    await fn(page);
    assert.deepEqual(problems, [], 'no CSP violations');
  } finally {
    await browser.close();
  }
}

async function openLink(page, link, expectedPath) {
  assert.ok(link.startsWith(`${BASE}${expectedPath}?token=`), link);
  const resp = await page.goto(link);
  assert.equal(resp.status(), 200);
  const h = resp.headers();
  assert.equal(h['referrer-policy'], 'no-referrer');
  assert.match(h['content-security-policy'], /default-src 'none'/);
  assert.match(h['content-security-policy'], /form-action 'self'/);
}

test('verification link: open, type the sign-up password, see the result, sign in', async () => {
  const email = `browser-${Date.now()}@example.com`;
  assert.equal((await api('POST', '/auth/signup', { email, password: PASSWORD })).status, 202);
  const link = await linkFromMail(email, 'verify');
  await withPage(async (page) => {
    await openLink(page, link, '/auth/verify-email');
    // A password that is not the sign-up's: refused, and the link is not spent.
    await page.fill('input[name=password]', 'not-the-sign-up-password-1');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.match(await page.textContent('body'), /invalid, already used or expired/);
    assert.equal((await api('POST', '/auth/login', { email, password: PASSWORD })).status, 401, 'still unverified');
  });
  // The login mailed a fresh link, which replaces the first: the newest one verifies.
  let newest = link;
  for (let i = 0; i < 50 && newest === link; i++) {
    newest = await linkFromMail(email, 'verify');
    if (newest === link) await new Promise((r) => setTimeout(r, 100));
  }
  assert.notEqual(newest, link, 'a fresh link was mailed');
  await withPage(async (page) => {
    await openLink(page, newest, '/auth/verify-email');
    await page.fill('input[name=password]', PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.match(await page.textContent('h1'), /verified/i);
  });
  assert.equal((await api('POST', '/auth/login', { email, password: PASSWORD })).status, 200);
});

test('reset link: open, type a new password, submit, sign in with it', async () => {
  const email = `browser-reset-${Date.now()}@example.com`;
  await api('POST', '/auth/signup', { email, password: PASSWORD });
  const verifyLink = new URL(await linkFromMail(email, 'verify'));
  await api('POST', '/auth/verify-email', { token: verifyLink.searchParams.get('token'), password: PASSWORD });
  assert.equal((await api('POST', '/auth/forgot-password', { email })).status, 202);
  const link = await linkFromMail(email, 'reset');
  await withPage(async (page) => {
    await openLink(page, link, '/auth/reset-password');
    await page.fill('input[name=new_password]', NEW_PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.match(await page.textContent('h1'), /password changed/i);
    // The same link a second time: the token is spent.
    await page.goto(link);
    await page.fill('input[name=new_password]', 'another-long-passphrase-9');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.match(await page.textContent('body'), /invalid, already used or expired/);
  });
  assert.equal((await api('POST', '/auth/login', { email, password: NEW_PASSWORD })).status, 200);
  assert.equal((await api('POST', '/auth/login', { email, password: PASSWORD })).status, 401);
});

test('email-change link: open, confirm, sign in with the new address', async () => {
  const email = `browser-move-${Date.now()}@example.com`;
  const newEmail = `browser-moved-${Date.now()}@example.com`;
  await api('POST', '/auth/signup', { email, password: PASSWORD });
  const verifyLink = new URL(await linkFromMail(email, 'verify'));
  await api('POST', '/auth/verify-email', { token: verifyLink.searchParams.get('token'), password: PASSWORD });
  const t = (await api('POST', '/auth/login', { email, password: PASSWORD })).json;
  const r = await api('POST', '/auth/change-email', { current_password: PASSWORD, new_email: newEmail }, t.access_token);
  assert.equal(r.status, 202);
  const link = await linkFromMail(newEmail, 'confirm your new email');
  await withPage(async (page) => {
    await openLink(page, link, '/auth/confirm-email-change');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.match(await page.textContent('h1'), /changed/i);
  });
  assert.equal((await api('POST', '/auth/login', { email: newEmail, password: PASSWORD })).status, 200);
});
