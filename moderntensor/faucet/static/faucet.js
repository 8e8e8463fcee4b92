// The faucet page: show the faucet's info, solve the proof of work if asked, claim, then
// follow the payout until its block is finalized (polling GET /api/tx/<hash>).
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;

function ether(wei) {
  const value = BigInt(wei);
  const whole = value / 10n ** 18n;
  const frac = (value % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : `${whole}`;
}

function duration(seconds) {
  if (seconds >= 3600) return `${+(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60) return `${+(seconds / 60).toFixed(1)} min`;
  return `${seconds} s`;
}

function show(text, kind) {
  const box = $("status");
  box.textContent = text;
  box.className = kind || "";
}

async function loadInfo() {
  try {
    info = await (await fetch("/api/info")).json();
    const stats = await (await fetch("/api/stats")).json();
    $("info-amount").textContent = `${ether(info.amount)} ${info.symbol}`;
    $("info-address").textContent = info.address;
    $("info-balance").textContent = info.balance === null ? "unknown" : `${ether(info.balance)} ${info.symbol}`;
    const l = info.limits;
    $("info-limits").textContent =
      `${l.addressClaims} per address every ${duration(l.addressWindow)}, ` +
      `${l.ipClaims} per IP every ${duration(l.ipWindow)}, ${ether(l.dailyCap)} ${info.symbol} a day in all`;
    $("info-paid").textContent = `${stats.claimsPaid} claim${stats.claimsPaid === 1 ? "" : "s"}, ${ether(stats.weiPaid)} ${info.symbol}`;
    $("claim").textContent = `Request ${ether(info.amount)} ${info.symbol}`;
  } catch (err) {
    show(`Cannot reach the faucet: ${err}`, "error");
  }
}

// Find a decimal nonce with sha256(challenge + nonce) starting with `difficulty` zero bits,
// yielding to the page every few thousand tries.
async function solve(challenge, difficulty) {
  let nonce = 0;
  const started = performance.now();
  for (;;) {
    for (let i = 0; i < 5000; i++, nonce++) {
      if (leadingZeroBits(sha256Words(challenge + nonce)) >= difficulty) {
        return { nonce: String(nonce), ms: performance.now() - started };
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

async function follow(txHash) {
  const link = info && info.explorerUrl ? ` (${info.explorerUrl}/tx/${txHash})` : "";
  for (let i = 0; i < 600; i++) {
    const answer = await fetch(`/api/tx/${txHash}`);
    if (answer.ok) {
      const tx = await answer.json();
      if (tx.status === "final") {
        show(`Finalized in block ${tx.blockNumber}: ${txHash}${link}`, "final");
        loadInfo();
        return;
      }
      if (tx.status === "failed") {
        show(`The payout failed: ${tx.error || "unknown reason"} (${txHash})`, "error");
        return;
      }
      show(`Payout ${tx.status}, waiting for finality… ${txHash}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  show(`Still not final after 10 minutes: ${txHash}`, "error");
}

async function claim(event) {
  event.preventDefault();
  const button = $("claim");
  button.disabled = true;
  try {
    const body = { address: $("address").value.trim() };
    if (info && info.pow.difficulty > 0) {
      show("Solving the proof of work…");
      const c = await (await fetch("/api/challenge")).json();
      const solution = await solve(c.challenge, c.difficulty);
      body.challenge = c.challenge;
      body.nonce = solution.nonce;
    }
    show("Sending your claim…");
    const answer = await fetch("/api/claim", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const doc = await answer.json();
    if (!answer.ok) {
      const wait = doc.retryAfter ? ` Try again in ${duration(doc.retryAfter)}.` : "";
      const message = doc.message.charAt(0).toUpperCase() + doc.message.slice(1);
      show(`${message}.${wait}`, "error");
      return;
    }
    show(`Sent ${ether(doc.amount)} ${info.symbol} to ${doc.address}: ${doc.txHash}`);
    await follow(doc.txHash);
  } catch (err) {
    show(`Something went wrong: ${err}`, "error");
  } finally {
    button.disabled = false;
  }
}

$("claim-form").addEventListener("submit", claim);
loadInfo();
