// The pages: each renders into `ctx.main` and may return an onHead(header) hook for live updates.
"use strict";

const RECENT_SLOTS = 512; // slots the validator pages count proposals and misses over
const HOME_BLOCKS = 10;
const HOME_SCAN = 20; // blocks read at load for the latest transactions
const toHex = (n) => "0x" + BigInt(n).toString(16);
const isHash = (s) => /^0x[0-9a-fA-F]{64}$/.test(s);
const isAddress = (s) => /^0x[0-9a-fA-F]{40}$/.test(s);

function validatorOf(validators, addr) {
  if (!addr) return null;
  const a = addr.toLowerCase();
  return validators.find((v) => v.address.toLowerCase() === a || v.validatorId.toLowerCase() === a) || null;
}

function statusBadge(v, id) {
  const kind = v.status === "active" ? "ok" : v.status === "jailed" ? "bad" : "warn";
  return badge(kind, v.status, id);
}

function finalityBadge(number, finalized, id) {
  return number <= finalized ? badge("ok", "Finalized", id) : badge("warn", "Not final yet", id);
}

// -- home -----------------------------------------------------------------------------------

function stat(label, id) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, "…"));
}

async function pageHome(ctx) {
  const blocksBody = h("tbody", { id: "latest-blocks" });
  const txsBody = h("tbody", { id: "latest-txs" });
  const view = [
    h("div", { class: "stats" },
      stat("Height", "stat-height"), stat("Finalized", "stat-finalized"), stat("Block time", "stat-blocktime"),
      stat("TPS", "stat-tps"), stat("Validators", "stat-validators"), stat("Peers", "stat-peers")),
    h("div", { class: "grid2" },
      card("Latest blocks", h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Block"), h("th", {}, "Age"), h("th", { class: "num" }, "Txs"),
          h("th", { class: "wide" }, "Proposer"), h("th", { class: "num wide" }, "Gas used"))), blocksBody))),
      card("Latest transactions", h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Tx"), h("th", { class: "wide" }, "From → To"), h("th", { class: "num" }, "Value"),
          h("th", { class: "num" }, "Block"))), txsBody)),
        h("p", { class: "muted", id: "latest-txs-note" }))),
  ];
  const head = num(await rpc("eth_blockNumber"));
  const numbers = [];
  for (let n = head; n >= Math.max(0, head - HOME_SCAN + 1); n--) numbers.push(n);
  const [blocks, recent] = await Promise.all([
    rpcBatch(numbers.map((n) => ["eth_getBlockByNumber", [toHex(n), true]])).then((bs) => bs.filter(Boolean)),
    getJson("/api/transactions"),
  ]);
  if (!ctx.alive()) return null;
  ctx.main.replaceChildren(...view);
  const home = { blocks: [], txs: [], validators: [], statsAt: 0 };
  const setHeight = (n) => { document.getElementById("stat-height").textContent = thousands(n); };

  function blockRow(b, fresh) {
    const v = validatorOf(home.validators, b.miner);
    return row([
      [blockLink(num(b.number))], [ago(num(b.timestamp))], [String(b.transactions.length), "num"],
      [v ? link(`#/validator/${v.address}`, v.name || short(v.address, 6)) : addrLink(b.miner, 6), "wide"],
      [thousands(num(b.gasUsed)), "num wide"],
    ], { class: fresh ? "fresh" : null, "data-number": num(b.number) });
  }
  function txRow(tx, fresh) {
    return row([
      [txLink(tx.hash, 6)], [h("span", {}, addrLink(tx.from, 4), " → ", addrLink(tx.to, 4)), "wide"],
      [ether(tx.value), "num"], [blockLink(num(tx.blockNumber)), "num"],
    ], { class: fresh ? "fresh" : null });
  }
  function draw(fresh) {
    blocksBody.replaceChildren(...home.blocks.slice(0, HOME_BLOCKS).map((b, i) => blockRow(b, fresh && i === 0)));
    txsBody.replaceChildren(...home.txs.slice(0, HOME_BLOCKS).map((tx) => txRow(tx, fresh && tx.fresh)));
    document.getElementById("latest-txs-note").textContent = home.txs.length
      ? "" : "No transactions in the explorer's index of recent blocks.";
  }
  function add(b, fresh) {
    if (home.blocks.length && num(b.number) <= num(home.blocks[0].number)) {
      home.blocks = home.blocks.filter((x) => num(x.number) < num(b.number)); // a replaced head
      home.txs = home.txs.filter((tx) => num(tx.blockNumber) < num(b.number));
    }
    home.blocks.unshift(b);
    home.blocks.length = Math.min(home.blocks.length, HOME_SCAN);
    const txs = b.transactions.slice().reverse().map((tx) => ({ ...tx, fresh }));
    home.txs = txs.concat(home.txs.map((tx) => ({ ...tx, fresh: false }))).slice(0, HOME_BLOCKS);
  }
  async function refreshStats() {
    home.statsAt = Date.now();
    const [status, slots] = await rpcBatch([["mt_status"], ["mt_slots", ["0x64"]]]);
    if (!ctx.alive()) return;
    home.validators = status.validators;
    const filled = slots.filter((s) => s.blockNumber);
    const slotMs = status.epoch.slotDurationMs;
    const blockTime = filled.length > 1
      ? ((filled[0].slot - filled[filled.length - 1].slot) * slotMs) / (filled.length - 1) / 1000 : slotMs / 1000;
    const recent = home.blocks.slice(0, HOME_BLOCKS);
    const txCount = recent.reduce((sum, b) => sum + b.transactions.length, 0);
    const tps = recent.length ? txCount / (recent.length * blockTime) : 0;
    const active = status.validators.filter((v) => v.status === "active").length;
    document.getElementById("stat-finalized").textContent = thousands(num(status.finality.finalizedNumber));
    document.getElementById("stat-blocktime").textContent = `${blockTime.toFixed(2)} s`;
    document.getElementById("stat-tps").textContent = tps.toFixed(2);
    document.getElementById("stat-validators").textContent = `${active} / ${status.validators.length}`;
    document.getElementById("stat-peers").textContent = String(status.peers.count);
  }

  for (const b of blocks.slice().reverse()) add(b, false);
  const seen = new Set(home.txs.map((tx) => tx.hash));
  const older = recent.transactions.filter((tx) => !seen.has(tx.hash) && tx.blockNumber <= (blocks.length ? num(blocks[0].number) : 0))
    .map((tx) => ({ ...tx, blockNumber: toHex(tx.blockNumber), fresh: false }));
  home.txs = home.txs.concat(older).slice(0, HOME_BLOCKS);
  setHeight(head);
  await refreshStats();
  draw(false);
  return async (header) => {
    const n = num(header.number);
    setHeight(n);
    // the new head, and any block between it and the newest shown (heads that arrived while
    // the page was busy are skipped, not queued): at most HOME_BLOCKS of them
    const top = home.blocks.length ? num(home.blocks[0].number) : n - 1;
    const calls = [];
    for (let m = Math.max(top + 1, n - HOME_BLOCKS + 1); m < n; m++) calls.push(["eth_getBlockByNumber", [toHex(m), true]]);
    calls.push(["eth_getBlockByHash", [header.hash, true]]);
    const fetched = (await rpcBatch(calls)).filter(Boolean);
    if (!fetched.length || !ctx.alive()) return;
    for (const b of fetched) add(b, true);
    if (Date.now() - home.statsAt > 2000) await refreshStats();
    if (ctx.alive()) draw(true);
  };
}

// -- block ----------------------------------------------------------------------------------

async function pageBlock(ctx, id) {
  const block = isHash(id)
    ? await rpc("eth_getBlockByHash", [id, true])
    : /^\d+$/.test(id) ? await rpc("eth_getBlockByNumber", [toHex(id), true]) : null;
  if (!block) return notFound(ctx, `No block ${id} on this chain (yet).`);
  const n = num(block.number);
  const [fin, slots, validators] = await rpcBatch([["mt_finality"], ["mt_slots", ["0x1", block.number]], ["mt_validators"]]);
  if (!ctx.alive()) return null;
  const slot = slots[0] || {};
  const v = validatorOf(validators, slot.proposer || block.miner);
  const finalized = num(fin.finalizedNumber);
  const txRows = block.transactions.map((tx) => row([
    [txLink(tx.hash, 8)], [addrLink(tx.from, 6)], [addrLink(tx.to, 6)], [ether(tx.value), "num"], [thousands(num(tx.gas)), "num wide"],
  ]));
  ctx.main.replaceChildren(
    h("h1", {}, "Block ", h("span", { id: "block-number" }, thousands(n)), " ", finalityBadge(n, finalized, "block-finality")),
    card(null, fields([
      ["Hash", h("code", {}, block.hash), "block-hash"],
      ["Parent", n > 0 ? link(`#/block/${n - 1}`, block.parentHash, { class: "mono" }) : h("code", {}, block.parentHash)],
      ["Time", `${dateOf(num(block.timestamp))} (${ago(num(block.timestamp))})`],
      ["Slot", slot.slot != null ? `${thousands(slot.slot)} (epoch ${slot.epoch})` : "—", "block-slot"],
      ["Proposer", v ? h("span", {}, link(`#/validator/${v.address}`, v.name || v.address), " ", h("code", { class: "muted" }, short(v.validatorId, 6)))
        : addrLink(slot.proposer || block.miner, 20), "block-proposer"],
      ["Fee recipient", addrLink(block.miner, 20)],
      ["Transactions", String(block.transactions.length), "block-txcount"],
      ["Gas used", `${thousands(num(block.gasUsed))} of ${thousands(num(block.gasLimit))}`],
      ["Base fee", gwei(block.baseFeePerGas)],
      ["Size", `${thousands(num(block.size))} bytes`],
      ["State root", h("code", {}, block.stateRoot)],
      ["Finality", `${n <= finalized ? "final" : "not final yet"}: finalized head is ${thousands(finalized)}, head ${thousands(num(fin.headNumber))}`],
    ])),
    card(`Transactions (${block.transactions.length})`, block.transactions.length
      ? table([["Hash"], ["From"], ["To"], ["Value", "num"], ["Gas limit", "num wide"]], txRows, "block-txs")
      : h("p", { class: "muted" }, "No transactions in this block.")),
  );
  return n > finalized ? () => ctx.rerender() : null;
}

// -- transaction ----------------------------------------------------------------------------

async function pageTx(ctx, hash) {
  if (!isHash(hash)) return notFound(ctx, `Not a transaction hash: ${hash}`);
  const [tx, receipt, fin] = await rpcBatch([["eth_getTransactionByHash", [hash]], ["eth_getTransactionReceipt", [hash]], ["mt_finality"]]);
  if (!ctx.alive()) return null;
  const finalized = num(fin.finalizedNumber);
  let finality;
  if (receipt && num(receipt.blockNumber) <= finalized) finality = badge("ok", "Finalized", "tx-finality");
  else if (receipt) finality = badge("warn", "Included, not final yet", "tx-finality");
  else if (tx) finality = badge("warn", "Pending in pool", "tx-finality");
  else finality = badge("bad", "Not found", "tx-finality");
  if (!tx) {
    ctx.main.replaceChildren(h("h1", {}, "Transaction ", finality),
      card(null, h("p", {}, "No transaction ", h("code", {}, hash), " in a block or in this node's pool.")));
    return () => ctx.rerender(); // it may arrive
  }
  const status = !receipt ? badge("warn", "Pending", "tx-status")
    : receipt.status === "0x1" ? badge("ok", "Success", "tx-status") : badge("bad", "Failed", "tx-status");
  const rows = [
    ["Hash", h("code", {}, tx.hash), "tx-hash"],
    ["Status", status],
    ["Finality", finality],
    ["Block", tx.blockNumber ? h("span", {}, blockLink(num(tx.blockNumber)), ` (index ${num(tx.transactionIndex)})`) : "pending", "tx-block"],
    ["From", addrLink(tx.from, 20), "tx-from"],
    ["To", addrLink(tx.to, 20), "tx-to"],
    ["Value", ether(tx.value), "tx-value"],
    ["Nonce", String(num(tx.nonce))],
    ["Type", String(num(tx.type))],
    ["Gas limit", thousands(num(tx.gas))],
  ];
  if (receipt) {
    const fee = big(receipt.gasUsed) * big(receipt.effectiveGasPrice);
    rows.push(
      ["Gas used", thousands(num(receipt.gasUsed)), "tx-gasused"],
      ["Effective gas price", gwei(receipt.effectiveGasPrice), "tx-gasprice"],
      ["Fee", `${formatUnits(fee)} ${SYMBOL}`],
      ["Logs", String(receipt.logs.length), "tx-logs"],
    );
  } else if (tx.maxFeePerGas) {
    rows.push(["Max fee per gas", gwei(tx.maxFeePerGas)], ["Max priority fee", gwei(tx.maxPriorityFeePerGas)]);
  }
  if (tx.input && tx.input !== "0x") rows.push(["Input", h("code", {}, tx.input)]);
  ctx.main.replaceChildren(h("h1", {}, "Transaction"), card(null, fields(rows)));
  const final = receipt && num(receipt.blockNumber) <= finalized;
  return final ? null : () => ctx.rerender();
}

// -- account --------------------------------------------------------------------------------

async function pageAddress(ctx, addr) {
  if (!isAddress(addr)) return notFound(ctx, `Not an address: ${addr}`);
  const [[balance, nonce, pending, validators], history] = await Promise.all([
    rpcBatch([["eth_getBalance", [addr, "latest"]], ["eth_getTransactionCount", [addr, "latest"]],
      ["eth_getTransactionCount", [addr, "pending"]], ["mt_validators"]]),
    getJson(`/api/account/${addr}`),
  ]);
  if (!ctx.alive()) return null;
  const v = validatorOf(validators, addr);
  const me = addr.toLowerCase();
  const rows = history.transactions.map((tx) => {
    const out = tx.from.toLowerCase() === me;
    const into = tx.to && tx.to.toLowerCase() === me;
    const dir = out && into ? badge("warn", "self") : out ? badge("bad", "out") : badge("ok", "in");
    return row([[txLink(tx.hash, 6)], [blockLink(tx.blockNumber)], [ago(tx.timestamp), "wide"], [dir],
      [addrLink(out ? tx.to : tx.from, 6)], [ether(tx.value), "num"]]);
  });
  const ix = history.index;
  const coverage = ix.blocks
    ? `From the explorer's index of blocks ${thousands(ix.fromBlock)}–${thousands(ix.toBlock)} (the newest ${thousands(ix.maxBlocks)} blocks at most; newest ${history.limit} shown).`
    : "The explorer's index of recent blocks is still being built.";
  ctx.main.replaceChildren(
    h("h1", {}, "Address ", h("code", { id: "account-address" }, history.address)),
    card(null, fields([
      ["Balance", h("span", { "data-wei": BigInt(balance).toString(), title: `${BigInt(balance)} wei` }, ether(balance)), "account-balance"],
      ["Nonce", String(num(nonce)), "account-nonce"],
      ["Pending nonce", String(num(pending)), "account-pending-nonce"],
      ["Validator", v ? h("span", {}, link(`#/validator/${v.address}`, v.name || "yes"), " ", statusBadge(v)) : "no"],
    ])),
    card("Recent transactions", rows.length
      ? table([["Tx"], ["Block"], ["Age", "wide"], [""], ["Counterparty"], ["Value", "num"]], rows, "account-txs")
      : h("p", { class: "muted", id: "account-txs-none" }, "No transactions in the indexed blocks."),
      h("p", { class: "muted" }, coverage)),
  );
  return null;
}

// -- validators -----------------------------------------------------------------------------

function tally(slots) {
  const out = new Map();
  for (const s of slots) {
    if (!s.leader) continue;
    const key = s.leader.toLowerCase();
    const t = out.get(key) || { proposed: [], missed: [] };
    (s.blockNumber ? t.proposed : t.missed).push(s);
    out.set(key, t);
  }
  return out;
}

async function pageValidators(ctx) {
  const [validators, slots] = await rpcBatch([["mt_validators"], ["mt_slots", [toHex(RECENT_SLOTS)]]]);
  if (!ctx.alive()) return null;
  const counts = tally(slots);
  const rows = validators.map((v) => {
    const t = counts.get(v.validatorId.toLowerCase()) || { proposed: [], missed: [] };
    return row([[link(`#/validator/${v.address}`, v.name || short(v.address, 6))], [addrLink(v.address, 6), "wide"],
      [ether(v.stake), "num"], [statusBadge(v)], [String(t.proposed.length), "num"], [String(t.missed.length), "num"]]);
  });
  ctx.main.replaceChildren(h("h1", {}, `Validators (${validators.length})`),
    card(null, table([["Name"], ["Address", "wide"], ["Stake", "num"], ["Status"], ["Proposed", "num"], ["Missed", "num"]], rows, "validators"),
      h("p", { class: "muted" }, `Proposed and missed: over the last ${slots.length} slots.`)));
  return null;
}

async function pageValidator(ctx, addr) {
  const [validators, slots, schedule] = await rpcBatch([["mt_validators"], ["mt_slots", [toHex(RECENT_SLOTS)]], ["mt_leaderSchedule", ["0x40"]]]);
  if (!ctx.alive()) return null;
  const v = validatorOf(validators, addr);
  if (!v) return notFound(ctx, `No validator with address or id ${addr}.`);
  const t = tally(slots).get(v.validatorId.toLowerCase()) || { proposed: [], missed: [] };
  const upcoming = schedule.filter((s) => s.leader.toLowerCase() === v.validatorId.toLowerCase());
  const slotRows = (list) => list.slice(0, 20).map((s) => row([[thousands(s.slot)], [String(s.epoch)],
    [s.blockNumber ? blockLink(num(s.blockNumber)) : h("span", { class: "muted" }, "missed")]]));
  ctx.main.replaceChildren(
    h("h1", {}, "Validator ", v.name || short(v.address, 6), " ", statusBadge(v, "validator-status")),
    card(null, fields([
      ["Stake", ether(v.stake), "validator-stake"],
      ["Status", v.status],
      ["Jailed", v.jailed ? "yes" : "no", "validator-jailed"],
      ["Account", addrLink(v.address, 20), "validator-address"],
      ["Validator id", h("code", {}, v.validatorId)],
      ["Consensus key", h("code", {}, v.consensusPubkey)],
      ["Unbonding", big(v.unbonding) ? `${ether(v.unbonding)} (epoch ${v.unbondingEpoch})` : "none"],
      ["Registered in epoch", String(v.registeredEpoch)],
      [`Proposed (last ${slots.length} slots)`, String(t.proposed.length), "validator-proposed"],
      [`Missed (last ${slots.length} slots)`, String(t.missed.length), "validator-missed"],
      ["Next slots as leader", upcoming.length ? upcoming.slice(0, 8).map((s) => thousands(s.slot)).join(", ") : "none in the next 64"],
    ])),
    h("div", { class: "grid2" },
      card("Recent proposals", t.proposed.length ? table([["Slot"], ["Epoch"], ["Block"]], slotRows(t.proposed), "validator-proposals")
        : h("p", { class: "muted" }, "None in the recent slots.")),
      card("Missed slots", t.missed.length ? table([["Slot"], ["Epoch"], ["Block"]], slotRows(t.missed), "validator-misses")
        : h("p", { class: "muted" }, "None in the recent slots."))),
  );
  return null;
}

function notFound(ctx, message) {
  if (ctx.alive()) ctx.main.replaceChildren(h("h1", {}, "Not found"), h("div", { class: "error", id: "not-found" }, message));
  return null;
}
