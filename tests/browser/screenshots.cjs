// node screenshots.cjs BASE_URL OUT_DIR SAMPLE_FILE: the README's pictures of the console and /docs.
"use strict";
const path = require("node:path");
const { run } = require("./browser.cjs");

const [base, out, sample] = process.argv.slice(2);
const TIMEOUT = 60000;

run(async (browser) => {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 760 });
  await page.goto(`${base}/`, { waitUntil: "load" });
  await page.waitForSelector("#auth:not([hidden])", { timeout: TIMEOUT });
  await page.screenshot({ path: path.join(out, "console-login.png") });
  await page.type("#username", `newcomer${Date.now().toString(36)}`);
  await page.type("#password", "correct horse battery");
  await page.click("#register");
  await page.waitForFunction(() => document.querySelector("#stream-state")?.textContent === "live", { timeout: TIMEOUT });
  const input = await page.waitForSelector(".uppy-Dashboard-input", { timeout: TIMEOUT });
  await input.uploadFile(sample);
  await (await page.waitForSelector(".uppy-StatusBar-actionBtn--upload", { timeout: TIMEOUT })).click();
  await page.waitForSelector('#tasks tr[data-status="completed"]', { timeout: TIMEOUT });
  await page.screenshot({ path: path.join(out, "console.png") });
  await page.goto(`${base}/docs`, { waitUntil: "load" });
  await page.waitForSelector(".opblock", { timeout: TIMEOUT });
  await page.screenshot({ path: path.join(out, "docs.png") });
  return { written: ["console-login.png", "console.png", "docs.png"] };
});
