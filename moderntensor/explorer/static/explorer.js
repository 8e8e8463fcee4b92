// The router (hash routes: #/block/N, #/tx/H, #/address/A, #/validators, #/validator/A),
// the search box and the live head over the WebSocket.
"use strict";

let routeToken = 0;
let onHead = null;
let busy = false;

function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return { kind: parts[0] || "", arg: parts.slice(1).join("/") };
}

async function render() {
  const token = ++routeToken;
  onHead = null;
  const main = document.getElementById("main");
  const ctx = { main, alive: () => token === routeToken, rerender: () => refresh(token) };
  const { kind, arg } = currentRoute();
  const pages = {
    "": () => pageHome(ctx), block: () => pageBlock(ctx, arg), tx: () => pageTx(ctx, arg),
    address: () => pageAddress(ctx, arg), validators: () => pageValidators(ctx),
    validator: () => pageValidator(ctx, arg),
  };
  const page = pages[kind] || (() => notFound(ctx, `No page ${location.hash}`));
  document.title = kind ? `${kind} ${arg} · ModernTensor explorer` : "ModernTensor explorer";
  try {
    const hook = await page();
    if (ctx.alive()) onHead = hook;
  } catch (err) {
    if (ctx.alive()) showError(main, err);
  }
  if (ctx.alive()) main.dataset.rendered = location.hash; // which route the page shows
}

// A page asked to be drawn again on the next head (a block or tx not final yet).
async function refresh(token) {
  if (token !== routeToken) return;
  await render();
}

async function search(text) {
  const q = text.trim();
  const hex = /^[0-9a-fA-F]{40}$|^[0-9a-fA-F]{64}$/.test(q) ? "0x" + q : q;
  const main = document.getElementById("main");
  try {
    if (/^\d+$/.test(q.replace(/,/g, ""))) location.hash = `#/block/${q.replace(/,/g, "")}`;
    else if (/^0x[0-9a-fA-F]{40}$/.test(hex)) location.hash = `#/address/${hex}`;
    else if (/^0x[0-9a-fA-F]{64}$/.test(hex)) {
      const [block, tx] = await rpcBatch([["eth_getBlockByHash", [hex, false]], ["eth_getTransactionByHash", [hex]]]);
      if (block) location.hash = `#/block/${hex}`;
      else if (tx) location.hash = `#/tx/${hex}`;
      else notFound({ main, alive: () => true }, `No block or transaction with hash ${hex}.`);
    } else {
      notFound({ main, alive: () => true },
        "Search for a block number, a block or transaction hash (0x and 64 hex digits) or an address (0x and 40 hex digits).");
    }
  } catch (err) {
    showError(main, err);
  }
}

function setLive(on) {
  const el = document.getElementById("live");
  el.classList.toggle("on", on);
  if (!on) el.textContent = "reconnecting…";
}

async function headArrived(header) {
  const el = document.getElementById("live");
  el.classList.add("on");
  el.textContent = `block ${thousands(num(header.number))}`;
  el.dataset.head = String(num(header.number));
  if (!onHead || busy) return; // a slow page skips a head rather than queueing them
  busy = true;
  try {
    await onHead(header);
  } catch (err) {
    console.warn("live update failed", err);
  } finally {
    busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("search-input");
    search(input.value);
    input.blur();
  });
  window.addEventListener("hashchange", render);
  subscribeHeads(headArrived, setLive);
  render();
});
