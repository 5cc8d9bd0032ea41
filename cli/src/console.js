"use strict";
// Talks to the bot through the channel's own endpoints, as a client would;
// the console's API (the bots, a token, the deliveries) asks for the dev header.
const DEV = { "x-hookline-dev": "1" };
const POLL_EVERY_MS = 1000;
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
let bots = [];
// The conversation: { bot, instance, user, app, token, lastDelivery, shown }.
// Each start makes a new one; work begun for an earlier one stops at its next step.
let talk = null;

function setStatus(text) { $("status").textContent = text; }

function scrolled(pane, node) {
  pane.append(node);
  pane.scrollTop = pane.scrollHeight;
  return node;
}

function json(value) { return JSON.stringify(value, null, 2); }

function pause(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

// One request or answer in the raw panel.
function logExchange(direction, line, body) {
  const summary = el("summary", { textContent: `${direction} ${line}` });
  const details = el("details", { className: "entry", open: true }, summary, el("pre", { textContent: typeof body === "string" ? body : json(body) }));
  details.dataset.direction = direction === "→" ? "request" : "answer";
  scrolled($("exchanges"), details);
}

// A request of `conversation` to the channel, logged both ways while it is
// the current one; resolves to {status, body}.
async function exchange(conversation, method, path, body, shown) {
  if (conversation !== talk) return { status: 0, body: "the conversation was restarted" };
  logExchange("→", `${method} ${path}`, shown ?? body ?? "");
  const init = { method, headers: { Authorization: `bearer ${conversation.token}` } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let answer;
  try { answer = JSON.parse(text); } catch { answer = text; }
  if (conversation === talk) logExchange("←", `${response.status} ${method} ${path}`, answer);
  return { status: response.status, body: answer };
}

function bubble(text, who = "bot") {
  return scrolled($("chat"), el("div", { className: `bubble ${who}`, textContent: text }));
}

function failed(answer) {
  const why = answer.body?.errors?.[0]?.msg ?? (typeof answer.body === "string" ? answer.body : json(answer.body));
  bubble(`${answer.status}: ${why}`, "error");
}

// Links from a bot open only as web pages (never `javascript:`).
function link(url, text) {
  let safe = null;
  try { safe = ["http:", "https:"].includes(new URL(url, location.href).protocol) ? url : null; } catch { /* not a URL */ }
  return safe ? el("a", { href: safe, target: "_blank", rel: "noopener noreferrer", textContent: text }) : el("span", { textContent: `${text} (${url})` });
}

// A button or quick reply: a postback sends its payload, a URL opens.
function choice(button) {
  const title = button.title ?? button.value ?? "?";
  if (button.type === "web_url" && button.url) return link(button.url, title);
  const payload = button.payload ?? button.value ?? title;
  return el("button", { type: "button", textContent: title, onclick: () => sendTyped(text(payload), title) });
}

function template(payload) {
  const node = el("div", { className: "bubble bot" });
  const kind = payload.template_type ?? "?";
  if (payload.text) node.append(el("div", { textContent: payload.text }));
  const buttons = [...(payload.buttons ?? []), ...(payload.quick_replies ?? [])];
  if (buttons.length) node.append(el("div", { className: "choices" }, ...buttons.map(choice)));
  if (Array.isArray(payload.elements)) {
    const cards = payload.elements.map((e) => el("div", { className: "card" },
      el("div", { className: "title", textContent: e.title ?? "" }),
      e.subtitle ? el("div", { textContent: e.subtitle }) : null,
      e.value ? el("div", { textContent: e.value }) : null,
      e.buttons?.length ? el("div", { className: "choices" }, ...e.buttons.map(choice)) : null));
    node.append(el("div", { className: "cards" }, ...cards));
  }
  if (!payload.text && !buttons.length && !payload.elements) node.append(el("div", { textContent: `[${kind} template]` }));
  node.dataset.template = kind;
  return scrolled($("chat"), node);
}

const INPUT_TYPES = { email: "email", number: "number", date: "date", phoneNumber: "tel", password: "password" };
let fieldIds = 0;

// A form from its formDef, prefilled; submitting sends formData (v2 only).
function form(definition) {
  const def = definition.formDef ?? {};
  const values = definition.formInitialization?.valueMap ?? {};
  const node = el("form", { className: "bot-form" }, el("div", { className: "title", textContent: def.displayName ?? def.name ?? "Form" }));
  const inputs = [];
  let submit = "Submit";
  for (const component of def.components ?? []) {
    const meta = component.metaData ?? {};
    if (component.type === "button") { submit = meta.displayName ?? submit; continue; }
    const id = `field-${(fieldIds += 1)}`;
    let input;
    if (Array.isArray(meta.values) && meta.values.length) {
      input = el("select", { id, name: component.name }, el("option", { value: "", textContent: "" }),
        ...meta.values.map((o) => el("option", { value: o.value, textContent: o.label ?? o.value })));
    } else {
      input = el(component.type === "textArea" ? "textarea" : "input", { id, name: component.name, type: INPUT_TYPES[component.type] ?? "text" });
    }
    input.required = meta.required === true;
    if (values[component.name] !== undefined) input.value = values[component.name];
    inputs.push(input);
    node.append(el("label", { htmlFor: id, textContent: `${meta.displayName ?? component.name}${input.required ? " *" : ""}` }), input);
  }
  for (const error of definition.errors ?? []) {
    node.append(el("div", { className: "field-error", textContent: `${error.componentId}: ${error.msg}` }));
  }
  const button = el("button", { type: "submit", textContent: submit });
  if (talk.instance.version !== "v2") {
    button.disabled = true;
    node.append(el("div", { className: "field-error", textContent: "v1 has no formData: answer in text" }));
  }
  node.append(button);
  node.onsubmit = (event) => {
    event.preventDefault();
    const data = inputs.map((input) => ({ componentId: input.name, input: input.value }));
    button.disabled = true;
    sendTyped({ type: "formData", val: { formId: def._id, data, meta: {} } }, `(form ${def._id} sent)`);
  };
  return scrolled($("chat"), el("div", { className: "bubble bot" }, node));
}

// One v2 message of an answer or a POST_URL delivery.
function message(item) {
  const val = item.val;
  switch (item.type) {
    case "text": return bubble(typeof val === "string" ? val : json(val));
    case "template": return template(val?.payload ?? {});
    case "attachment": {
      const node = bubble("");
      node.append(link(val?.url ?? "", `file ${val?.mime ?? ""} ${val?.url ?? ""}`));
      return node;
    }
    case "form": return form(val ?? {});
    case "event": return bubble(`[event ${val}]`, "note");
    default: return bubble(`[${item.type}] ${json(val)}`, "note");
  }
}

// v1 texts: a string or a list, a template as its JSON text.
function v1Text(text) {
  for (const line of Array.isArray(text) ? text : [text]) {
    if (typeof line !== "string") { bubble(json(line)); continue; }
    let parsed = null;
    try { parsed = JSON.parse(line); } catch { /* plain text */ }
    if (parsed?.type === "template") template(parsed.payload ?? {}); else if (line) bubble(line);
  }
}

// What an answer or a POST_URL body says: v2 messages or v1 texts, a form,
// the end of a task.
function show(body) {
  if (Array.isArray(body.data)) body.data.forEach(message); else if (body.text !== undefined) v1Text(body.text);
  if (body.form && typeof body.form === "object") form(body.form);
  if (body.endOfTask && body.endReason) bubble(`end of task: ${body.endReason}${body.completedTaskName ? ` (${body.completedTaskName})` : ""}`, "note");
}

function text(val) { return { type: "text", val }; }

function sendTyped(msg, shown) {
  send(talk, msg, shown).catch((e) => bubble(String(e), "error"));
}

// Sends a message of `conversation`, shows the answer, and follows its pollIds.
async function send(conversation, msg, shown) {
  if (conversation !== talk) return;
  bubble(shown ?? (typeof msg.val === "string" ? msg.val : json(msg.val)), "user");
  const body = conversation.instance.version === "v2"
    ? { message: msg, from: { id: conversation.user } }
    : { message: { text: typeof msg.val === "string" ? msg.val : "", ...(msg.attachments && { attachments: msg.attachments }) }, from: { id: conversation.user } };
  let reply = await exchange(conversation, "POST", conversation.instance.path, body);
  while (conversation === talk) {
    if (reply.status !== 200) return failed(reply);
    show(reply.body);
    if (conversation.instance.mode === "async") return bubble("acknowledged: the replies come through the POST_URL", "note");
    const pollId = reply.body.pollId;
    if (!pollId) return;
    // The answer's messages are shown; the rest comes through the poll.
    do {
      await pause(POLL_EVERY_MS);
      reply = await exchange(conversation, "GET", `${conversation.instance.path}/poll/${pollId}`);
    } while (conversation === talk && reply.status === 200 && reply.body.status === "Inprogress");
  }
}

// The deliveries of `conversation` after its last one, and the last number.
async function deliveriesOf(conversation, after) {
  const query = new URLSearchParams({ bot: conversation.bot.id, user: conversation.user, app: conversation.app, after });
  const response = await fetch(`/console/api/deliveries?${query}`, { headers: DEV });
  return response.json();
}

// The conversation's deliveries; an asynchronous instance's messages are
// shown in the chat once its POST_URL took them.
async function followDeliveries() {
  while (true) {
    const conversation = talk;
    if (conversation) {
      try {
        const { deliveries, last } = await deliveriesOf(conversation, conversation.lastDelivery);
        if (conversation === talk) {
          deliveries.forEach((d) => delivery(conversation, d));
          conversation.lastDelivery = last;
        }
      } catch (e) {
        setStatus(`deliveries: ${e}`);
      }
    }
    await pause(POLL_EVERY_MS);
  }
}

// A delivery's gist: an event's direction and text, a POST_URL's messages.
function describe(d) {
  const body = d.body ?? {};
  const gist = (value) => {
    if (typeof value === "string") return value;
    if (value?.payload) return `[${value.payload.template_type} template] ${value.payload.text ?? ""}`;
    if (value?.formDef) return `[form ${value.formDef.displayName ?? value.formDef._id}]`;
    if (value?.formId) return `[form ${value.formId} answered]`;
    return JSON.stringify(value);
  };
  const said = (value) => gist(value).slice(0, 80);
  if (d.kind === "event") {
    // An event's data is the message's JSON text.
    let data = body.data;
    try { data = JSON.parse(data); } catch { /* plain text */ }
    return `${body.direction}: ${said(data)}`;
  }
  if (d.kind === "postUrl" && Array.isArray(body.data)) {
    return body.data.length ? body.data.map((m) => said(m.val)).join(" | ") : `end of turn${body.endOfTask ? ", end of task" : ""}`;
  }
  if (d.kind === "postUrl" && body.text !== undefined) return said(body.text);
  return "";
}

function delivery(conversation, d) {
  const outcome = d.outcome.status !== undefined ? `${d.outcome.status}` : `failed: ${d.outcome.failed}`;
  const good = d.outcome.status >= 200 && d.outcome.status < 300;
  const summary = el("summary", {}, `${d.time.slice(11, 23)} ${d.kind} ${d.webhookId} → ${d.url} `,
    el("span", { className: good ? "ok" : "bad", textContent: outcome }), ` ${describe(d)}`);
  const node = el("details", { className: "entry" }, summary, el("pre", { textContent: json(d.body) }));
  node.dataset.kind = d.kind;
  scrolled($("deliveries"), node);
  // A retried delivery keeps its webhook-id: shown once.
  if (d.kind === "postUrl" && good && d.instance === conversation.instance.id && !conversation.shown.has(d.webhookId)) {
    conversation.shown.add(d.webhookId);
    show(d.body ?? {});
  }
}

async function start() {
  const bot = bots.find((b) => b.id === $("bot").value);
  const instance = bot?.instances.find((i) => i.id === $("instance").value);
  const user = $("user").value.trim();
  if (!bot || !instance || !user) return setStatus("choose a bot, an instance and a user");
  const response = await fetch("/console/api/token", { method: "POST", headers: { ...DEV, "Content-Type": "application/json" }, body: JSON.stringify({ bot: bot.id, instance: instance.id, user }) });
  const minted = await response.json();
  if (!response.ok) return setStatus(minted.error);
  const conversation = { bot, instance, user, app: minted.app, token: minted.token, lastDelivery: 0, shown: new Set() };
  // What was delivered before this start is not shown again.
  conversation.lastDelivery = (await deliveriesOf(conversation, Number.MAX_SAFE_INTEGER)).last;
  talk = conversation;
  for (const pane of ["chat", "exchanges", "deliveries"]) $(pane).replaceChildren();
  for (const control of ["text", "send", "file", "attach"]) $(control).disabled = false;
  setStatus(`${bot.name}: ${instance.id} (${instance.version}, ${instance.mode}) as ${user}, app ${minted.app}`);
  if (instance.version === "v2") await send(conversation, { type: "event", val: "ON_CONNECT" }, "(connected: ON_CONNECT)");
}

async function upload(conversation, file) {
  const parts = new FormData();
  parts.append("filename", file.name);
  parts.append("file", file, file.name);
  const uploaded = await exchange(conversation, "POST", conversation.bot.upload, parts, `multipart: ${file.name} (${file.size} bytes)`);
  if (conversation !== talk) return;
  if (uploaded.status !== 200 || !uploaded.body.fileId) return failed(uploaded);
  const caption = $("text").value.trim() || file.name;
  $("text").value = "";
  const shown = caption === file.name ? `[file ${file.name}]` : `${caption} [file ${file.name}]`;
  await send(conversation, { type: "text", val: caption, attachments: [{ fileId: uploaded.body.fileId }] }, shown);
}

function fillInstances() {
  const bot = bots.find((b) => b.id === $("bot").value);
  $("instance").replaceChildren(...(bot?.instances ?? []).map((i) => el("option", { value: i.id, textContent: `${i.id} (${i.version}, ${i.mode})` })));
}

async function load() {
  const response = await fetch("/console/api/bots", { headers: DEV });
  bots = (await response.json()).bots;
  $("bot").replaceChildren(...bots.map((b) => el("option", { value: b.id, textContent: `${b.name} (${b.id})` })));
  fillInstances();
  $("bot").onchange = fillInstances;
  $("start").onclick = () => start().catch((e) => setStatus(String(e)));
  const typed = () => {
    const value = $("text").value.trim();
    if (!value) return;
    $("text").value = "";
    sendTyped(text(value));
  };
  $("send").onclick = typed;
  $("text").onkeydown = (event) => { if (event.key === "Enter") typed(); };
  $("attach").onclick = () => $("file").click();
  $("file").onchange = () => {
    const file = $("file").files[0];
    $("file").value = "";
    if (file) upload(talk, file).catch((e) => bubble(String(e), "error"));
  };
  document.body.dataset.ready = "true";
  followDeliveries();
}

load().catch((e) => setStatus(`cannot load the bots: ${e}`));
