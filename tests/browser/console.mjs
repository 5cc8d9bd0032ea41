// The browser console of `hookline serve`, driven in headless Chromium:
// conversations on a sync, a polling, an asynchronous and a v1 instance,
// checked against what the page shows and what this script's own receiver
// of POST_URL deliveries and event webhooks saw.
//
// node tests/browser/console.mjs HOOKLINE_BINARY [--screenshot PATH]
// Environment: PLAYWRIGHT_DIR (where playwright-core is installed),
// CHROMIUM (the browser's executable).

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const { chromium } = createRequire(join(process.env.PLAYWRIGHT_DIR, "/"))("playwright-core");
const [binary, flag, screenshot] = process.argv.slice(2);
assert.ok(binary, "usage: console.mjs HOOKLINE_BINARY [--screenshot PATH]");
const WAIT = 15_000;

// What the receiver was sent: { path, headers, body }.
const received = [];
const receiver = http.createServer((request, response) => {
  let raw = "";
  request.on("data", (chunk) => (raw += chunk));
  request.on("end", () => {
    const url = new URL(request.url, "http://receiver");
    if (url.pathname === "/weather") {
      // A call still running: the polling instance answers with a pollId, then polls.
      setTimeout(() => response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ temp: 21 })), 1500);
      return;
    }
    const body = raw ? JSON.parse(raw) : null;
    received.push({ path: url.pathname, headers: request.headers, body });
    // dave's event webhooks keep failing: the console shows how.
    const failing = url.pathname === "/events" && body?.userId === "dave";
    response.writeHead(failing ? 500 : url.pathname === "/post" ? 204 : 200).end();
  });
});
const receiverPort = await listen(receiver);
const receiverUrl = `http://127.0.0.1:${receiverPort}`;

const dir = mkdtempSync(join(tmpdir(), "hookline-console-"));
const bots = join(dir, "console-bot.yaml");
const definition = readFileSync(new URL("console-bot.yaml", import.meta.url), "utf8");
writeFileSync(bots, definition.replaceAll("RECEIVER", receiverUrl));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = spawn(binary, ["serve", "--addr", `127.0.0.1:${port}`, "--bots", bots, "--files-dir", join(dir, "files")], {
  env: { ...process.env, HOOKLINE_LOG: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
let browser;
try {
  await until(async () => (await fetch(`${base}/console`).catch(() => null))?.ok, "the server to start");
  await guarded();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(`${base}/console`);
  await page.waitForSelector("body[data-ready=true]");
  await syncConversation(page);
  if (flag === "--screenshot") {
    await page.screenshot({ path: screenshot });
    console.log(`ok - screenshot in ${screenshot}`);
  }
  await polledConversation(page);
  await asyncConversation(page);
  await failingDeliveries(page);
  await v1Conversation(page);
  assert.deepEqual(problems, [], "no script error on the page");
  console.log("ok - the console showed every conversation");
} finally {
  await browser?.close();
  // Nothing to keep: dave's deliveries would hold a graceful stop.
  server.kill("SIGKILL");
  receiver.close();
  rmSync(dir, { recursive: true, force: true });
}

// The console's API is for this machine's pages only.
async function guarded() {
  assert.equal((await fetch(`${base}/console/api/bots`)).status, 403, "no dev header: refused");
  const other = await rawGet(`/console/api/bots`, { host: "rebound.example", "x-hookline-dev": "1" });
  assert.equal(other, 403, "another host name (DNS rebinding): refused");
  const bots = await (await fetch(`${base}/console/api/bots`, { headers: { "x-hookline-dev": "1" } })).json();
  assert.deepEqual(bots.bots.map((b) => b.id), ["st-console"]);
  console.log("ok - the console's API refuses requests that may come from elsewhere");
}

async function begin(page, instance, user) {
  await page.selectOption("#bot", "st-console");
  await page.selectOption("#instance", instance);
  await page.fill("#user", user);
  await page.click("#start");
  await page.waitForSelector(`#status:has-text("${instance}")`);
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

function bubble(page, text) {
  return page.locator("#chat .bubble.bot", { hasText: text });
}

function exchanges(page) {
  return page.locator("#exchanges").innerText();
}

async function syncConversation(page) {
  await begin(page, "webchat", "alice");
  await bubble(page, "Welcome, alice!").waitFor();
  await say(page, "menu");
  const buttons = page.locator("#chat [data-template=button] button");
  await buttons.first().waitFor();
  assert.deepEqual(await buttons.allInnerTexts(), ["Weather", "Form"]);
  const links = page.locator("#chat [data-template=button] a");
  assert.deepEqual(await links.evaluateAll((all) => all.map((a) => [a.textContent, a.href])), [["Docs", "https://docs.example/hookline"]]);
  await buttons.filter({ hasText: "Form" }).click();
  const form = page.locator("#chat form.bot-form");
  await form.waitFor();
  assert.equal(await form.locator("[name=name]").inputValue(), "alice", "prefilled");
  await form.locator("[name=guests]").fill("4");
  await form.locator("[name=seating]").selectOption("terrace");
  await form.locator("button[type=submit]").click();
  await bubble(page, "Booked for alice: 4 guests, terrace").waitFor();
  const raw = await exchanges(page);
  assert.match(raw, /"type": "formData"/, "the form's request, as JSON");
  assert.match(raw, /"componentId": "guests",\s+"input": "4"/);
  assert.match(raw, /← 200 POST \/chatbot\/v2\/webhook\/st-console\/hookInstance\/webchat/);
  console.log("ok - buttons and a form, with each request and answer as JSON");

  await say(page, "receipt");
  await bubble(page, "Attach the receipt.").waitFor();
  const receipt = Buffer.from("coffee 3.50\n");
  await page.setInputFiles("#file", { name: "receipt.txt", mimeType: "text/plain", buffer: receipt });
  await bubble(page, `Got receipt.txt (${receipt.length} bytes)`).waitFor();
  assert.match(await exchanges(page), /POST \/api\/attachments\/file\/st-console\/rtm[\s\S]*"fileId"/);
  console.log("ok - a file uploaded and sent");

  // Every event webhook the receiver took for alice, and no one else's, is listed.
  const theirs = () => received.filter((r) => r.path === "/events" && r.body.userId === "alice");
  await until(async () => (await page.locator("#deliveries [data-kind=event]").count()) === theirs().length && theirs().length >= 10, "alice's event webhooks in the console");
  const listed = await page.locator("#deliveries").innerText();
  for (const r of theirs()) assert.ok(listed.includes(r.headers["webhook-id"]), `${r.headers["webhook-id"]} listed`);
  assert.ok(theirs().every((r) => r.headers["webhook-signature"]?.startsWith("v1,")), "signed");
  console.log(`ok - ${theirs().length} event webhooks of the conversation listed`);
}

async function polledConversation(page) {
  await begin(page, "polling", "bob");
  await bubble(page, "Welcome, bob!").waitFor();
  await say(page, "weather");
  await bubble(page, "Which city?").waitFor();
  await say(page, "Paris");
  await bubble(page, "Paris: 21 degrees").waitFor();
  const raw = await exchanges(page);
  assert.match(raw, /"pollId": "\w+"/, "the answer's pollId");
  assert.match(raw, /→ GET \/chatbot\/v2\/webhook\/st-console\/hookInstance\/polling\/poll\/\w+/, "the polls");
  await onlyTheirs(page, "bob");
  console.log("ok - a polled answer followed to its end");
}

async function asyncConversation(page) {
  await begin(page, "async", "carol");
  await bubble(page, "Welcome, carol!").waitFor();
  await say(page, "menu");
  await page.locator("#chat [data-template=button] button", { hasText: "Weather" }).click();
  await bubble(page, "Which city?").waitFor();
  const posts = () => received.filter((r) => r.path === "/post" && r.body.to === "carol");
  await until(async () => (await page.locator("#deliveries [data-kind=postUrl]").count()) === posts().length && posts().length >= 6, "carol's POST_URL deliveries in the console");
  const listed = await page.locator("#deliveries").innerText();
  assert.match(listed, /postUrl msg_\S+ → http:\/\/127\.0\.0\.1:\d+\/post 204 Which city\?/);
  await onlyTheirs(page, "carol");
  assert.equal(await page.locator("#chat .bubble.note", { hasText: "acknowledged" }).count(), 3);
  console.log("ok - an asynchronous instance's replies shown from its POST_URL deliveries");

  // Started again, the conversation shows only what comes after.
  const before = posts().length;
  await begin(page, "async", "carol");
  await bubble(page, "Welcome, carol!").waitFor();
  await until(async () => (await page.locator("#deliveries [data-kind=postUrl]").count()) === posts().length - before && posts().length > before, "the new welcome's deliveries");
  await pause(2500);
  assert.equal(await bubble(page, "Welcome, carol!").count(), 1, "the earlier welcome is not shown again");
  assert.equal(await bubble(page, "Which city?").count(), 0);
  assert.equal(await page.locator("#deliveries [data-kind=postUrl]").count(), posts().length - before);
  console.log("ok - a conversation started again shows only what comes after");
}

async function failingDeliveries(page) {
  await begin(page, "webchat", "dave");
  await bubble(page, "Welcome, dave!").waitFor();
  const failed = page.locator("#deliveries [data-kind=event] .bad", { hasText: "failed: 3 attempts failed, the last with status 500" });
  await failed.first().waitFor();
  console.log("ok - a failing event webhook shown with its reason");
}

async function v1Conversation(page) {
  await begin(page, "ivr", "erin");
  await say(page, "menu");
  await bubble(page, "Pick one").waitFor();
  assert.match(await exchanges(page), /→ POST \/chatbot\/hooks\/st-console\/hookInstance\/ivr[\s\S]*"text": "menu"/);
  // One message a minute: of two more, at least one is in the same minute as the one before.
  const answers = page.locator("#exchanges details[data-direction=answer]");
  for (const text of ["two", "three"]) {
    const before = await answers.count();
    await say(page, text);
    await until(async () => (await answers.count()) > before, `the answer to ${text}`);
  }
  await page.locator("#chat .bubble.error", { hasText: "429: Too Many requests" }).first().waitFor();
  console.log("ok - a v1 instance, and a refusal shown as its status and message");
}

// The deliveries listed are the user's own, each event webhook the receiver took for them.
async function onlyTheirs(page, user) {
  const events = () => received.filter((r) => r.path === "/events" && r.body.userId === user);
  const listed = () => page.$$eval("#deliveries details", (entries) => entries.map((e) => ({ kind: e.dataset.kind, body: JSON.parse(e.querySelector("pre").textContent) })));
  await until(async () => (await listed()).filter((d) => d.kind === "event").length === events().length && events().length > 0, `${user}'s event webhooks in the console`);
  for (const { body } of await listed()) assert.equal(body.userId ?? body.to, user, `only ${user}'s deliveries: ${JSON.stringify(body)}`);
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

async function freePort() {
  const probe = http.createServer();
  const port = await listen(probe);
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(check, what) {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > WAIT) throw new Error(`timed out waiting for ${what}`);
    await pause(100);
  }
}

function rawGet(path, headers) {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path, headers }, (response) => {
      response.resume();
      resolve(response.statusCode);
    }).on("error", reject);
  });
}
