// Shared helpers: JSON-RPC over POST /rpc, the newHeads WebSocket, formatting, DOM building.
"use strict";

const SYMBOL = "ETH";
let rpcId = 0;

class RpcFailure extends Error {}

async function rpc(method, params = []) {
  const res = await fetch("/rpc", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  const doc = await res.json();
  if (doc.error) throw new RpcFailure(`${method}: ${doc.error.message}`);
  return doc.result;
}

// Several calls in one request; each answer in order (an error becomes an RpcFailure thrown).
async function rpcBatch(calls) {
  if (!calls.length) return [];
  const first = rpcId + 1;
  const body = calls.map(([method, params]) => ({ jsonrpc: "2.0", id: ++rpcId, method, params: params || [] }));
  const res = await fetch("/rpc", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const doc = await res.json();
  if (!Array.isArray(doc)) throw new RpcFailure(doc.error ? doc.error.message : "bad batch answer");
  const byId = new Map(doc.map((r) => [r.id, r]));
  return calls.map(([method], i) => {
    const r = byId.get(first + i);
    if (!r) throw new RpcFailure(`${method}: no answer`);
    if (r.error) throw new RpcFailure(`${method}: ${r.error.message}`);
    return r.result;
  });
}

async function getJson(path) {
  const res = await fetch(path);
  const doc = await res.json();
  if (!res.ok) throw new Error(doc.error || `HTTP ${res.status}`);
  return doc;
}

// newHeads over /ws, reconnecting with a growing pause; onHead(header) per new block.
function subscribeHeads(onHead, onState) {
  let pause = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    ws.onopen = () => {
      pause = 500;
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_subscribe", params: ["newHeads"] }));
    };
    ws.onmessage = (msg) => {
      const doc = JSON.parse(msg.data);
      if (doc.id === 1 && doc.result) onState(true);
      if (doc.method === "eth_subscription") onHead(doc.params.result);
    };
    ws.onclose = () => {
      onState(false);
      setTimeout(connect, pause);
      pause = Math.min(pause * 2, 15000);
    };
  }
  connect();
}

// -- formatting -------------------------------------------------------------------------

const num = (hex) => (hex == null ? null : Number(BigInt(hex)));
const big = (hex) => (hex == null ? 0n : BigInt(hex));
const short = (s, n = 10) => (s && s.length > 2 * n + 2 ? `${s.slice(0, n + 2)}…${s.slice(-n + 2)}` : s || "");
const thousands = (n) => (n == null ? "—" : Number(n).toLocaleString("en-US"));

function formatUnits(wei, decimals = 18, places = 6) {
  const neg = wei < 0n;
  if (neg) wei = -wei;
  const unit = 10n ** BigInt(decimals);
  const whole = wei / unit;
  let frac = (wei % unit).toString().padStart(decimals, "0").slice(0, places).replace(/0+$/, "");
  const text = whole.toLocaleString("en-US") + (frac ? "." + frac : "");
  return (neg ? "-" : "") + text;
}
const ether = (hex) => `${formatUnits(big(hex))} ${SYMBOL}`;
const gwei = (hex) => `${formatUnits(big(hex), 9, 4)} gwei`;

function ago(seconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
const dateOf = (seconds) => new Date(seconds * 1000).toISOString().replace("T", " ").replace(".000Z", " UTC");

// -- DOM ----------------------------------------------------------------------------------

// h("a", {href: "#/"}, "text", child...): text is always set as text, never as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const link = (href, text, attrs = {}) => h("a", { href, ...attrs }, text);
const blockLink = (n) => link(`#/block/${n}`, thousands(n));
const txLink = (hash, n = 10) => link(`#/tx/${hash}`, short(hash, n), { class: "mono", title: hash });
const addrLink = (addr, n = 8, label) =>
  addr ? link(`#/address/${addr}`, label || short(addr, n), { class: "mono", title: addr }) : h("span", { class: "muted" }, "—");
const badge = (kind, text, id) => h("span", { class: `badge ${kind}`, id }, text);

function fields(rows) {
  const dl = h("dl", { class: "fields" });
  for (const [label, value, id] of rows) dl.append(h("dt", {}, label), h("dd", { id }, value));
  return dl;
}

function table(headers, rows, id) {
  const head = h("tr", {}, headers.map(([text, cls]) => h("th", { class: cls }, text)));
  const body = h("tbody", { id });
  for (const row of rows) body.append(row);
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), body));
}

const row = (cells, attrs = {}) => h("tr", attrs, cells.map(([value, cls]) => h("td", { class: cls }, value)));

function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

function showError(main, err) {
  main.replaceChildren(h("div", { class: "error", id: "error" }, String(err && err.message ? err.message : err)));
}
