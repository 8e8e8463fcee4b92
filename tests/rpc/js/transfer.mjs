// ethers.js v6 drives a transfer against the node; prints one JSON line for the Python test.
// usage: node transfer.mjs <rpc url> <private key>
import { JsonRpcProvider, Wallet, Network, parseUnits } from "ethers";

const [url, key] = process.argv.slice(2);
const provider = new JsonRpcProvider(url, undefined, { pollingInterval: 100 });
const wallet = new Wallet(key, provider);
const network = await provider.getNetwork();
const to = Wallet.createRandom().address;
const value = parseUnits("1.5", "gwei");
const before = await provider.getBalance(wallet.address);
const nonce = await provider.getTransactionCount(wallet.address, "pending");
const fees = await provider.getFeeData();
const raw = await wallet.signTransaction(await wallet.populateTransaction({ to, value }));
const tx = await provider.broadcastTransaction(raw);
const receipt = await tx.wait(1, 20000);
const block = await provider.getBlock(receipt.blockNumber);
const after = await provider.getBalance(wallet.address, receipt.blockNumber);
const parentBalance = await provider.getBalance(wallet.address, receipt.blockNumber - 1);
const replay = await provider.broadcastTransaction(raw).then(
  () => "accepted",
  (err) => [err.code, err.shortMessage, err.error?.message, err.info?.error?.message].join(" | "),
);
console.log(JSON.stringify({
  chainId: network.chainId.toString(),
  to, value: value.toString(), nonce, txNonce: tx.nonce, type: tx.type,
  before: before.toString(), parentBalance: parentBalance.toString(), after: after.toString(),
  status: receipt.status, gasUsed: receipt.gasUsed.toString(),
  gasPrice: receipt.gasPrice.toString(), baseFee: block.baseFeePerGas.toString(),
  maxFee: (fees.maxFeePerGas ?? 0n).toString(), hash: tx.hash, blockNumber: receipt.blockNumber,
  recipient: (await provider.getBalance(to)).toString(), replay,
}));
