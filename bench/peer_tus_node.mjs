// @tus/server with its FileStore as an ingest peer: `node bench/peer_tus_node.mjs PORT DIR`,
// resolved from the bench's own node_modules (NODE_PATH, outside the checkout). No auth.
import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(process.env.BENCH_NODE_MODULES + "/");
const { Server } = require("@tus/server");
const { FileStore } = require("@tus/file-store");

const [port, directory] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), "127.0.0.1", () => {
  console.log("ready");
});
