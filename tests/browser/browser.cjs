// Shared by the browser scenarios: Debian's Chromium driven by puppeteer-core
// (which never downloads a browser), a fresh profile, and every console error kept.
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { createRequire } = require("node:module");

const requireJs = createRequire(path.join(__dirname, "..", "js", "package.json"));
const puppeteer = requireJs("puppeteer-core");

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tusd-py-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [...FLAGS, `--user-data-dir=${profile}`],
    protocolTimeout: 120000,
  });
  const close = async () => {
    await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { browser, close };
}

// Console errors, page errors and failed requests: the test decides which are expected.
function watch(page, errors) {
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()} @ ${msg.location()?.url || ""}`);
  });
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("requestfailed", (req) => {
    const failure = req.failure()?.errorText || "";
    if (failure !== "net::ERR_ABORTED") errors.push(`requestfailed: ${req.url()} ${failure}`);
  });
}

// One JSON line on stdout is the scenario's answer to the Python test.
async function run(scenario) {
  const { browser, close } = await launch();
  try {
    const result = await scenario(browser);
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await close();
  }
}

module.exports = { launch, watch, run };
