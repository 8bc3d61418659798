// node docs.cjs BASE_URL: open /docs and report what Swagger UI rendered.
"use strict";
const { run, watch } = require("./browser.cjs");

const base = process.argv[2];

run(async (browser) => {
  const page = await browser.newPage();
  const errors = [];
  watch(page, errors);
  const response = await page.goto(`${base}/docs`, { waitUntil: "load" });
  await page.waitForFunction(
    () => document.querySelectorAll(".opblock").length > 0 || /Unable to render/.test(document.body.innerText),
    { timeout: 30000 },
  );
  const operations = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent.trim().toLowerCase();
      const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path");
      return `${method} ${path}`;
    }),
  );
  const title = await page.$eval(".info .title", (el) => el.textContent).catch(() => null);
  const text = await page.evaluate(() => document.body.innerText);
  return {
    status: response.status(),
    headers: response.headers(),
    operations,
    title,
    unableToRender: /Unable to render/.test(text),
    errors,
  };
});
